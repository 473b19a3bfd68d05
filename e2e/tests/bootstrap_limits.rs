//! dig-bootstrap against hostile clients, on the real server over loopback: slow and idle
//! connections on every protocol (HTTP/1 headers, body and keep-alive, HTTP/2 with PINGs, TLS
//! handshakes), the connection cap, the state budget (507, removals of unknown keys), rate-limit
//! quotas per IPv6 prefix, `/records` pages bounded in bytes, and the federation client's cap on
//! what it reads from a sibling.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dig_bootstrap::api::RecordsResponse;
use dig_core::clock::now_ms;
use dig_e2e::bootstrap::{BootstrapServer, TlsFiles, metric_value, signed_record};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use libp2p_identity::Keypair;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a raw connection read until the server closed it, and when it closed (`None`: still
/// open at the deadline).
struct Closed {
    bytes: Vec<u8>,
    after: Option<Duration>,
}

impl Closed {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Reads `stream` until the server closes it or `limit` passes.
async fn read_until_closed<R: AsyncReadExt + Unpin>(stream: &mut R, limit: Duration) -> Closed {
    let started = Instant::now();
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return Closed { bytes, after: None },
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Closed {
                    bytes,
                    after: Some(started.elapsed()),
                };
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&buffer[..n]),
        }
    }
}

/// `GET /health` on a raw keep-alive connection; the answer's status line.
async fn get_health(stream: &mut TcpStream) -> anyhow::Result<String> {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    // /health answers a short JSON body: read until it is complete.
    while !answer.ends_with(b"}") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await??;
        anyhow::ensure!(
            n > 0,
            "closed before answering: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// Starts a raw POST /register whose body never arrives, so that its connection stays busy.
async fn busy_connection(address: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(address).await?;
    stream
        .write_all(
            b"POST /register HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{",
        )
        .await?;
    Ok(stream)
}

#[tokio::test]
async fn a_slow_body_gets_408_and_its_connection_is_closed() -> anyhow::Result<()> {
    let server = BootstrapServer::start(&["--rate-limit", "0", "--request-timeout", "1"]).await?;
    let stream = busy_connection(server.address).await?;
    let (mut read, mut write) = stream.into_split();
    // One byte every 200 ms: the body would take 200 s.
    let trickle = tokio::spawn(async move {
        for _ in 0..1_000 {
            if write.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let closed = read_until_closed(&mut read, Duration::from_secs(8)).await;
    trickle.abort();
    let text = closed.text();
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "a slow body is answered 408: {text:?}"
    );
    assert!(text.contains("request_timeout"), "{text}");
    let after = closed
        .after
        .expect("the connection is closed after the 408");
    assert!(after < Duration::from_secs(5), "closed after {after:?}");
    Ok(())
}

#[tokio::test]
async fn slow_request_headers_are_cut_off_at_the_header_timeout() -> anyhow::Result<()> {
    let server = BootstrapServer::start(&["--rate-limit", "0", "--header-timeout", "1"]).await?;
    let mut stream = TcpStream::connect(server.address).await?;
    stream.write_all(b"GET /health HTTP/1.1\r\n").await?;
    let (mut read, mut write) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..1_000 {
            if write.write_all(b"X").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let closed = read_until_closed(&mut read, Duration::from_secs(6)).await;
    trickle.abort();
    let after = closed.after.expect("headers sent slowly are cut off");
    assert!(after < Duration::from_secs(4), "closed after {after:?}");
    Ok(())
}

#[tokio::test]
async fn an_idle_http1_connection_is_closed_and_a_busy_one_is_not() -> anyhow::Result<()> {
    let server = BootstrapServer::start(&["--rate-limit", "0", "--idle-timeout", "2"]).await?;
    // A connection that asks every 500 ms for 3 s is never idle for 2 s.
    let mut busy = TcpStream::connect(server.address).await?;
    let mut idle = TcpStream::connect(server.address).await?;
    assert_eq!(get_health(&mut idle).await?, "HTTP/1.1 200 OK");
    let asked = Instant::now();
    while asked.elapsed() < Duration::from_secs(3) {
        assert_eq!(get_health(&mut busy).await?, "HTTP/1.1 200 OK");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let closed = read_until_closed(&mut idle, Duration::from_secs(6)).await;
    let after = asked.elapsed();
    assert!(
        closed.after.is_some() && closed.bytes.is_empty(),
        "the idle connection is closed: {:?}",
        closed.text()
    );
    assert!(after < Duration::from_secs(7), "closed after {after:?}");
    let metrics = server.metrics().await?;
    assert!(
        metric_value(
            &metrics,
            "dig_bootstrap_connections_closed_total",
            &["reason=\"idle\""]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_whatever_pings_it_sends() -> anyhow::Result<()> {
    let server = BootstrapServer::start(&["--rate-limit", "0", "--idle-timeout", "2"]).await?;
    let stream = TcpStream::connect(server.address).await?;
    // HTTP/2 with prior knowledge; the client PINGs every 200 ms to look alive.
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(200))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(stream))
        .await?;
    let connection = tokio::spawn(connection);
    let request = http::Request::get("http://localhost/health").body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let idle_from = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(
        ended.is_ok(),
        "an HTTP/2 connection without requests stays open past 10 s"
    );
    let after = idle_from.elapsed();
    assert!(
        after >= Duration::from_millis(1_500),
        "closed too early, after {after:?}: idle means no request for --idle-timeout"
    );
    Ok(())
}

#[tokio::test]
async fn a_tls_handshake_that_never_finishes_is_closed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tls = TlsFiles::self_signed_localhost(dir.path())?;
    let server = BootstrapServer::start_with(
        &["--rate-limit", "0", "--tls-handshake-timeout", "1"],
        Some(&tls),
    )
    .await?;
    let mut stream = TcpStream::connect(server.address).await?;
    // Half a ClientHello record header, then nothing.
    stream.write_all(&[0x16, 0x03, 0x01]).await?;
    let closed = read_until_closed(&mut stream, Duration::from_secs(6)).await;
    let after = closed.after.expect("the stalled handshake is closed");
    assert!(after < Duration::from_secs(4), "closed after {after:?}");
    let metrics = server.metrics().await?;
    assert!(
        metric_value(
            &metrics,
            "dig_bootstrap_connections_closed_total",
            &["reason=\"tls_handshake\""]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );
    // HTTP/2 is offered over TLS (ALPN) and served.
    let http2 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&tls.ca_pem)?)
        .build()?;
    let response = http2.get(server.url("/health")).send().await?;
    assert_eq!(response.version(), http::Version::HTTP_2);
    Ok(())
}

#[tokio::test]
async fn at_the_connection_cap_idle_connections_make_room_and_busy_ones_refuse()
-> anyhow::Result<()> {
    let server = BootstrapServer::start(&[
        "--rate-limit",
        "0",
        "--max-connections",
        "3",
        "--request-timeout",
        "3",
    ])
    .await?;
    // Three connections with a request in flight fill the server.
    let mut busy = Vec::new();
    for _ in 0..3 {
        busy.push(busy_connection(server.address).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut refused = TcpStream::connect(server.address).await?;
    let _ = refused
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let closed = read_until_closed(&mut refused, Duration::from_secs(2)).await;
    assert!(
        closed.after.is_some() && closed.bytes.is_empty(),
        "a fourth connection is closed unanswered: {:?}",
        closed.text()
    );
    // Their requests time out (408) and the room comes back.
    for stream in &mut busy {
        let closed = read_until_closed(stream, Duration::from_secs(10)).await;
        assert!(
            closed.text().starts_with("HTTP/1.1 408"),
            "{}",
            closed.text()
        );
    }

    // Three idle keep-alive connections: a new one makes the oldest give way.
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(server.address).await?;
        assert_eq!(get_health(&mut stream).await?, "HTTP/1.1 200 OK");
        idle.push(stream);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut newcomer = TcpStream::connect(server.address).await?;
    assert_eq!(get_health(&mut newcomer).await?, "HTTP/1.1 200 OK");
    let oldest = read_until_closed(&mut idle[0], Duration::from_secs(3)).await;
    assert!(oldest.after.is_some(), "the longest-idle connection closed");
    assert_eq!(get_health(&mut idle[2]).await?, "HTTP/1.1 200 OK");
    drop((idle, newcomer));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = server.metrics().await?;
    for reason in ["refused", "evicted"] {
        assert!(
            metric_value(
                &metrics,
                "dig_bootstrap_connections_closed_total",
                &[&format!("reason=\"{reason}\"")]
            )
            .unwrap_or(0.0)
                >= 1.0,
            "{reason}:\n{metrics}"
        );
    }
    Ok(())
}

/// A signed record of 100 store names of its own (`<tag>-<i>`).
fn record_of_100_stores(keypair: &Keypair, tag: usize, timestamp_ms: u64) -> Vec<u8> {
    let names: Vec<String> = (0..100).map(|i| format!("s{tag}-{i}")).collect();
    let stores: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    serde_json::to_vec(&signed_record(keypair, "testnet", &stores, timestamp_ms))
        .expect("records encode")
}

#[tokio::test]
async fn the_state_budget_refuses_new_records_with_507_but_keeps_heartbeats() -> anyhow::Result<()>
{
    let budget = 128 * 1024;
    let server = BootstrapServer::start(&[
        "--rate-limit",
        "0",
        "--max-state-bytes",
        &budget.to_string(),
    ])
    .await?;
    let http = server.http()?;
    let now = now_ms();
    let keys: Vec<Keypair> = (0..12).map(|_| Keypair::generate_ed25519()).collect();
    let mut accepted = Vec::new();
    let mut refusal = None;
    for (i, keypair) in keys.iter().enumerate() {
        let response = http
            .post(server.url("/register"))
            .header("content-type", "application/json")
            .body(record_of_100_stores(keypair, i, now))
            .send()
            .await?;
        match response.status().as_u16() {
            200 => accepted.push(i),
            507 => {
                refusal = Some(response);
                break;
            }
            other => anyhow::bail!("registration {i} answered {other}"),
        }
    }
    let refusal = refusal.expect("twelve records of 100 stores fill 128 KiB");
    assert!((2..12).contains(&accepted.len()), "{accepted:?}");
    assert!(refusal.headers().contains_key("retry-after"));
    let body: Value = refusal.json().await?;
    assert_eq!(body["error"], "registry_memory_full", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("--max-state-bytes"),
        "{body}"
    );
    // A heartbeat of a held peer is never refused.
    let heartbeat = http
        .post(server.url("/register"))
        .header("content-type", "application/json")
        .body(record_of_100_stores(&keys[0], 0, now + 1))
        .send()
        .await?;
    assert_eq!(heartbeat.status(), 200);
    let metrics = server.metrics().await?;
    let held = metric_value(&metrics, "dig_bootstrap_state_bytes", &[]).expect("state gauge");
    assert!(held <= budget as f64 && held > 0.0, "{held} bytes held");
    assert!(
        metric_value(
            &metrics,
            "dig_bootstrap_registrations_total",
            &["result=\"registry_memory_full\""]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    Ok(())
}

#[tokio::test]
async fn unregistering_keys_never_registered_holds_a_bounded_number_of_removals()
-> anyhow::Result<()> {
    // An eighth of 64 KiB holds about twenty removals of unknown keys.
    let server =
        BootstrapServer::start(&["--rate-limit", "0", "--max-state-bytes", "65536"]).await?;
    let client = server.client()?;
    for _ in 0..60 {
        client
            .unregister(&Keypair::generate_ed25519(), "testnet")
            .await?;
    }
    let records: RecordsResponse = server.get_json("/records?limit=5000").await?;
    assert!(
        (5..=30).contains(&records.removals.len()),
        "{} of 60 removals of unknown keys held",
        records.removals.len()
    );
    let metrics = server.metrics().await?;
    assert_eq!(
        metric_value(&metrics, "dig_bootstrap_removals", &[]),
        Some(records.removals.len() as f64)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "dig_bootstrap_unregistrations_total",
            &["result=\"notFound\""]
        ),
        Some(60.0),
        "each was answered"
    );
    // Registrations still fit.
    let keypair = Keypair::generate_ed25519();
    client
        .register(&signed_record(&keypair, "testnet", &[("a", 1)], now_ms()))
        .await?;
    Ok(())
}

/// `/stats` requests sent as `forwarded_for` (through the trusted loopback proxy) that passed.
async fn passed_as(server: &BootstrapServer, forwarded_for: &[String]) -> anyhow::Result<usize> {
    let http = server.http()?;
    let mut passed = 0;
    for client in forwarded_for {
        let response = http
            .get(server.url("/stats"))
            .header("x-forwarded-for", client.as_str())
            .send()
            .await?;
        if response.status() == 200 {
            passed += 1;
        }
    }
    Ok(passed)
}

#[tokio::test]
async fn ipv6_clients_of_one_prefix_share_one_rate_limit_quota() -> anyhow::Result<()> {
    // Burst 5 at 1/s; the test's loopback connection plays the load balancer.
    let limit = [
        "--rate-limit",
        "1",
        "--rate-limit-burst",
        "5",
        "--trusted-proxy",
        "127.0.0.0/8",
    ];
    let server = BootstrapServer::start(&limit).await?;
    // Twenty addresses of one /64, each asking once.
    let one_prefix: Vec<String> = (1..=20).map(|i| format!("2001:db8:1:2::{i:x}")).collect();
    let passed = passed_as(&server, &one_prefix).await?;
    assert!(
        (5..=8).contains(&passed),
        "one /64 is one client: {passed} of 20 passed"
    );
    // Another /64 has its own quota.
    let other: Vec<String> = (1..=3).map(|i| format!("2001:db8:1:3::{i:x}")).collect();
    assert_eq!(passed_as(&server, &other).await?, 3);

    // A /128 prefix gives each address its own quota.
    let server =
        BootstrapServer::start(&[&limit[..], &["--rate-limit-ipv6-prefix", "128"]].concat())
            .await?;
    assert_eq!(passed_as(&server, &one_prefix).await?, 20);
    Ok(())
}

#[tokio::test]
async fn records_pages_are_bounded_in_bytes_and_follow_on() -> anyhow::Result<()> {
    let server = BootstrapServer::start(&["--rate-limit", "0"]).await?;
    let client = server.client()?;
    // Twelve records of 1,000 stores (names shared): about 130 KB of JSON each.
    let names: Vec<String> = (0..1_000).map(|i| format!("store-{i:04}")).collect();
    let stores: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    let now = now_ms();
    for _ in 0..12 {
        let keypair = Keypair::generate_ed25519();
        client
            .register(&signed_record(&keypair, "testnet", &stores, now))
            .await?;
    }
    let mut cursor = 0;
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let response = server
            .http()?
            .get(server.url(&format!("/records?after={cursor}&limit=5000")))
            .send()
            .await?;
        assert_eq!(response.status(), 200);
        let body = response.bytes().await?;
        assert!(body.len() <= 1024 * 1024, "a page of {} bytes", body.len());
        let page: RecordsResponse = serde_json::from_slice(&body)?;
        assert!(!page.records.is_empty());
        seen += page.records.len();
        pages += 1;
        cursor = page.next_cursor;
        if !page.more {
            break;
        }
    }
    assert_eq!(seen, 12);
    assert!(pages >= 2, "{pages} pages");
    Ok(())
}

/// Serves `body` as every `/records` answer on a loopback port, with a Content-Length or
/// streamed without one.
async fn oversized_sibling(body: Vec<u8>, streamed: bool) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/records",
        axum::routing::get(move || {
            let body = body.clone();
            async move {
                if streamed {
                    let chunks = body
                        .chunks(8 * 1024)
                        .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                        .collect::<Vec<_>>();
                    axum::body::Body::from_stream(futures::stream::iter(chunks))
                } else {
                    axum::body::Body::from(body)
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

#[tokio::test]
async fn the_federation_client_refuses_a_sibling_answer_over_its_byte_cap() -> anyhow::Result<()> {
    // A valid page padded to 200 KB by one long field: only a cap on the bytes read stops it.
    let page = RecordsResponse {
        epoch: "e".repeat(200 * 1024),
        records: Vec::new(),
        removals: Vec::new(),
        next_cursor: 1,
        more: false,
    };
    let body = serde_json::to_vec(&page)?;
    let sized = oversized_sibling(body.clone(), false).await?;
    let streamed = oversized_sibling(body, true).await?;
    let server = BootstrapServer::start(&[
        "--rate-limit",
        "0",
        "--federation-interval",
        "1",
        "--peer-bootstrap-max-bytes",
        "65536",
        "--peer-bootstrap",
        &format!("http://{sized},http://{streamed}"),
    ])
    .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = server.metrics().await?;
        let errors = |sibling: SocketAddr| {
            metric_value(
                &metrics,
                "dig_bootstrap_federation_pulls_total",
                &[&format!("peer=\"http://{sibling}\""), "result=\"error\""],
            )
            .unwrap_or(0.0)
        };
        if errors(sized) >= 1.0 && errors(streamed) >= 1.0 {
            let ok = metric_value(
                &metrics,
                "dig_bootstrap_federation_pulls_total",
                &["result=\"ok\""],
            );
            assert_eq!(ok, Some(0.0), "{metrics}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "oversized answers were not refused:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        server
            .process
            .output()
            .contains("more than the 65536 bytes"),
        "{}",
        server.process.output()
    );
    Ok(())
}
