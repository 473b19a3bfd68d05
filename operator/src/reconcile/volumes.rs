//! Growing the nodes' volumes after `storage.size` grew. A StatefulSet's claim templates cannot
//! change, so the claims it made are grown one by one and the StatefulSet is re-created with the
//! new template, its pods orphaned (not restarted) and adopted by the new one. Pure: what was read
//! in, what to do and the `VolumesResized` condition out; `resize.rs` does the IO.

use std::collections::BTreeMap;

use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::PersistentVolumeClaim};

use super::conditions::Desired;
use crate::quantity::parse_quantity;

/// Condition of a grown `storage.size`: True once every claim reports the new capacity.
pub const VOLUMES_RESIZED: &str = "VolumesResized";
/// Reason of a `VolumesResized=False` whose claims' StorageClass cannot grow volumes.
pub const CLASS_DISALLOWS_EXPANSION: &str = "StorageClassDisallowsExpansion";
/// Reason of a `VolumesResized=False` waiting for the claims to report their new capacity.
pub const RESIZING: &str = "Resizing";
/// Reason of `VolumesResized=True`.
pub const RESIZED: &str = "AllClaimsResized";
/// How soon an owner whose claims are growing is looked at again (claims are not watched).
pub const RESIZE_POLL: std::time::Duration = std::time::Duration::from_secs(3);

/// A claim of the StatefulSet, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub name: String,
    /// `spec.resources.requests.storage`.
    pub requested: Option<String>,
    /// `status.capacity.storage`.
    pub capacity: Option<String>,
    /// `spec.storageClassName` (set by the API server to the default class when left out).
    pub storage_class: Option<String>,
}

impl Claim {
    pub fn of(claim: &PersistentVolumeClaim) -> Claim {
        let storage = |map: Option<&BTreeMap<String, _>>| {
            map.and_then(|m| m.get("storage"))
                .map(|q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| q.0.clone())
        };
        let spec = claim.spec.as_ref();
        Claim {
            name: claim.metadata.name.clone().unwrap_or_default(),
            requested: storage(
                spec.and_then(|s| s.resources.as_ref())
                    .and_then(|r| r.requests.as_ref()),
            ),
            capacity: storage(claim.status.as_ref().and_then(|s| s.capacity.as_ref())),
            storage_class: spec.and_then(|s| s.storage_class_name.clone()),
        }
    }
}

/// What the volume step read: the StatefulSet's claim template and its claims.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeFacts {
    /// `storage` requested by the existing StatefulSet's claim template `template`; `None`
    /// without a StatefulSet (it is created with the current size).
    pub template_size: Option<String>,
    /// The StatefulSet's claims (`<template>-<statefulset>-<ordinal>`), retained ones included.
    pub claims: Vec<Claim>,
    /// `allowVolumeExpansion` of each StorageClass the claims use (absent: the class is missing).
    pub expandable: BTreeMap<String, bool>,
}

/// What to do about the volumes, and what to report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumePlan {
    /// Claims whose request is raised to the new size.
    pub grow: Vec<String>,
    /// The StatefulSet's claim template is smaller than the size: delete it (orphaning its pods)
    /// so that it is applied anew.
    pub recreate_statefulset: bool,
    /// `VolumesResized`; `None` when no claim is smaller than the size (nothing to report).
    pub condition: Option<Desired>,
}

impl VolumePlan {
    /// Claims are still growing: look again soon (their size is not watched).
    pub fn waiting(&self) -> bool {
        self.condition
            .as_ref()
            .is_some_and(|c| !c.status && c.reason == RESIZING)
    }
}

/// `storage` requested by the claim template `template` of `statefulset`.
pub fn template_size(statefulset: &StatefulSet, template: &str) -> Option<String> {
    statefulset
        .spec
        .as_ref()?
        .volume_claim_templates
        .as_ref()?
        .iter()
        .find(|t| t.metadata.name.as_deref() == Some(template))
        .map(Claim::of)?
        .requested
}

/// Whether `name` is a claim the StatefulSet `statefulset` made from template `template`.
pub fn is_claim_of(name: &str, template: &str, statefulset: &str) -> bool {
    name.strip_prefix(template)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.strip_prefix(statefulset))
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|ordinal| !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit()))
}

/// `a < b` as quantities; a value that is no quantity is never smaller (never acted on).
fn smaller(a: Option<&str>, b: f64) -> bool {
    a.and_then(|a| parse_quantity(a).ok())
        .is_some_and(|a| a < b)
}

/// The plan for volumes of `size` (the spec's `storage.size`), `last` the status of the last
/// `VolumesResized`. A size that is no quantity plans nothing (validation refuses it before).
pub fn plan(size: &str, facts: &VolumeFacts, last: Option<bool>) -> VolumePlan {
    let Ok(wanted) = parse_quantity(size) else {
        return VolumePlan::default();
    };
    let recreate_statefulset = smaller(facts.template_size.as_deref(), wanted);
    let mut grow = Vec::new();
    let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut waiting = Vec::new();
    for claim in &facts.claims {
        if smaller(claim.requested.as_deref(), wanted) {
            let class = claim.storage_class.clone().unwrap_or_default();
            if facts.expandable.get(&class).copied().unwrap_or(false) {
                grow.push(claim.name.clone());
                waiting.push(claim.name.clone());
            } else {
                refused.entry(class).or_default().push(claim.name.clone());
            }
        } else if claim.capacity.is_none() || smaller(claim.capacity.as_deref(), wanted) {
            waiting.push(claim.name.clone());
        }
    }
    let condition = if !refused.is_empty() {
        let classes: Vec<String> = refused
            .iter()
            .map(|(class, claims)| {
                let class = if class.is_empty() {
                    "(none)".to_string()
                } else {
                    format!("{class:?}")
                };
                format!(
                    "StorageClass {class} does not allow volume expansion: claims {} stay below {size}",
                    claims.join(", ")
                )
            })
            .collect();
        Some(Desired::new(
            VOLUMES_RESIZED,
            false,
            CLASS_DISALLOWS_EXPANSION,
            format!(
                "{}; set allowVolumeExpansion: true on the class to grow them",
                classes.join("; ")
            ),
        ))
    } else if !waiting.is_empty() {
        Some(Desired::new(
            VOLUMES_RESIZED,
            false,
            RESIZING,
            format!(
                "waiting for claims {} to report a capacity of {size}",
                waiting.join(", ")
            ),
        ))
    } else if recreate_statefulset || last == Some(false) {
        Some(resized(size, facts.claims.len()))
    } else {
        None
    };
    VolumePlan {
        grow,
        recreate_statefulset,
        condition,
    }
}

/// `VolumesResized=True`.
fn resized(size: &str, claims: usize) -> Desired {
    Desired::new(
        VOLUMES_RESIZED,
        true,
        RESIZED,
        format!("all {claims} claims report a capacity of at least {size}"),
    )
}

/// Whether the volumes need a look this reconcile: the claim template is smaller than the size,
/// or the last `VolumesResized` was not True yet.
pub fn needs_claims(size: &str, template_size: Option<&str>, resized: Option<bool>) -> bool {
    let grown = parse_quantity(size).is_ok_and(|wanted| smaller(template_size, wanted));
    grown || resized == Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(name: &str, requested: &str, capacity: Option<&str>, class: &str) -> Claim {
        Claim {
            name: name.to_string(),
            requested: Some(requested.to_string()),
            capacity: capacity.map(str::to_string),
            storage_class: Some(class.to_string()),
        }
    }

    fn facts(template: Option<&str>, claims: Vec<Claim>) -> VolumeFacts {
        VolumeFacts {
            template_size: template.map(str::to_string),
            claims,
            expandable: BTreeMap::from([("grow".to_string(), true), ("fixed".to_string(), false)]),
        }
    }

    #[test]
    fn an_unchanged_size_plans_nothing() {
        let plan = plan(
            "10Gi",
            &facts(
                Some("10Gi"),
                vec![claim("d-net-node-0", "10Gi", Some("10Gi"), "grow")],
            ),
            None,
        );
        assert_eq!(plan, VolumePlan::default());
    }

    #[test]
    fn quantities_are_compared_as_numbers_not_strings() {
        // "9Gi" > "10Gi" as strings; 10Gi == 10737418240 as numbers.
        let plan = plan(
            "10Gi",
            &facts(
                Some("10737418240"),
                vec![claim("d-net-node-0", "9Gi", Some("9Gi"), "grow")],
            ),
            None,
        );
        assert!(!plan.recreate_statefulset);
        assert_eq!(plan.grow, ["d-net-node-0"]);
        assert!(!smaller(Some("1Gi"), parse_quantity("1024Mi").unwrap()));
        assert!(smaller(Some("1G"), parse_quantity("1Gi").unwrap()));
    }

    #[test]
    fn a_grown_size_grows_every_smaller_claim_and_recreates_the_statefulset() {
        let plan = plan(
            "20Gi",
            &facts(
                Some("10Gi"),
                vec![
                    claim("d-net-node-0", "10Gi", Some("10Gi"), "grow"),
                    claim("d-net-node-1", "10Gi", Some("10Gi"), "grow"),
                    // Grown by hand beyond the size: never shrunk.
                    claim("d-net-node-2", "30Gi", Some("30Gi"), "grow"),
                ],
            ),
            None,
        );
        assert!(plan.recreate_statefulset);
        assert_eq!(plan.grow, ["d-net-node-0", "d-net-node-1"]);
        let condition = plan.condition.as_ref().unwrap();
        assert!(!condition.status);
        assert_eq!(condition.reason, RESIZING);
        assert!(plan.waiting());
        assert!(
            condition.message.contains("d-net-node-0, d-net-node-1"),
            "{}",
            condition.message
        );
    }

    #[test]
    fn requested_but_not_reported_capacity_is_still_waited_for() {
        let plan = plan(
            "20Gi",
            &facts(
                Some("20Gi"),
                vec![
                    claim("d-net-node-0", "20Gi", Some("20Gi"), "grow"),
                    claim("d-net-node-1", "20Gi", Some("10Gi"), "grow"),
                ],
            ),
            None,
        );
        assert!(!plan.recreate_statefulset);
        assert!(plan.grow.is_empty());
        let condition = plan.condition.unwrap();
        assert_eq!(condition.reason, RESIZING);
        assert_eq!(
            condition.message,
            "waiting for claims d-net-node-1 to report a capacity of 20Gi"
        );
    }

    #[test]
    fn every_claim_at_the_new_capacity_is_resized() {
        let done = facts(
            Some("20Gi"),
            vec![
                claim("d-net-node-0", "20Gi", Some("20Gi"), "grow"),
                claim("d-net-node-1", "20Gi", Some("21474836480"), "grow"),
            ],
        );
        let plan = plan("20Gi", &done, Some(false));
        assert!(plan.grow.is_empty() && !plan.recreate_statefulset);
        let condition = plan.condition.unwrap();
        assert!(condition.status);
        assert_eq!(condition.reason, RESIZED);
        assert_eq!(
            condition.message,
            "all 2 claims report a capacity of at least 20Gi"
        );
        // Once True, nothing more to say: the condition is kept as it is.
        assert_eq!(super::plan("20Gi", &done, Some(true)).condition, None);
    }

    #[test]
    fn a_class_without_expansion_is_reported_and_its_claims_are_left_alone() {
        let plan = plan(
            "20Gi",
            &facts(
                Some("10Gi"),
                vec![
                    claim("d-net-node-0", "10Gi", Some("10Gi"), "fixed"),
                    claim("d-net-node-1", "10Gi", Some("10Gi"), "gone"),
                ],
            ),
            None,
        );
        assert!(plan.grow.is_empty());
        // New claims (a scale-up) get the new size, and the apply stops failing on the template.
        assert!(plan.recreate_statefulset);
        let condition = plan.condition.unwrap();
        assert!(!condition.status);
        assert_eq!(condition.reason, CLASS_DISALLOWS_EXPANSION);
        assert!(
            condition.message.contains(
                "StorageClass \"fixed\" does not allow volume expansion: claims d-net-node-0"
            ),
            "{}",
            condition.message
        );
        assert!(
            condition.message.contains("\"gone\""),
            "{}",
            condition.message
        );
    }

    #[test]
    fn claims_are_told_by_template_statefulset_and_ordinal() {
        assert!(is_claim_of("dig-data-net-node-0", "dig-data", "net-node"));
        assert!(is_claim_of("dig-data-net-node-12", "dig-data", "net-node"));
        assert!(!is_claim_of("dig-data-net-node-x", "dig-data", "net-node"));
        assert!(!is_claim_of("dig-data-net-node-", "dig-data", "net-node"));
        // Another network whose name starts the same.
        assert!(!is_claim_of(
            "dig-data-net-node-b-node-0",
            "dig-data",
            "net-node"
        ));
    }

    #[test]
    fn claims_are_read_only_while_a_resize_is_due_or_unfinished() {
        assert!(needs_claims("20Gi", Some("10Gi"), None));
        assert!(!needs_claims("20Gi", Some("20Gi"), None));
        assert!(!needs_claims("20Gi", Some("20Gi"), Some(true)));
        assert!(needs_claims("20Gi", Some("20Gi"), Some(false)));
        assert!(!needs_claims("20Gi", None, None), "no StatefulSet yet");
    }
}
