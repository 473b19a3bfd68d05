//! Store versions: `(lamport, origin)` with a total order that every node computes the same way,
//! so concurrent changes converge to one winner everywhere.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The version of a store. A local change gets `lamport = highest seen + 1` and `origin = self`;
/// ties on `lamport` are broken by the origin's peer id (base58 text, compared bytewise).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub lamport: u64,
    /// The libp2p peer id (base58) of the node that made this version.
    pub origin: String,
}

impl Version {
    pub fn new(lamport: u64, origin: impl Into<String>) -> Self {
        Self {
            lamport,
            origin: origin.into(),
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.lamport
            .cmp(&other.lamport)
            .then_with(|| self.origin.as_bytes().cmp(other.origin.as_bytes()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.lamport, self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_lamport_wins_whatever_the_origin() {
        assert!(Version::new(2, "A") > Version::new(1, "Z"));
    }

    #[test]
    fn equal_lamport_is_broken_by_origin_deterministically() {
        let a = Version::new(5, "12D3KooWA");
        let b = Version::new(5, "12D3KooWB");
        assert!(b > a);
        assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
        let mut versions = [b.clone(), a.clone(), Version::new(4, "12D3KooWZ")];
        versions.sort();
        assert_eq!(versions.last(), Some(&b));
        assert_eq!(versions.first().map(|v| v.lamport), Some(4));
    }

    #[test]
    fn equal_versions_compare_equal() {
        assert_eq!(
            Version::new(3, "x").cmp(&Version::new(3, "x")),
            Ordering::Equal
        );
    }
}
