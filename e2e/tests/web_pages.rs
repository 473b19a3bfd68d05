//! The node's page and the registry's network page in headless Chromium, and
//! `dig-sidecar status --watch`, on a real network on loopback: a registry, a second registry
//! federating from it, and two nodes.
//!
//! A transfer is made visible by pausing its sender (SIGSTOP) once the receiver reports progress:
//! the paused download shows on the receiver's page and in `status --watch`, then the sender runs
//! until the receiver reports more and is paused again, and the page must show the larger progress
//! (live updates, no reload). A node serving corrupt chunks joins last: its ban shows on the page.
//! Screenshots are saved under `target/observe/` (node-page.png, registry-page.png,
//! node-page-ban.png).

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use dig_e2e::{
    bootstrap::BootstrapServer,
    browser::Browser,
    network::{LocalNetwork, SidecarNode},
    process::{ProcessSpec, binary_path, target_dir},
};
use nix::sys::signal::Signal;
use serde_json::Value;

const BIG_STORE_BYTES: usize = 256 << 20;

fn artifacts() -> PathBuf {
    target_dir().join("observe")
}

/// Writes `<name>.dig` of `size` bytes into `node`'s folder at once (a rename): 1 MiB blocks of
/// pseudo-random bytes, each stamped with its index and `seed`.
fn write_store(node: &SidecarNode, name: &str, size: usize, seed: u32) {
    use std::io::Write;
    let block: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 24) as u8)
        .collect();
    let tmp = node.spec.data_dir.join(format!(".{name}.writing"));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).expect("store file"));
    let mut written = 0;
    let mut index = 0u64;
    while written < size {
        let length = block.len().min(size - written);
        let mut chunk = block[..length].to_vec();
        let stamp = [index.to_le_bytes(), u64::from(seed).to_le_bytes()].concat();
        let stamped = stamp.len().min(length);
        chunk[..stamped].copy_from_slice(&stamp[..stamped]);
        file.write_all(&chunk).expect("writing a store");
        written += length;
        index += 1;
    }
    file.flush().expect("flush");
    drop(file);
    std::fs::rename(&tmp, node.spec.data_dir.join(format!("{name}.dig"))).expect("store in place");
}

/// The progress of `name` in `/transfers` of `node`, if it is downloading.
async fn transfer_progress(node: &SidecarNode, name: &str) -> Option<f64> {
    let transfers = node.get_json("/transfers").await.ok()?;
    transfers["transfers"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == name)?["progress"]
        .as_f64()
}

/// Whether `registry` lists a peer holding `store`.
async fn registered(registry: &BootstrapServer, store: &str) -> bool {
    registry
        .get_json::<Value>(&format!("/peers/store/{store}"))
        .await
        .is_ok_and(|answer| answer["count"].as_u64().unwrap_or(0) > 0)
}

/// Writes a big store on `sender` and pauses `sender` (SIGSTOP) once `registry` lists it and
/// `receiver` reports between 1 % and 80 % of it; returns the store's name and that progress. A download finished
/// before it could be caught (a fast machine) is tried again with a larger store.
async fn pause_a_transfer(
    sender: &mut SidecarNode,
    receiver: &SidecarNode,
    registry: &BootstrapServer,
) -> (String, f64) {
    for attempt in 0..3 {
        let name = format!("big-{attempt}");
        write_store(sender, &name, BIG_STORE_BYTES << attempt, attempt as u32);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match transfer_progress(receiver, &name).await {
                Some(progress)
                    if (0.01..=0.8).contains(&progress) && registered(registry, &name).await =>
                {
                    sender
                        .process
                        .signal(Signal::SIGSTOP)
                        .expect("SIGSTOP the sender");
                    return (name, progress);
                }
                Some(_) => {}
                None if receiver.spec.data_dir.join(format!("{name}.dig")).exists() => break,
                None => {}
            }
            assert!(
                Instant::now() < deadline,
                "{name} never started downloading"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("{name} finished before it could be paused; trying a larger store");
    }
    panic!("no transfer could be caught in flight");
}

fn number(value: &Value) -> f64 {
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_status_watch_show_the_network_live() {
    let Some(mut browser) = Browser::start_or_skip("pages_and_status_watch_show_the_network_live")
    else {
        return;
    };
    let root = target_dir().join(format!("web-pages-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut network = LocalNetwork::start(&root, "pages", 2)
        .await
        .expect("registry and two nodes");
    network
        .wait_fully_connected(Duration::from_secs(60))
        .await
        .expect("the nodes connect");
    let sibling = BootstrapServer::start(&[
        "--peer-bootstrap",
        &network.bootstrap.base_url,
        "--federation-interval",
        "1",
    ])
    .await
    .expect("a federated registry");
    let (sender_id, receiver_id) = (
        network.nodes[0].peer_id.clone(),
        network.nodes[1].peer_id.clone(),
    );

    // The receiver's page: identity, its peer, live.
    let receiver_url = network.nodes[1].url("/");
    assert_eq!(
        browser.open(&receiver_url).expect("open the node page"),
        200
    );
    browser
        .wait_for(
            "the page shows the connected peer",
            &format!("document.querySelector('#peers tr[data-peer=\"{sender_id}\"]') !== null && document.getElementById('live').textContent === 'live'"),
            Duration::from_secs(20),
        )
        .expect("live page");
    assert_eq!(
        browser
            .eval("document.getElementById('peer-id').textContent")
            .unwrap(),
        receiver_id.as_str()
    );
    let latency = browser
        .eval(&format!(
            "document.querySelector('#peers tr[data-peer=\"{sender_id}\"]').children[3].textContent"
        ))
        .unwrap();
    assert!(
        latency.as_str().is_some_and(|t| t.ends_with(" ms")),
        "latency shown: {latency}"
    );

    // A store just added on the node appears without a reload.
    write_store(&network.nodes[1], "fresh", 4096, 7);
    browser
        .wait_for(
            "the page shows the store just added",
            "(() => { const row = document.querySelector('#stores tr[data-store=\"fresh\"]'); return row && row.dataset.state === 'synced' && row.children[3].textContent === '4.0 KiB'; })()",
            Duration::from_secs(30),
        )
        .expect("fresh store on the page");

    // A transfer in flight, paused: on the page and in `status --watch`.
    let (big, paused_at) = {
        let (sender, receiver) = network.nodes.split_at_mut(1);
        pause_a_transfer(&mut sender[0], &receiver[0], &network.bootstrap).await
    };
    let row = format!("#transfers tr[data-transfer=\"{big}\"]");
    // Chunks already on their way may still land after the pause: at least the paused progress.
    let first = number(
        &browser
            .wait_for(
                "the page shows the paused transfer",
                &format!("(() => {{ const r = document.querySelector('{row}'); return r && Number(r.dataset.progress) >= {paused_at} ? Number(r.dataset.progress) : null; }})()"),
                Duration::from_secs(20),
            )
            .expect("transfer on the page"),
    );
    assert!(first > 0.0 && first < 1.0, "progress {first}");

    let mut watch = ProcessSpec::new(binary_path("dig-sidecar").expect("dig-sidecar built"))
        .name("status --watch")
        .args([
            "status",
            "--watch",
            "--interval",
            "300ms",
            "--api",
            &network.nodes[1].url(""),
        ])
        .spawn()
        .expect("start status --watch");
    let deadline = Instant::now() + Duration::from_secs(20);
    while watch.output().matches("PEERS (1 connected)").count() < 3 {
        assert!(
            Instant::now() < deadline,
            "status --watch drew no 3 frames:\n{}",
            watch.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watch.signal(Signal::SIGINT).expect("Ctrl-C");
    let status = watch
        .wait_timeout_async(Duration::from_secs(5))
        .await
        .expect("wait")
        .expect("status --watch stops on Ctrl-C");
    let frames = watch.output();
    assert!(status.success(), "exit {status}:\n{frames}");
    assert!(frames.contains("DOWNLOADS (1)"), "{frames}");
    let transfer_line = frames
        .lines()
        .find(|line| line.trim_start().starts_with(&big) && line.contains("] "))
        .unwrap_or_else(|| panic!("no progress bar for {big}:\n{frames}"));
    // A bar of '#' and '-' (a transfer paused under 3 % draws no '#' yet) and the percentage.
    let bar = transfer_line
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map_or("", |(bar, _)| bar);
    assert!(
        !bar.is_empty()
            && bar.chars().all(|c| c == '#' || c == '-')
            && transfer_line.contains(" %"),
        "{transfer_line}"
    );
    assert!(
        frames.contains(&sender_id[..10]),
        "the peer is listed:\n{frames}"
    );
    assert!(frames.contains("fresh"), "the stores are listed:\n{frames}");

    // The registry's page while the store is under-replicated (held by the sender only), read on
    // the sibling that federates from the network's registry.
    let mut registry_page = Browser::start().expect("a second page");
    assert_eq!(
        registry_page
            .open(&sibling.url("/"))
            .expect("open the registry page"),
        200
    );
    registry_page
        .wait_for(
            "the registry page shows the federated network",
            &format!(
                "(() => {{ const n = document.querySelector('#networks tr[data-network=\"pages\"]'); \
                 const s = document.querySelector('#federation tr[data-sibling]'); \
                 return n && n.children[1].textContent === '2' && s && s.children[1].textContent === 'in sync' \
                 && document.querySelector('#stores tr[data-store=\"pages/fresh\"]') !== null \
                 && document.querySelector('#under tr[data-store=\"pages/{big}\"]') !== null \
                 && document.querySelector('#peers tr[data-peer=\"{receiver_id}\"]') !== null; }})()"
            ),
            Duration::from_secs(30),
        )
        .expect("registry page");
    registry_page
        .screenshot(&artifacts().join("registry-page.png"))
        .expect("registry screenshot");

    browser
        .screenshot(&artifacts().join("node-page.png"))
        .expect("node screenshot");

    // The sender runs until the receiver reports more, and is paused again.
    let paused_page_progress = first.max(
        transfer_progress(&network.nodes[1], &big)
            .await
            .unwrap_or(first),
    );
    network.nodes[0]
        .process
        .signal(Signal::SIGCONT)
        .expect("SIGCONT");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match transfer_progress(&network.nodes[1], &big).await {
            Some(progress) if progress > paused_page_progress => {
                network.nodes[0]
                    .process
                    .signal(Signal::SIGSTOP)
                    .expect("SIGSTOP");
                break;
            }
            None if network.nodes[1]
                .spec
                .data_dir
                .join(format!("{big}.dig"))
                .exists() =>
            {
                break;
            }
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{big} made no progress once resumed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The page shows the larger progress (or the finished download) without a reload.
    let second = browser
        .wait_for(
            "the page shows the transfer's new progress",
            &format!(
                "(() => {{ const r = document.querySelector('{row}'); \
                 const s = document.querySelector('#stores tr[data-store=\"{big}\"]'); \
                 if (r && Number(r.dataset.progress) > {first}) return Number(r.dataset.progress); \
                 return !r && s && s.dataset.state === 'synced' ? 1 : null; }})()"
            ),
            Duration::from_secs(20),
        )
        .expect("progress updated");
    assert!(number(&second) > first, "progress {first} then {second}");
    network.nodes[0]
        .process
        .signal(Signal::SIGCONT)
        .expect("SIGCONT");

    // Done: the store is synced on the node page and no longer under-replicated on the registry's.
    browser
        .wait_for(
            "the page shows the finished download",
            &format!("document.querySelector('{row}') === null && document.querySelector('#stores tr[data-store=\"{big}\"]').dataset.state === 'synced'"),
            Duration::from_secs(120),
        )
        .expect("download finished");
    registry_page
        .wait_for(
            "the registry page shows the store fully replicated",
            &format!("document.querySelector('#under tr[data-store=\"pages/{big}\"]') === null && document.querySelector('#stores tr[data-store=\"pages/{big}\"]').children[3].textContent === '2'"),
            Duration::from_secs(120),
        )
        .expect("replicated on the registry page");

    // A peer that serves corrupt chunks is banned, and the page says so and why.
    let liar = SidecarNode::start(network.node_spec(2).arg("--test-corrupt-chunks"))
        .await
        .expect("start a corrupting node");
    let liar_id = liar.peer_id.clone();
    network.nodes.push(liar);
    network
        .wait_fully_connected(Duration::from_secs(60))
        .await
        .expect("the corrupting node connects");
    write_store(&network.nodes[2], "tainted", 2 << 20, 11);
    let reason = browser
        .wait_for(
            "the page shows the banned peer",
            &format!(
                "(() => {{ const r = document.querySelector('#bans tr[data-peer=\"{liar_id}\"]'); \
                 return r && document.getElementById('ban-count').textContent === '1' ? r.children[1].textContent : null; }})()"
            ),
            Duration::from_secs(60),
        )
        .expect("ban on the page");
    assert!(
        reason.as_str().is_some_and(|r| !r.is_empty() && r != "–"),
        "the ban's reason is shown: {reason}"
    );
    browser
        .screenshot(&artifacts().join("node-page-ban.png"))
        .expect("ban screenshot");

    for (page, name) in [
        (&mut browser, "node page"),
        (&mut registry_page, "registry page"),
    ] {
        let problems = page.console_problems().expect("console");
        assert!(
            problems.is_empty(),
            "{name}: console errors or failed requests: {problems:#?}"
        );
    }
    eprintln!("screenshots: {}", artifacts().display());
    drop(browser);
    drop(registry_page);
    drop(network);
    let _ = std::fs::remove_dir_all(&root);
}
