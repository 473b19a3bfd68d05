//! The network id: the one rule every part checks it against.
//!
//! A network id is part of every libp2p protocol id of the network (`/dig/<id>/sync/1`), of the
//! registry's records and queries, of Kubernetes label values (`dig.net/network`) and, as a
//! DigNetwork's default, of its name and so of the DNS names of its Services. The strictest of
//! those is a DNS label (RFC 1123): 1 to 63 lowercase letters, digits and `-`, starting and
//! ending with a letter or digit. That is the rule, everywhere.

use std::sync::LazyLock;

use regex::Regex;

/// Pattern of a network id, as the CRD schema and error messages show it.
pub const NETWORK_ID_PATTERN: &str = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
/// Longest network id (the length of a DNS label).
pub const MAX_NETWORK_ID_LEN: usize = 63;
/// The rule in words, for error messages and help texts.
pub const NETWORK_ID_RULE: &str =
    "1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit";

static NETWORK_ID_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(NETWORK_ID_PATTERN).expect("NETWORK_ID_PATTERN compiles"));

/// Why a text is not a network id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("network id {shown:?} is invalid: {reason} (a network id is {NETWORK_ID_RULE})")]
pub struct InvalidNetworkId {
    /// The text, cut to a readable length.
    pub shown: String,
    pub reason: String,
}

/// True when `id` is a valid network id ([`NETWORK_ID_PATTERN`]).
pub fn is_valid_network_id(id: &str) -> bool {
    NETWORK_ID_RE.is_match(id)
}

/// Checks `id`, saying what is wrong with it: the first offending character, or the length.
pub fn check_network_id(id: &str) -> Result<(), InvalidNetworkId> {
    if is_valid_network_id(id) {
        return Ok(());
    }
    let reason = if id.is_empty() {
        "it is empty".to_owned()
    } else if id.len() > MAX_NETWORK_ID_LEN {
        format!("{} bytes, longer than {MAX_NETWORK_ID_LEN}", id.len())
    } else if let Some((index, c)) = id
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        if c.is_ascii_uppercase() {
            format!(
                "uppercase {c:?} at byte {index} (ids are lowercase: {:?})",
                id.to_ascii_lowercase()
            )
        } else {
            format!("{c:?} at byte {index} is not a lowercase letter, digit or '-'")
        }
    } else {
        "it starts or ends with '-'".to_owned()
    };
    Err(InvalidNetworkId {
        shown: id.chars().take(80).collect(),
        reason,
    })
}

/// The network id of a command-line flag (a clap value parser).
pub fn parse_network_id(text: &str) -> Result<String, String> {
    check_network_id(text)
        .map(|()| text.to_owned())
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_are_network_ids() {
        for id in [
            "mainnet",
            "testnet",
            "dig-test-1",
            "a",
            "0",
            &"a".repeat(63),
        ] {
            assert!(is_valid_network_id(id), "{id}");
            check_network_id(id).unwrap();
        }
    }

    #[test]
    fn every_other_text_is_refused_with_its_reason() {
        for (id, reason) in [
            ("", "empty"),
            (&"a".repeat(64) as &str, "64 bytes, longer than 63"),
            (
                "Mainnet",
                "uppercase 'M' at byte 0 (ids are lowercase: \"mainnet\")",
            ),
            ("dig_test", "'_' at byte 3"),
            ("dig.test", "'.' at byte 3"),
            ("a/b", "'/' at byte 1"),
            ("net work", "' ' at byte 3"),
            ("-net", "starts or ends with '-'"),
            ("net-", "starts or ends with '-'"),
            ("nét", "'é' at byte 1"),
        ] {
            assert!(!is_valid_network_id(id), "{id}");
            let error = check_network_id(id).unwrap_err().to_string();
            assert!(error.contains(reason), "{id:?}: {error}");
            assert!(error.contains(NETWORK_ID_RULE), "{error}");
        }
    }

    #[test]
    fn the_reasoned_check_agrees_with_the_pattern() {
        // Every text of up to 3 characters from an alphabet with each kind of character.
        let alphabet = ['a', 'z', '0', '9', '-', 'A', '_', '.', '/'];
        let mut texts = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> = texts
                .iter()
                .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                .collect();
            texts.extend(longer);
        }
        for text in texts {
            assert_eq!(
                check_network_id(&text).is_ok(),
                is_valid_network_id(&text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_flag_value_error_names_the_value_and_the_rule() {
        assert_eq!(parse_network_id("prod-eu"), Ok("prod-eu".to_owned()));
        let error = parse_network_id("Prod_EU").unwrap_err();
        assert!(
            error.starts_with("network id \"Prod_EU\" is invalid: uppercase 'P'"),
            "{error}"
        );
    }
}
