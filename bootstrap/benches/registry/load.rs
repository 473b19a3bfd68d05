//! The load generator: HTTP/1.1 keep-alive connections, plain or TLS, shared by every server the
//! bench measures, so their figures differ only by the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

/// Host name the bench's certificates are made for.
pub const TLS_HOST: &str = "localhost";

/// A server to load: its loopback address, and the TLS client settings when it speaks TLS.
#[derive(Clone)]
pub struct Target {
    pub address: SocketAddr,
    pub tls: Option<Arc<ClientConfig>>,
}

/// Builds the `index`-th request of a batch.
pub type MakeRequest = Arc<dyn Fn(usize) -> Request<Full<Bytes>> + Send + Sync>;

/// Requests completed in a time.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub count: u64,
    pub elapsed: Duration,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

pub type Sender = SendRequest<Full<Bytes>>;

/// Opens one keep-alive HTTP/1.1 connection (after a TLS handshake for a TLS target).
pub async fn connect(target: &Target) -> Sender {
    let stream = TcpStream::connect(target.address)
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", target.address));
    stream.set_nodelay(true).expect("TCP_NODELAY");
    match &target.tls {
        None => handshake(TokioIo::new(stream)).await,
        Some(config) => {
            let name = ServerName::try_from(TLS_HOST).expect("a valid DNS name");
            let stream = TlsConnector::from(config.clone())
                .connect(name, stream)
                .await
                .unwrap_or_else(|e| panic!("TLS handshake with {}: {e}", target.address));
            handshake(TokioIo::new(stream)).await
        }
    }
}

/// An HTTP/1.1 client connection over `io`.
pub async fn handshake<T>(io: TokioIo<T>) -> Sender
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    sender
}

/// Sends one request and reads the whole answer.
pub async fn send(sender: &mut Sender, request: Request<Full<Bytes>>) -> (u16, Bytes) {
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request).await.expect("request sent");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    (status, body)
}

/// How the tasks of a batch connect.
#[derive(Clone)]
pub enum Connections {
    /// One keep-alive connection per task.
    KeepAlive(Target),
    /// A new TLS connection per request, with the client settings `tls(index)` (a client
    /// certificate per request).
    NewPerRequest {
        address: SocketAddr,
        tls: Arc<dyn Fn(usize) -> Arc<ClientConfig> + Send + Sync>,
    },
}

/// Sends requests `0..count` once each, spread over `tasks` concurrent tasks; every answer must
/// have status `expected`.
pub async fn send_all(
    connections: &Connections,
    count: usize,
    make: MakeRequest,
    tasks: usize,
    expected: u16,
) -> Rate {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut running = Vec::new();
    for _ in 0..tasks {
        let (connections, make, next) = (connections.clone(), make.clone(), next.clone());
        running.push(tokio::spawn(async move {
            let mut kept = None;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    break;
                }
                let sender = match &connections {
                    Connections::KeepAlive(target) => match &mut kept {
                        Some(sender) => sender,
                        None => kept.insert(connect(target).await),
                    },
                    Connections::NewPerRequest { address, tls } => {
                        let target = Target {
                            address: *address,
                            tls: Some(tls(index)),
                        };
                        kept.insert(connect(&target).await)
                    }
                };
                let (status, body) = send(sender, make(index)).await;
                assert_eq!(status, expected, "{}", String::from_utf8_lossy(&body));
            }
        }));
    }
    for task in running {
        task.await.expect("sending task");
    }
    Rate {
        count: count as u64,
        elapsed: started.elapsed(),
    }
}

/// GETs `paths` in turn over `connections` keep-alive connections for `seconds`; every answer
/// must be 200.
pub async fn lookups(
    target: &Target,
    paths: Arc<Vec<String>>,
    connections: usize,
    seconds: u64,
) -> Rate {
    let done = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (target, paths, done, next) =
            (target.clone(), paths.clone(), done.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&target).await;
            while Instant::now() < deadline {
                let path = &paths[next.fetch_add(1, Ordering::Relaxed) % paths.len()];
                let request = Request::get(path.as_str())
                    .header("host", TLS_HOST)
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let (status, body) = send(&mut sender, request).await;
                assert_eq!(
                    status,
                    200,
                    "GET {path}: {}",
                    String::from_utf8_lossy(&body)
                );
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("lookup task");
    }
    Rate {
        count: done.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

/// Waits until `address` accepts TCP connections (at most 30 s).
pub async fn wait_ready(address: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(address).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server on {address} did not start within 30 s");
}
