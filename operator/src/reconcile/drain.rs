//! Scale-down with a drain, the pure part: which node leaves next (the highest ordinal), when the
//! StatefulSet may lose it (the node reports every store it holds listed by another live node,
//! or `spec.nodes.drainTimeout` passed, or the pod is not running so nothing can be checked), and
//! the status, condition and event that say so. `scale_down.rs` reads the facts and acts.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::conditions::Desired;
pub use crate::crd::labels::DRAIN_ANNOTATION;
use crate::crd::status::DrainStatus;

/// The condition a drain sets.
pub const DRAINING: &str = "Draining";
/// How often a draining network is looked at again.
pub const DRAIN_POLL: Duration = Duration::from_secs(3);
/// Uncovered store names a condition message or event names.
const NAMED: usize = 10;
/// `drainTimeout` when unset.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest `drainTimeout`.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Parses `drainTimeout` (`10m`, `1h30m`, `90s`; 0s to 24h), or says what is wrong with it.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("spec.nodes.drainTimeout {text:?} is not a duration like 10m, 1h30m or 90s");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(invalid()),
        };
        let value: u64 = digits.parse().map_err(|_| invalid())?;
        total = value
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(invalid)?;
        digits.clear();
    }
    if !digits.is_empty() || text.is_empty() {
        return Err(invalid());
    }
    let duration = Duration::from_secs(total);
    if duration > MAX_TIMEOUT {
        return Err(format!(
            "spec.nodes.drainTimeout {text:?} is longer than 24h"
        ));
    }
    Ok(duration)
}

/// The pod that would drain, as the API server has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    /// Running, with a pod IP the operator may ask.
    pub reachable: bool,
    /// The value of its `dig.net/drain` annotation.
    pub annotation: Option<String>,
}

/// What the node said on `GET /drain`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeReport {
    pub draining: bool,
    pub drained: bool,
    pub uncovered: Vec<String>,
    pub uncovered_count: u64,
    pub peers_checked: u64,
}

/// Everything the planner looks at.
#[derive(Clone, Debug)]
pub struct DrainFacts<'a> {
    /// `spec.nodes.replicas`.
    pub wanted: i32,
    /// The node StatefulSet's `spec.replicas` (`None`: no StatefulSet yet).
    pub current: Option<i32>,
    /// The node StatefulSet's name (pods are `<name>-<ordinal>`).
    pub statefulset: &'a str,
    pub previous: Option<&'a DrainStatus>,
    /// The pod of ordinal `current - 1` (`None`: it does not exist).
    pub pod: Option<PodFacts>,
    /// Its `/drain` answer, or why there is none (`None`: not asked).
    pub report: Option<Result<NodeReport, String>>,
    pub timeout: Duration,
    pub now: Timestamp,
}

/// An event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainEvent {
    /// The pod it is about.
    pub pod: String,
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainPlan {
    /// The StatefulSet's `spec.replicas` to apply.
    pub replicas: i32,
    /// Annotate this pod `dig.net/drain=<since>`.
    pub annotate: Option<(String, String)>,
    /// Remove the annotation from this pod (a scale back up stopped its drain).
    pub release: Option<String>,
    pub status: Option<DrainStatus>,
    pub condition: Option<Desired>,
    pub event: Option<DrainEvent>,
    pub requeue: Option<Duration>,
}

impl DrainPlan {
    /// No drain: the StatefulSet gets what the spec says.
    fn none(wanted: i32) -> Self {
        Self {
            replicas: wanted,
            annotate: None,
            release: None,
            status: None,
            condition: None,
            event: None,
            requeue: None,
        }
    }
}

/// Whether a reconcile must read the StatefulSet for a drain: the previous status shows more
/// node pods than wanted, or a drain was under way.
pub fn needs_facts(wanted: i32, status_replicas: i32, previous: Option<&DrainStatus>) -> bool {
    status_replicas > wanted || previous.is_some()
}

/// The pod a drain of a StatefulSet at `current` replicas works on.
pub fn leaving_pod(statefulset: &str, current: i32) -> String {
    format!("{statefulset}-{}", current - 1)
}

fn names(stores: &[String], count: u64) -> String {
    let mut text = stores
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if count as usize > NAMED.min(stores.len()) {
        text.push_str(", …");
    }
    text
}

fn seconds_since(since: &str, now: Timestamp) -> Option<u64> {
    let since: Timestamp = since.parse().ok()?;
    Some(now.duration_since(since).as_secs().max(0) as u64)
}

/// Decides the step of a scale-down.
pub fn plan(facts: &DrainFacts<'_>) -> DrainPlan {
    let mut plan = DrainPlan::none(facts.wanted);
    let current = match facts.current {
        Some(current) if current > facts.wanted => current,
        _ => {
            // No scale-down (any more): a drain under way stops.
            if let Some(previous) = facts.previous {
                plan.release = Some(previous.pod.clone());
                plan.condition = Some(Desired::new(
                    DRAINING,
                    false,
                    "NotDraining",
                    format!(
                        "the drain of {} stopped: {} nodes wanted again",
                        previous.pod, facts.wanted
                    ),
                ));
                plan.event = Some(DrainEvent {
                    pod: previous.pod.clone(),
                    warning: false,
                    reason: "DrainCancelled",
                    message: format!(
                        "{} stays: spec.nodes.replicas is {} again",
                        previous.pod, facts.wanted
                    ),
                });
            }
            return plan;
        }
    };
    let pod = leaving_pod(facts.statefulset, current);
    let previous = facts.previous.filter(|p| p.pod == pod);
    if let Some(other) = facts.previous.filter(|p| p.pod != pod) {
        // The StatefulSet grew again between two drains: that pod stays.
        plan.release = Some(other.pod.clone());
    }
    let since = previous.map_or_else(|| facts.now.to_string(), |p| p.since.clone());
    let waited = seconds_since(&since, facts.now).unwrap_or(0);
    let lower = current - 1;
    let Some(pod_facts) = facts.pod.as_ref().filter(|p| p.reachable) else {
        plan.replicas = lower;
        plan.condition = Some(Desired::new(
            DRAINING,
            false,
            "NotRunning",
            format!("{pod} was not running: it left without a drain"),
        ));
        plan.event = Some(DrainEvent {
            pod: pod.clone(),
            warning: true,
            reason: "DrainSkipped",
            message: format!(
                "{pod} is not running or has no pod IP, so its stores cannot be checked: it leaves without a drain (its claim stays unless whenScaled is Delete)"
            ),
        });
        plan.requeue = Some(DRAIN_POLL);
        return plan;
    };
    let mut status = previous.cloned().unwrap_or_else(|| DrainStatus {
        pod: pod.clone(),
        since: since.clone(),
        ..DrainStatus::default()
    });
    if pod_facts.annotation.is_none() {
        plan.annotate = Some((pod.clone(), since.clone()));
    }
    let report = match &facts.report {
        Some(Ok(report)) if report.draining => Some(report),
        _ => None,
    };
    if let Some(report) = report {
        status.uncovered = Some(report.uncovered_count);
        if report.uncovered_count > status.waited_for {
            status.waited_for = report.uncovered_count;
        }
        for name in &report.uncovered {
            if status.waited_for_stores.len() < NAMED && !status.waited_for_stores.contains(name) {
                status.waited_for_stores.push(name.clone());
            }
        }
    }
    let timed_out = waited >= facts.timeout.as_secs();
    if report.is_some_and(|r| r.drained) {
        plan.replicas = lower;
        let waited_for = if status.waited_for == 0 {
            "no store lacked a copy".to_string()
        } else {
            format!(
                "waited for copies of {} stores: {}",
                status.waited_for,
                names(&status.waited_for_stores, status.waited_for)
            )
        };
        plan.condition = Some(Desired::new(
            DRAINING,
            false,
            "Drained",
            format!("{pod} drained and left after {waited} s"),
        ));
        plan.event = Some(DrainEvent {
            pod: pod.clone(),
            warning: false,
            reason: "NodeDrained",
            message: format!("{pod} left after {waited} s; {waited_for}"),
        });
        plan.requeue = Some(DRAIN_POLL);
        return plan;
    }
    if timed_out {
        plan.replicas = lower;
        let still = match report {
            Some(r) if r.uncovered_count > 0 => format!(
                "{} stores still had no copy on another live node: {}",
                r.uncovered_count,
                names(&r.uncovered, r.uncovered_count)
            ),
            Some(_) => "no peer had been checked yet".to_string(),
            None => match &facts.report {
                Some(Err(error)) => format!("its /drain could not be read: {error}"),
                _ => "it never reported draining".to_string(),
            },
        };
        plan.condition = Some(Desired::new(
            DRAINING,
            false,
            "DrainTimedOut",
            format!("{pod} left after the drain timeout of {waited} s; {still}"),
        ));
        plan.event = Some(DrainEvent {
            pod: pod.clone(),
            warning: true,
            reason: "DrainTimedOut",
            message: format!("{pod} left after the drain timeout ({waited} s); {still}"),
        });
        plan.requeue = Some(DRAIN_POLL);
        return plan;
    }
    plan.replicas = current;
    let (reason, message) = match (report, &facts.report) {
        (Some(r), _) if r.uncovered_count > 0 => (
            "WaitingForCopies",
            format!(
                "{pod} waits for copies of {} stores on another live node: {}",
                r.uncovered_count,
                names(&r.uncovered, r.uncovered_count)
            ),
        ),
        (Some(r), _) => (
            "WaitingForCopies",
            format!(
                "{pod} waits for a check of its peers ({} checked)",
                r.peers_checked
            ),
        ),
        (None, Some(Err(error))) => (
            "WaitingForNode",
            format!("{pod}: cannot read its /drain yet: {error}"),
        ),
        (None, _) => (
            "WaitingForNode",
            format!(
                "{pod} has not started draining yet (its annotation reaches it within a minute)"
            ),
        ),
    };
    plan.condition = Some(Desired::new(
        DRAINING,
        true,
        reason,
        format!(
            "{message}; since {since}, timeout {} s",
            facts.timeout.as_secs()
        ),
    ));
    if previous.is_none() {
        plan.event = Some(DrainEvent {
            pod: pod.clone(),
            warning: false,
            reason: "Draining",
            message: format!(
                "{pod} drains before it leaves: scale-down to {} nodes",
                facts.wanted
            ),
        });
    }
    plan.status = Some(status);
    plan.requeue = Some(DRAIN_POLL);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:10:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn running(annotated: bool) -> Option<PodFacts> {
        Some(PodFacts {
            reachable: true,
            annotation: annotated.then(|| "2026-01-01T00:09:00Z".to_string()),
        })
    }

    fn report(drained: bool, uncovered: &[&str]) -> Option<Result<NodeReport, String>> {
        Some(Ok(NodeReport {
            draining: true,
            drained,
            uncovered: uncovered.iter().map(|s| s.to_string()).collect(),
            uncovered_count: uncovered.len() as u64,
            peers_checked: 1,
        }))
    }

    fn draining(pod: &str, since: &str) -> DrainStatus {
        DrainStatus {
            pod: pod.into(),
            since: since.into(),
            uncovered: Some(1),
            waited_for: 1,
            waited_for_stores: vec!["s".into()],
        }
    }

    fn facts<'a>(wanted: i32, current: i32, previous: Option<&'a DrainStatus>) -> DrainFacts<'a> {
        DrainFacts {
            wanted,
            current: Some(current),
            statefulset: "net-node",
            previous,
            pod: running(false),
            report: None,
            timeout: Duration::from_secs(600),
            now: now(),
        }
    }

    #[test]
    fn drain_timeouts_parse_as_durations_of_at_most_a_day() {
        assert_eq!(parse_timeout("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_timeout("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_timeout("0s"), Ok(Duration::ZERO));
        for bad in ["", "10", "m", "1d", "-1s", "25h", "99999999999999999999h"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn without_a_scale_down_nothing_drains() {
        let plan = plan(&facts(3, 3, None));
        assert_eq!(plan, DrainPlan::none(3));
        let mut f = facts(3, 1, None);
        f.current = None;
        assert_eq!(plan_of(&f).replicas, 3);
        assert!(!needs_facts(3, 3, None) && needs_facts(1, 3, None));
    }

    fn plan_of(f: &DrainFacts<'_>) -> DrainPlan {
        plan(f)
    }

    #[test]
    fn the_highest_ordinal_drains_first_and_the_statefulset_keeps_it_meanwhile() {
        let plan = plan(&facts(1, 3, None));
        assert_eq!(plan.replicas, 3);
        let (pod, since) = plan.annotate.clone().unwrap();
        assert_eq!((pod.as_str(), since.as_str()), ("net-node-2", NOW));
        let status = plan.status.clone().unwrap();
        assert_eq!(
            (status.pod.as_str(), status.since.as_str()),
            ("net-node-2", NOW)
        );
        let condition = plan.condition.unwrap();
        assert!(condition.status);
        assert_eq!(condition.reason, "WaitingForNode");
        assert_eq!(plan.event.unwrap().reason, "Draining");
        assert_eq!(plan.requeue, Some(DRAIN_POLL));
    }

    #[test]
    fn uncovered_stores_are_named_while_the_node_waits() {
        let previous = draining("net-node-2", "2026-01-01T00:09:00Z");
        let mut f = facts(1, 3, Some(&previous));
        f.pod = running(true);
        f.report = report(false, &["a", "b"]);
        let plan = plan(&f);
        assert_eq!(plan.replicas, 3);
        assert!(plan.annotate.is_none(), "already annotated");
        assert!(
            plan.event.is_none(),
            "the Draining event was published at the start"
        );
        let condition = plan.condition.unwrap();
        assert_eq!(condition.reason, "WaitingForCopies");
        assert!(
            condition
                .message
                .contains("net-node-2 waits for copies of 2 stores on another live node: a, b"),
            "{}",
            condition.message
        );
        let status = plan.status.unwrap();
        assert_eq!(status.since, "2026-01-01T00:09:00Z");
        assert_eq!((status.uncovered, status.waited_for), (Some(2), 2));
        assert_eq!(status.waited_for_stores, vec!["s", "a", "b"]);
    }

    #[test]
    fn a_drained_node_leaves_with_an_event_naming_what_it_waited_for() {
        let previous = draining("net-node-2", "2026-01-01T00:09:00Z");
        let mut f = facts(1, 3, Some(&previous));
        f.pod = running(true);
        f.report = report(true, &[]);
        let plan = plan(&f);
        assert_eq!(plan.replicas, 2);
        assert!(plan.status.is_none());
        let event = plan.event.unwrap();
        assert_eq!((event.reason, event.warning), ("NodeDrained", false));
        assert_eq!(
            event.message,
            "net-node-2 left after 60 s; waited for copies of 1 stores: s"
        );
        assert_eq!(plan.condition.unwrap().reason, "Drained");
    }

    #[test]
    fn the_timeout_lets_the_node_go_with_a_warning_naming_the_stores_without_a_copy() {
        let previous = draining("net-node-2", "2026-01-01T00:00:00Z");
        let mut f = facts(1, 3, Some(&previous));
        f.pod = running(true);
        f.report = report(false, &["only-here"]);
        let plan = plan(&f);
        assert_eq!(plan.replicas, 2);
        let event = plan.event.unwrap();
        assert_eq!((event.reason, event.warning), ("DrainTimedOut", true));
        assert!(
            event
                .message
                .contains("1 stores still had no copy on another live node: only-here"),
            "{}",
            event.message
        );
        let mut f = facts(1, 3, Some(&previous));
        f.report = Some(Err("timed out".into()));
        assert!(
            plan_of(&f)
                .event
                .unwrap()
                .message
                .contains("could not be read: timed out")
        );
    }

    #[test]
    fn a_pod_that_is_not_running_leaves_at_once_with_a_warning() {
        let mut f = facts(1, 3, None);
        f.pod = Some(PodFacts {
            reachable: false,
            annotation: None,
        });
        let plan = plan(&f);
        assert_eq!(plan.replicas, 2);
        assert_eq!(plan.event.unwrap().reason, "DrainSkipped");
        let mut f = facts(1, 3, None);
        f.pod = None;
        assert_eq!(plan_of(&f).replicas, 2);
    }

    #[test]
    fn a_scale_back_up_stops_the_drain_and_removes_the_annotation() {
        let previous = draining("net-node-2", "2026-01-01T00:09:00Z");
        let plan = plan(&facts(3, 3, Some(&previous)));
        assert_eq!(plan.replicas, 3);
        assert_eq!(plan.release.as_deref(), Some("net-node-2"));
        assert!(plan.status.is_none());
        assert_eq!(plan.condition.unwrap().reason, "NotDraining");
        assert_eq!(plan.event.unwrap().reason, "DrainCancelled");
        // Up by one during the drain of the next pod down: that one stays, the top one drains.
        let previous = draining("net-node-1", "2026-01-01T00:09:00Z");
        let plan = plan_of(&facts(2, 3, Some(&previous)));
        assert_eq!(plan.release.as_deref(), Some("net-node-1"));
        assert_eq!(plan.annotate.unwrap().0, "net-node-2");
    }

    #[test]
    fn a_report_from_before_the_drain_reached_the_node_does_not_count() {
        let mut f = facts(1, 3, None);
        f.report = Some(Ok(NodeReport {
            draining: false,
            drained: false,
            ..NodeReport::default()
        }));
        let plan = plan(&f);
        assert_eq!(plan.replicas, 3);
        assert_eq!(plan.condition.unwrap().reason, "WaitingForNode");
    }
}
