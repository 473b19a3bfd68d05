//! The desired AWS objects, one test per spec feature.

use super::*;
use crate::{crd::DnsSpec, route53::model::FailoverRole};

fn owner() -> Owner {
    Owner {
        namespace: "ns".into(),
        name: "net".into(),
        uid: "0c6a5a5e-0000-4000-8000-000000000001".into(),
        owner_id: "cluster-a".into(),
    }
}

fn spec(yaml: &str) -> DnsSpec {
    yaml_serde::from_str(yaml).unwrap()
}

fn ip(text: &str) -> Target {
    Target::Ip(text.into())
}

fn facts(targets: Vec<Target>) -> DnsFacts {
    DnsFacts {
        targets,
        dnsaddr: vec!["dnsaddr=/dns4/net-node-0.nodes.example.com/tcp/4001/p2p/12D3KooWx".into()],
    }
}

#[test]
fn nothing_without_route53_or_a_health_check() {
    let dns = spec("hostnames: [bootstrap.example.com]");
    assert!(desired(Some(&dns), &owner(), &facts(vec![ip("203.0.113.7")]), 3000).is_empty());
    assert!(!uses_aws(Some(&dns)));
    assert!(desired(None, &owner(), &DnsFacts::default(), 3000).is_empty());
}

#[test]
fn route53_mode_checks_every_address_and_writes_a_multivalue_record_each() {
    let dns = spec("route53: {hostnames: [bootstrap.example.com]}");
    let want = desired(
        Some(&dns),
        &owner(),
        &facts(vec![
            ip("203.0.113.8"),
            ip("203.0.113.7"),
            ip("2001:db8::1"),
        ]),
        3000,
    );
    let checked: Vec<String> = want
        .health_checks
        .iter()
        .map(|h| h.config.target.to_string())
        .collect();
    assert_eq!(checked, ["2001:db8::1", "203.0.113.7", "203.0.113.8"]);
    let check = &want.health_checks[0].config;
    assert_eq!(
        (check.protocol, check.port, check.path.as_str()),
        ("HTTP", 3000, "/health")
    );
    assert_eq!((check.request_interval, check.failure_threshold), (30, 3));
    let host = &want.hostnames[0];
    assert_eq!(host.set_identifier, "ns/net", "the default set identifier");
    let a: Vec<&DesiredRecord> = host
        .records
        .iter()
        .filter(|r| r.key.type_ == RecordType::A)
        .collect();
    assert_eq!(a.len(), 2);
    assert_eq!(
        a[0].key.set_identifier.as_deref(),
        Some("ns/net/203.0.113.7")
    );
    assert_eq!(a[0].values, ["203.0.113.7"]);
    assert_eq!(a[0].routing, Routing::MultiValue);
    assert_eq!(a[0].health_check, Some(ip("203.0.113.7")));
    assert_eq!(a[0].ttl, DEFAULT_TTL);
    let aaaa = host
        .records
        .iter()
        .find(|r| r.key.type_ == RecordType::Aaaa)
        .unwrap();
    assert_eq!(aaaa.values, ["2001:db8::1"]);
    let txt = host
        .records
        .iter()
        .find(|r| r.key.type_ == RecordType::Txt)
        .unwrap();
    assert_eq!(txt.key.name, "_dnsaddr.bootstrap.example.com");
    assert_eq!(
        txt.values,
        ["\"dnsaddr=/dns4/net-node-0.nodes.example.com/tcp/4001/p2p/12D3KooWx\""]
    );
    assert_eq!(host.owner.key.name, "_dig-owner.bootstrap.example.com");
    assert_eq!(
        host.owner.values,
        [
            "\"heritage=dig-operator,dig-operator/owner=cluster-a,dig-operator/resource=dignetwork/ns/net\""
        ]
    );
    let alarm = want
        .alarm_for(&owner(), &ip("203.0.113.7"), "hc-1", "/health")
        .unwrap();
    assert!(alarm.name.starts_with("dig-0c6a5a5e-"), "{}", alarm.name);
    assert_eq!(alarm.health_check_id, "hc-1");
    assert_eq!(alarm.evaluation_periods, 1);
}

#[test]
fn weighted_records_carry_the_weight_and_set_identifier() {
    let dns = spec(
        "route53: {hostnames: [bootstrap.example.com]}\nsetIdentifier: us-east-1\nweight: 20\nttl: 60",
    );
    let want = desired(Some(&dns), &owner(), &facts(vec![ip("203.0.113.7")]), 3000);
    let host = &want.hostnames[0];
    let a = &host.records[0];
    assert_eq!(a.routing, Routing::Weighted(20));
    assert_eq!(a.ttl, 60);
    assert_eq!(
        a.key.set_identifier.as_deref(),
        Some("us-east-1/203.0.113.7")
    );
    let txt = host.records.last().unwrap();
    assert_eq!(txt.key.set_identifier.as_deref(), Some("us-east-1"));
    assert_eq!(txt.routing, Routing::Weighted(20));
    assert_eq!(txt.health_check, Some(ip("203.0.113.7")));
}

#[test]
fn failover_puts_every_address_in_one_record_set() {
    let dns = spec(
        "route53: {hostnames: [bootstrap.example.com]}\nsetIdentifier: eu\nfailover: SECONDARY",
    );
    let want = desired(
        Some(&dns),
        &owner(),
        &facts(vec![ip("203.0.113.8"), ip("203.0.113.7")]),
        3000,
    );
    let a = &want.hostnames[0].records[0];
    assert_eq!(a.key.set_identifier.as_deref(), Some("eu"));
    assert_eq!(a.values, ["203.0.113.7", "203.0.113.8"]);
    assert_eq!(a.routing, Routing::Failover(FailoverRole::Secondary));
    assert_eq!(a.health_check, Some(ip("203.0.113.7")));
}

#[test]
fn a_load_balancer_hostname_becomes_a_cname_checked_by_name() {
    let dns = spec(
        "route53: {hostnames: [bootstrap.example.com]}\nhealthCheck: {protocol: HTTPS, port: 443, requestInterval: 10, regions: [us-west-2, eu-west-1, us-east-1]}",
    );
    let lb = Target::Hostname("abc.elb.us-east-1.amazonaws.com".into());
    let want = desired(Some(&dns), &owner(), &facts(vec![lb.clone()]), 3000);
    let check = &want.health_checks[0].config;
    assert_eq!(check.target, lb);
    assert_eq!(
        (check.protocol, check.port, check.request_interval),
        ("HTTPS", 443, 10)
    );
    assert_eq!(check.regions, ["eu-west-1", "us-east-1", "us-west-2"]);
    let cname = &want.hostnames[0].records[0];
    assert_eq!(cname.key.type_, RecordType::Cname);
    assert_eq!(cname.values, ["abc.elb.us-east-1.amazonaws.com"]);
    assert_eq!(cname.routing, Routing::Weighted(1));
    assert_eq!(cname.health_check, Some(lb));
}

#[test]
fn external_dns_with_a_health_check_checks_the_first_address_only() {
    let dns = spec(
        "hostnames: [bootstrap.example.com]\nhealthCheck: {alarm: {snsTopicArn: 'arn:aws:sns:us-east-1:123456789012:dig'}}",
    );
    let want = desired(
        Some(&dns),
        &owner(),
        &facts(vec![ip("203.0.113.8"), ip("203.0.113.7")]),
        3000,
    );
    assert_eq!(want.health_checks.len(), 1);
    assert_eq!(want.external_dns_health_check, Some(ip("203.0.113.7")));
    assert!(want.hostnames.is_empty(), "external-dns writes the records");
    assert_eq!(
        want.alarm.as_ref().unwrap().actions,
        ["arn:aws:sns:us-east-1:123456789012:dig"]
    );
}

#[test]
fn alarms_can_be_turned_off() {
    let dns = spec("route53: {hostnames: [b.example.com]}\nhealthCheck: {alarm: {enabled: false}}");
    let want = desired(Some(&dns), &owner(), &facts(vec![ip("203.0.113.7")]), 3000);
    assert!(
        want.alarm_for(&owner(), &ip("203.0.113.7"), "hc", "/health")
            .is_none()
    );
}

#[test]
fn no_address_yet_means_no_address_records_but_the_owner_and_dnsaddr_ones() {
    let dns = spec("route53: {hostnames: [bootstrap.example.com]}");
    let want = desired(Some(&dns), &owner(), &facts(Vec::new()), 3000);
    assert!(want.health_checks.is_empty());
    let host = &want.hostnames[0];
    assert_eq!(host.records.len(), 1);
    assert_eq!(host.records[0].key.type_, RecordType::Txt);
}
