//! Which children need no server-side apply: what this process last applied, against what the
//! children look like now (metadata-only watches). Most reconciles are triggered by a child's
//! status changing while its pods start; re-applying eight unchanged children each time costs the
//! API server far more than the change it reacts to.

use std::{
    collections::HashMap,
    sync::{
        Mutex, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{
    Resource,
    api::{DynamicObject, PartialObjectMeta},
    runtime::reflector::{ObjectRef, Store},
};

use super::build::ChildObject;

/// The version of a child that tells whether someone else changed it: its `generation` where the
/// kind has one (so the status updates of Deployments and StatefulSets do not count), else its
/// `resourceVersion` (ConfigMaps and Services carry no status of their own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub uid: String,
    pub version: String,
}

impl Version {
    pub fn of(meta: &ObjectMeta) -> Version {
        let version = match meta.generation {
            Some(generation) if generation > 0 => format!("g{generation}"),
            _ => format!("r{}", meta.resource_version.as_deref().unwrap_or_default()),
        };
        Version {
            uid: meta.uid.clone().unwrap_or_default(),
            version,
        }
    }
}

/// One child as this process last applied it.
#[derive(Clone, Debug)]
struct Applied {
    body_hash: blake3::Hash,
    version: Version,
    at: Instant,
}

type Lookup = Box<dyn Fn(&str, &str) -> Option<Version> + Send + Sync>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ChildKey {
    kind: String,
    namespace: String,
    name: String,
}

impl ChildKey {
    fn new(namespace: &str, child: &ChildObject) -> Self {
        Self {
            kind: child.resource.kind.clone(),
            namespace: namespace.to_string(),
            name: child.name.clone(),
        }
    }
}

/// The record of applied children, and the watched children's current versions by kind.
pub struct AppliedChildren {
    lookups: RwLock<Vec<(String, Lookup)>>,
    last: Mutex<HashMap<ChildKey, Applied>>,
    /// A child is applied again after this long even when nothing says it changed: a hand edit of
    /// labels or annotations bumps no generation.
    max_age: Duration,
    /// The record count at which expired records are dropped next.
    purge_above: AtomicUsize,
}

/// Below this many records expired ones are not worth a sweep.
const MIN_PURGE_SIZE: usize = 1024;

impl AppliedChildren {
    pub fn new(max_age: Duration) -> Self {
        Self {
            lookups: RwLock::default(),
            last: Mutex::default(),
            max_age,
            purge_above: AtomicUsize::new(MIN_PURGE_SIZE),
        }
    }

    /// Adds the store of a metadata-only watch of `K`; children of kinds without one are always
    /// applied.
    pub fn watch<K>(&self, store: Store<PartialObjectMeta<K>>)
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        let lookup: Lookup = Box::new(move |namespace, name| {
            store
                .get(&ObjectRef::new(name).within(namespace))
                .map(|object| Version::of(&object.metadata))
        });
        self.lookups
            .write()
            .expect("applied children lookups lock")
            .push((K::kind(&()).to_string(), lookup));
    }

    fn current(&self, namespace: &str, child: &ChildObject) -> Option<Version> {
        self.lookups
            .read()
            .expect("applied children lookups lock")
            .iter()
            .filter(|(kind, _)| *kind == child.resource.kind)
            .find_map(|(_, lookup)| lookup(namespace, &child.name))
    }

    /// Whether `child` is, as far as this process can tell, exactly what it applied last: the
    /// same body, recently, and the object unchanged by anyone since (not deleted, not edited).
    pub fn is_current(&self, namespace: &str, child: &ChildObject) -> bool {
        let record = self
            .last
            .lock()
            .expect("applied children lock")
            .get(&ChildKey::new(namespace, child))
            .cloned();
        let Some(record) = record else {
            return false;
        };
        record.body_hash == body_hash(child)
            && record.at.elapsed() < self.max_age
            && self.current(namespace, child).as_ref() == Some(&record.version)
    }

    /// Remembers `child` as applied, the server answering `applied`.
    pub fn record(&self, namespace: &str, child: &ChildObject, applied: &DynamicObject) {
        let mut last = self.last.lock().expect("applied children lock");
        // Records older than max_age decide nothing any more; dropping them keeps the map to the
        // children reconciled recently, not every child of every network ever seen.
        if last.len() >= self.purge_above.load(Ordering::Relaxed) {
            last.retain(|_, record| record.at.elapsed() < self.max_age);
            self.purge_above
                .store((last.len() * 2).max(MIN_PURGE_SIZE), Ordering::Relaxed);
        }
        last.insert(
            ChildKey::new(namespace, child),
            Applied {
                body_hash: body_hash(child),
                version: Version::of(&applied.metadata),
                at: Instant::now(),
            },
        );
    }

    /// Forgets every child of `namespace` named in `children`: their next reconcile applies them.
    pub fn forget(&self, namespace: &str, children: &[ChildObject]) {
        let mut last = self.last.lock().expect("applied children lock");
        for child in children {
            last.remove(&ChildKey::new(namespace, child));
        }
    }
}

fn body_hash(child: &ChildObject) -> blake3::Hash {
    blake3::hash(child.body.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::{api::ApiResource, runtime::reflector, runtime::watcher};
    use serde_json::json;

    fn child(data: &str) -> ChildObject {
        ChildObject {
            resource: ApiResource::erase::<ConfigMap>(&()),
            name: "net-node".into(),
            body: json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"node.yaml": data}}),
        }
    }

    fn answer(resource_version: &str, uid: &str) -> DynamicObject {
        let mut object =
            DynamicObject::new("net-node", &ApiResource::erase::<ConfigMap>(&())).within("ns");
        object.metadata.resource_version = Some(resource_version.into());
        object.metadata.uid = Some(uid.into());
        object
    }

    fn watched(
        applied: &AppliedChildren,
    ) -> reflector::store::Writer<PartialObjectMeta<ConfigMap>> {
        let writer = reflector::store::Writer::default();
        applied.watch(writer.as_reader());
        writer
    }

    fn seen(
        writer: &mut reflector::store::Writer<PartialObjectMeta<ConfigMap>>,
        resource_version: &str,
        uid: &str,
    ) {
        let meta = PartialObjectMeta::<ConfigMap> {
            metadata: answer(resource_version, uid).metadata,
            ..Default::default()
        };
        writer.apply_watcher_event(&watcher::Event::Apply(meta));
    }

    #[test]
    fn an_unchanged_child_is_current_until_edited_deleted_or_changed() {
        let applied = AppliedChildren::new(Duration::from_secs(60));
        let mut store = watched(&applied);
        assert!(!applied.is_current("ns", &child("a")), "never applied");
        applied.record("ns", &child("a"), &answer("5", "u1"));
        assert!(
            !applied.is_current("ns", &child("a")),
            "not yet seen by the watch"
        );
        seen(&mut store, "5", "u1");
        assert!(applied.is_current("ns", &child("a")));
        assert!(!applied.is_current("ns", &child("b")), "spec changed");
        assert!(!applied.is_current("other", &child("a")), "other namespace");
        seen(&mut store, "6", "u1");
        assert!(!applied.is_current("ns", &child("a")), "edited by hand");
        applied.record("ns", &child("a"), &answer("6", "u1"));
        assert!(applied.is_current("ns", &child("a")));
        seen(&mut store, "6", "u2");
        assert!(
            !applied.is_current("ns", &child("a")),
            "deleted and recreated"
        );
        applied.forget("ns", &[child("a")]);
        seen(&mut store, "6", "u1");
        assert!(!applied.is_current("ns", &child("a")), "forgotten");
    }

    #[test]
    fn an_old_apply_is_repeated() {
        let applied = AppliedChildren::new(Duration::ZERO);
        let mut store = watched(&applied);
        applied.record("ns", &child("a"), &answer("5", "u1"));
        seen(&mut store, "5", "u1");
        assert!(!applied.is_current("ns", &child("a")));
    }

    #[test]
    fn records_of_children_gone_quiet_are_dropped() {
        let applied = AppliedChildren::new(Duration::ZERO);
        for index in 0..=MIN_PURGE_SIZE {
            let mut named = child("a");
            named.name = format!("net-{index}");
            applied.record("ns", &named, &answer("1", "u"));
        }
        let kept = applied.last.lock().unwrap().len();
        assert_eq!(
            kept, 1,
            "expired records were swept when the map reached its bound"
        );
    }

    #[test]
    fn workloads_are_compared_by_generation_not_by_status_updates() {
        let mut meta = ObjectMeta {
            generation: Some(3),
            resource_version: Some("100".into()),
            uid: Some("u".into()),
            ..ObjectMeta::default()
        };
        let before = Version::of(&meta);
        meta.resource_version = Some("101".into());
        assert_eq!(Version::of(&meta), before, "a status update");
        meta.generation = Some(4);
        assert_ne!(Version::of(&meta), before, "a spec edit");
        let service = ObjectMeta {
            resource_version: Some("7".into()),
            ..ObjectMeta::default()
        };
        assert_eq!(Version::of(&service).version, "r7");
    }
}
