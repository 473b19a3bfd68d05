//! The hostile clients, each from source addresses of its own, and the honest one they run beside:
//! slow bodies, a request flood, a registration flood. Each runs until a deadline and counts what
//! the server answered.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::load::{self, Rate, Sender, TLS_HOST};

/// A TCP connection to `server` from `source`.
pub async fn connect_from(source: IpAddr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A keep-alive HTTP/1.1 connection to `server` from `source`.
pub async fn http_from(source: IpAddr, server: SocketAddr) -> std::io::Result<Sender> {
    let stream = connect_from(source, server).await?;
    Ok(load::handshake(TokioIo::new(stream)).await)
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", TLS_HOST)
        .body(Full::new(Bytes::new()))
        .expect("a request")
}

/// What honest clients saw.
pub struct Honest {
    pub rate: Rate,
    pub p99: Duration,
    pub refused: u64,
}

/// The honest clients' lookup.
pub const LOOKUP: &str = "/peers?limit=50";

/// From each source, over one keep-alive connection, `GET` [`LOOKUP`] `per_second` times a
/// second until `deadline`, timing each answer.
pub async fn honest_lookups(
    server: SocketAddr,
    sources: &[IpAddr],
    per_second: u32,
    deadline: Instant,
) -> Honest {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for &source in sources {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut refused = 0;
            let mut sender = http_from(source, server).await.ok();
            let mut pace = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < deadline {
                pace.tick().await;
                let Some(connection) = sender.as_mut() else {
                    sender = http_from(source, server).await.ok();
                    refused += 1;
                    continue;
                };
                let asked = Instant::now();
                match tokio::time::timeout(Duration::from_secs(10), send(connection, get(LOOKUP)))
                    .await
                {
                    Ok(Some(200)) => latencies.push(asked.elapsed()),
                    Ok(Some(_)) => refused += 1,
                    Ok(None) | Err(_) => {
                        refused += 1;
                        sender = None;
                    }
                }
            }
            (latencies, refused)
        }));
    }
    let mut latencies = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let (mine, not) = task.await.expect("an honest client");
        latencies.extend(mine);
        refused += not;
    }
    latencies.sort_unstable();
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    Honest {
        rate: Rate {
            count: latencies.len() as u64,
            elapsed: started.elapsed(),
        },
        p99,
        refused,
    }
}

/// Sends one request; its status, or `None` when the connection failed.
async fn send(sender: &mut Sender, request: Request<Full<Bytes>>) -> Option<u16> {
    use http_body_util::BodyExt;
    sender.ready().await.ok()?;
    let response = sender.send_request(request).await.ok()?;
    let status = response.status().as_u16();
    response.into_body().collect().await.ok()?;
    Some(status)
}

/// What the slow-body attackers got.
#[derive(Default)]
pub struct SlowBodies {
    /// Connections opened (each a POST /register whose body never finishes).
    pub opened: AtomicU64,
    /// Answered 408 (`--request-timeout`).
    pub timed_out: AtomicU64,
    /// Closed by the server without an answer, or refused.
    pub dropped: AtomicU64,
    /// Open right now.
    pub open: AtomicUsize,
    /// Most open at once.
    pub peak_open: AtomicUsize,
}

/// From each source, one connection at a time: POST /register headers announcing 100 KB, then
/// one body byte per second; when the server ends it, the next one.
pub async fn slow_bodies(server: SocketAddr, sources: &[IpAddr], deadline: Instant) -> SlowBodies {
    let figures = Arc::new(SlowBodies::default());
    let mut tasks = Vec::new();
    for &source in sources {
        let figures = figures.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let Ok(stream) = connect_from(source, server).await else {
                    figures.dropped.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                figures.opened.fetch_add(1, Ordering::Relaxed);
                let open = figures.open.fetch_add(1, Ordering::Relaxed) + 1;
                figures.peak_open.fetch_max(open, Ordering::Relaxed);
                let answer = hold_slow_body(stream, deadline).await;
                figures.open.fetch_sub(1, Ordering::Relaxed);
                match answer {
                    Some(408) => figures.timed_out.fetch_add(1, Ordering::Relaxed),
                    Some(_) | None => figures.dropped.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    Arc::into_inner(figures).expect("every attacker is done")
}

/// Trickles a body until the server answers or closes; the status it answered, if any.
async fn hold_slow_body(stream: TcpStream, deadline: Instant) -> Option<u16> {
    let (mut read, mut write) = stream.into_split();
    let headers = "POST /register HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                   Content-Length: 100000\r\n\r\n{";
    write.write_all(headers.as_bytes()).await.ok()?;
    let trickle = tokio::spawn(async move {
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if write.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let mut answer = [0u8; 64];
    let left = deadline.saturating_duration_since(Instant::now());
    let read = tokio::time::timeout(left, read.read(&mut answer)).await;
    trickle.abort();
    match read {
        Ok(Ok(n)) if n >= 12 => std::str::from_utf8(&answer[9..12]).ok()?.parse().ok(),
        _ => None,
    }
}

/// What a flood got: answers by status.
#[derive(Default)]
pub struct Flood {
    pub ok: AtomicU64,
    pub limited: AtomicU64,
    pub full: AtomicU64,
    pub other: AtomicU64,
    pub failed: AtomicU64,
}

impl Flood {
    fn count(&self, status: Option<u16>) {
        let counter = match status {
            Some(200) => &self.ok,
            Some(429) => &self.limited,
            Some(507) => &self.full,
            Some(_) => &self.other,
            None => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        [
            &self.ok,
            &self.limited,
            &self.full,
            &self.other,
            &self.failed,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// From every source, `per_source` keep-alive connections sending `make(i)` as fast as answers
/// come, until `deadline` or until `count` requests were sent in all.
pub async fn flood(
    server: SocketAddr,
    sources: &[IpAddr],
    per_source: usize,
    make: load::MakeRequest,
    count: usize,
    deadline: Instant,
) -> Flood {
    let figures = Arc::new(Flood::default());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for &source in sources {
        for _ in 0..per_source {
            let (figures, next, make) = (figures.clone(), next.clone(), make.clone());
            tasks.push(tokio::spawn(async move {
                let mut sender = None;
                while Instant::now() < deadline {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        break;
                    }
                    if sender.is_none() {
                        sender = http_from(source, server).await.ok();
                    }
                    let Some(connection) = sender.as_mut() else {
                        figures.count(None);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let status = send(connection, make(index)).await;
                    if status.is_none() {
                        sender = None;
                    }
                    figures.count(status);
                }
            }));
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    Arc::into_inner(figures).expect("every attacker is done")
}

/// `GET path` as every request of a flood.
pub fn gets(path: &'static str) -> load::MakeRequest {
    Arc::new(move |_| get(path))
}
