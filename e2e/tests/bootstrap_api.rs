//! dig-bootstrap against the real server on loopback: every route, and a table of bad inputs
//! each answered with the right 4xx and a JSON body naming the field.

use std::time::Duration;

use dig_bootstrap::api::{PeersResponse, RecordsResponse, StorePeersQuery, TopologyResponse};
use dig_bootstrap::record::{RecordLimits, UnregisterRequest};
use dig_bootstrap::{ClientError, PeersQuery};
use dig_core::clock::now_ms;
use dig_e2e::bootstrap::{BootstrapServer, metric_value, record, signed_record};
use libp2p_identity::Keypair;
use serde_json::{Value, json};

#[tokio::test]
async fn every_route_answers() -> anyhow::Result<()> {
    let server = BootstrapServer::start(&["--rate-limit", "0"]).await?;
    let client = server.client()?;
    let http = server.http()?;

    let health = client.health().await?;
    assert_eq!(health.status, "ok");
    assert_eq!(health.peers, 0);

    let a = Keypair::generate_ed25519();
    let b = Keypair::generate_ed25519();
    let c = Keypair::generate_ed25519();
    let now = now_ms();
    let registered = client
        .register(&signed_record(
            &a,
            "testnet",
            &[("alpha", 1), ("beta", 2)],
            now,
        ))
        .await?;
    assert_eq!(registered.status, "registered");
    assert_eq!(registered.ttl_seconds, 180);
    tokio::time::sleep(Duration::from_millis(5)).await;
    client
        .register(&signed_record(&b, "testnet", &[("alpha", 2)], now))
        .await?;
    tokio::time::sleep(Duration::from_millis(5)).await;
    client
        .register(&signed_record(&c, "othernet", &[], now))
        .await?;
    // A heartbeat refreshes.
    let refreshed = client
        .register(&signed_record(
            &a,
            "testnet",
            &[("alpha", 1), ("beta", 2)],
            now + 1,
        ))
        .await?;
    assert_eq!(refreshed.status, "refreshed");

    let id = |k: &Keypair| k.public().to_peer_id().to_base58();

    // /peers: newest first, limit, network, includeStores.
    let all = client.peers(&PeersQuery::default()).await?;
    assert_eq!(all.total, 3);
    let order: Vec<_> = all.peers.iter().map(|p| p.peer_id.clone()).collect();
    assert_eq!(order, vec![id(&a), id(&c), id(&b)]);
    assert!(all.peers[0].stores.is_none());
    assert_eq!(all.peers[0].store_count, 2);
    let limited = client
        .peers(&PeersQuery {
            limit: Some(1),
            network: Some("testnet".into()),
            include_stores: true,
        })
        .await?;
    assert_eq!((limited.count, limited.total), (1, 2));
    assert_eq!(limited.peers[0].peer_id, id(&a));
    assert_eq!(limited.peers[0].stores.as_ref().map(Vec::len), Some(2));
    assert_eq!(limited.peers[0].addresses, vec!["/ip4/127.0.0.1/tcp/4001"]);

    // Raw curl-style query with camelCase names.
    let raw: PeersResponse = server
        .get_json("/peers?limit=5&network=othernet&includeStores=true")
        .await?;
    assert_eq!(raw.peers.len(), 1);
    assert_eq!(raw.peers[0].peer_id, id(&c));

    // /peers/store/{store}
    let holders = client.peers_with_store("alpha").await?;
    assert_eq!(holders.total, 2);
    assert_eq!(holders.store.as_deref(), Some("alpha"));
    let entry = &holders.peers[0].stores.as_ref().unwrap()[0];
    assert_eq!(entry.name, "alpha");
    let one = client
        .peers_with_store_query(
            "alpha",
            &StorePeersQuery {
                limit: Some(1),
                network: Some("testnet".into()),
            },
        )
        .await?;
    assert_eq!((one.count, one.total), (1, 2));
    assert_eq!(client.peers_with_store("nobody-has-it").await?.total, 0);

    // /stats
    let stats = client.stats().await?;
    assert_eq!(stats.total_peers, 3);
    assert_eq!(stats.active_peers, 3);
    assert_eq!(stats.total_stores, 2);
    assert_eq!(stats.total_registrations, 4);
    assert!((stats.average_stores_per_peer - 1.0).abs() < 1e-9);
    assert_eq!(stats.networks.get("testnet"), Some(&2));
    let raw_stats: Value = server.get_json("/stats").await?;
    for field in [
        "totalPeers",
        "activePeers",
        "totalStores",
        "averageStoresPerPeer",
        "totalRegistrations",
        "uptimeSeconds",
    ] {
        assert!(raw_stats.get(field).is_some(), "/stats lacks {field}");
    }

    // /topology
    let topology: TopologyResponse = client.topology().await?;
    assert_eq!(topology.total_peers, 3);
    let testnet = topology
        .networks
        .iter()
        .find(|n| n.network_id == "testnet")
        .unwrap();
    let alpha = testnet.stores.iter().find(|s| s.name == "alpha").unwrap();
    assert_eq!(
        (
            alpha.replicas,
            alpha.latest_lamport,
            alpha.replicas_at_latest
        ),
        (2, 2, 1)
    );
    assert!(testnet.under_replicated.contains(&"alpha".to_owned()));
    assert_eq!(topology.peers_by_version.get("dig-e2e/0.1.0"), Some(&3));

    // /records relays records that verify on their own.
    let records: RecordsResponse = server.get_json("/records").await?;
    assert_eq!(records.records.len(), 3);
    for relayed in &records.records {
        relayed.validate_and_verify(&RecordLimits::default())?;
    }

    // /unregister
    client.unregister(&b, "testnet").await?;
    assert_eq!(client.stats().await?.total_peers, 2);
    assert_eq!(client.peers_with_store("alpha").await?.total, 1);

    // /metrics
    let metrics = server.metrics().await?;
    assert_eq!(
        metric_value(&metrics, "dig_bootstrap_peers", &[]),
        Some(2.0)
    );
    assert_eq!(
        metric_value(&metrics, "dig_bootstrap_stores", &[]),
        Some(2.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "dig_bootstrap_registrations_total",
            &["result=\"registered\""]
        ),
        Some(3.0)
    );
    assert!(
        metric_value(
            &metrics,
            "dig_bootstrap_http_requests_total",
            &["route=\"/peers/store/{store}\"", "status=\"200\""]
        )
        .is_some(),
        "requests are labelled by route template:\n{metrics}"
    );
    assert!(metrics.contains("dig_bootstrap_http_request_duration_seconds_bucket"));

    // /openapi.json documents every route the server serves.
    let doc: Value = server.get_json("/openapi.json").await?;
    for (path, method) in dig_bootstrap::server::ROUTES {
        assert!(
            doc["paths"][path][method.to_lowercase()].is_object(),
            "{method} {path} is not in /openapi.json"
        );
        let answered = http
            .request(
                method.parse()?,
                server.url(&path.replace("{store}", "alpha")),
            )
            .send()
            .await?;
        assert_ne!(
            answered.status(),
            404,
            "{method} {path} is documented but not served"
        );
    }
    Ok(())
}

struct BadInput {
    what: &'static str,
    method: &'static str,
    path: String,
    body: Option<Vec<u8>>,
    status: u16,
    field: &'static str,
}

fn post(
    what: &'static str,
    path: &str,
    body: Vec<u8>,
    status: u16,
    field: &'static str,
) -> BadInput {
    BadInput {
        what,
        method: "POST",
        path: path.to_owned(),
        body: Some(body),
        status,
        field,
    }
}

fn get(what: &'static str, path: &str, status: u16, field: &'static str) -> BadInput {
    BadInput {
        what,
        method: "GET",
        path: path.to_owned(),
        body: None,
        status,
        field,
    }
}

fn json_of(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

#[tokio::test]
async fn bad_inputs_get_a_4xx_json_error_naming_the_field() -> anyhow::Result<()> {
    let server = BootstrapServer::start(&[
        "--rate-limit",
        "0",
        "--network",
        "testnet",
        "--max-stores-per-peer",
        "4",
        "--max-addresses",
        "2",
        "--max-body-bytes",
        "4096",
    ])
    .await?;
    let http = server.http()?;
    let keypair = Keypair::generate_ed25519();
    let now = now_ms();

    let good = signed_record(&keypair, "testnet", &[("alpha", 1)], now);
    let mut as_value = serde_json::to_value(&good)?;
    as_value["record"]["timestampMs"] = json!("yesterday");
    let wrong_type = json_of(&as_value);
    let mut as_value = serde_json::to_value(&good)?;
    as_value["record"]["stores"][0]["size"] = json!(-1);
    let negative_size = json_of(&as_value);
    let mut as_value = serde_json::to_value(&good)?;
    as_value["record"]["extra"] = json!(1);
    let unknown_field = json_of(&as_value);
    let mut as_value = serde_json::to_value(&good)?;
    as_value.as_object_mut().unwrap().remove("publicKey");
    let missing_key = json_of(&as_value);

    let mut tampered = good.clone();
    tampered.record.stores[0].lamport = 99;
    let other = Keypair::generate_ed25519();
    let mut foreign = record(&keypair, "testnet", &[], now);
    foreign.peer_id = other.public().to_peer_id().to_base58();
    let foreign = foreign.sign(&keypair)?;

    let stale = signed_record(&keypair, "testnet", &[], now - 600_000);
    let future = signed_record(&keypair, "testnet", &[], now + 600_000);
    let wrong_network = signed_record(&keypair, "mainnet", &[], now);
    let five: Vec<(&str, u64)> = vec![("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)];
    let too_many_stores = signed_record(&keypair, "testnet", &five, now);
    let mut r = record(&keypair, "testnet", &[], now);
    r.addresses = vec![
        "/ip4/127.0.0.1/tcp/1".into(),
        "/ip4/127.0.0.1/tcp/2".into(),
        "/ip4/127.0.0.1/tcp/3".into(),
    ];
    let too_many_addresses = r.sign(&keypair)?;
    let mut r = record(&keypair, "testnet", &[], now);
    r.addresses = vec!["/ip4/999.0.0.1/tcp/1".into()];
    let bad_address = r.sign(&keypair)?;
    let mut r = record(&keypair, "testnet", &[], now);
    r.addresses = vec![format!("/ip4/127.0.0.1/tcp/1/p2p/{}", r.peer_id)];
    let p2p_address = r.sign(&keypair)?;
    let named = |name: &str| signed_record(&keypair, "testnet", &[(name, 1)], now);
    let mut r = record(&keypair, "testnet", &[("alpha", 1)], now);
    r.stores[0].hash = "XYZ".into();
    let bad_hash = r.sign(&keypair)?;
    let mut r = record(&keypair, "testnet", &[], now);
    r.agent_version = "v".repeat(200);
    let long_agent = r.sign(&keypair)?;
    let mut r = record(&keypair, "testnet", &[], now);
    r.network_id = "bad/net".into();
    let bad_network_id = r.sign(&keypair)?;

    let mut removal = UnregisterRequest {
        peer_id: keypair.public().to_peer_id().to_base58(),
        network_id: "testnet".into(),
        timestamp_ms: now,
    }
    .sign(&keypair)?;
    removal.request.timestamp_ms += 1;

    let cases = vec![
        post(
            "malformed JSON",
            "/register",
            b"{not json".to_vec(),
            400,
            "body",
        ),
        post("empty body", "/register", Vec::new(), 400, "body"),
        post(
            "trailing garbage",
            "/register",
            [json_of(&good), b"x".to_vec()].concat(),
            400,
            "body",
        ),
        post(
            "wrong type",
            "/register",
            wrong_type,
            400,
            "record.timestampMs",
        ),
        post(
            "negative size",
            "/register",
            negative_size,
            400,
            "record.stores[0].size",
        ),
        post(
            "unknown field",
            "/register",
            unknown_field,
            400,
            "record.extra",
        ),
        post("missing publicKey", "/register", missing_key, 400, "body"),
        post(
            "oversize body",
            "/register",
            vec![b' '; 10_000],
            413,
            "body",
        ),
        post(
            "tampered record",
            "/register",
            json_of(&tampered),
            401,
            "signature",
        ),
        post(
            "key of another peer",
            "/register",
            json_of(&foreign),
            403,
            "publicKey",
        ),
        post(
            "stale timestamp",
            "/register",
            json_of(&stale),
            400,
            "record.timestampMs",
        ),
        post(
            "future timestamp",
            "/register",
            json_of(&future),
            400,
            "record.timestampMs",
        ),
        post(
            "wrong network",
            "/register",
            json_of(&wrong_network),
            403,
            "record.networkId",
        ),
        post(
            "bad network id",
            "/register",
            json_of(&bad_network_id),
            400,
            "record.networkId",
        ),
        post(
            "too many stores",
            "/register",
            json_of(&too_many_stores),
            400,
            "record.stores",
        ),
        post(
            "too many addresses",
            "/register",
            json_of(&too_many_addresses),
            400,
            "record.addresses",
        ),
        post(
            "bad multiaddr",
            "/register",
            json_of(&bad_address),
            400,
            "record.addresses[0]",
        ),
        post(
            "/p2p in address",
            "/register",
            json_of(&p2p_address),
            400,
            "record.addresses[0]",
        ),
        post(
            "path-like store",
            "/register",
            json_of(&named("../x")),
            400,
            "record.stores[0].name",
        ),
        post(
            "hidden store",
            "/register",
            json_of(&named(".x")),
            400,
            "record.stores[0].name",
        ),
        post(
            "store with space",
            "/register",
            json_of(&named("a b")),
            400,
            "record.stores[0].name",
        ),
        post(
            "bad hash",
            "/register",
            json_of(&bad_hash),
            400,
            "record.stores[0].hash",
        ),
        post(
            "long agent",
            "/register",
            json_of(&long_agent),
            400,
            "record.agentVersion",
        ),
        post(
            "tampered removal",
            "/unregister",
            json_of(&removal),
            401,
            "signature",
        ),
        post(
            "malformed removal",
            "/unregister",
            b"[]".to_vec(),
            400,
            "body",
        ),
        get("negative limit", "/peers?limit=-1", 400, "limit"),
        get("text limit", "/peers?limit=ten", 400, "limit"),
        get(
            "bad boolean",
            "/peers?includeStores=maybe",
            400,
            "includeStores",
        ),
        get("bad network", "/peers?network=a%2Fb", 400, "network"),
        get(
            "unknown parameter",
            "/peers?include_stores=true",
            400,
            "include_stores",
        ),
        get("repeated parameter", "/peers?limit=1&limit=2", 400, "limit"),
        get("path-like store", "/peers/store/..%2Fx", 400, "store"),
        get("bad store name", "/peers/store/.hidden", 400, "store"),
        get("bad cursor", "/records?after=x", 400, "after"),
        get("unknown route", "/nope", 404, "path"),
        BadInput {
            what: "wrong method",
            method: "DELETE",
            path: "/register".into(),
            body: None,
            status: 405,
            field: "method",
        },
    ];

    for case in &cases {
        let mut request = http.request(case.method.parse()?, server.url(&case.path));
        if let Some(body) = &case.body {
            request = request
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.text().await?;
        assert_eq!(status, case.status, "{}: {text}", case.what);
        assert!(
            content_type.starts_with("application/json"),
            "{}: {content_type}",
            case.what
        );
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {text}", case.what));
        assert!(body["error"].is_string(), "{}: {text}", case.what);
        assert!(body["detail"].is_string(), "{}: {text}", case.what);
        assert_eq!(body["field"], case.field, "{}: {text}", case.what);
    }

    // A replay of an accepted record is refused.
    let client = server.client()?;
    client.register(&good).await?;
    match client.register(&good).await {
        Err(ClientError::Rejected {
            status,
            error,
            field,
            ..
        }) => {
            assert_eq!((status, error.as_str()), (409, "replayed_record"));
            assert_eq!(field.as_deref(), Some("record.timestampMs"));
        }
        other => panic!("replay accepted or wrong error: {other:?}"),
    }
    // Nothing crashed, nothing answered 5xx, and refusals are counted.
    assert_eq!(client.health().await?.peers, 1);
    let metrics = server.metrics().await?;
    assert!(
        !metrics.lines().any(|l| l.contains("status=\"5")),
        "a request answered 5xx:\n{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "dig_bootstrap_registrations_total",
            &["result=\"invalid_signature\""]
        ),
        Some(1.0)
    );
    Ok(())
}

#[tokio::test]
async fn command_line_errors_name_the_flag_and_help_lists_every_flag() -> anyhow::Result<()> {
    let binary = dig_e2e::process::binary_path("dig-bootstrap")?;
    let output = std::process::Command::new(&binary)
        .args(["--peer-ttl", "soon"])
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--peer-ttl"), "{stderr}");

    let output = std::process::Command::new(&binary)
        .env("DIG_BOOTSTRAP_MAX_PEERS", "lots")
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--max-peers"), "{stderr}");

    let help = std::process::Command::new(&binary).arg("--help").output()?;
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--peer-ttl",
        "--max-peers",
        "--rate-limit",
        "--trusted-proxy",
        "--peer-bootstrap",
        "--tls-cert",
        "--tls-key",
        "--log-format",
        "--max-stores-per-peer",
        "--max-addresses",
        "--max-body-bytes",
        "--max-clock-skew",
        "--sweep-interval",
        "--federation-interval",
        "DIG_BOOTSTRAP_LISTEN",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    Ok(())
}
