//! The operator writing Route53 records, health checks and CloudWatch alarms itself
//! (`spec.dns.route53`), against moto's server (the AWS stand-in) on loopback, on a real control
//! plane: made with the right values, updated on a spec change and when the load balancer's
//! address changes, throttling survived (a small proxy in front of moto answers `Throttling` for a
//! while), a missing hosted zone and a taken name reported as conditions and events, records
//! made by others never touched, a health check made for external-dns's records with its id in
//! the annotation, and everything the network made removed when it is deleted (its
//! finalizer held until then).
//!
//! A second test follows the `_dnsaddr` records from a real node's API through Route53 to a node
//! that joins through them.
//!
//! Skipped with a message when the control-plane tools or moto cannot be had, unless
//! DIG_E2E_REQUIRE_CLUSTER=1 (set by e2e/test-all.sh).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use aws_sdk_cloudwatch::types::MetricAlarm;
use aws_sdk_route53::{
    config::{BehaviorVersion, Credentials, Region},
    types::{
        Change, ChangeAction, ChangeBatch, HealthCheck, ResourceRecord, ResourceRecordSet, RrType,
    },
};
use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::Response,
};
use dig_e2e::{
    cluster::TestCluster,
    dns::{DnsResponder, Zone},
    moto::MotoServer,
    network::{NodeSpec, SidecarNode},
    operator::{
        NETWORK_KIND, OperatorOptions, OperatorProcess, condition, dig_manifest, event_notes,
        get_object, install_crds,
    },
    wait::eventually,
};
use serde_json::{Value, json};

const NAMESPACE: &str = "dns";
const WAIT: Duration = Duration::from_secs(120);
const ZONE: &str = "dig.test";
const HOSTNAME: &str = "bootstrap.dig.test";
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:dig-alerts";

/// Answers `Throttling` (as Route53 and CloudWatch do) while switched on, else forwards to moto.
#[derive(Clone)]
struct Proxy {
    upstream: String,
    throttle: Arc<AtomicBool>,
    throttled: Arc<AtomicU64>,
    http: reqwest::Client,
}

async fn forward(
    State(proxy): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if proxy.throttle.load(Ordering::SeqCst) {
        proxy.throttled.fetch_add(1, Ordering::SeqCst);
        let namespace = if uri.path().starts_with("/2013-04-01/") {
            "https://route53.amazonaws.com/doc/2013-04-01/"
        } else {
            "http://monitoring.amazonaws.com/doc/2010-08-01/"
        };
        let xml = format!(
            "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{namespace}\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>e2e</RequestId></ErrorResponse>"
        );
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .header("content-type", "text/xml")
            .body(Body::from(xml))
            .unwrap();
    }
    let url = format!(
        "{}{}",
        proxy.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut request = proxy.http.request(method, &url).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let mut response = Response::builder().status(answer.status().as_u16());
            for (name, value) in answer.headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    response = response.header(name, value);
                }
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            response.body(Body::from(bytes)).unwrap()
        }
        Err(error) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from(error.to_string()))
            .unwrap(),
    }
}

/// Starts the proxy on a free loopback port; returns its endpoint.
async fn start_proxy(proxy: Proxy) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(forward).with_state(proxy);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

/// The test's own view of moto, through the same SDK.
struct Aws {
    route53: aws_sdk_route53::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
}

impl Aws {
    async fn new(endpoint: &str) -> Aws {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("e2e", "e2e", None, None, "e2e"))
            .load()
            .await;
        Aws {
            route53: aws_sdk_route53::Client::new(&config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
        }
    }

    async fn create_zone(&self, name: &str) -> String {
        let out = self
            .route53
            .create_hosted_zone()
            .name(name)
            .caller_reference(format!("e2e-{name}"))
            .send()
            .await
            .expect("create the hosted zone");
        out.hosted_zone()
            .unwrap()
            .id()
            .trim_start_matches("/hostedzone/")
            .to_string()
    }

    async fn change(&self, zone: &str, action: ChangeAction, record: ResourceRecordSet) {
        self.route53
            .change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(
                ChangeBatch::builder()
                    .changes(
                        Change::builder()
                            .action(action)
                            .resource_record_set(record)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("change a record");
    }

    async fn records(&self, zone: &str) -> Vec<ResourceRecordSet> {
        self.route53
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .max_items(300)
            .send()
            .await
            .expect("list the records")
            .resource_record_sets()
            .to_vec()
    }

    async fn health_checks(&self, uid: &str) -> Vec<HealthCheck> {
        self.route53
            .list_health_checks()
            .send()
            .await
            .expect("list the health checks")
            .health_checks()
            .iter()
            .filter(|h| h.caller_reference().starts_with(&format!("dig/{uid}/")))
            .cloned()
            .collect()
    }

    async fn alarms(&self, uid: &str) -> Vec<MetricAlarm> {
        self.cloudwatch
            .describe_alarms()
            .alarm_name_prefix(format!("dig-{uid}-"))
            .send()
            .await
            .expect("describe the alarms")
            .metric_alarms()
            .to_vec()
    }
}

fn record(name: &str, type_: RrType, set: Option<&str>, value: &str) -> ResourceRecordSet {
    let mut builder = ResourceRecordSet::builder()
        .name(name)
        .r#type(type_)
        .ttl(300)
        .resource_records(ResourceRecord::builder().value(value).build().unwrap());
    if let Some(set) = set {
        builder = builder.set_identifier(set).weight(5);
    }
    builder.build().unwrap()
}

/// Equal but for the trailing dot Route53 adds to names.
fn same_record(a: &ResourceRecordSet, b: &ResourceRecordSet) -> bool {
    let name = |r: &ResourceRecordSet| r.name().trim_end_matches('.').to_string();
    name(a) == name(b)
        && a.r#type() == b.r#type()
        && a.set_identifier() == b.set_identifier()
        && a.weight() == b.weight()
        && a.ttl() == b.ttl()
        && a.resource_records() == b.resource_records()
}

fn ours<'a>(records: &'a [ResourceRecordSet], set_prefix: &str) -> Vec<&'a ResourceRecordSet> {
    records
        .iter()
        .filter(|r| {
            r.set_identifier()
                .is_some_and(|s| s == set_prefix || s.starts_with(&format!("{set_prefix}/")))
        })
        .collect()
}

fn apply(cluster: &TestCluster, manifest: &Value) {
    cluster
        .kubectl_with_stdin(["apply", "-f", "-"], &manifest.to_string())
        .unwrap_or_else(|e| panic!("kubectl apply {manifest}: {e}"));
}

fn network(cluster: &TestCluster, name: &str) -> Option<Value> {
    get_object(cluster, NAMESPACE, NETWORK_KIND, name).unwrap_or_else(|e| panic!("{e}"))
}

fn dns_condition(object: &Value) -> (String, String, String) {
    let c = condition(object, "DnsSynced").cloned().unwrap_or_default();
    (
        c["status"].as_str().unwrap_or_default().to_string(),
        c["reason"].as_str().unwrap_or_default().to_string(),
        c["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// Waits until the DigNetwork's `DnsSynced` condition has `status` and `reason`.
async fn until_condition(cluster: &TestCluster, name: &str, status: &str, reason: &str) -> Value {
    eventually(
        &format!("DnsSynced {status}/{reason} on {name}"),
        WAIT,
        || {
            let object = network(cluster, name);
            let result = match object {
                Some(o) if dns_condition(&o).0 == status && dns_condition(&o).1 == reason => Ok(o),
                other => Err(format!("{:?}", other.as_ref().map(dns_condition))),
            };
            async move { result }
        },
    )
    .await
}

fn events_with_reason(cluster: &TestCluster, reason: &str) -> Vec<String> {
    event_notes(cluster, NAMESPACE, reason).expect("kubectl get events")
}

fn set_ingress(cluster: &TestCluster, network: &str, ip: &str) {
    cluster
        .kubectl([
            "patch",
            "service",
            &format!("{network}-bootstrap"),
            "-n",
            NAMESPACE,
            "--subresource=status",
            "--type=merge",
            "-p",
            &json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}).to_string(),
        ])
        .unwrap_or_else(|e| panic!("patch the load balancer status: {e}"));
}

fn route53_network(name: &str, hostname: &str, set: &str, weight: i64) -> Value {
    dig_manifest(
        NETWORK_KIND,
        NAMESPACE,
        name,
        json!({
            "bootstrap": {"replicas": 1, "service": {"type": "LoadBalancer"}},
            "nodes": {"replicas": 0},
            "dns": {
                "route53": {"hostnames": [hostname]},
                "setIdentifier": set,
                "weight": weight,
                "ttl": 60,
                "healthCheck": {"failureThreshold": 2, "alarm": {"snsTopicArn": TOPIC}},
            },
        }),
    )
}

/// A control plane with the CRDs and the test namespace, moto with the hosted zone `dig.test`,
/// and an SDK client of moto; `None` when a part cannot be had (see the module doc).
async fn cluster_and_moto(name: &str) -> Option<(TestCluster, MotoServer, Aws, String)> {
    let cluster = TestCluster::start_or_skip(name)?;
    let moto = MotoServer::start_or_skip(name).await?;
    dig_core::crypto::install_crypto_provider();
    install_crds(&cluster).expect("apply the CRDs");
    cluster
        .kubectl(["create", "namespace", NAMESPACE])
        .expect("create the namespace");
    let aws = Aws::new(&moto.endpoint).await;
    let zone = aws.create_zone(ZONE).await;
    Some((cluster, moto, aws, zone))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route53_records_health_checks_and_alarms_follow_the_network() {
    let Some((cluster, moto, aws, zone)) = cluster_and_moto("operator-route53").await else {
        return;
    };
    let throttle = Arc::new(AtomicBool::new(false));
    let throttled = Arc::new(AtomicU64::new(0));
    let proxy = start_proxy(Proxy {
        upstream: moto.endpoint.clone(),
        throttle: throttle.clone(),
        throttled: throttled.clone(),
        http: reqwest::Client::new(),
    })
    .await;
    // Records of someone else: another cluster's weighted record and TXT under our hostname, and
    // an unrelated name. None may ever change.
    let foreign = [
        record(
            HOSTNAME,
            RrType::A,
            Some("eu-west-1/198.51.100.1"),
            "198.51.100.1",
        ),
        record(
            &format!("_dnsaddr.{HOSTNAME}"),
            RrType::Txt,
            Some("eu-west-1"),
            "\"dnsaddr=/dns4/n.eu.dig.test/tcp/4001/p2p/12D3KooWGzBSTgZGMhRyDNkD1NFMXqcBMsZmzhzEjGi1bP8zjcqQ\"",
        ),
        record("www.dig.test", RrType::A, None, "198.51.100.2"),
    ];
    for r in &foreign {
        aws.change(&zone, ChangeAction::Create, r.clone()).await;
    }
    let foreign_intact = |records: &[ResourceRecordSet]| {
        foreign
            .iter()
            .all(|f| records.iter().any(|r| same_record(r, f)))
    };

    let operator = OperatorProcess::start_for(
        &cluster,
        OperatorOptions {
            name: "operator-route53".into(),
            namespaces: vec![NAMESPACE.into()],
            extra_args: vec![
                format!("--aws-endpoint-url={proxy}"),
                "--route53-owner-id=e2e-cluster".into(),
                "--aws-resync-seconds=10".into(),
            ],
            envs: vec![
                ("AWS_ACCESS_KEY_ID".into(), "e2e".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "e2e".into()),
                ("AWS_REGION".into(), "us-east-1".into()),
                ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ],
            ..OperatorOptions::default()
        },
    )
    .await
    .expect("start the operator");

    // 1. Made with the right values once the load balancer has an address.
    apply(&cluster, &route53_network("net", HOSTNAME, "us-east-1", 10));
    eventually("the bootstrap Service", WAIT, || {
        let found = get_object(&cluster, NAMESPACE, "service", "net-bootstrap")
            .ok()
            .flatten();
        async move { found.ok_or_else(|| "absent".to_string()) }
    })
    .await;
    set_ingress(&cluster, "net", "203.0.113.7");
    let object = eventually("the health check in the status", WAIT, || {
        let object = network(&cluster, "net");
        let result = match object {
            Some(o)
                if o["status"]["dns"]["healthChecks"][0]["address"] == "203.0.113.7"
                    && dns_condition(&o).0 == "True" =>
            {
                Ok(o)
            }
            other => Err(format!("{:?}", other.map(|o| o["status"].clone()))),
        };
        async move { result }
    })
    .await;
    let uid = object["metadata"]["uid"].as_str().unwrap().to_string();
    assert!(
        object["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "dig.net/aws-dns"),
        "{object}"
    );
    let hc_id = object["status"]["dns"]["healthChecks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let checks = aws.health_checks(&uid).await;
    assert_eq!(checks.len(), 1, "{checks:?}");
    let config = checks[0].health_check_config().unwrap();
    assert_eq!(checks[0].id(), hc_id);
    assert_eq!(config.r#type().as_str(), "HTTP");
    assert_eq!(config.ip_address(), Some("203.0.113.7"));
    assert_eq!(config.port(), Some(3000));
    assert_eq!(config.resource_path(), Some("/health"));
    assert_eq!(config.failure_threshold(), Some(2));
    let records = aws.records(&zone).await;
    let mine = ours(&records, "us-east-1");
    let a = mine
        .iter()
        .find(|r| r.r#type() == &RrType::A)
        .unwrap_or_else(|| panic!("no A record: {records:?}"));
    assert_eq!(a.name(), format!("{HOSTNAME}."));
    assert_eq!(a.set_identifier(), Some("us-east-1/203.0.113.7"));
    assert_eq!(a.weight(), Some(10));
    assert_eq!(a.ttl(), Some(60));
    assert_eq!(a.health_check_id(), Some(hc_id.as_str()));
    assert_eq!(a.resource_records()[0].value(), "203.0.113.7");
    let owner = mine
        .iter()
        .find(|r| r.name() == format!("_dig-owner.{HOSTNAME}."))
        .unwrap_or_else(|| panic!("no owner record: {records:?}"));
    assert_eq!(
        owner.resource_records()[0].value(),
        "\"heritage=dig-operator,dig-operator/owner=e2e-cluster,dig-operator/resource=dignetwork/dns/net\""
    );
    let alarms = aws.alarms(&uid).await;
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0].namespace(), Some("AWS/Route53"));
    assert_eq!(alarms[0].metric_name(), Some("HealthCheckStatus"));
    assert_eq!(alarms[0].dimensions()[0].value(), Some(hc_id.as_str()));
    assert_eq!(alarms[0].alarm_actions(), [TOPIC]);
    assert_eq!(alarms[0].threshold(), Some(1.0));
    assert!(foreign_intact(&records), "{records:?}");
    assert!(
        !events_with_reason(&cluster, "DnsSynced").is_empty(),
        "an event says what was made"
    );

    // 2. A spec change is reconciled: the record and the health check are updated in place.
    let mut changed = route53_network("net", HOSTNAME, "us-east-1", 30);
    changed["spec"]["dns"]["ttl"] = json!(120);
    changed["spec"]["dns"]["healthCheck"]["failureThreshold"] = json!(4);
    apply(&cluster, &changed);
    eventually("weight 30, TTL 120, threshold 4", WAIT, || async {
        let records = aws.records(&zone).await;
        let checks = aws.health_checks(&uid).await;
        let a = ours(&records, "us-east-1")
            .into_iter()
            .find(|r| r.r#type() == &RrType::A)
            .cloned();
        match (a, checks.first()) {
            (Some(a), Some(check))
                if a.weight() == Some(30)
                    && a.ttl() == Some(120)
                    && check.id() == hc_id
                    && check.health_check_config().unwrap().failure_threshold() == Some(4) =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // 3. A new load balancer address: a new health check, record and alarm; the old ones go.
    set_ingress(&cluster, "net", "203.0.113.9");
    let new_hc = eventually("records and checks of 203.0.113.9", WAIT, || async {
        let records = aws.records(&zone).await;
        let checks = aws.health_checks(&uid).await;
        let alarms = aws.alarms(&uid).await;
        let a: Vec<_> = ours(&records, "us-east-1")
            .into_iter()
            .filter(|r| r.r#type() == &RrType::A)
            .map(|r| {
                (
                    r.resource_records()[0].value().to_string(),
                    r.health_check_id(),
                )
            })
            .collect();
        match checks.as_slice() {
            [check]
                if check.health_check_config().unwrap().ip_address() == Some("203.0.113.9")
                    && a == [("203.0.113.9".to_string(), Some(check.id()))]
                    && alarms.len() == 1
                    && alarms[0].dimensions()[0].value() == Some(check.id()) =>
            {
                Ok(check.id().to_string())
            }
            _ => Err(format!("{a:?} {checks:?} {alarms:?}")),
        }
    })
    .await;
    assert_ne!(new_hc, hc_id);

    // 4. Throttling: reported as a condition and an event, retried with backoff, then done.
    throttle.store(true, Ordering::SeqCst);
    apply(&cluster, &route53_network("net", HOSTNAME, "us-east-1", 40));
    let object = until_condition(&cluster, "net", "False", "AwsThrottled").await;
    let message = dns_condition(&object).2;
    assert!(
        message.contains("Throttling") || message.contains("Rate exceeded"),
        "{message}"
    );
    eventually("an AwsThrottled event", WAIT, || {
        let found = events_with_reason(&cluster, "AwsThrottled");
        async move {
            if found.is_empty() {
                Err("none".to_string())
            } else {
                Ok(())
            }
        }
    })
    .await;
    // Whatever the operator does meanwhile, it backs off: a few calls (three attempts each) per
    // retry, not a storm.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = throttled.load(Ordering::SeqCst);
    assert!(during < 60, "{during} throttled calls in ~10 s: no backoff");
    assert!(
        network(&cluster, "net").unwrap()["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready"),
        "the rest of the status is still written"
    );
    throttle.store(false, Ordering::SeqCst);
    until_condition(&cluster, "net", "True", "Synced").await;
    let records = aws.records(&zone).await;
    assert!(
        ours(&records, "us-east-1")
            .iter()
            .any(|r| r.r#type() == &RrType::A && r.weight() == Some(40)),
        "{records:?}"
    );

    // 5. A hostname without a hosted zone, and a name another DigNetwork owns.
    apply(
        &cluster,
        &route53_network("nozone", "bootstrap.nozone.test", "a", 1),
    );
    let object = until_condition(&cluster, "nozone", "False", "HostedZoneNotFound").await;
    assert!(
        dns_condition(&object).2.contains("bootstrap.nozone.test"),
        "{object}"
    );
    apply(
        &cluster,
        &route53_network("rival", HOSTNAME, "us-east-1", 1),
    );
    let object = until_condition(&cluster, "rival", "False", "RecordConflict").await;
    assert!(
        dns_condition(&object).2.contains("dignetwork/dns/net"),
        "names the owner: {object}"
    );
    let records = aws.records(&zone).await;
    assert!(
        ours(&records, "us-east-1")
            .iter()
            .any(|r| r.r#type() == &RrType::A && r.weight() == Some(40)),
        "the rival changed nothing: {records:?}"
    );
    assert!(foreign_intact(&records), "{records:?}");

    // 6. external-dns writes the records, the operator makes the health check and hands its id
    // over in the Service's annotation.
    apply(
        &cluster,
        &dig_manifest(
            NETWORK_KIND,
            NAMESPACE,
            "edns",
            json!({
                "bootstrap": {"replicas": 1},
                "nodes": {"replicas": 0},
                "dns": {
                    "hostnames": ["edns.dig.test"],
                    "setIdentifier": "primary",
                    "failover": "PRIMARY",
                    "healthCheck": {},
                },
            }),
        ),
    );
    eventually(
        "the health check id in the external-dns annotation",
        WAIT,
        || {
            let object = network(&cluster, "edns");
            let service = get_object(&cluster, NAMESPACE, "service", "edns-bootstrap")
                .ok()
                .flatten();
            async move {
                let id = object
                    .as_ref()
                    .and_then(|o| o["status"]["dns"]["healthChecks"][0]["id"].as_str())
                    .map(str::to_string);
                let annotation = service.as_ref().and_then(|s| {
                    s["metadata"]["annotations"]["external-dns.kubernetes.io/aws-health-check-id"]
                        .as_str()
                        .map(str::to_string)
                });
                match (id, annotation) {
                    (Some(id), Some(annotation)) if id == annotation => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
    let records = aws.records(&zone).await;
    assert!(
        !records.iter().any(|r| r.name().starts_with("edns.")),
        "external-dns, not the operator, writes edns.dig.test: {records:?}"
    );

    // 7. Deleting the networks removes exactly what they made.
    for name in ["net", "nozone", "rival", "edns"] {
        cluster
            .kubectl([
                "delete",
                "dignetwork",
                name,
                "-n",
                NAMESPACE,
                "--wait=false",
            ])
            .expect("delete the network");
    }
    for name in ["net", "nozone", "rival", "edns"] {
        eventually(&format!("DigNetwork {name} gone"), WAIT, || {
            let object = network(&cluster, name);
            async move {
                match object {
                    None => Ok(()),
                    Some(o) => Err(format!("{}", o["metadata"]["finalizers"])),
                }
            }
        })
        .await;
    }
    let records = aws.records(&zone).await;
    assert!(ours(&records, "us-east-1").is_empty(), "{records:?}");
    assert!(
        !records.iter().any(|r| r.name().starts_with("_dig-owner.")),
        "{records:?}"
    );
    assert!(foreign_intact(&records), "{records:?}");
    assert!(aws.health_checks(&uid).await.is_empty());
    assert!(aws.alarms(&uid).await.is_empty());
    let leftover = aws
        .route53
        .list_health_checks()
        .send()
        .await
        .unwrap()
        .health_checks()
        .len();
    assert_eq!(leftover, 0, "every network's health checks are gone");
    drop(operator);
    drop(moto);
}

/// The whole DNS bootstrap path: the operator asks a real node (a `dig-sidecar` on loopback,
/// playing the exposed pod, whose status is given its address) for its peer id, writes
/// `_dnsaddr.<hostname>` into Route53 (moto), and a node with no registry joins through those
/// records, served by the tests' DNS responder. Before that, an operator without AWS
/// credentials says so in the condition and applies the network all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposed_nodes_reach_the_dnsaddr_records_a_node_joins_through() {
    let Some((cluster, moto, aws, zone)) = cluster_and_moto("operator-dnsaddr").await else {
        return;
    };

    let dir = tempfile::tempdir().unwrap();
    let p2p_port = dig_e2e::process::free_loopback_port().unwrap();
    let exposed = SidecarNode::start(
        NodeSpec::loopback("exposed", "dnsaddr", dir.path().join("exposed"), &[])
            .arg("--listen")
            .arg(format!("/ip4/127.0.0.1/tcp/{p2p_port}")),
    )
    .await
    .expect("start the exposed node");

    // First an operator without any AWS credentials (no IRSA, no keys, no profile, no instance
    // role): the network's own objects are made, DNS is reported, not attempted blindly.
    let no_credentials = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
    ];
    let options = |name: &str, envs: &[(&str, &str)]| OperatorOptions {
        name: name.into(),
        namespaces: vec![NAMESPACE.into()],
        extra_args: vec![format!("--aws-endpoint-url={}", moto.endpoint)],
        envs: envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..OperatorOptions::default()
    };
    let blind = OperatorProcess::start_for(&cluster, options("operator-blind", &no_credentials))
        .await
        .expect("start the operator without credentials");
    apply(
        &cluster,
        &dig_manifest(
            NETWORK_KIND,
            NAMESPACE,
            "dnsaddr",
            json!({
                "bootstrap": {"replicas": 1},
                "nodes": {
                    "replicas": 1,
                    "p2pPort": p2p_port,
                    "apiPort": exposed.api.port(),
                    "exposure": {"type": "LoadBalancer", "announceDomain": "nodes.dig.test"},
                },
                "dns": {"route53": {"hostnames": [HOSTNAME]}},
            }),
        ),
    );
    let object = until_condition(&cluster, "dnsaddr", "False", "AwsInvalidCredentials").await;
    assert!(
        dns_condition(&object).2.contains("credential"),
        "says what is missing: {object}"
    );
    assert!(
        get_object(&cluster, NAMESPACE, "statefulset", "dnsaddr-node")
            .unwrap()
            .is_some(),
        "the network's own objects are applied all the same"
    );
    drop(blind);
    let mut with_credentials = no_credentials.to_vec();
    with_credentials.extend([
        ("AWS_ACCESS_KEY_ID", "e2e"),
        ("AWS_SECRET_ACCESS_KEY", "e2e"),
    ]);
    let operator =
        OperatorProcess::start_for(&cluster, options("operator-dnsaddr", &with_credentials))
            .await
            .expect("start the operator with credentials");

    // kwok reports the pod Ready with a made-up IP; the node it stands for answers on loopback.
    eventually("the node pod Ready", WAIT, || {
        let pod = get_object(&cluster, NAMESPACE, "pod", "dnsaddr-node-0")
            .ok()
            .flatten();
        async move {
            match pod {
                Some(p)
                    if p["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    }) =>
                {
                    Ok(())
                }
                other => Err(format!("{:?}", other.map(|p| p["status"].clone()))),
            }
        }
    })
    .await;
    cluster
        .kubectl([
            "patch",
            "pod",
            "dnsaddr-node-0",
            "-n",
            NAMESPACE,
            "--subresource=status",
            "--type=merge",
            "-p",
            &json!({"status": {"podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}}).to_string(),
        ])
        .expect("give the pod the node's address");
    // A change of the network makes the operator look again at once.
    cluster
        .kubectl([
            "annotate",
            "dignetwork",
            "dnsaddr",
            "-n",
            NAMESPACE,
            "e2e/pod-address=loopback",
        ])
        .expect("annotate the network");

    let tcp_entry = format!(
        "dnsaddr=/dns4/dnsaddr-node-0.nodes.dig.test/tcp/{p2p_port}/p2p/{}",
        exposed.peer_id
    );
    let values = eventually("the _dnsaddr record in Route53", WAIT, || async {
        let records = aws.records(&zone).await;
        let txt = records
            .iter()
            .find(|r| r.name() == format!("_dnsaddr.{HOSTNAME}.") && r.r#type() == &RrType::Txt);
        let values: Vec<String> = txt
            .map(|r| {
                r.resource_records()
                    .iter()
                    .map(|v| v.value().trim_matches('"').to_string())
                    .collect()
            })
            .unwrap_or_default();
        if values.contains(&tcp_entry) {
            Ok(values)
        } else {
            Err(format!("{records:?}"))
        }
    })
    .await;
    assert!(
        values.iter().any(|v| v.contains("/quic-v1/p2p/")),
        "the QUIC twin: {values:?}"
    );
    // The status is patched after the records are written: wait for it too.
    eventually("the _dnsaddr entries in the status", WAIT, || async {
        let status = network(&cluster, "dnsaddr").ok_or_else(|| "no network".to_string())?;
        let listed = status["status"]["dns"]["dnsaddr"]
            .as_array()
            .is_some_and(|entries| entries.iter().any(|v| v == tcp_entry.as_str()));
        if listed {
            Ok(())
        } else {
            Err(format!("{status}"))
        }
    })
    .await;

    let dns_zone = Zone::default();
    dns_zone.a(
        "dnsaddr-node-0.nodes.dig.test",
        std::net::Ipv4Addr::LOCALHOST,
    );
    for value in &values {
        dns_zone.txt(&format!("_dnsaddr.{HOSTNAME}"), value);
    }
    let dns = DnsResponder::start(dns_zone).await.unwrap();
    let joiner = SidecarNode::start(
        NodeSpec::loopback("joiner", "dnsaddr", dir.path().join("joiner"), &[])
            .arg("--bootstrap")
            .arg(format!("/dnsaddr/{HOSTNAME}"))
            .arg("--nameserver")
            .arg(dns.address.to_string()),
    )
    .await
    .expect("start the joiner");
    joiner.wait_connected_to(&[&exposed.peer_id], WAIT).await;
    drop(operator);
}
