//! dig-bootstrap as a process: TTL expiry, rate limiting (direct and behind trusted proxies), TLS,
//! graceful shutdown on SIGTERM.

use std::time::{Duration, Instant};

use dig_core::clock::now_ms;
use dig_e2e::bootstrap::{BootstrapServer, TlsFiles, metric_value, signed_record};
use libp2p_identity::Keypair;
use serde_json::Value;

#[tokio::test]
async fn records_expire_after_the_ttl_and_gauges_follow() -> anyhow::Result<()> {
    let server = BootstrapServer::start(&[
        "--rate-limit",
        "0",
        "--peer-ttl",
        "2",
        "--sweep-interval",
        "1",
    ])
    .await?;
    let client = server.client()?;
    let keypair = Keypair::generate_ed25519();
    client
        .register(&signed_record(
            &keypair,
            "testnet",
            &[("alpha", 1)],
            now_ms(),
        ))
        .await?;
    assert_eq!(client.stats().await?.total_peers, 1);

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = server.metrics().await?;
        let expired = metric_value(&metrics, "dig_bootstrap_expirations_total", &[]);
        let peers = metric_value(&metrics, "dig_bootstrap_peers", &[]);
        let stores = metric_value(&metrics, "dig_bootstrap_stores", &[]);
        if expired == Some(1.0) {
            assert_eq!((peers, stores), (Some(0.0), Some(0.0)), "{metrics}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "record did not expire:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = client.stats().await?;
    assert_eq!((stats.total_peers, stats.total_stores), (0, 0));
    assert_eq!(client.peers_with_store("alpha").await?.total, 0);
    Ok(())
}

#[tokio::test]
async fn clients_over_the_rate_limit_get_429_with_retry_after() -> anyhow::Result<()> {
    let server = BootstrapServer::start(&["--rate-limit", "1", "--rate-limit-burst", "3"]).await?;
    let http = server.http()?;
    let mut limited = None;
    for _ in 0..20 {
        let response = http.get(server.url("/stats")).send().await?;
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("20 quick requests never hit a limit of 1/s, burst 3");
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("429 carries Retry-After")
        .to_str()?
        .parse()?;
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    let body: Value = response.json().await?;
    assert_eq!(body["error"], "rate_limited");
    assert!(body["detail"].as_str().unwrap().contains("--rate-limit"));

    // The client surfaces it as RateLimited.
    match server.client()?.stats().await {
        Err(dig_bootstrap::ClientError::RateLimited { retry_after, .. }) => {
            assert!(retry_after.is_some())
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    // Probes and scrapes are never limited.
    for _ in 0..10 {
        assert_eq!(http.get(server.url("/health")).send().await?.status(), 200);
    }
    let metrics = server.metrics().await?;
    assert!(
        metric_value(&metrics, "dig_bootstrap_rate_limited_requests_total", &[]).unwrap() >= 2.0
    );
    assert!(
        metric_value(
            &metrics,
            "dig_bootstrap_http_requests_total",
            &["route=\"/stats\"", "status=\"429\""]
        )
        .is_some()
    );
    // After waiting, the client may send again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(http.get(server.url("/stats")).send().await?.status(), 200);
    Ok(())
}

/// Sends `/stats` requests as `forwarded_for` until one is refused; how many got through.
async fn requests_until_limited(
    server: &BootstrapServer,
    forwarded_for: &str,
) -> anyhow::Result<usize> {
    let http = server.http()?;
    for sent in 0..20 {
        let response = http
            .get(server.url("/stats"))
            .header("x-forwarded-for", forwarded_for)
            .send()
            .await?;
        if response.status() == 429 {
            return Ok(sent);
        }
    }
    Ok(20)
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_quota() -> anyhow::Result<()> {
    // A burst of 10 at 1/s: a fresh quota lets about 10 through, a spent one about one per
    // second since it was spent, so a slow machine still tells them apart.
    let limit = ["--rate-limit", "1", "--rate-limit-burst", "10"];
    let fresh = 10..20;
    let spent = 0..5;
    // The test's loopback connection plays the load balancer.
    let proxied =
        BootstrapServer::start(&[&limit[..], &["--trusted-proxy", "127.0.0.0/8,::1"]].concat())
            .await?;
    let first = requests_until_limited(&proxied, "203.0.113.7").await?;
    let second = requests_until_limited(&proxied, "203.0.113.8").await?;
    assert!(
        fresh.contains(&first) && fresh.contains(&second),
        "each forwarded client has its own burst of 10: {first} and {second} requests passed"
    );
    // A client cannot escape its quota by prepending a forged hop: the nearest untrusted hop counts.
    let forged = requests_until_limited(&proxied, "198.51.100.99, 203.0.113.7").await?;
    assert!(
        spent.contains(&forged),
        "{forged} requests passed with a forged hop"
    );

    // Without --trusted-proxy the header is ignored: every "client" is the one loopback peer.
    let direct = BootstrapServer::start(&limit).await?;
    let first = requests_until_limited(&direct, "203.0.113.7").await?;
    let second = requests_until_limited(&direct, "203.0.113.8").await?;
    assert!(fresh.contains(&first), "{first} requests passed");
    assert!(
        spent.contains(&second),
        "a forged header bought {second} more requests"
    );
    Ok(())
}

#[tokio::test]
async fn serves_https_with_a_self_signed_certificate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tls = TlsFiles::self_signed_localhost(dir.path())?;
    let server = BootstrapServer::start_with(&["--rate-limit", "0"], Some(&tls)).await?;
    assert!(server.base_url.starts_with("https://"));
    let client = server.client()?;
    assert_eq!(client.health().await?.status, "ok");
    let keypair = Keypair::generate_ed25519();
    client
        .register(&signed_record(&keypair, "testnet", &[], now_ms()))
        .await?;
    assert_eq!(client.stats().await?.total_peers, 1);

    // A client that does not trust the certificate is refused, and plain HTTP gets no answer.
    let untrusting = dig_bootstrap::RegistryClient::new(&server.base_url)?;
    assert!(untrusting.health().await.is_err());
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/health", server.address.port()))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    Ok(())
}

#[tokio::test]
async fn unreadable_tls_files_stop_start_up_with_an_error_naming_them() -> anyhow::Result<()> {
    let binary = dig_e2e::process::binary_path("dig-bootstrap")?;
    let address = dig_e2e::process::free_loopback_addr()?;
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(&binary)
            .args(["--listen", &address.to_string()])
            .args([
                "--tls-cert",
                "/nonexistent/tls.crt",
                "--tls-key",
                "/nonexistent/tls.key",
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/tls.crt"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully_with_exit_code_0() -> anyhow::Result<()> {
    let mut server = BootstrapServer::start(&["--log-format", "json"]).await?;
    assert_eq!(server.client()?.health().await?.status, "ok");
    server.process.terminate()?;
    let status = server
        .process
        .wait_timeout_async(Duration::from_secs(15))
        .await?
        .expect("dig-bootstrap did not exit within 15 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    let output = server.process.output();
    assert!(output.contains("SIGTERM received"), "{output}");
    // JSON log lines.
    let line = output
        .lines()
        .find(|l| l.contains("listening on"))
        .expect("a listening log line");
    let parsed: Value = serde_json::from_str(line)?;
    assert_eq!(parsed["level"], "INFO");
    Ok(())
}

#[tokio::test]
async fn ctrl_c_shuts_down_gracefully_with_exit_code_0() -> anyhow::Result<()> {
    let mut server = BootstrapServer::start(&[]).await?;
    server.process.signal(nix::sys::signal::Signal::SIGINT)?;
    let status = server
        .process
        .wait_timeout_async(Duration::from_secs(15))
        .await?
        .expect("dig-bootstrap did not exit within 15 s of SIGINT");
    assert!(status.success(), "exit status {status}");
    assert!(server.process.output().contains("Ctrl-C received"));
    Ok(())
}

/// `GET /ready`: its status code and `status` field.
async fn ready(server: &BootstrapServer) -> anyhow::Result<(u16, Value)> {
    let response = server.http()?.get(server.url("/ready")).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

#[tokio::test]
async fn ready_waits_for_siblings_but_not_forever() -> anyhow::Result<()> {
    // A sibling nobody serves: the registry is not ready at first, then ready after the
    // deadline (two federation intervals, at least 5 s) rather than never.
    let nobody = dig_e2e::process::free_loopback_addr()?;
    let sibling = format!("http://{nobody}");
    let started = Instant::now();
    let server =
        BootstrapServer::start(&["--peer-bootstrap", &sibling, "--federation-interval", "2"])
            .await?;
    let (status, body) = ready(&server).await?;
    if started.elapsed() < Duration::from_secs(4) {
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "syncing", "{body}");
        assert_eq!(body["siblings"][0], sibling, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = ready(&server).await?;
        if status == 200 {
            assert_eq!(body["status"], "ready");
            assert!(
                started.elapsed() >= Duration::from_secs(4),
                "ready too early"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // /health never depended on it, and /ready is not rate limited (probes call it often).
    assert_eq!(server.client()?.health().await?.status, "ok");
    Ok(())
}

#[tokio::test]
async fn ready_follows_the_first_pull_of_a_live_sibling() -> anyhow::Result<()> {
    let sibling = BootstrapServer::start(&[]).await?;
    let server = BootstrapServer::start(&["--peer-bootstrap", &sibling.base_url]).await?;
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let (status, body) = ready(&server).await?;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready within 4 s of a sibling answering: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test]
async fn sigterm_makes_ready_fail_while_still_serving_for_the_shutdown_delay() -> anyhow::Result<()>
{
    let mut server = BootstrapServer::start(&["--shutdown-delay", "3"]).await?;
    assert_eq!(ready(&server).await?.0, 200);
    server.process.terminate()?;
    let signalled = Instant::now();
    let deadline = signalled + Duration::from_secs(2);
    let mut draining = None;
    while Instant::now() < deadline {
        let (status, body) = ready(&server).await?;
        if status == 503 {
            draining = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = draining.expect("/ready answers 503 soon after SIGTERM");
    assert_eq!(body["status"], "draining", "{body}");
    // Everything else is still served during the delay.
    assert_eq!(server.client()?.health().await?.status, "ok");
    let status = server
        .process
        .wait_timeout_async(Duration::from_secs(20))
        .await?
        .expect("dig-bootstrap exits after the delay");
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "the listener stayed open for --shutdown-delay"
    );
    Ok(())
}
