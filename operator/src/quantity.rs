//! Kubernetes resource quantities (`250m`, `64Mi`, `1e3`) as numbers, so sizes and limits are
//! compared by value, not as text. Shared by the webhook's overrides and the volume growth.

/// Parses a Kubernetes quantity (`250m`, `1.5`, `64Mi`, `1e3`) to its value; rejects negatives.
pub fn parse_quantity(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let number_end = text
        .char_indices()
        .find(|(index, c)| !(c.is_ascii_digit() || *c == '.' || (*index == 0 && *c == '+')))
        .map_or(text.len(), |(index, _)| index);
    let (number, suffix) = text.split_at(number_end);
    let number = number.strip_prefix('+').unwrap_or(number);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(
            "must be a Kubernetes quantity such as 250m, 1, 64Mi or 1Gi (non-negative)".to_string(),
        );
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{number:?} is not a number"))?;
    let multiplier = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| {
                format!(
                    "unknown suffix {suffix:?} (use m, k, M, G, T, Ki, Mi, Gi, Ti or an exponent)"
                )
            })?;
            10f64.powi(power)
        }
        _ => {
            return Err(format!(
                "unknown suffix {suffix:?} (use m, k, M, G, T, Ki, Mi, Gi, Ti or an exponent)"
            ));
        }
    };
    let quantity = value * multiplier;
    // `1e999` is a quantity by the grammar but no number: it would compare above every limit.
    if !quantity.is_finite() {
        return Err(format!("{text:?} is too large to be a resource quantity"));
    }
    Ok(quantity)
}

#[cfg(test)]
mod tests {
    use super::parse_quantity;

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(parse_quantity("250m").unwrap(), 0.25);
        assert_eq!(parse_quantity("2").unwrap(), 2.0);
        assert_eq!(parse_quantity("64Mi").unwrap(), 64.0 * 1024.0 * 1024.0);
        assert_eq!(parse_quantity("1e3").unwrap(), 1000.0);
        assert_eq!(parse_quantity(".5").unwrap(), 0.5);
        for bad in ["", "m", "-1", "1.2.3", "12MB", "1 Gi", "1e999", "9e308Ei"] {
            assert!(parse_quantity(bad).is_err(), "{bad:?}");
        }
    }
}
