//! Status conditions, computed from what was applied. Pure, so the rules are tested without an
//! API server: `lastTransitionTime` changes only when a condition's status flips.

use k8s_openapi::{
    api::apps::v1::{Deployment, StatefulSet},
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// A condition as computed, before times are reconciled with the previous status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The new condition list: each desired condition keeps the previous `lastTransitionTime` unless
/// its status flipped. Conditions of other types set by someone else are kept.
pub fn merge(
    previous: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = desired
        .iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" }.to_string();
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: d.type_.to_string(),
                status,
                reason: d.reason.clone(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect();
    for c in previous {
        if !desired.iter().any(|d| d.type_ == c.type_) {
            out.push(c.clone());
        }
    }
    out
}

/// Readiness of a workload from its status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rollout {
    pub desired: i32,
    pub ready: i32,
    pub updated: i32,
    /// The workload controller has seen the latest spec.
    pub observed: bool,
}

impl Rollout {
    pub fn done(&self) -> bool {
        self.observed && self.ready >= self.desired && self.updated >= self.desired
    }
}

pub fn deployment_rollout(deployment: &Deployment) -> Rollout {
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    Rollout {
        desired,
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        observed: status.observed_generation.is_some()
            && status.observed_generation >= deployment.metadata.generation,
    }
}

pub fn statefulset_rollout(statefulset: &StatefulSet) -> Rollout {
    let desired = statefulset
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let status = statefulset.status.clone().unwrap_or_default();
    Rollout {
        desired,
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        observed: status.observed_generation.is_some()
            && status.observed_generation >= statefulset.metadata.generation,
    }
}

/// Conditions of a network (or node) whose children were applied.
pub fn applied(parts: &[(&str, Rollout)], notes: &[String]) -> Vec<Desired> {
    let waiting: Vec<String> = parts
        .iter()
        .filter(|(_, r)| !r.done())
        .map(|(name, r)| {
            format!(
                "{name}: {}/{} ready, {}/{} updated",
                r.ready, r.desired, r.updated, r.desired
            )
        })
        .collect();
    let ready = waiting.is_empty();
    let mut ready_message = if ready {
        "all replicas are ready".to_string()
    } else {
        format!("waiting for {}", waiting.join("; "))
    };
    for note in notes {
        ready_message.push_str("; ");
        ready_message.push_str(note);
    }
    vec![
        Desired::new(
            READY,
            ready,
            if ready {
                "AllReplicasReady"
            } else {
                "ReplicasNotReady"
            },
            ready_message,
        ),
        Desired::new(
            PROGRESSING,
            !ready,
            if ready {
                "RolloutComplete"
            } else {
                "RollingOut"
            },
            if ready {
                "the latest spec is rolled out".to_string()
            } else {
                waiting.join("; ")
            },
        ),
        Desired::new(DEGRADED, false, "AsExpected", "spec is valid and applied"),
    ]
}

/// Conditions of an object whose spec is invalid or could not be applied: it is not rolled out
/// any further until its spec (or what it refers to) changes.
pub fn degraded(reason: &str, message: &str) -> Vec<Desired> {
    vec![
        Desired::new(READY, false, reason, message),
        Desired::new(
            PROGRESSING,
            false,
            reason,
            "waiting for the spec to be fixed",
        ),
        Desired::new(DEGRADED, true, reason, message),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn find<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
        conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    fn rollout(desired: i32, ready: i32) -> Rollout {
        Rollout {
            desired,
            ready,
            updated: desired,
            observed: true,
        }
    }

    #[test]
    fn ready_when_all_replicas_are_ready() {
        let desired = applied(
            &[("bootstrap", rollout(2, 2)), ("nodes", rollout(3, 3))],
            &[],
        );
        let conditions = merge(&[], &desired, Some(4), t(0));
        assert_eq!(find(&conditions, READY).status, "True");
        assert_eq!(find(&conditions, PROGRESSING).status, "False");
        assert_eq!(find(&conditions, DEGRADED).status, "False");
        assert_eq!(find(&conditions, READY).observed_generation, Some(4));
    }

    #[test]
    fn not_ready_names_what_it_waits_for() {
        let desired = applied(
            &[("bootstrap", rollout(2, 2)), ("nodes", rollout(3, 1))],
            &[],
        );
        let ready = desired.iter().find(|d| d.type_ == READY).unwrap();
        assert!(!ready.status);
        assert!(
            ready.message.contains("nodes: 1/3 ready"),
            "{}",
            ready.message
        );
        assert!(
            desired
                .iter()
                .find(|d| d.type_ == PROGRESSING)
                .unwrap()
                .status
        );
    }

    #[test]
    fn unobserved_generation_is_not_done() {
        let r = Rollout {
            desired: 1,
            ready: 1,
            updated: 1,
            observed: false,
        };
        assert!(!r.done());
    }

    #[test]
    fn transition_time_is_kept_without_a_flip() {
        let first = merge(
            &[],
            &applied(&[("nodes", rollout(1, 1))], &[]),
            Some(1),
            t(0),
        );
        let again = merge(
            &first,
            &applied(&[("nodes", rollout(1, 1))], &["note".to_string()]),
            Some(2),
            t(100),
        );
        assert_eq!(find(&again, READY).last_transition_time, Time(t(0)));
        assert!(find(&again, READY).message.contains("note"));
    }

    #[test]
    fn transition_time_changes_on_a_flip() {
        let first = merge(
            &[],
            &applied(&[("nodes", rollout(1, 1))], &[]),
            Some(1),
            t(0),
        );
        let flipped = merge(
            &first,
            &degraded("InvalidDns", "spec.dns.weight needs setIdentifier"),
            Some(2),
            t(50),
        );
        assert_eq!(find(&flipped, READY).last_transition_time, Time(t(50)));
        assert_eq!(find(&flipped, DEGRADED).status, "True");
        assert_eq!(find(&flipped, DEGRADED).reason, "InvalidDns");
        assert_eq!(find(&flipped, DEGRADED).last_transition_time, Time(t(50)));
        // Progressing was False before and stays False: its time is kept.
        assert_eq!(find(&flipped, PROGRESSING).last_transition_time, Time(t(0)));
    }

    #[test]
    fn foreign_conditions_are_kept() {
        let foreign = Condition {
            type_: "External".into(),
            status: "True".into(),
            reason: "X".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(t(0)),
        };
        let merged = merge(
            std::slice::from_ref(&foreign),
            &degraded("R", "m"),
            None,
            t(1),
        );
        assert!(merged.contains(&foreign));
        assert_eq!(merged.len(), 4);
    }
}
