//! The network id: the one rule every part checks it against.

use std::sync::LazyLock;

use regex::Regex;

/// Pattern of a network id; it becomes part of libp2p protocol ids, so no `/`.
pub const NETWORK_ID_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

static NETWORK_ID_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(NETWORK_ID_PATTERN).expect("NETWORK_ID_PATTERN compiles"));

/// True when `id` is a valid network id ([`NETWORK_ID_PATTERN`]).
pub fn is_valid_network_id(id: &str) -> bool {
    NETWORK_ID_RE.is_match(id)
}

/// The network id of a command-line flag (clap value parser).
pub fn parse_network_id(text: &str) -> Result<String, String> {
    if is_valid_network_id(text) {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} does not match {NETWORK_ID_PATTERN}"))
    }
}
