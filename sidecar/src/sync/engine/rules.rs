//! Who may write a store, and what a verified remote version does to the index: pure functions of
//! the write policy, the current entry, the record and the time.
//!
//! - A store's **owner** is the origin of its first accepted version.
//! - Later versions and tombstones count only when signed by the owner or a listed writer
//!   (`--write-policy owner`, the default), only by a listed writer (`writers`), or by anyone
//!   (`open`, which needs a private network).
//! - Two nodes that create the same store at once converge: for [`CONTEST_WINDOW`] after a node
//!   first accepts a store, a creation that is earlier in version order takes it over (the first
//!   version wins, ties broken by origin). After that the owner is settled.
//! - A Lamport value more than [`MAX_LAMPORT_AHEAD`] ahead of this node's clock is refused:
//!   versions use a hybrid logical clock (`max(the store's version + 1, now in ms)`), so no honest
//!   value is that far ahead, and no peer can push the clock to its end. The clock is per store, so
//!   a peer can only move the versions of stores it may write.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::store::IndexEntry;
use crate::store::record::VersionRecord;

/// How long after a node first accepts a store an earlier concurrent creation may still take it
/// over (twice the default inventory interval, so a creation missed on gossip still makes it).
pub const CONTEST_WINDOW: Duration = Duration::from_secs(60);
/// Largest lead of a version's Lamport value over this node's clock (ms) that is accepted.
pub const MAX_LAMPORT_AHEAD: Duration = Duration::from_secs(3600);

/// Who may write (`--write-policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WritePolicy {
    /// Anyone may create a store; its owner and the listed writers may change or delete it.
    #[default]
    Owner,
    /// Only the listed writers may create, change or delete stores.
    Writers,
    /// Any member may change any store (the rule before owners; only with a pre-shared key).
    Open,
}

impl std::str::FromStr for WritePolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "owner" => Ok(Self::Owner),
            "writers" => Ok(Self::Writers),
            "open" => Ok(Self::Open),
            other => Err(format!(
                "unknown write policy {other:?}: use owner, writers or open"
            )),
        }
    }
}

impl WritePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Writers => "writers",
            Self::Open => "open",
        }
    }
}

/// The write policy and the network's writer list (peer ids, base58).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteRules {
    pub policy: WritePolicy,
    pub writers: BTreeSet<String>,
}

impl WriteRules {
    /// May `signer` make the first version of a store?
    pub fn may_create(&self, signer: &str) -> bool {
        match self.policy {
            WritePolicy::Owner | WritePolicy::Open => true,
            WritePolicy::Writers => self.writers.contains(signer),
        }
    }

    /// May `signer` change or delete a store owned by `owner`?
    pub fn may_change(&self, signer: &str, owner: &str) -> bool {
        match self.policy {
            WritePolicy::Open => true,
            WritePolicy::Owner => signer == owner || self.writers.contains(signer),
            WritePolicy::Writers => self.writers.contains(signer),
        }
    }

    /// Why `signer` may not change a store of `owner` (for logs and `/stores`).
    pub fn refusal(&self, signer: &str, owner: &str) -> String {
        match self.policy {
            WritePolicy::Writers => {
                format!("{signer} is not on the network's writer list (--write-policy writers)")
            }
            _ => format!("{signer} is neither the store's owner ({owner}) nor a listed writer"),
        }
    }
}

/// Why a record from a peer was dropped. The label of `dig_sync_records_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reject {
    /// Undecodable, or a field out of bounds (name, peer id, hash, sizes).
    Malformed,
    /// No signature.
    Unsigned,
    /// A signature that does not verify with the origin's key (forged or tampered).
    BadSignature,
    /// A Lamport value too far ahead of this node's clock.
    LamportAhead,
    /// Signed, but by a key that may not write this store.
    Unauthorised,
    /// The index is full (`--max-stores`); a new store from a peer is not taken in.
    IndexFull,
    /// A tombstone on a node without `--propagate-deletes`.
    TombstoneIgnored,
}

impl Reject {
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unsigned => "unsigned",
            Self::BadSignature => "bad_signature",
            Self::LamportAhead => "lamport_ahead",
            Self::Unauthorised => "unauthorised",
            Self::IndexFull => "index_full",
            Self::TombstoneIgnored => "tombstone_ignored",
        }
    }

    /// Something no honest node sends: every message with one is a strike.
    pub fn is_misbehaviour(self) -> bool {
        matches!(self, Self::Malformed | Self::Unsigned | Self::BadSignature)
    }

    /// A write the sender had no right to make itself (counted only against the record's origin,
    /// since honest nodes may relay versions that this node's rules refuse).
    pub fn is_unauthorised_write(self) -> bool {
        matches!(self, Self::Unauthorised | Self::LamportAhead)
    }

    pub const ALL: [Reject; 7] = [
        Self::Malformed,
        Self::Unsigned,
        Self::BadSignature,
        Self::LamportAhead,
        Self::Unauthorised,
        Self::IndexFull,
        Self::TombstoneIgnored,
    ];
}

/// What a verified remote record does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Becomes the store's version; `owner` is the store's owner from now on.
    Accept {
        owner: String,
        takeover: bool,
    },
    /// The index already has this version.
    Known,
    /// Older than what the index has (a peer that is behind): nothing to do.
    Stale,
    Refuse(Reject),
}

/// The inputs of a decision besides the record and the current entry.
pub struct Context<'a> {
    pub rules: &'a WriteRules,
    pub now_ms: u64,
    pub propagate_deletes: bool,
    /// The index has room for a store it does not know yet.
    pub room_for_new: bool,
}

/// Decides what a verified record from a peer does to the store it names.
pub fn judge_remote(
    context: &Context<'_>,
    current: Option<&IndexEntry>,
    record: &VersionRecord,
) -> Verdict {
    let ahead_limit = context
        .now_ms
        .saturating_add(MAX_LAMPORT_AHEAD.as_millis() as u64);
    if record.version.lamport > ahead_limit {
        return Verdict::Refuse(Reject::LamportAhead);
    }
    let signer = record.version.origin.as_str();
    let Some(current) = current.filter(|c| !c.is_legacy()) else {
        // The first version this node accepts: it names the owner.
        if current.is_none() && !context.room_for_new {
            return Verdict::Refuse(Reject::IndexFull);
        }
        if record.is_tombstone() && !context.propagate_deletes {
            return Verdict::Refuse(Reject::TombstoneIgnored);
        }
        let first_allowed = match context.rules.policy {
            WritePolicy::Open => true,
            _ if record.owner == signer => context.rules.may_create(signer),
            // A writer's version of someone else's store: the writer vouches for the owner.
            _ => context.rules.writers.contains(signer),
        };
        return if first_allowed {
            Verdict::Accept {
                owner: record.owner.clone(),
                takeover: false,
            }
        } else {
            Verdict::Refuse(Reject::Unauthorised)
        };
    };
    let owner = current.owner.as_deref().unwrap_or(signer);
    if record.version == current.version {
        return Verdict::Known;
    }
    if is_takeover(context, current, owner, record) {
        return Verdict::Accept {
            owner: signer.to_owned(),
            takeover: true,
        };
    }
    if record.version < current.version {
        return Verdict::Stale;
    }
    if !context.rules.may_change(signer, owner) {
        return Verdict::Refuse(Reject::Unauthorised);
    }
    if record.is_tombstone() && !context.propagate_deletes {
        return Verdict::Refuse(Reject::TombstoneIgnored);
    }
    Verdict::Accept {
        owner: owner.to_owned(),
        takeover: false,
    }
}

/// A concurrent creation that came first in version order, still within the contest window.
fn is_takeover(
    context: &Context<'_>,
    current: &IndexEntry,
    owner: &str,
    record: &VersionRecord,
) -> bool {
    let signer = record.version.origin.as_str();
    let first_known = current.creation.as_ref().unwrap_or(&current.version);
    record.is_creation()
        && !record.is_tombstone()
        && signer != owner
        && context.now_ms <= current.contest_until_ms
        && record.version < *first_known
        && context.rules.may_create(signer)
}

/// May this node (`local`) write a new version of a store? `owner` is `None` for a new store.
pub fn may_write_locally(rules: &WriteRules, local: &str, owner: Option<&str>) -> bool {
    match owner {
        None => rules.may_create(local),
        Some(owner) => rules.may_change(local, owner),
    }
}
