//! `dig-sidecar status --watch`: redraws the node's peers, downloads (with progress bars) and
//! stores from `/overview` every interval until Ctrl-C.

use std::{fmt::Write, io::IsTerminal, time::Duration};

use serde_json::Value;

use super::status::StatusError;
use crate::config::StatusArgs;

/// Stores listed in a frame; the rest are counted.
const MAX_STORE_LINES: usize = 20;
/// Width of a progress bar, in characters.
const BAR_WIDTH: usize = 30;

/// Polls `/overview` and redraws until Ctrl-C. A node that stops answering is reported in the
/// frame and polled again; only Ctrl-C ends the watch.
pub async fn watch(args: &StatusArgs) -> Result<(), StatusError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(StatusError::Client)?;
    let url = format!("{}/overview", args.api);
    let redraw = std::io::stdout().is_terminal();
    let mut ticker = tokio::time::interval(args.interval.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            _ = &mut interrupted => break,
            _ = ticker.tick() => {}
        }
        let frame = match fetch(&client, &url).await {
            Ok(overview) => render(&overview),
            Err(error) => format!(
                "{error}\n(retrying every {:?}; Ctrl-C stops)\n",
                args.interval
            ),
        };
        if redraw {
            // Home, clear the screen, draw.
            print!("\x1b[H\x1b[2J{frame}");
        } else {
            println!("{frame}");
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Value, StatusError> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|source| StatusError::Request {
            url: url.to_string(),
            source,
        })?;
    response.json().await.map_err(|source| StatusError::Body {
        url: url.to_string(),
        source,
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn short(id: &str) -> String {
    if id.chars().count() > 20 {
        let chars: Vec<char> = id.chars().collect();
        let head: String = chars[..10].iter().collect();
        let tail: String = chars[chars.len() - 6..].iter().collect();
        format!("{head}…{tail}")
    } else {
        id.to_string()
    }
}

pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `[########--------]  42.1 %` for a fraction 0 to 1.
pub fn progress_bar(fraction: f64) -> String {
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let filled = (fraction * BAR_WIDTH as f64).round() as usize;
    format!(
        "[{}{}] {:>5.1} %",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled),
        fraction * 100.0
    )
}

/// One frame: the node, its downloads with progress bars, its peers and its stores.
pub fn render(overview: &Value) -> String {
    let mut out = String::new();
    let node = &overview["node"];
    let _ = writeln!(
        out,
        "{}  network {}  {}  up {} s  {}",
        text(&node["peerId"]),
        text(&node["networkId"]),
        text(&node["version"]),
        text(&node["uptimeSeconds"]),
        if node["ready"] == true {
            "ready".to_string()
        } else {
            format!("NOT READY ({})", text(&node["readyReasons"]))
        }
    );
    let empty = Vec::new();
    let list = |key: &str| overview[key].as_array().unwrap_or(&empty);

    let transfers = list("transfers");
    let _ = writeln!(out, "\nDOWNLOADS ({})", transfers.len());
    for transfer in transfers {
        let rate = transfer["bytesPerSecond"]
            .as_f64()
            .map_or_else(|| "measuring".to_string(), |r| format!("{}/s", bytes(r)));
        let eta = transfer["etaSeconds"]
            .as_u64()
            .map_or_else(String::new, |s| format!("  {s} s left"));
        let _ = writeln!(
            out,
            "  {:<32} {}  {} of {}  {rate}{eta}",
            text(&transfer["name"]),
            progress_bar(transfer["progress"].as_f64().unwrap_or(0.0)),
            bytes(transfer["bytesDone"].as_f64().unwrap_or(0.0)),
            bytes(transfer["size"].as_f64().unwrap_or(0.0)),
        );
    }

    let peers = list("peers");
    let _ = writeln!(out, "\nPEERS ({} connected)", peers.len());
    for peer in peers {
        let latency = peer["latencyMs"]
            .as_f64()
            .map_or_else(|| "-".to_string(), |ms| format!("{ms:.1} ms"));
        let _ = writeln!(
            out,
            "  {:<20} {:<9} {:>9}  {}",
            short(&text(&peer["peerId"])),
            text(&peer["direction"]),
            latency,
            peer["addresses"]
                .as_array()
                .and_then(|a| a.first())
                .map(text)
                .unwrap_or_default()
        );
    }

    let stores = list("stores");
    let _ = writeln!(out, "\nSTORES ({})", text(&overview["storeCount"]));
    for store in stores.iter().take(MAX_STORE_LINES) {
        let state = text(&store["state"]);
        let detail = match state.as_str() {
            "downloading" => progress_bar(store["progress"].as_f64().unwrap_or(0.0)),
            "error" => text(&store["error"]),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {:<32} v{:<6} {:>10}  {:<11} {detail}",
            text(&store["name"]),
            text(&store["lamport"]),
            store["size"].as_f64().map_or_else(|| "-".into(), bytes),
            state,
        );
    }
    let total = overview["storeCount"].as_u64().unwrap_or(0) as usize;
    if total > MAX_STORE_LINES.min(stores.len()) {
        let _ = writeln!(
            out,
            "  … {} more",
            total - MAX_STORE_LINES.min(stores.len())
        );
    }
    for (key, title) in [("conflicts", "RECENT CONFLICTS"), ("bannedPeers", "BANNED")] {
        let items = list(key);
        if !items.is_empty() {
            let _ = writeln!(out, "\n{title} ({})", items.len());
            for item in items.iter().take(5) {
                let line = if key == "conflicts" {
                    text(&item["file"])
                } else {
                    format!(
                        "{}  {}",
                        short(&text(&item["peerId"])),
                        text(&item["reason"])
                    )
                };
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bars_fill_with_the_fraction_and_tolerate_odd_values() {
        assert_eq!(
            progress_bar(0.5),
            format!("[{}{}]  50.0 %", "#".repeat(15), "-".repeat(15))
        );
        assert!(progress_bar(0.0).starts_with(&format!("[{}]", "-".repeat(BAR_WIDTH))));
        assert!(progress_bar(2.0).ends_with("100.0 %"));
        assert!(progress_bar(f64::NAN).ends_with("  0.0 %"));
    }

    #[test]
    fn a_frame_shows_downloads_peers_and_stores() {
        let overview = json!({
            "node": {"peerId": "12D3KooWself", "networkId": "demo", "version": "0.1.0",
                     "uptimeSeconds": 12, "ready": true},
            "transfers": [{"name": "big", "progress": 0.25, "bytesDone": 268435456u64,
                           "size": 1073741824u64, "bytesPerSecond": 104857600.0, "etaSeconds": 8}],
            "peers": [{"peerId": "12D3KooWAbCdEfGhIjKlMnOpQr", "direction": "outbound",
                       "latencyMs": 0.4, "addresses": ["/ip4/127.0.0.1/tcp/4001"]}],
            "stores": [{"name": "big", "lamport": 3, "size": 1073741824u64, "state": "downloading", "progress": 0.25},
                       {"name": "small", "lamport": 1, "size": 10, "state": "synced"}],
            "storeCount": 25,
            "conflicts": [{"file": "small.1-o.20260101T120000Z.dig"}],
            "bannedPeers": [],
        });
        let frame = render(&overview);
        assert!(frame.contains("network demo"), "{frame}");
        assert!(frame.contains("ready"), "{frame}");
        assert!(
            frame.contains("big")
                && frame.contains("25.0 %")
                && frame.contains("256.0 MiB of 1.0 GiB"),
            "{frame}"
        );
        assert!(frame.contains("100.0 MiB/s  8 s left"), "{frame}");
        assert!(frame.contains("12D3KooWAb…MnOpQr"), "{frame}");
        assert!(frame.contains("0.4 ms"), "{frame}");
        assert!(
            frame.contains("STORES (25)") && frame.contains("… 23 more"),
            "{frame}"
        );
        assert!(frame.contains("RECENT CONFLICTS (1)"), "{frame}");
        assert!(!frame.contains("BANNED"), "{frame}");
    }
}
