//! Range-based set reconciliation of inventories. Two nodes whose holdings digests differ find
//! what differs by comparing fingerprints of ranges of store names, and move only the signed
//! versions of the ranges that differ: the cost follows the difference (times the depth of the
//! split, log16 of the inventory), not everything held.
//!
//! The asking node starts with the whole name range. For each range asked, the answering node
//! sends its entries there when it has at most [`LEAF_ITEMS`] (or when asked for items because the
//! asker holds nothing there): a page of at most [`PAGE_ITEMS`], and where the next page starts.
//! Otherwise it splits the range into up to [`SPLIT`] parts of about equal counts and sends, for
//! each, its upper bound, count and fingerprint (the XOR of the entries' parts of the holdings
//! digest). The asker compares each part with its own entries there and asks again for the parts
//! that differ. A node learns what the other holds (what it lacks itself); the other way round is
//! the other node's own exchange.
//!
//! Pure: the sync server answers with [`answer`], and an inventory exchange drives a
//! [`Reconciler`]. Every answer is checked against what was asked before anything in it is used.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::announce::WireEntry;
use crate::store::hash;
use crate::store::index::RangeFingerprint;
use crate::store::{StoreIndex, is_valid_store_name};

/// A range with at most this many entries is answered with the entries.
pub const LEAF_ITEMS: u64 = 32;
/// Parts a range is split into.
pub const SPLIT: usize = 16;
/// Entries in one page of an items answer.
pub const PAGE_ITEMS: usize = 1024;
/// Ranges asked in one request.
pub const MAX_ASKS: usize = 256;
/// Largest request body (JSON list of ranges; [`MAX_ASKS`] ranges with the longest bounds fit).
pub const MAX_ASK_BYTES: u64 = 128 * 1024;
/// A server stops answering the ranges of one request (the asker asks again for the rest) once
/// its answers pass this many bytes.
pub const ANSWER_BUDGET_BYTES: usize = 4 * 1024 * 1024;
/// Largest answer body accepted: the budget and one more page of the largest entries.
pub const MAX_ANSWER_BYTES: u64 = ANSWER_BUDGET_BYTES as u64 + PAGE_ITEMS as u64 * 1024;
/// Requests of one reconciliation before the asker gives up on the peer (a node of a million
/// stores that holds nothing needs about 100).
pub const MAX_REQUESTS: usize = 4096;
/// Longest range bound accepted (bounds are store names, or empty for the start).
const MAX_BOUND_BYTES: usize = 128;

/// One range of store names asked for: from `lower` (inclusive) to `upper` (exclusive; none: to
/// the end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeAsk {
    #[serde(rename = "l")]
    pub lower: String,
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<String>,
    /// Send the entries, whatever their number (the asker holds none there).
    #[serde(rename = "i", default, skip_serializing_if = "std::ops::Not::not")]
    pub items: bool,
    /// What the asker knows in the range; the answer is [`RangeAnswer::Same`] when the answering
    /// node holds exactly that.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub known: Option<Known>,
}

/// A count and a fingerprint (hex) of a range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    #[serde(rename = "c")]
    pub count: u64,
    #[serde(rename = "f")]
    pub fingerprint: String,
}

impl Known {
    fn of((count, xor): (u64, hash::Hash32)) -> Self {
        Self {
            count,
            fingerprint: hash::to_hex(&xor),
        }
    }
}

/// The answer for one range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t")]
pub enum RangeAnswer {
    /// The answering node holds exactly what the asker knows there.
    #[serde(rename = "s")]
    Same,
    /// The entries in the range, in name order; `next`: more from this name on.
    #[serde(rename = "i")]
    Items {
        #[serde(rename = "e")]
        entries: Vec<WireEntry>,
        #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// The range split into consecutive parts; the first starts at the range's lower bound,
    /// the last ends at its upper bound.
    #[serde(rename = "p")]
    Parts {
        #[serde(rename = "p")]
        parts: Vec<Part>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<String>,
    #[serde(rename = "c")]
    pub count: u64,
    /// Hex of the XOR of the entries' digest parts.
    #[serde(rename = "f")]
    pub fingerprint: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReconcileError {
    #[error("{answered} answers to {asked} ranges asked")]
    AnswerCount { asked: usize, answered: usize },
    #[error("answer for range {lower:?}..{upper:?} does not fit it: {detail}")]
    OutOfRange {
        lower: String,
        upper: Option<String>,
        detail: String,
    },
    #[error("no agreement after {MAX_REQUESTS} requests")]
    TooManyRequests,
    #[error("bad range request: {0}")]
    BadAsk(String),
}

/// Checks ranges a peer asks for before any is answered: at most [`MAX_ASKS`], each non-empty,
/// and disjoint, so answering one request walks the index at most about twice however the ranges
/// are chosen (the same range asked 256 times would be 256 walks). Any order is accepted: nodes
/// of the first reconciling release ask in queue order, not sorted.
pub fn check_asks(asks: &[RangeAsk]) -> Result<(), ReconcileError> {
    if asks.is_empty() || asks.len() > MAX_ASKS {
        return Err(ReconcileError::BadAsk(format!(
            "{} ranges; 1 to {MAX_ASKS} allowed",
            asks.len()
        )));
    }
    for (i, ask) in asks.iter().enumerate() {
        let (lower, upper) = (ask.lower.as_str(), ask.upper.as_deref());
        if lower.len() > MAX_BOUND_BYTES || upper.is_some_and(|u| u.len() > MAX_BOUND_BYTES) {
            return Err(ReconcileError::BadAsk(format!(
                "a bound of range {i} is longer than {MAX_BOUND_BYTES} bytes"
            )));
        }
        if upper.is_some_and(|upper| upper <= lower) {
            return Err(ReconcileError::BadAsk(format!(
                "range {i} ({lower:?}..{upper:?}) is empty"
            )));
        }
    }
    let mut by_lower: Vec<usize> = (0..asks.len()).collect();
    by_lower.sort_unstable_by(|&a, &b| asks[a].lower.cmp(&asks[b].lower));
    for pair in by_lower.windows(2) {
        let (first, second) = (&asks[pair[0]], &asks[pair[1]]);
        if first
            .upper
            .as_deref()
            .is_none_or(|end| second.lower.as_str() < end)
        {
            return Err(ReconcileError::BadAsk(format!(
                "ranges {} ({:?}..{:?}) and {} ({:?}..{:?}) overlap; ranges must be disjoint",
                pair[0], first.lower, first.upper, pair[1], second.lower, second.upper
            )));
        }
    }
    Ok(())
}

/// The answers of this node (`index`) to `asks` (checked by [`check_asks`]), in order. They stop
/// once past [`ANSWER_BUDGET_BYTES`] (at least one is always answered); the asker asks again for
/// the rest.
pub fn answer(index: &StoreIndex, asks: &[RangeAsk]) -> Vec<RangeAnswer> {
    let mut answers = Vec::new();
    let mut spent = 0;
    for ask in asks {
        if spent >= ANSWER_BUDGET_BYTES {
            break;
        }
        let answer = answer_one(index, ask);
        spent += approximate_bytes(&answer);
        answers.push(answer);
    }
    answers
}

fn answer_one(index: &StoreIndex, ask: &RangeAsk) -> RangeAnswer {
    let (lower, upper) = (ask.lower.as_str(), ask.upper.as_deref());
    let count = match &ask.known {
        Some(known) => {
            let held = index.range_fingerprint(lower, upper);
            if Known::of(held) == *known {
                return RangeAnswer::Same;
            }
            held.0
        }
        None => index.holding_parts_in(lower, upper).count() as u64,
    };
    if ask.items || count <= LEAF_ITEMS {
        let mut entries = Vec::new();
        let mut next = None;
        for (name, entry) in index.holdings_in(lower, upper) {
            if entries.len() == PAGE_ITEMS {
                next = Some(name.clone());
                break;
            }
            if let Some(signed) = entry.signed(name) {
                entries.push(WireEntry::from_signed(&signed));
            }
        }
        return RangeAnswer::Items { entries, next };
    }
    let per_part = count.div_ceil(SPLIT as u64);
    let mut parts = Vec::with_capacity(SPLIT);
    let mut current = RangeFingerprint::default();
    let mut previous: Option<&str> = None;
    for (name, entry_part) in index.holding_parts_in(lower, upper) {
        if current.count == per_part {
            let bound = separator(previous.unwrap_or(lower), name);
            parts.push(part(Some(bound.to_owned()), &current));
            current = RangeFingerprint::default();
        }
        current.add(entry_part);
        previous = Some(name);
    }
    parts.push(part(ask.upper.clone(), &current));
    RangeAnswer::Parts { parts }
}

/// The shortest prefix of `next` above `previous` (`previous < next`): a part's upper bound only
/// has to fall between the part's last name and the next part's first, and a few characters do
/// that where whole names (64 for a DIG store id) would make every part twice as long. A non-empty
/// prefix of a store name is a store name.
fn separator<'a>(previous: &str, next: &'a str) -> &'a str {
    let common = previous
        .bytes()
        .zip(next.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    // Names are ASCII (store names), so every byte offset is a character boundary.
    next.get(..common + 1).unwrap_or(next)
}

fn part(upper: Option<String>, fingerprint: &RangeFingerprint) -> Part {
    Part {
        upper,
        count: fingerprint.count,
        fingerprint: hash::to_hex(&fingerprint.xor),
    }
}

/// About what an answer costs on the wire (a signed entry is about 330 bytes of JSON).
fn approximate_bytes(answer: &RangeAnswer) -> usize {
    match answer {
        RangeAnswer::Same => 8,
        RangeAnswer::Items { entries, .. } => 32 + entries.len() * 340,
        RangeAnswer::Parts { parts } => 16 + parts.len() * 200,
    }
}

/// What the asking node knows, as range fingerprints comparable with a peer's holdings.
pub trait KnownVersions {
    /// Count and fingerprint of the versions known in `[lower, upper)`.
    fn known_fingerprint(&self, lower: &str, upper: Option<&str>) -> (u64, hash::Hash32);
}

/// A function of the range (the engine's `known_fingerprint`).
impl<F: Fn(&str, Option<&str>) -> (u64, hash::Hash32)> KnownVersions for F {
    fn known_fingerprint(&self, lower: &str, upper: Option<&str>) -> (u64, hash::Hash32) {
        self(lower, upper)
    }
}

/// Every version in the index counts as known.
impl KnownVersions for StoreIndex {
    fn known_fingerprint(&self, lower: &str, upper: Option<&str>) -> (u64, hash::Hash32) {
        self.known_range_fingerprint(lower, upper)
    }
}

/// The asking side of one reconciliation: the ranges still to ask for.
#[derive(Debug)]
pub struct Reconciler {
    queue: VecDeque<RangeAsk>,
    requests: usize,
}

impl Reconciler {
    /// Starts with the whole name range, saying what `ours` knows there.
    pub fn new(ours: &impl KnownVersions) -> Self {
        let whole = RangeAsk {
            lower: String::new(),
            upper: None,
            items: false,
            known: Some(Known::of(ours.known_fingerprint("", None))),
        };
        Self {
            queue: VecDeque::from([whole]),
            requests: 0,
        }
    }

    /// The ranges of the next request; none when the two nodes agree.
    pub fn next_asks(&mut self) -> Result<Option<Vec<RangeAsk>>, ReconcileError> {
        if self.queue.is_empty() {
            return Ok(None);
        }
        self.requests += 1;
        if self.requests > MAX_REQUESTS {
            return Err(ReconcileError::TooManyRequests);
        }
        let take = self.queue.len().min(MAX_ASKS);
        // Queued ranges are disjoint (each lies in a different part of an earlier answer), as
        // `check_asks` requires; sent in order, so the answer walks the index forward.
        let mut asks: Vec<RangeAsk> = self.queue.drain(..take).collect();
        asks.sort_by(|a, b| a.lower.cmp(&b.lower));
        Ok(Some(asks))
    }

    /// Checks the peer's `answers` to `asks` and queues the ranges where the versions `ours`
    /// knows (held or still to fetch) differ from what the peer holds; returns the peer's
    /// entries found (decoded and verified by the caller).
    pub fn take(
        &mut self,
        ours: &impl KnownVersions,
        asks: Vec<RangeAsk>,
        answers: Vec<RangeAnswer>,
    ) -> Result<Vec<WireEntry>, ReconcileError> {
        if answers.is_empty() || answers.len() > asks.len() {
            return Err(ReconcileError::AnswerCount {
                asked: asks.len(),
                answered: answers.len(),
            });
        }
        let mut asks = asks.into_iter();
        let mut found = Vec::new();
        let mut again = Vec::new();
        // Answers first: `zip` pulls from its first iterator before the second, and an ask pulled
        // after the last answer would be lost instead of asked again.
        for (answer, ask) in answers.into_iter().zip(asks.by_ref()) {
            match answer {
                RangeAnswer::Items { entries, next } => {
                    check_items(&ask, &entries, next.as_deref())?;
                    if let Some(next) = next {
                        again.push(RangeAsk {
                            lower: next,
                            upper: ask.upper.clone(),
                            items: true,
                            known: None,
                        });
                    }
                    found.extend(entries);
                }
                RangeAnswer::Same => {}
                RangeAnswer::Parts { parts } => {
                    for (lower, part) in check_parts(&ask, &parts)? {
                        if part.count == 0 {
                            continue;
                        }
                        let upper = part.upper.as_deref();
                        let known = Known::of(ours.known_fingerprint(lower, upper));
                        if known.count != part.count || known.fingerprint != part.fingerprint {
                            again.push(RangeAsk {
                                lower: lower.to_owned(),
                                upper: part.upper.clone(),
                                items: known.count == 0,
                                known: (known.count > 0).then_some(known),
                            });
                        }
                    }
                }
            }
        }
        // Ranges not answered (the peer's budget ran out) go first, then the new ones.
        let unanswered: Vec<RangeAsk> = asks.collect();
        for ask in unanswered.into_iter().rev() {
            self.queue.push_front(ask);
        }
        self.queue.extend(again);
        Ok(found)
    }
}

fn out_of_range(ask: &RangeAsk, detail: String) -> ReconcileError {
    ReconcileError::OutOfRange {
        lower: ask.lower.clone(),
        upper: ask.upper.clone(),
        detail,
    }
}

/// Whether `name` lies in `[lower, upper)`.
fn inside(name: &str, lower: &str, upper: Option<&str>) -> bool {
    name >= lower && upper.is_none_or(|upper| name < upper)
}

/// A page of entries: at most [`PAGE_ITEMS`], in strictly increasing name order, inside the
/// range and before `next`, which must itself be a store name inside the range past its start.
fn check_items(
    ask: &RangeAsk,
    entries: &[WireEntry],
    next: Option<&str>,
) -> Result<(), ReconcileError> {
    if entries.len() > PAGE_ITEMS {
        return Err(out_of_range(
            ask,
            format!("{} entries, at most {PAGE_ITEMS}", entries.len()),
        ));
    }
    let upper = ask.upper.as_deref();
    if let Some(next) = next {
        let valid =
            is_valid_store_name(next) && next > ask.lower.as_str() && inside(next, "", upper);
        if !valid {
            return Err(out_of_range(ask, format!("next page at {next:?}")));
        }
    }
    let end = next.or(upper);
    let mut previous: Option<&str> = None;
    for entry in entries {
        let name = entry.name.as_str();
        let ordered = previous.is_none_or(|p| p < name);
        if !ordered || !inside(name, &ask.lower, end) {
            return Err(out_of_range(ask, format!("entry {name:?}")));
        }
        previous = Some(name);
    }
    Ok(())
}

/// Parts: 2 to [`SPLIT`], each upper bound a store name strictly inside the range and above
/// the previous one, the last ending where the range ends. Returns each part with its lower
/// bound.
fn check_parts<'a>(
    ask: &'a RangeAsk,
    parts: &'a [Part],
) -> Result<Vec<(&'a str, &'a Part)>, ReconcileError> {
    if !(2..=SPLIT).contains(&parts.len()) {
        return Err(out_of_range(
            ask,
            format!("{} parts, 2 to {SPLIT} allowed", parts.len()),
        ));
    }
    let mut lower = ask.lower.as_str();
    let mut checked = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let bound_fits = match (&part.upper, last) {
            (upper, true) => upper == &ask.upper,
            (Some(upper), false) => {
                is_valid_store_name(upper)
                    && upper.as_str() > lower
                    && inside(upper, "", ask.upper.as_deref())
            }
            (None, false) => false,
        };
        let fingerprint_fits =
            part.fingerprint.len() == 64 && hash::from_hex(&part.fingerprint).is_some();
        if !bound_fits || !fingerprint_fits {
            return Err(out_of_range(ask, format!("part {i} {part:?}")));
        }
        checked.push((lower, part));
        if let Some(upper) = &part.upper {
            lower = upper;
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;

    use super::*;
    use crate::store::record::{ContentId, VersionRecord};
    use crate::store::{IndexEntry, LocalMeta, Version};

    fn held(key: &Keypair, name: &str, lamport: u64) -> IndexEntry {
        let origin = key.public().to_peer_id().to_base58();
        let bytes = format!("{name} at {lamport}");
        let record = VersionRecord {
            name: name.to_owned(),
            version: Version::new(lamport, origin.clone()),
            owner: origin.clone(),
            content: Some(ContentId {
                size: bytes.len() as u64,
                hash: *blake3::hash(bytes.as_bytes()).as_bytes(),
            }),
            replaces: None,
        };
        let mut entry = IndexEntry::from_signed(&record.sign(key).unwrap(), origin, 0);
        entry.local = Some(LocalMeta {
            size: bytes.len() as u64,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 1,
        });
        entry
    }

    fn index_of(key: &Keypair, names: impl IntoIterator<Item = String>) -> StoreIndex {
        let mut index = StoreIndex::new();
        for name in names {
            index.insert(name.clone(), held(key, &name, 1));
        }
        index
    }

    /// Runs a whole reconciliation of `ours` against `theirs`; returns the names found, the
    /// requests made and the bytes of the answers.
    fn reconcile(ours: &StoreIndex, theirs: &StoreIndex) -> (Vec<String>, usize, usize) {
        let mut reconciler = Reconciler::new(ours);
        let (mut found, mut requests, mut bytes) = (Vec::new(), 0, 0);
        while let Some(asks) = reconciler.next_asks().unwrap() {
            check_asks(&asks).unwrap();
            let answers = answer(theirs, &asks);
            bytes += serde_json::to_vec(&answers).unwrap().len();
            requests += 1;
            let entries = reconciler.take(ours, asks, answers).unwrap();
            found.extend(entries.into_iter().map(|e| e.name));
        }
        (found, requests, bytes)
    }

    /// Bytes of the full inventory the sync server would send for `index`.
    fn inventory_len(index: &StoreIndex) -> usize {
        let entries: Vec<WireEntry> = index
            .iter()
            .filter_map(|(n, e)| e.signed(n))
            .map(|s| WireEntry::from_signed(&s))
            .collect();
        serde_json::to_vec(&entries).unwrap().len()
    }

    fn names(range: std::ops::Range<usize>) -> impl Iterator<Item = String> {
        range.map(|i| format!("store-{i:06}"))
    }

    #[test]
    fn equal_holdings_cost_one_small_request() {
        let key = Keypair::generate_ed25519();
        let index = index_of(&key, names(0..5000));
        let (found, requests, bytes) = reconcile(&index, &index.clone());
        assert!(found.is_empty());
        assert_eq!(requests, 1);
        assert!(bytes < 64, "{bytes} bytes");
    }

    #[test]
    fn a_few_differences_cost_about_what_differs_not_what_is_held() {
        let key = Keypair::generate_ed25519();
        let ours = index_of(&key, names(0..5000));
        let mut theirs = ours.clone();
        // A new store, a newer version and a tombstone, spread over the name space.
        theirs.insert("store-000500x".into(), held(&key, "store-000500x", 1));
        theirs.insert("store-002500".into(), held(&key, "store-002500", 2));
        let mut tombstone = held(&key, "store-004700", 3);
        tombstone.content = None;
        theirs.insert("store-004700".into(), tombstone);
        let (found, requests, bytes) = reconcile(&ours, &theirs);
        eprintln!(
            "3 differences in 5,000: {} entries, {requests} requests, {bytes} bytes",
            found.len()
        );
        for name in ["store-000500x", "store-002500", "store-004700"] {
            assert!(
                found.contains(&name.to_owned()),
                "{name} found in {found:?}"
            );
        }
        assert!(
            found.len() <= 3 * LEAF_ITEMS as usize,
            "{} entries",
            found.len()
        );
        assert!(requests <= 4, "{requests} requests");
        let inventory = inventory_len(&theirs);
        assert!(
            bytes * 50 < inventory,
            "{bytes} bytes against {inventory} for the inventory"
        );
    }

    #[test]
    fn a_node_holding_nothing_learns_everything_in_about_its_size() {
        let key = Keypair::generate_ed25519();
        let theirs = index_of(&key, names(0..3000));
        let (mut found, requests, bytes) = reconcile(&StoreIndex::new(), &theirs);
        eprintln!("empty against 3,000: {requests} requests, {bytes} bytes");
        found.sort();
        assert_eq!(found, names(0..3000).collect::<Vec<_>>());
        let inventory = inventory_len(&theirs);
        assert!(
            (bytes as f64) < inventory as f64 * 1.05,
            "{bytes} bytes against {inventory} for the inventory"
        );
        assert!(requests <= 4, "{requests} requests");
    }

    #[test]
    fn versions_the_asker_knows_and_has_yet_to_fetch_are_not_sent_again() {
        let key = Keypair::generate_ed25519();
        let theirs = index_of(&key, names(0..2000));
        let mut ours = theirs.clone();
        for name in names(0..2000) {
            ours.update(&name, |entry| entry.local = None);
        }
        assert_ne!(ours.holdings_digest(), theirs.holdings_digest());
        let (found, requests, _) = reconcile(&ours, &theirs);
        assert!(found.is_empty(), "{} entries sent again", found.len());
        assert_eq!(requests, 1);
    }

    #[test]
    fn a_small_inventory_the_asker_already_knows_is_not_sent() {
        let key = Keypair::generate_ed25519();
        let theirs = index_of(&key, names(0..LEAF_ITEMS as usize / 2));
        let mut ours = theirs.clone();
        ours.update("store-000000", |entry| entry.local = None);
        let (found, requests, _) = reconcile(&ours, &theirs);
        assert!(found.is_empty());
        assert_eq!(requests, 1);
        let (found, _, _) = reconcile(&StoreIndex::new(), &theirs);
        assert_eq!(found.len(), LEAF_ITEMS as usize / 2);
    }

    #[test]
    fn what_only_the_asker_holds_is_not_asked_for() {
        let key = Keypair::generate_ed25519();
        let theirs = index_of(&key, names(0..1000));
        let ours = index_of(&key, names(0..3000));
        let (found, _, _) = reconcile(&ours, &theirs);
        assert!(
            found.len() <= 2 * LEAF_ITEMS as usize,
            "{} entries",
            found.len()
        );
    }

    fn ask(lower: &str, upper: Option<&str>) -> RangeAsk {
        RangeAsk {
            lower: lower.into(),
            upper: upper.map(str::to_owned),
            items: false,
            known: None,
        }
    }

    fn parts(bounds: &[Option<&str>]) -> RangeAnswer {
        RangeAnswer::Parts {
            parts: bounds
                .iter()
                .map(|upper| Part {
                    upper: upper.map(str::to_owned),
                    count: 1,
                    fingerprint: hash::to_hex(&[7; 32]),
                })
                .collect(),
        }
    }

    #[test]
    fn answers_that_do_not_fit_what_was_asked_are_refused() {
        let key = Keypair::generate_ed25519();
        let entry = |name: &str| WireEntry::from_signed(&held(&key, name, 1).signed(name).unwrap());
        let ours = StoreIndex::new();
        let mut too_many: Vec<Option<&str>> = (0..SPLIT).map(|_| Some("b")).collect();
        too_many.push(None);
        let bad: Vec<(RangeAsk, Vec<RangeAnswer>)> = vec![
            (ask("", None), vec![]),
            (ask("", None), vec![parts(&[None]), parts(&[None])]),
            (ask("", None), vec![parts(&[None])]),
            (ask("", None), vec![parts(&[Some("b"), Some("a"), None])]),
            (ask("", Some("m")), vec![parts(&[Some("x"), Some("m")])]),
            (ask("", Some("m")), vec![parts(&[Some("c"), None])]),
            (ask("c", None), vec![parts(&[Some("c"), None])]),
            (ask("", None), vec![parts(&[Some("../x"), None])]),
            (ask("", None), vec![parts(&too_many)]),
            (
                ask("b", Some("d")),
                vec![RangeAnswer::Items {
                    entries: vec![entry("a")],
                    next: None,
                }],
            ),
            (
                ask("a", None),
                vec![RangeAnswer::Items {
                    entries: vec![entry("c"), entry("b")],
                    next: None,
                }],
            ),
            (
                ask("a", None),
                vec![RangeAnswer::Items {
                    entries: vec![entry("b")],
                    next: Some("a".into()),
                }],
            ),
            (
                ask("a", None),
                vec![RangeAnswer::Items {
                    entries: vec![entry("c")],
                    next: Some("b".into()),
                }],
            ),
        ];
        for (asked, answers) in bad {
            let mut reconciler = Reconciler::new(&ours);
            let outcome = reconciler.take(&ours, vec![asked.clone()], answers.clone());
            assert!(outcome.is_err(), "{asked:?} answered {answers:?} was taken");
        }
        let mut bad_fingerprint = parts(&[Some("b"), None]);
        if let RangeAnswer::Parts { parts } = &mut bad_fingerprint {
            parts[0].fingerprint = "zz".into();
        }
        assert!(
            Reconciler::new(&ours)
                .take(&ours, vec![ask("", None)], vec![bad_fingerprint])
                .is_err()
        );
    }

    #[test]
    fn a_peer_that_never_agrees_is_given_up_on() {
        let ours = StoreIndex::new();
        let mut reconciler = Reconciler::new(&ours);
        let mut page = 0u64;
        let error = loop {
            match reconciler.next_asks() {
                Ok(Some(asks)) => {
                    // Empty pages that each move one name on, forever.
                    page += 1;
                    let answers = vec![RangeAnswer::Items {
                        entries: Vec::new(),
                        next: Some(format!("s{page:08}")),
                    }];
                    reconciler.take(&ours, asks, answers).unwrap();
                }
                Ok(None) => panic!("the queue never empties"),
                Err(error) => break error,
            }
        };
        assert_eq!(error, ReconcileError::TooManyRequests);
        assert_eq!(page, MAX_REQUESTS as u64);
    }

    #[test]
    fn part_bounds_are_the_shortest_prefixes_that_separate_names() {
        assert_eq!(separator("abc", "abd"), "abd");
        assert_eq!(separator("ab", "abzz"), "abz");
        assert_eq!(separator("a0", "b0"), "b");
        // 64-hex names, as DIG store ids are: the bounds of parts are a few characters.
        let key = Keypair::generate_ed25519();
        let hex = |i: usize| hash::to_hex(blake3::hash(&i.to_le_bytes()).as_bytes());
        let index = index_of(&key, (0..2000).map(hex));
        let [RangeAnswer::Parts { parts }] = &answer(&index, &[ask("", None)])[..] else {
            panic!("a split");
        };
        let bounds: Vec<&String> = parts.iter().filter_map(|p| p.upper.as_ref()).collect();
        assert_eq!(bounds.len(), SPLIT - 1);
        assert!(bounds.iter().all(|b| b.len() <= 4), "{bounds:?}");
        // They still split where the counts say, and a full reconciliation still works.
        assert!(parts.iter().all(|p| p.count == 125), "{parts:?}");
        let mut ours = index.clone();
        ours.remove(&hex(7));
        let (found, _, _) = reconcile(&ours, &index);
        assert!(found.contains(&hex(7)));
    }

    #[test]
    fn ranges_a_peer_left_unanswered_are_asked_again() {
        let empty = StoreIndex::new();
        let mut reconciler = Reconciler::new(&empty);
        reconciler.next_asks().unwrap();
        let asks = vec![ask("a", Some("b")), ask("b", Some("c")), ask("c", None)];
        // The peer's budget ran out after the first range.
        let answers = vec![RangeAnswer::Items {
            entries: Vec::new(),
            next: None,
        }];
        assert!(reconciler.take(&empty, asks, answers).unwrap().is_empty());
        let again = reconciler.next_asks().unwrap().expect("two ranges left");
        let lowers: Vec<&str> = again.iter().map(|a| a.lower.as_str()).collect();
        assert_eq!(lowers, ["b", "c"]);
        assert_eq!(reconciler.next_asks().unwrap(), None);
    }

    #[test]
    fn asks_are_bounded() {
        assert!(check_asks(&[]).is_err());
        assert!(check_asks(&vec![ask("", None); MAX_ASKS + 1]).is_err());
        assert!(check_asks(&[ask(&"a".repeat(MAX_BOUND_BYTES + 1), None)]).is_err());
        assert!(check_asks(&[ask("a", Some("b"))]).is_ok());
        assert!(check_asks(&[ask("a", Some("b")), ask("b", Some("c")), ask("x", None)]).is_ok());
        // Disjoint ranges in any order: the first reconciling release asks in queue order.
        assert!(check_asks(&[ask("x", None), ask("a", Some("b")), ask("b", Some("c"))]).is_ok());
        // One request walks the index about once: no empty or overlapping ranges.
        for asks in [
            vec![ask("b", Some("a"))],
            vec![ask("a", Some("a"))],
            vec![ask("", None); 2],
            vec![ask("a", Some("c")), ask("b", Some("d"))],
            vec![ask("c", Some("e")), ask("a", Some("d"))],
            vec![ask("a", None), ask("b", Some("c"))],
            vec![ask("b", Some("c")), ask("a", None)],
        ] {
            let error = check_asks(&asks).unwrap_err().to_string();
            assert!(error.contains("range"), "{asks:?}: {error}");
        }
        // The answer never panics on reversed bounds: an empty range.
        let key = Keypair::generate_ed25519();
        let index = index_of(&key, names(0..10));
        assert_eq!(
            answer(&index, &[ask("z", Some("a"))]),
            vec![RangeAnswer::Items {
                entries: Vec::new(),
                next: None
            }]
        );
    }
}
