//! The engine's rules, one test each: events in, actions out, no IO.

use std::time::Duration;

use libp2p::PeerId;
use libp2p::identity::Keypair;

use super::*;
use crate::store::IndexEntry;
use crate::store::hash::{ContentDigest, digest_reader};
use crate::store::record::{ContentId, KeyCache};
use crate::sync::status::SyncState;

const START: Millis = 1_700_000_000_000;

struct Node {
    engine: Engine,
    key: Keypair,
    now: Millis,
    inode: u64,
}

fn config(key: &Keypair, policy: WritePolicy, writers: &[&Keypair]) -> EngineConfig {
    EngineConfig {
        keypair: key.clone(),
        rules: WriteRules {
            policy,
            writers: writers
                .iter()
                .map(|k| k.public().to_peer_id().to_base58())
                .collect(),
        },
        propagate_deletes: true,
        limits: Limits {
            max_parallel: 4,
            max_store_bytes: 1 << 40,
            min_free_bytes: 0,
        },
        inventory_interval: Duration::from_secs(30),
        inventory_concurrency: 8,
        max_stores: 1000,
        tombstone_ttl: Duration::from_secs(3600),
        max_tombstones: 100,
        conflict_ttl: Duration::from_secs(3600),
        max_conflicts: 100,
        seed: 1,
    }
}

fn id(key: &Keypair) -> String {
    key.public().to_peer_id().to_base58()
}

fn peer(key: &Keypair) -> PeerId {
    key.public().to_peer_id()
}

fn digest(bytes: &[u8]) -> ContentDigest {
    digest_reader(bytes).unwrap()
}

/// A version signed by `key` (a creation when `replaces` is `None`).
fn version(
    key: &Keypair,
    name: &str,
    lamport: u64,
    bytes: Option<&[u8]>,
    replaces: Option<Version>,
    owner: Option<&Keypair>,
) -> VerifiedVersion {
    let record = VersionRecord {
        name: name.to_owned(),
        version: Version::new(lamport, id(key)),
        owner: id(owner.unwrap_or(key)),
        content: bytes.map(|b| ContentId {
            size: b.len() as u64,
            hash: *blake3::hash(b).as_bytes(),
        }),
        replaces,
    };
    let signed = record.sign(key).unwrap();
    VerifiedVersion::check(signed, &mut KeyCache::default()).unwrap()
}

/// A version signed by `key` that replaces `previous`.
fn update(
    key: &Keypair,
    name: &str,
    lamport: u64,
    bytes: Option<&[u8]>,
    previous: &VerifiedVersion,
    owner: Option<&Keypair>,
) -> VerifiedVersion {
    let replaces = Some(previous.signed().record.version.clone());
    version(key, name, lamport, bytes, replaces, owner)
}

impl Node {
    fn new(policy: WritePolicy, writers: &[&Keypair]) -> Self {
        let key = Keypair::generate_ed25519();
        Self::with_config(config(&key, policy, writers), key)
    }

    fn with_config(config: EngineConfig, key: Keypair) -> Self {
        let mut node = Self {
            engine: Engine::new(config, StoreIndex::new(), START),
            key,
            now: START,
            inode: 1,
        };
        node.handle(Event::Scanned(Vec::new()));
        node
    }

    fn id(&self) -> String {
        id(&self.key)
    }

    fn handle(&mut self, event: Event) -> Vec<Action> {
        self.engine.handle(event, self.now)
    }

    fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.now += by.as_millis() as u64;
        self.handle(Event::Tick)
    }

    fn meta(&mut self, size: u64) -> LocalMeta {
        self.inode += 1;
        LocalMeta {
            size,
            mtime_ns: self.inode as i64,
            ctime_ns: self.inode as i64,
            inode: self.inode,
        }
    }

    /// The user writes `bytes` as store `name`: watcher event, hash request, hash result (with
    /// the request's draft signed, as the driver's hashing thread does).
    fn write(&mut self, name: &str, bytes: &[u8]) -> Vec<Action> {
        let meta = self.meta(bytes.len() as u64);
        let mut actions = self.handle(Event::FileChanged {
            name: name.into(),
            meta: Some(meta),
        });
        let request = hash_request(&actions, name)
            .unwrap_or_else(|| panic!("a changed file is hashed: {actions:?}"))
            .clone();
        let signed = self.sign_draft(&request, bytes);
        actions.extend(self.hashed(name, meta, bytes, signed));
        actions
    }

    /// The hashing thread's signature of `request`'s draft for `bytes`.
    fn sign_draft(&self, request: &HashRequest, bytes: &[u8]) -> Option<SignedVersion> {
        let draft = request.draft.as_ref()?;
        Some(
            draft
                .record(&request.name, &digest(bytes))
                .sign(&self.key)
                .unwrap(),
        )
    }

    fn hashed(
        &mut self,
        name: &str,
        meta: LocalMeta,
        bytes: &[u8],
        signed: Option<SignedVersion>,
    ) -> Vec<Action> {
        self.handle(Event::Hashed(vec![(
            name.into(),
            HashOutcome::Hashed {
                meta,
                digest: digest(bytes),
                signed: signed.map(Box::new),
            },
        )]))
    }

    fn delete(&mut self, name: &str) -> Vec<Action> {
        self.handle(Event::FileChanged {
            name: name.into(),
            meta: None,
        })
    }

    /// Gossip from `from`, a connected peer (downloads take connected holders only).
    fn receive(&mut self, from: &Keypair, records: Vec<VerifiedVersion>) -> Vec<Action> {
        if !self.engine.peers.connected_peers().contains(&peer(from)) {
            self.handle(Event::PeerConnected(peer(from)));
        }
        self.handle(Event::Remote {
            from: peer(from),
            via: Via::Gossip,
            records,
        })
    }

    /// Answers every save in `actions` as done; returns what followed.
    fn save(&mut self, actions: &[Action]) -> Vec<Action> {
        let mut out = Vec::new();
        for action in actions {
            if let Action::SaveIndex { generation, .. } = action {
                out.extend(self.handle(Event::IndexSaved {
                    generation: *generation,
                    outcome: Ok(()),
                }));
            }
        }
        out
    }

    /// Lets time pass until the pending index save is done; returns everything that happened.
    fn settle(&mut self) -> Vec<Action> {
        let mut all = Vec::new();
        for _ in 0..5 {
            let actions = self.advance(Duration::from_millis(600));
            let saved = self.save(&actions);
            all.extend(actions);
            all.extend(saved);
        }
        all
    }

    fn entry(&self, name: &str) -> IndexEntry {
        self.engine
            .index()
            .get(name)
            .cloned()
            .expect("store in the index")
    }

    fn status(&self, name: &str) -> crate::sync::status::StoreStatus {
        self.engine
            .statuses(&|_| None)
            .into_iter()
            .find(|s| s.name == name)
            .expect("store in /stores")
    }

    /// Takes `record` from its origin and installs its bytes, as a node that holds it.
    fn hold(&mut self, from: &Keypair, record: &VerifiedVersion, bytes: &[u8]) {
        let name = record.signed().record.name.clone();
        self.receive(from, vec![record.clone()]);
        self.settle();
        let actions = self.downloaded(&name, bytes);
        assert!(install_of(&actions, &name).is_some(), "{actions:?}");
        self.installed(&name, bytes, None);
        self.settle();
    }

    /// A download of `name` finishes; returns what followed (possibly an install).
    fn downloaded(&mut self, name: &str, bytes: &[u8]) -> Vec<Action> {
        self.handle(Event::DownloadDone {
            name: name.into(),
            hash: *blake3::hash(bytes).as_bytes(),
            outcome: Ok(Fetched {
                manifest: digest(bytes).chunks,
                resumed_bytes: 0,
                fetched_bytes: bytes.len() as u64,
                reused_bytes: 0,
            }),
        })
    }

    fn installed(&mut self, name: &str, bytes: &[u8], kept: Option<&str>) -> Vec<Action> {
        let meta = self.meta(bytes.len() as u64);
        self.handle(Event::Installed {
            name: name.into(),
            hash: *blake3::hash(bytes).as_bytes(),
            outcome: Ok(Applied {
                meta: Some(meta),
                kept: kept.map(str::to_owned),
            }),
        })
    }

    fn rejected(&self, reason: Reject) -> u64 {
        self.engine
            .stats()
            .rejected
            .get(&reason)
            .copied()
            .unwrap_or(0)
    }
}

/// The entry of `name` a save writes, if it writes one.
fn saved_entry(save: &IndexSave, name: &str) -> Option<IndexEntry> {
    match save {
        IndexSave::Snapshot(index) => index.get(name).cloned(),
        IndexSave::Append { changes, .. } => changes
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, e)| e.clone()),
    }
}

fn hash_request<'a>(actions: &'a [Action], store: &str) -> Option<&'a HashRequest> {
    actions.iter().find_map(|a| match a {
        Action::Hash(batch) => batch.iter().find(|r| r.name == store),
        _ => None,
    })
}

fn announced(actions: &[Action]) -> Vec<&SignedVersion> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Announce(list) => Some(list.iter()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn downloads_started(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartDownload { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect()
}

fn install_of<'a>(actions: &'a [Action], store: &str) -> Option<&'a Replace> {
    actions.iter().find_map(|a| match a {
        Action::Install { name, replace, .. } if name == store => Some(replace),
        _ => None,
    })
}

fn bans(actions: &[Action]) -> Vec<PeerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Ban { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

// ---------- local changes and versions ----------

#[test]
fn a_new_local_store_becomes_a_signed_creation_owned_by_this_node() {
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.write("s", b"hello");
    let entry = node.entry("s");
    assert_eq!(entry.owner.as_deref(), Some(node.id().as_str()));
    assert_eq!(entry.version.origin, node.id());
    assert!(
        entry.version.lamport >= START,
        "hybrid clock: at least the time in ms"
    );
    node.write("s", b"again, in the same millisecond");
    assert!(node.entry("s").version.lamport > entry.version.lamport);
    assert!(entry.replaces.is_none() && entry.is_held());
    let actions = node.advance(Duration::from_millis(50));
    let sent = announced(&actions);
    assert_eq!(sent.len(), 2, "both versions, in one message");
    sent[0].verify(&mut KeyCache::default()).unwrap();
    assert_eq!(node.status("s").owner.as_deref(), Some(node.id().as_str()));
}

#[test]
fn the_same_bytes_again_are_no_new_version() {
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.write("s", b"hello");
    let first = node.entry("s").version;
    node.advance(Duration::from_millis(50));
    let actions = node.write("s", b"hello");
    assert_eq!(node.entry("s").version, first);
    assert!(announced(&actions).is_empty());
}

#[test]
fn a_new_version_is_signed_by_the_hashing_thread_from_the_draft_in_the_request() {
    let mut node = Node::new(WritePolicy::Owner, &[]);
    let meta = node.meta(5);
    let actions = node.handle(Event::FileChanged {
        name: "s".into(),
        meta: Some(meta),
    });
    let request = hash_request(&actions, "s").expect("hashed").clone();
    let draft = request
        .draft
        .clone()
        .expect("this node may create the store");
    assert_eq!(draft.owner, node.id());
    assert_eq!(draft.version, Version::new(START, node.id()));
    assert!(draft.replaces.is_none());
    let presigned = node.sign_draft(&request, b"hello").unwrap();
    node.now += 40;
    node.hashed("s", meta, b"hello", Some(presigned.clone()));
    let sent = node.advance(Duration::from_millis(50));
    assert_eq!(
        announced(&sent),
        vec![&presigned],
        "the hashing thread's signature is used as is, with the lamport of when the file was seen"
    );
    assert!(node.entry("s").holds_record(&presigned));
}

#[test]
fn a_store_this_node_may_not_write_is_hashed_without_a_draft() {
    let owner = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.receive(
        &owner,
        vec![version(&owner, "s", START, Some(b"x"), None, None)],
    );
    let meta = node.meta(4);
    let actions = node.handle(Event::FileChanged {
        name: "s".into(),
        meta: Some(meta),
    });
    assert_eq!(hash_request(&actions, "s").unwrap().draft, None);
}

#[test]
fn a_draft_overtaken_by_a_remote_version_is_not_used_and_the_engine_signs_anew() {
    let other = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Open, &[]);
    node.write("s", b"one");
    node.settle();
    let ours = node.entry("s").signed("s").unwrap();
    let meta = node.meta(3);
    let actions = node.handle(Event::FileChanged {
        name: "s".into(),
        meta: Some(meta),
    });
    let request = hash_request(&actions, "s").unwrap().clone();
    let stale = node.sign_draft(&request, b"two").unwrap();
    // Another member's update lands while the file is hashed.
    let theirs = VerifiedVersion::check(
        VersionRecord {
            name: "s".into(),
            version: Version::new(node.now + 1, id(&other)),
            owner: node.id(),
            content: Some(ContentId {
                size: 5,
                hash: *blake3::hash(b"third").as_bytes(),
            }),
            replaces: Some(ours.record.version.clone()),
        }
        .sign(&other)
        .unwrap(),
        &mut KeyCache::default(),
    )
    .unwrap();
    node.receive(&other, vec![theirs.clone()]);
    node.hashed("s", meta, b"two", Some(stale.clone()));
    let made = node.entry("s");
    assert_eq!(
        made.replaces.as_ref(),
        Some(&theirs.signed().record.version),
        "the new version replaces the one that arrived meanwhile"
    );
    let sent = node.advance(Duration::from_millis(50));
    let sent = announced(&sent);
    let last = sent.last().expect("announced");
    assert_ne!(*last, &stale);
    last.verify(&mut KeyCache::default()).unwrap();
    assert!(last.record.version.lamport > theirs.signed().record.version.lamport);
}

#[test]
fn an_update_replaces_the_previous_version_and_keeps_the_owner() {
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.write("s", b"one");
    let first = node.entry("s").version;
    node.write("s", b"two");
    let entry = node.entry("s");
    assert!(entry.version > first);
    assert_eq!(entry.replaces, Some(first));
    assert_eq!(entry.owner.as_deref(), Some(node.id().as_str()));
}

#[test]
fn a_local_change_to_a_store_owned_by_another_node_is_refused_and_undone() {
    let owner = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    let created = version(&owner, "s", START, Some(b"owner's"), None, None);
    node.hold(&owner, &created, b"owner's");

    let before = node.entry("s").version;
    let actions = node.write("s", b"mine");
    assert!(announced(&actions).is_empty());
    assert_eq!(
        downloads_started(&actions),
        vec!["s"],
        "the owner's version is fetched again"
    );
    assert!(
        announced(&node.advance(Duration::from_millis(50))).is_empty(),
        "never announced"
    );
    assert_eq!(node.entry("s").version, before, "no version of ours");
    assert!(!node.entry("s").is_held());
    assert_eq!(node.engine.stats().refused_local[&RefusedKind::Change], 1);
    let status = node.status("s");
    assert_eq!(status.state, SyncState::Conflict);
    assert!(
        status
            .conflict_reason
            .unwrap()
            .contains("neither the store's owner")
    );
    // The owner's version comes back; these bytes are kept first (they are not the expected file).
    let saves = node.settle();
    node.save(&saves);
    let actions = node.downloaded("s", b"owner's");
    let replace = install_of(&actions, "s").expect("installed again");
    assert_eq!(
        replace.expected, None,
        "the refused file is kept, not overwritten"
    );
    node.installed("s", b"owner's", Some("conflicts/s.local.x.dig"));
    let status = node.status("s");
    assert_eq!(status.state, SyncState::Synced);
    assert_eq!(
        status.last_conflict.as_deref(),
        Some("conflicts/s.local.x.dig")
    );
    assert!(status.conflict_reason.unwrap().contains("refused"));
    assert_eq!(node.engine.stats().conflicts, 1);
}

#[test]
fn a_refused_file_is_not_hashed_again_at_every_rescan() {
    let owner = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.receive(
        &owner,
        vec![version(&owner, "s", START, Some(b"x"), None, None)],
    );
    let meta = node.meta(4);
    node.handle(Event::FileChanged {
        name: "s".into(),
        meta: Some(meta),
    });
    node.handle(Event::Hashed(vec![(
        "s".into(),
        HashOutcome::Hashed {
            meta,
            digest: digest(b"mine"),
            signed: None,
        },
    )]));
    let actions = node.handle(Event::Scanned(vec![("s".into(), meta)]));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Hash(_))),
        "{actions:?}"
    );
    assert_eq!(node.engine.stats().refused_local[&RefusedKind::Change], 1);
}

#[test]
fn a_listed_writer_may_change_another_nodes_store() {
    let owner = Keypair::generate_ed25519();
    let writer_key = Keypair::generate_ed25519();
    let mut writer = Node::with_config(
        config(&writer_key, WritePolicy::Owner, &[&writer_key]),
        writer_key.clone(),
    );
    writer.receive(
        &owner,
        vec![version(&owner, "s", START, Some(b"x"), None, None)],
    );
    writer.write("s", b"edited by a writer");
    let entry = writer.entry("s");
    assert_eq!(entry.version.origin, id(&writer_key));
    assert_eq!(
        entry.owner.as_deref(),
        Some(id(&owner).as_str()),
        "the owner stays"
    );
    // The signed record names the owner, so a node meeting it first knows whose store it is.
    let signed = entry.signed("s").unwrap();
    assert_eq!(signed.record.owner, id(&owner));

    let mut other = Node::new(WritePolicy::Owner, &[&writer_key]);
    other.receive(
        &writer_key,
        vec![VerifiedVersion::check(signed, &mut KeyCache::default()).unwrap()],
    );
    assert_eq!(other.entry("s").owner.as_deref(), Some(id(&owner).as_str()));
}

#[test]
fn a_record_by_a_non_writer_naming_someone_else_as_owner_is_refused_on_first_sight() {
    let mallory = Keypair::generate_ed25519();
    let victim = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.receive(
        &mallory,
        vec![version(
            &mallory,
            "s",
            START,
            Some(b"x"),
            Some(Version::new(1, id(&victim))),
            Some(&victim),
        )],
    );
    assert!(node.engine.index().get("s").is_none());
    assert_eq!(node.rejected(Reject::Unauthorised), 1);
}

// ---------- remote versions: ownership ----------

#[test]
fn the_first_accepted_version_names_the_owner_and_only_the_owner_may_change_it() {
    let owner = Keypair::generate_ed25519();
    let other = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    let created = version(&owner, "s", START, Some(b"1"), None, None);
    node.receive(&owner, vec![created.clone()]);
    assert_eq!(node.entry("s").owner.as_deref(), Some(id(&owner).as_str()));

    let hijack = update(
        &other,
        "s",
        START + 5,
        Some(b"evil"),
        &created,
        Some(&owner),
    );
    node.receive(&other, vec![hijack]);
    assert_eq!(node.entry("s").version.origin, id(&owner));
    assert_eq!(node.rejected(Reject::Unauthorised), 1);
    let evil_delete = update(&other, "s", START + 6, None, &created, Some(&owner));
    node.receive(&other, vec![evil_delete]);
    assert!(
        !node.entry("s").is_tombstone(),
        "a non-owner's tombstone is dropped"
    );

    let update = update(&owner, "s", START + 7, Some(b"2"), &created, None);
    node.receive(&owner, vec![update]);
    assert_eq!(node.entry("s").version.lamport, START + 7);
}

#[test]
fn open_policy_accepts_any_members_change() {
    let owner = Keypair::generate_ed25519();
    let other = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Open, &[]);
    let created = version(&owner, "s", START, Some(b"1"), None, None);
    node.receive(&owner, vec![created.clone()]);
    let change = update(&other, "s", START + 5, Some(b"2"), &created, Some(&owner));
    node.receive(&other, vec![change]);
    assert_eq!(node.entry("s").version.origin, id(&other));
}

#[test]
fn writers_policy_refuses_creations_by_keys_off_the_list() {
    let writer = Keypair::generate_ed25519();
    let stranger = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Writers, &[&writer]);
    node.receive(
        &stranger,
        vec![version(&stranger, "s", START, Some(b"x"), None, None)],
    );
    assert!(node.engine.index().get("s").is_none());
    node.receive(
        &writer,
        vec![version(&writer, "t", START, Some(b"x"), None, None)],
    );
    assert!(node.engine.index().get("t").is_some());
    // This node is not a writer either: its new store stays local, shown as refused.
    node.write("mine", b"local only");
    assert!(node.engine.index().get("mine").is_none());
    assert_eq!(node.status("mine").state, SyncState::Refused);
    assert!(announced(&node.advance(Duration::from_millis(50))).is_empty());
}

#[test]
fn concurrent_creations_converge_on_the_earlier_one_within_the_contest_window() {
    let a = Keypair::generate_ed25519();
    let b = Keypair::generate_ed25519();
    let first = version(&a, "s", START + 10, Some(b"from a"), None, None);
    let second = version(&b, "s", START + 20, Some(b"from b"), None, None);
    // Two nodes that see the creations in opposite orders end with the same owner and version.
    let mut one = Node::new(WritePolicy::Owner, &[]);
    one.receive(&a, vec![first.clone()]);
    one.receive(&b, vec![second.clone()]);
    let mut two = Node::new(WritePolicy::Owner, &[]);
    two.receive(&b, vec![second.clone()]);
    two.receive(&a, vec![first.clone()]);
    for node in [&one, &two] {
        assert_eq!(node.entry("s").owner.as_deref(), Some(id(&a).as_str()));
        assert_eq!(node.entry("s").version, first.signed().record.version);
    }
    assert_eq!(two.engine.stats().takeovers, 1);
}

#[test]
fn after_the_contest_window_an_earlier_creation_cannot_take_a_store_over() {
    let a = Keypair::generate_ed25519();
    let thief = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.receive(
        &a,
        vec![version(&a, "s", START + 10, Some(b"a"), None, None)],
    );
    node.advance(rules::CONTEST_WINDOW + Duration::from_secs(1));
    node.receive(
        &thief,
        vec![version(&thief, "s", START, Some(b"stolen"), None, None)],
    );
    assert_eq!(node.entry("s").owner.as_deref(), Some(id(&a).as_str()));
    assert_eq!(
        node.rejected(Reject::Unauthorised),
        0,
        "an older version is stale, not unauthorised"
    );
}

#[test]
fn our_own_creation_that_loses_a_contest_is_kept_before_the_winner_is_installed() {
    let other = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.write("s", b"mine");
    let mine = node.entry("s").version;
    // The other creation is earlier in version order.
    let earlier = version(&other, "s", mine.lamport - 1, Some(b"theirs"), None, None);
    node.receive(&other, vec![earlier]);
    assert_eq!(node.entry("s").owner.as_deref(), Some(id(&other).as_str()));
    assert_eq!(node.status("s").state, SyncState::Conflict);
    let saves = node.settle();
    node.save(&saves);
    let actions = node.downloaded("s", b"theirs");
    let replace = install_of(&actions, "s").unwrap();
    assert_eq!(
        replace.lost,
        Some(mine.clone()),
        "our version is kept in conflicts/"
    );
    assert!(replace.expected.is_some(), "it is the file the index knew");
    node.installed("s", b"theirs", Some("conflicts/s.mine.dig"));
    assert!(node.status("s").conflict_reason.unwrap().contains("lost"));
}

#[test]
fn an_update_made_after_seeing_our_version_is_no_conflict() {
    let writer = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[&writer]);
    node.write("s", b"mine");
    let mine = node.entry("s").version;
    let owner_key = node.key.clone();
    node.receive(
        &writer,
        vec![version(
            &writer,
            "s",
            mine.lamport + 1,
            Some(b"next"),
            Some(mine),
            Some(&owner_key),
        )],
    );
    node.settle();
    let actions = node.downloaded("s", b"next");
    assert_eq!(install_of(&actions, "s").unwrap().lost, None);
}

// ---------- Lamport bounds ----------

#[test]
fn a_lamport_value_far_ahead_is_refused_and_local_changes_go_on() {
    let mallory = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.receive(
        &mallory,
        vec![version(&mallory, "s", u64::MAX, Some(b"x"), None, None)],
    );
    node.receive(
        &mallory,
        vec![version(&mallory, "t", u64::MAX / 2, None, None, None)],
    );
    assert!(node.engine.index().get("s").is_none());
    assert_eq!(node.rejected(Reject::LamportAhead), 2);
    // Just inside the limit is accepted (clocks differ a little), and does not push our clock:
    // our versions stay near the time, so nodes with a slower clock still take them.
    let near = START + rules::MAX_LAMPORT_AHEAD.as_millis() as u64;
    node.receive(
        &mallory,
        vec![version(&mallory, "u", near, Some(b"x"), None, None)],
    );
    assert!(node.engine.index().get("u").is_some());
    node.write("mine", b"1");
    node.write("mine", b"2");
    let entry = node.entry("mine");
    assert!(entry.version.lamport >= START && entry.version.lamport < START + 10);
}

// ---------- deletions ----------

#[test]
fn the_owners_deletion_is_a_signed_tombstone() {
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.write("s", b"x");
    let created = node.entry("s").version;
    let actions = node.delete("s");
    let entry = node.entry("s");
    assert!(entry.is_tombstone());
    assert_eq!(entry.replaces, Some(created));
    let sent = announced(
        &node
            .advance(Duration::from_millis(50))
            .into_iter()
            .chain(actions)
            .collect::<Vec<_>>(),
    )
    .into_iter()
    .cloned()
    .collect::<Vec<_>>();
    assert!(sent.iter().any(|s| s.record.is_tombstone()));
}

#[test]
fn without_propagate_deletes_a_deleted_store_is_fetched_again() {
    let key = Keypair::generate_ed25519();
    let mut config = config(&key, WritePolicy::Owner, &[]);
    config.propagate_deletes = false;
    let mut node = Node::with_config(config, key);
    node.write("s", b"x");
    node.delete("s");
    assert!(!node.entry("s").is_tombstone());
    assert!(node.engine.downloads.is_wanted("s"));
}

#[test]
fn a_non_owners_deletion_is_undone() {
    let owner = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.hold(
        &owner,
        &version(&owner, "s", START, Some(b"x"), None, None),
        b"x",
    );
    let actions = node.delete("s");
    assert!(!node.entry("s").is_tombstone());
    assert!(announced(&actions).is_empty());
    assert_eq!(node.engine.stats().refused_local[&RefusedKind::Deletion], 1);
    assert!(
        node.status("s")
            .conflict_reason
            .unwrap()
            .contains("deletion refused")
    );
    assert_eq!(downloads_started(&actions), vec!["s"], "fetched again");
}

#[test]
fn remote_tombstones_apply_only_with_propagate_deletes_and_after_the_index_is_saved() {
    let owner = Keypair::generate_ed25519();
    for propagate in [false, true] {
        let key = Keypair::generate_ed25519();
        let mut config = config(&key, WritePolicy::Owner, &[]);
        config.propagate_deletes = propagate;
        let mut node = Node::with_config(config, key);
        let created = version(&owner, "s", START, Some(b"x"), None, None);
        node.hold(&owner, &created, b"x");
        let tombstone = update(&owner, "s", START + 1, None, &created, None);
        let mut actions = node.receive(&owner, vec![tombstone]);
        let removal = actions.iter().any(|a| matches!(a, Action::Remove { .. }));
        assert!(!removal, "never before the index records the tombstone");
        let saved = node.save(&actions);
        actions = saved;
        if !propagate {
            assert!(!node.entry("s").is_tombstone());
            assert_eq!(node.rejected(Reject::TombstoneIgnored), 1);
            continue;
        }
        assert!(node.entry("s").is_tombstone());
        actions.extend(node.settle());
        let remove = actions.iter().find_map(|a| match a {
            Action::Remove { replace, .. } => Some(replace.clone()),
            _ => None,
        });
        assert!(remove.expect("removed once saved").expected.is_some());
    }
}

// ---------- downloads, installs and the index ----------

#[test]
fn an_install_waits_for_the_index_that_records_its_version() {
    let owner = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.receive(
        &owner,
        vec![version(&owner, "s", START, Some(b"x"), None, None)],
    );
    // The download finishes before any save: no install yet, and a save is due at once.
    let actions = node.downloaded("s", b"x");
    assert!(install_of(&actions, "s").is_none());
    let save = actions
        .iter()
        .find_map(|a| match a {
            Action::SaveIndex {
                save, generation, ..
            } => Some((saved_entry(save, "s"), *generation)),
            _ => None,
        })
        .expect("an urgent save");
    assert!(save.0.is_some(), "the saved index records the version");
    let actions = node.handle(Event::IndexSaved {
        generation: save.1,
        outcome: Ok(()),
    });
    assert!(install_of(&actions, "s").is_some());
    // The next save fsyncs the data folder before it records the installed file.
    node.installed("s", b"x", None);
    let actions = node.advance(Duration::from_secs(1));
    assert!(actions.iter().any(|a| matches!(a, Action::SaveIndex { sync_data_dir: true, save, .. } if saved_entry(save, "s").unwrap().is_held())));
}

#[test]
fn a_failed_index_save_holds_installs_back() {
    let owner = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.receive(
        &owner,
        vec![version(&owner, "s", START, Some(b"x"), None, None)],
    );
    let actions = node.downloaded("s", b"x");
    let generation = actions
        .iter()
        .find_map(|a| match a {
            Action::SaveIndex { generation, .. } => Some(*generation),
            _ => None,
        })
        .unwrap();
    let actions = node.handle(Event::IndexSaved {
        generation,
        outcome: Err("disk full".into()),
    });
    assert!(install_of(&actions, "s").is_none());
    let retried = node.advance(persist::SAVE_RETRY);
    let actions = node.save(&retried);
    assert!(
        install_of(&actions, "s").is_some(),
        "installed after a later save succeeded"
    );
}

#[test]
fn a_version_with_the_bytes_already_held_needs_no_download() {
    let writer = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[&writer]);
    node.write("s", b"same");
    let mine = node.entry("s").version;
    let owner_key = node.key.clone();
    let actions = node.receive(
        &writer,
        vec![version(
            &writer,
            "s",
            mine.lamport + 1,
            Some(b"same"),
            Some(mine),
            Some(&owner_key),
        )],
    );
    assert!(downloads_started(&actions).is_empty());
    assert!(node.entry("s").is_held());
    assert_eq!(node.entry("s").version.origin, id(&writer));
}

#[test]
fn failed_downloads_are_retried_with_growing_delays() {
    let owner = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.receive(
        &owner,
        vec![version(&owner, "s", START, Some(b"x"), None, None)],
    );
    let mut gaps = Vec::new();
    for _ in 0..4 {
        node.handle(Event::DownloadDone {
            name: "s".into(),
            hash: *blake3::hash(b"x").as_bytes(),
            outcome: Err(DownloadFailure {
                reason: "incomplete",
                message: "peer went away".into(),
            }),
        });
        assert_eq!(node.status("s").state, SyncState::Error);
        let failed_at = node.now;
        loop {
            let actions = node.advance(Duration::from_millis(100));
            if !downloads_started(&actions).is_empty() {
                break;
            }
        }
        gaps.push(node.now - failed_at);
    }
    assert!(gaps.windows(2).all(|w| w[1] > w[0]), "{gaps:?}");
    assert!(gaps[0] >= 1500, "{gaps:?}");
    assert_eq!(node.engine.stats().download_failures["incomplete"], 4);
}

#[test]
fn downloads_wait_for_disk_space_reserved_across_all_running_downloads() {
    let owner = Keypair::generate_ed25519();
    let key = Keypair::generate_ed25519();
    let mut config = config(&key, WritePolicy::Owner, &[]);
    config.limits.min_free_bytes = 10;
    let mut node = Node::with_config(config, key);
    node.handle(Event::DiskSpace(30));
    let actions = node.receive(
        &owner,
        vec![
            version(&owner, "a", START, Some(&[1u8; 15]), None, None),
            version(&owner, "b", START, Some(&[2u8; 15]), None, None),
        ],
    );
    assert_eq!(
        downloads_started(&actions).len(),
        1,
        "30 free - 10 reserve: room for one"
    );
    let waiting = node.status("b");
    assert_eq!(waiting.state, SyncState::Error);
    assert!(waiting.error.unwrap().contains("waits for disk space"));
    assert_eq!(node.engine.stats().download_failures["disk_full"], 1);
    let actions = node.handle(Event::DiskSpace(60));
    assert_eq!(downloads_started(&actions), vec!["b"]);
}

#[test]
fn a_newer_version_cancels_the_running_download() {
    let owner = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    let created = version(&owner, "s", START, Some(b"1"), None, None);
    node.receive(&owner, vec![created.clone()]);
    let actions = node.receive(
        &owner,
        vec![update(&owner, "s", START + 1, Some(b"2"), &created, None)],
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::CancelDownload { name, .. } if name == "s"))
    );
    assert_eq!(downloads_started(&actions), vec!["s"]);
    // The old download's late result starts no install.
    assert!(install_of(&node.downloaded("s", b"1"), "s").is_none());
}

// ---------- peers ----------

#[test]
fn malformed_or_badly_signed_messages_get_a_peer_banned() {
    let mallory = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    let mut all = Vec::new();
    for _ in 0..3 {
        all.extend(node.handle(Event::Rejected {
            from: peer(&mallory),
            via: Via::Gossip,
            reasons: vec![(Reject::BadSignature, 10), (Reject::Unsigned, 2)],
        }));
    }
    assert_eq!(bans(&all), vec![peer(&mallory)]);
    assert_eq!(node.rejected(Reject::BadSignature), 30);
    assert_eq!(node.engine.stats().peers_banned, 1);
    // Nothing it sends counts any more.
    node.receive(
        &mallory,
        vec![version(&mallory, "s", START, Some(b"x"), None, None)],
    );
    assert!(node.engine.index().get("s").is_none());
}

#[test]
fn a_peer_that_keeps_signing_writes_it_may_not_make_is_banned_but_a_relay_is_not() {
    let owner = Keypair::generate_ed25519();
    let vandal = Keypair::generate_ed25519();
    let relay = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    let created = version(&owner, "s", START, Some(b"x"), None, None);
    node.receive(&owner, vec![created.clone()]);
    let mut all = Vec::new();
    for i in 0..offences::MAX_UNAUTHORISED as u64 {
        let write = update(
            &vandal,
            "s",
            START + 1 + i,
            Some(b"v"),
            &created,
            Some(&owner),
        );
        all.extend(node.receive(&relay, vec![write.clone()]));
        all.extend(node.receive(&vandal, vec![write]));
    }
    assert_eq!(bans(&all), vec![peer(&vandal)]);
}

#[test]
fn a_peer_that_served_a_bad_chunk_is_banned_and_no_longer_a_source() {
    let owner = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.receive(
        &owner,
        vec![version(&owner, "s", START, Some(b"x"), None, None)],
    );
    let actions = node.handle(Event::BadData {
        peer: peer(&owner),
        reason: "chunk 0 failed BLAKE3 verification".into(),
    });
    assert_eq!(bans(&actions), vec![peer(&owner)]);
    assert!(
        node.engine
            .downloads
            .holders_of("s", blake3::hash(b"x").as_bytes())
            .is_empty()
    );
}

#[test]
fn a_connected_peer_is_asked_for_its_inventory_at_once_and_every_interval() {
    let other = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.advance(Duration::from_millis(50));
    let actions = node.handle(Event::PeerConnected(peer(&other)));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::ExchangeInventory(p) if *p == peer(&other)))
    );
    node.handle(Event::InventoryDone(peer(&other)));
    let actions = node.advance(Duration::from_secs(31));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::ExchangeInventory(_)))
    );
}

// ---------- bounds ----------

#[test]
fn the_index_takes_no_new_store_from_peers_when_full() {
    let owner = Keypair::generate_ed25519();
    let key = Keypair::generate_ed25519();
    let mut config = config(&key, WritePolicy::Owner, &[]);
    config.max_stores = 3;
    let mut node = Node::with_config(config, key);
    let flood: Vec<_> = (0..10)
        .map(|i| version(&owner, &format!("s{i}"), START, Some(b"x"), None, None))
        .collect();
    node.receive(&owner, flood);
    assert_eq!(node.engine.index().len(), 3);
    assert_eq!(node.rejected(Reject::IndexFull), 7);
    node.write("local", b"always indexed");
    assert_eq!(node.engine.index().len(), 4);
}

#[test]
fn tombstones_are_pruned_by_age_and_by_count() {
    let key = Keypair::generate_ed25519();
    let mut config = config(&key, WritePolicy::Owner, &[]);
    config.max_tombstones = 2;
    config.tombstone_ttl = Duration::from_secs(600);
    let mut node = Node::with_config(config, key);
    for i in 0..4 {
        node.write(&format!("s{i}"), b"x");
        node.delete(&format!("s{i}"));
        node.now += 1000;
    }
    node.advance(PRUNE_INTERVAL);
    let names: Vec<String> = node.engine.index().names().cloned().collect();
    assert_eq!(names, vec!["s2", "s3"], "the newest two kept");
    node.advance(Duration::from_secs(601));
    assert!(node.engine.index().is_empty(), "old ones go");
    assert_eq!(node.engine.stats().tombstones_pruned, 4);
    assert!(
        node.advance(PRUNE_INTERVAL)
            .iter()
            .any(|a| matches!(a, Action::PruneConflicts { max_count: 100, .. }))
    );
}

// ---------- start-up ----------

#[test]
fn versions_of_an_old_unsigned_index_made_here_are_signed_and_announced() {
    let key = Keypair::generate_ed25519();
    let other = Keypair::generate_ed25519();
    let mut index = StoreIndex::new();
    let legacy = |origin: &Keypair| IndexEntry {
        version: Version::new(3, id(origin)),
        content: Some(digest(b"x").into()),
        replaces: None,
        owner: None,
        signed_owner: None,
        signature: None,
        creation: None,
        contest_until_ms: 0,
        accepted_ms: 0,
        local: Some(LocalMeta {
            size: 1,
            mtime_ns: 1,
            ctime_ns: 1,
            inode: 1,
        }),
        superseded: None,
        superseded_chunks: None,
    };
    index.insert("mine".into(), legacy(&key));
    index.insert("theirs".into(), legacy(&other));
    let mut engine = Engine::new(config(&key, WritePolicy::Owner, &[]), index, START);
    assert!(!engine.index().get("mine").unwrap().is_legacy());
    assert!(engine.index().get("theirs").unwrap().is_legacy());
    let actions = engine.handle(Event::Tick, START);
    let sent = announced(&actions);
    assert_eq!(sent.len(), 1);
    sent[0].verify(&mut KeyCache::default()).unwrap();
    // A signed version of the legacy store names its owner.
    let signed = version(
        &other,
        "theirs",
        4,
        Some(b"y"),
        Some(Version::new(3, id(&other))),
        None,
    );
    engine.handle(
        Event::Remote {
            from: peer(&other),
            via: Via::Inventory,
            records: vec![signed],
        },
        START,
    );
    assert_eq!(
        engine.index().get("theirs").unwrap().owner.as_deref(),
        Some(id(&other).as_str())
    );
}

#[test]
fn the_same_events_give_the_same_actions() {
    let key = Keypair::generate_ed25519();
    let owner = Keypair::generate_ed25519();
    let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
    let trace = |key: &Keypair| {
        let mut node = Node::with_config(config(key, WritePolicy::Owner, &[]), key.clone());
        let mut log = Vec::new();
        for (i, p) in peers.iter().enumerate() {
            let record = version(&owner, &format!("s{i}"), START, Some(b"x"), None, None);
            log.extend(
                node.handle(Event::Remote {
                    from: *p,
                    via: Via::Gossip,
                    records: vec![record.clone()],
                })
                .iter()
                .map(|a| format!("{a:?}")),
            );
            for q in &peers {
                node.handle(Event::Remote {
                    from: *q,
                    via: Via::Inventory,
                    records: vec![record.clone()],
                });
            }
        }
        log.extend(
            node.advance(Duration::from_secs(1))
                .iter()
                .map(|a| format!("{a:?}")),
        );
        log
    };
    assert_eq!(trace(&key), trace(&key));
}

#[test]
fn a_record_the_index_holds_is_known_and_needs_no_verification() {
    let owner = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    let created = version(&owner, "s", START, Some(b"x"), None, None);
    node.receive(&owner, vec![created.clone()]);
    assert!(node.engine.knows(created.signed()));
    let mut other = created.signed().clone();
    other.signature[0] ^= 1;
    assert!(!node.engine.knows(&other));
}

// ---------- drain ----------

impl Node {
    /// `from`'s full inventory as the driver reports it: its records, complete, done.
    fn inventory(&mut self, from: PeerId, records: Vec<VerifiedVersion>, draining: bool) {
        if !records.is_empty() {
            self.handle(Event::Remote {
                from,
                via: Via::Inventory,
                records,
            });
        }
        self.handle(Event::InventoryComplete {
            peer: from,
            draining,
        });
        self.handle(Event::InventoryDone(from));
    }

    /// The version of `name` this node holds, as a peer holding the same would list it.
    fn held_record(&self, name: &str) -> VerifiedVersion {
        VerifiedVersion::known(self.entry(name).signed(name).expect("a signed entry"))
    }
}

fn exchanges(actions: &[Action]) -> Vec<PeerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ExchangeInventory(p) => Some(*p),
            _ => None,
        })
        .collect()
}

#[test]
fn a_draining_node_starts_no_download_and_resumes_when_the_drain_ends() {
    let owner = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.handle(Event::Drain(true));
    assert!(node.engine.is_draining());
    let mut actions = node.receive(
        &owner,
        vec![version(&owner, "s", START, Some(b"x"), None, None)],
    );
    actions.extend(node.settle());
    assert!(downloads_started(&actions).is_empty(), "{actions:?}");
    let mut actions = node.handle(Event::Drain(false));
    actions.extend(node.settle());
    assert_eq!(downloads_started(&actions), vec!["s"]);
    assert_eq!(node.engine.drain_report(), DrainReport::default());
}

#[test]
fn a_store_is_covered_only_by_a_connected_peer_that_does_not_drain_and_lists_it_after_the_drain_began()
 {
    let (live, draining) = (PeerId::random(), PeerId::random());
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.write("a", b"1");
    node.write("b", b"2");
    node.handle(Event::PeerConnected(live));
    node.handle(Event::PeerConnected(draining));
    node.handle(Event::InventoryDone(live));
    node.handle(Event::InventoryDone(draining));
    // Gossip before or during the drain proves nothing.
    let gossip = node.held_record("a");
    node.handle(Event::Remote {
        from: live,
        via: Via::Gossip,
        records: vec![gossip],
    });
    let actions = node.handle(Event::Drain(true));
    let mut asked = exchanges(&actions);
    asked.sort();
    let mut both = vec![live, draining];
    both.sort();
    assert_eq!(asked, both, "every connected peer is asked at once");
    let report = node.engine.drain_report();
    assert!(report.draining && !report.drained && report.since_ms == Some(node.now));
    assert_eq!((report.held, report.uncovered_count), (2, 2));

    let (a, b) = (node.held_record("a"), node.held_record("b"));
    node.inventory(draining, vec![a.clone(), b.clone()], true);
    let report = node.engine.drain_report();
    assert_eq!(
        report.uncovered,
        vec!["a", "b"],
        "a draining peer is no copy"
    );
    assert_eq!(report.peers_checked, 1);

    node.inventory(live, vec![a.clone()], false);
    let report = node.engine.drain_report();
    assert_eq!(
        (report.covered, report.uncovered.clone()),
        (1, vec!["b".to_string()])
    );
    assert!(!report.drained);

    node.inventory(live, vec![a, b], false);
    let report = node.engine.drain_report();
    assert!(report.drained, "{report:?}");
    assert_eq!(report.uncovered_count, 0);

    node.handle(Event::PeerDisconnected(live));
    let report = node.engine.drain_report();
    assert!(!report.drained && report.uncovered_count == 2, "{report:?}");
}

#[test]
fn an_older_version_at_a_peer_is_no_copy() {
    let peer_id = PeerId::random();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.write("a", b"new");
    let lamport = node.entry("a").version.lamport;
    let older = version(&node.key, "a", lamport - 1, Some(b"old"), None, None);
    node.handle(Event::PeerConnected(peer_id));
    node.handle(Event::InventoryDone(peer_id));
    node.handle(Event::Drain(true));
    node.inventory(peer_id, vec![older], false);
    assert_eq!(node.engine.drain_report().uncovered, vec!["a"]);
}

#[test]
fn an_exchange_that_began_before_the_drain_does_not_count_but_the_next_round_does() {
    let peer_id = PeerId::random();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.write("a", b"1");
    let actions = node.handle(Event::PeerConnected(peer_id));
    assert_eq!(exchanges(&actions), vec![peer_id]);
    node.handle(Event::Drain(true));
    let a = node.held_record("a");
    node.inventory(peer_id, vec![a.clone()], false);
    assert!(
        !node.engine.drain_report().drained,
        "fetched before the drain"
    );
    let actions = node.advance(Duration::from_secs(3));
    assert_eq!(
        exchanges(&actions),
        vec![peer_id],
        "checked every few seconds"
    );
    node.inventory(peer_id, vec![a], false);
    assert!(node.engine.drain_report().drained);
}

#[test]
fn a_node_that_holds_nothing_is_drained_at_once() {
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.handle(Event::Drain(true));
    let report = node.engine.drain_report();
    assert!(report.drained && report.held == 0, "{report:?}");
}

#[test]
fn an_update_to_a_held_store_downloads_with_the_older_file_to_reuse() {
    let owner = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    let old = vec![7u8; 3 * crate::store::hash::CHUNK_SIZE as usize];
    let first = version(&owner, "s", START, Some(&old), None, None);
    node.hold(&owner, &first, &old);
    let held = node.entry("s").local.expect("held");

    let mut new = old.clone();
    new.extend(b"appended");
    let mut actions = node.receive(
        &owner,
        vec![update(&owner, "s", START + 1, Some(&new), &first, None)],
    );
    actions.extend(node.settle());
    let reuse = actions
        .iter()
        .find_map(|a| match a {
            Action::StartDownload { name, reuse, .. } if name == "s" => Some(reuse.clone()),
            _ => None,
        })
        .expect("a download of the update");
    assert_eq!(
        reuse,
        Some(SupersededFile {
            meta: held,
            chunks: digest(&old).chunks,
        })
    );

    node.handle(Event::DownloadDone {
        name: "s".into(),
        hash: *blake3::hash(&new).as_bytes(),
        outcome: Ok(Fetched {
            manifest: digest(&new).chunks,
            resumed_bytes: 0,
            fetched_bytes: 1 << 20,
            reused_bytes: 3 << 20,
        }),
    });
    node.settle();
    node.installed("s", &new, None);
    node.settle();
    let entry = node.entry("s");
    assert_eq!((entry.superseded, entry.superseded_chunks), (None, None));
    assert_eq!(
        node.status("s").last_download,
        Some(crate::sync::status::LastDownload {
            fetched_bytes: 1 << 20,
            reused_bytes: 3 << 20,
            resumed_bytes: 0,
        })
    );
}

fn holder_notices(actions: &[Action]) -> Vec<(PeerId, Vec<&str>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::NotifyHolding { peer, records } => Some((
                *peer,
                records.iter().map(|r| r.record.name.as_str()).collect(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn an_install_is_told_to_the_direct_peers_not_known_to_hold_it_and_never_gossiped() {
    let origin = Keypair::generate_ed25519();
    let (holder, unaware) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let mut node = Node::new(WritePolicy::Owner, &[]);
    for key in [&origin, &holder, &unaware] {
        node.handle(Event::PeerConnected(peer(key)));
    }
    let created = version(&origin, "s", START, Some(b"bytes"), None, None);
    node.receive(&origin, vec![created.clone()]);
    // A direct peer says it holds the same version: it is a source, and needs no notice.
    node.handle(Event::Remote {
        from: peer(&holder),
        via: Via::Notice,
        records: vec![created.clone()],
    });
    assert_eq!(node.engine.stats().holder_notices_received, 1);
    node.settle();
    node.downloaded("s", b"bytes");
    let mut after = node.installed("s", b"bytes", None);
    after.extend(node.settle());

    assert!(announced(&after).is_empty(), "no gossip for an install");
    assert_eq!(
        holder_notices(&after),
        vec![(peer(&unaware), vec!["s"])],
        "only the peer not known to hold it hears, once"
    );
    assert!(holder_notices(&node.advance(Duration::from_secs(1))).is_empty());
}

#[test]
fn a_notice_of_a_version_not_seen_yet_is_taken_like_an_announcement_with_its_sender_as_source() {
    let origin = Keypair::generate_ed25519();
    let neighbour = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.handle(Event::PeerConnected(peer(&neighbour)));
    let created = version(&origin, "s", START, Some(b"bytes"), None, None);
    let mut actions = node.handle(Event::Remote {
        from: peer(&neighbour),
        via: Via::Notice,
        records: vec![created],
    });
    actions.extend(node.settle());
    let sources: Vec<&Vec<PeerId>> = actions
        .iter()
        .filter_map(|a| match a {
            Action::StartDownload { name, peers, .. } if name == "s" => Some(peers),
            _ => None,
        })
        .collect();
    assert_eq!(sources, vec![&vec![peer(&neighbour)]]);
}

#[test]
fn a_version_still_to_fetch_counts_as_known_to_reconciliation_only_while_a_holder_is_known() {
    let origin = Keypair::generate_ed25519();
    let mut node = Node::new(WritePolicy::Owner, &[]);
    node.handle(Event::PeerConnected(peer(&origin)));
    let created = version(&origin, "s", START, Some(b"bytes"), None, None);
    node.receive(&origin, vec![created]);
    let everything = node.engine.index().known_range_fingerprint("", None);
    assert_eq!(everything.0, 1);
    assert_eq!(node.engine.known_fingerprint("", None), everything);

    // After a restart the index still has the version, but no source for it.
    let restarted = Engine::new(
        config(&node.key, WritePolicy::Owner, &[]),
        node.engine.index().clone(),
        node.now,
    );
    assert_eq!(restarted.known_fingerprint("", None).0, 0);
}
