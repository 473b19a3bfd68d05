//! The planner, rule by rule: desired and observed in, changes out.

use std::collections::BTreeMap;

use super::*;
use crate::route53::{
    desired::{DnsFacts, Owner, desired},
    model::{Alarm, HealthCheck, HealthCheckConfig, RecordKey, RecordSet, Routing},
};

const HOST: &str = "bootstrap.example.com";

fn owner() -> Owner {
    Owner {
        namespace: "ns".into(),
        name: "net".into(),
        uid: "uid-1".into(),
        owner_id: "cluster-a".into(),
    }
}

fn ip(text: &str) -> Target {
    Target::Ip(text.into())
}

fn want(spec_yaml: &str, targets: &[&str]) -> super::super::desired::DesiredDns {
    let dns = yaml_serde::from_str(spec_yaml).unwrap();
    let facts = DnsFacts {
        targets: targets.iter().map(|t| ip(t)).collect(),
        dnsaddr: vec!["dnsaddr=/dns4/n0.example.com/tcp/4001/p2p/12D3KooWx".into()],
    };
    desired(Some(&dns), &owner(), &facts, 3000)
}

fn ids(pairs: &[(&str, &str)]) -> BTreeMap<Target, String> {
    pairs
        .iter()
        .map(|(t, id)| (ip(t), id.to_string()))
        .collect()
}

/// What AWS would hold after the changes of a plan.
fn applied(mut zone: Vec<RecordSet>, changes: &[Change]) -> Vec<RecordSet> {
    for change in changes {
        match change {
            Change::Delete(r) => {
                let before = zone.len();
                zone.retain(|z| z != r);
                assert_eq!(
                    before - 1,
                    zone.len(),
                    "DELETE must name the exact record: {r:?}"
                );
            }
            Change::Create(r) => {
                assert!(
                    zone.iter().all(|z| z.key != r.key),
                    "CREATE of a taken key {:?}",
                    r.key
                );
                zone.push(r.clone());
            }
            Change::Upsert(r) => {
                zone.retain(|z| z.key != r.key);
                zone.push(r.clone());
            }
        }
    }
    zone
}

fn foreign(name: &str, type_: RecordType, set: Option<&str>, value: &str) -> RecordSet {
    RecordSet {
        key: RecordKey {
            name: name.into(),
            type_,
            set_identifier: set.map(str::to_string),
        },
        ttl: 300,
        values: vec![value.into()],
        routing: if set.is_some() {
            Routing::Weighted(1)
        } else {
            Routing::Simple
        },
        health_check_id: None,
    }
}

const ROUTE53: &str =
    "route53: {hostnames: [bootstrap.example.com]}\nsetIdentifier: us\nweight: 10";

#[test]
fn an_empty_zone_gets_the_owner_record_first_and_every_record_in_one_batch() {
    let d = want(ROUTE53, &["203.0.113.7"]);
    let hc = ids(&[("203.0.113.7", "hc-1")]);
    let plan = plan_hostname(HOST, Some(&d.hostnames[0]), &[], &owner().txt_value(), &hc);
    assert!(plan.conflict.is_none());
    let Change::Create(first) = &plan.changes[0] else {
        panic!("{:?}", plan.changes)
    };
    assert_eq!(first.key.name, "_dig-owner.bootstrap.example.com");
    assert_eq!(plan.changes.len(), 3, "owner, A, TXT: {:?}", plan.changes);
    let a = plan
        .changes
        .iter()
        .map(Change::record)
        .find(|r| r.key.type_ == RecordType::A)
        .unwrap();
    assert_eq!(a.health_check_id.as_deref(), Some("hc-1"));
    assert_eq!(a.routing, Routing::Weighted(10));
    assert_eq!(plan.owned.len(), 3);
}

#[test]
fn once_made_nothing_changes() {
    let d = want(ROUTE53, &["203.0.113.7"]);
    let hc = ids(&[("203.0.113.7", "hc-1")]);
    let first = plan_hostname(HOST, Some(&d.hostnames[0]), &[], &owner().txt_value(), &hc);
    let zone = applied(Vec::new(), &first.changes);
    let again = plan_hostname(
        HOST,
        Some(&d.hostnames[0]),
        &zone,
        &owner().txt_value(),
        &hc,
    );
    assert_eq!(again.changes, []);
    assert_eq!(again.owned.len(), 3);
}

#[test]
fn a_spec_change_upserts_and_a_new_address_is_added_and_an_old_one_deleted() {
    let hc = ids(&[("203.0.113.7", "hc-1"), ("203.0.113.9", "hc-9")]);
    let before = want(ROUTE53, &["203.0.113.7"]);
    let zone = applied(
        Vec::new(),
        &plan_hostname(
            HOST,
            Some(&before.hostnames[0]),
            &[],
            &owner().txt_value(),
            &hc,
        )
        .changes,
    );
    let after = want(
        "route53: {hostnames: [bootstrap.example.com]}\nsetIdentifier: us\nweight: 50\nttl: 60",
        &["203.0.113.9"],
    );
    let plan = plan_hostname(
        HOST,
        Some(&after.hostnames[0]),
        &zone,
        &owner().txt_value(),
        &hc,
    );
    let zone = applied(zone, &plan.changes);
    let a: Vec<&RecordSet> = zone
        .iter()
        .filter(|r| r.key.type_ == RecordType::A)
        .collect();
    assert_eq!(a.len(), 1, "{zone:?}");
    assert_eq!(a[0].values, ["203.0.113.9"]);
    assert_eq!(a[0].routing, Routing::Weighted(50));
    assert_eq!(a[0].ttl, 60);
    assert_eq!(a[0].health_check_id.as_deref(), Some("hc-9"));
    assert!(
        matches!(plan.changes[0], Change::Delete(_)),
        "deletions first"
    );
}

#[test]
fn a_routing_change_deletes_and_creates_instead_of_upserting() {
    let hc = ids(&[("203.0.113.7", "hc-1")]);
    let weighted = want(ROUTE53, &["203.0.113.7"]);
    let zone = applied(
        Vec::new(),
        &plan_hostname(
            HOST,
            Some(&weighted.hostnames[0]),
            &[],
            &owner().txt_value(),
            &hc,
        )
        .changes,
    );
    let failover = want(
        "route53: {hostnames: [bootstrap.example.com]}\nsetIdentifier: us\nfailover: PRIMARY",
        &["203.0.113.7"],
    );
    let plan = plan_hostname(
        HOST,
        Some(&failover.hostnames[0]),
        &zone,
        &owner().txt_value(),
        &hc,
    );
    assert!(
        !plan
            .changes
            .iter()
            .any(|c| matches!(c, Change::Upsert(r) if r.key.name == HOST))
    );
    let zone = applied(zone, &plan.changes);
    assert!(
        zone.iter()
            .all(|r| !matches!(r.routing, Routing::Weighted(_))),
        "{zone:?}"
    );
}

#[test]
fn records_made_by_someone_else_are_a_conflict_and_left_alone() {
    let d = want(ROUTE53, &["203.0.113.7"]);
    let hc = ids(&[("203.0.113.7", "hc-1")]);
    let taken = foreign(HOST, RecordType::A, Some("us/203.0.113.7"), "198.51.100.1");
    let plan = plan_hostname(
        HOST,
        Some(&d.hostnames[0]),
        std::slice::from_ref(&taken),
        &owner().txt_value(),
        &hc,
    );
    assert_eq!(plan.changes, []);
    let conflict = plan.conflict.unwrap();
    assert!(conflict.contains("A bootstrap.example.com"), "{conflict}");
    assert!(conflict.contains("us/203.0.113.7"), "{conflict}");
}

#[test]
fn another_owner_record_is_a_conflict() {
    let d = want(ROUTE53, &["203.0.113.7"]);
    let other = Owner {
        owner_id: "cluster-b".into(),
        ..owner()
    };
    let mut theirs = d.hostnames[0].owner.clone();
    theirs.values = vec![other.txt_value()];
    let observed = vec![super::resolve(&theirs, &BTreeMap::new())];
    let plan = plan_hostname(
        HOST,
        Some(&d.hostnames[0]),
        &observed,
        &owner().txt_value(),
        &ids(&[]),
    );
    assert_eq!(plan.changes, []);
    assert!(plan.conflict.unwrap().contains("cluster-b"));
}

#[test]
fn foreign_records_beside_ours_are_never_touched() {
    let d = want(ROUTE53, &["203.0.113.7"]);
    let hc = ids(&[("203.0.113.7", "hc-1")]);
    let others = vec![
        // Another cluster's weighted record under the same name, a simple TXT, a record with a
        // set identifier that only starts like ours.
        foreign(HOST, RecordType::A, Some("eu/198.51.100.1"), "198.51.100.1"),
        foreign(
            "_dnsaddr.bootstrap.example.com",
            RecordType::Txt,
            Some("eu"),
            "\"x\"",
        ),
        foreign(HOST, RecordType::A, Some("usa"), "198.51.100.2"),
    ];
    let plan = plan_hostname(
        HOST,
        Some(&d.hostnames[0]),
        &others,
        &owner().txt_value(),
        &hc,
    );
    assert!(plan.conflict.is_none(), "{:?}", plan.conflict);
    let zone = applied(others.clone(), &plan.changes);
    for record in &others {
        assert!(zone.contains(record), "{record:?} was changed");
    }
    // Deleting everything deletes ours only.
    let gone = plan_hostname(HOST, None, &zone, &owner().txt_value(), &hc);
    assert_eq!(applied(zone, &gone.changes), others);
}

#[test]
fn a_hostname_no_longer_wanted_loses_everything_the_operator_made() {
    let d = want(ROUTE53, &["203.0.113.7", "203.0.113.8"]);
    let hc = ids(&[("203.0.113.7", "hc-1"), ("203.0.113.8", "hc-2")]);
    let zone = applied(
        Vec::new(),
        &plan_hostname(HOST, Some(&d.hostnames[0]), &[], &owner().txt_value(), &hc).changes,
    );
    assert_eq!(zone.len(), 4);
    let plan = plan_hostname(HOST, None, &zone, &owner().txt_value(), &hc);
    assert_eq!(applied(zone, &plan.changes), []);
    assert_eq!(plan.owned, []);
}

#[test]
fn a_changed_set_identifier_moves_the_records_to_the_new_one() {
    let hc = ids(&[("203.0.113.7", "hc-1")]);
    let old = want(ROUTE53, &["203.0.113.7"]);
    let zone = applied(
        Vec::new(),
        &plan_hostname(
            HOST,
            Some(&old.hostnames[0]),
            &[],
            &owner().txt_value(),
            &hc,
        )
        .changes,
    );
    let new = want(
        "route53: {hostnames: [bootstrap.example.com]}\nsetIdentifier: us-2\nweight: 10",
        &["203.0.113.7"],
    );
    let plan = plan_hostname(
        HOST,
        Some(&new.hostnames[0]),
        &zone,
        &owner().txt_value(),
        &hc,
    );
    let zone = applied(zone, &plan.changes);
    assert_eq!(zone.len(), 3);
    assert!(
        zone.iter()
            .all(|r| r.key.set_identifier.as_deref().unwrap().starts_with("us-2")),
        "{zone:?}"
    );
}

fn check(id: &str, target: &str, protocol: &'static str, interval: i32) -> HealthCheck {
    HealthCheck {
        id: id.into(),
        caller_reference: format!("dig/uid-1/{id}"),
        version: 3,
        config: HealthCheckConfig {
            target: ip(target),
            protocol,
            port: 3000,
            path: "/health".into(),
            request_interval: interval,
            failure_threshold: 3,
            regions: Vec::new(),
        },
    }
}

#[test]
fn health_checks_are_made_kept_updated_replaced_and_deleted() {
    let d = want(
        "route53: {hostnames: [bootstrap.example.com]}\nhealthCheck: {failureThreshold: 5}",
        &["203.0.113.1", "203.0.113.2", "203.0.113.3"],
    );
    let observed = vec![
        // .1 needs an update (threshold), .2 a replacement (interval), .3 is missing, .4 is gone.
        check("hc-1", "203.0.113.1", "HTTP", 30),
        check("hc-2", "203.0.113.2", "HTTP", 10),
        check("hc-4", "203.0.113.4", "HTTP", 30),
    ];
    let plan = plan_health_checks(&d.health_checks, &observed);
    assert_eq!(plan.update.len(), 1);
    assert_eq!(plan.update[0].0, "hc-1");
    assert_eq!(plan.update[0].1, 3, "the version read is named");
    assert_eq!(plan.update[0].2.failure_threshold, 5);
    let made: Vec<String> = plan.create.iter().map(|c| c.target.to_string()).collect();
    assert_eq!(made, ["203.0.113.2", "203.0.113.3"]);
    assert_eq!(plan.delete, ["hc-2", "hc-4"]);
    assert_eq!(plan.keep, ids(&[("203.0.113.1", "hc-1")]));
}

#[test]
fn duplicate_health_checks_of_one_address_keep_one() {
    let d = want(ROUTE53, &["203.0.113.1"]);
    let observed = vec![
        check("hc-b", "203.0.113.1", "HTTP", 30),
        check("hc-a", "203.0.113.1", "HTTP", 30),
    ];
    let plan = plan_health_checks(&d.health_checks, &observed);
    assert_eq!(plan.keep, ids(&[("203.0.113.1", "hc-a")]));
    assert_eq!(plan.delete, ["hc-b"]);
    assert!(plan.create.is_empty() && plan.update.is_empty());
}

#[test]
fn alarms_are_put_when_missing_or_changed_and_deleted_when_unwanted() {
    let alarm = |name: &str, hc: &str| Alarm {
        name: name.into(),
        description: "d".into(),
        health_check_id: hc.into(),
        evaluation_periods: 1,
        actions: vec!["arn:aws:sns:us-east-1:123456789012:t".into()],
    };
    let wanted = vec![alarm("dig-uid-1-a", "hc-1"), alarm("dig-uid-1-b", "hc-2")];
    let observed = vec![
        alarm("dig-uid-1-a", "hc-1"),
        alarm("dig-uid-1-b", "hc-old"),
        alarm("dig-uid-1-c", "hc-3"),
    ];
    let plan = plan_alarms(&wanted, &observed);
    assert_eq!(plan.put, [alarm("dig-uid-1-b", "hc-2")]);
    assert_eq!(plan.delete, ["dig-uid-1-c"]);
    assert_eq!(plan_alarms(&wanted, &wanted), AlarmPlan::default());
}
