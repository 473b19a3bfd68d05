//! Syncthing's global discovery server (`stdiscosrv`, Debian package `syncthing-discosrv`,
//! 1.19), the peer this bench compares with. Its API (read from the 1.19 source):
//! - `POST /` with `{"addresses": [...]}` announces the device whose id is the SHA-256 of the
//!   client certificate: the TLS client certificate, or with `-http` (behind a proxy) the DER
//!   certificate in the `X-Tls-Client-Cert-Der-Base64` header; answers 204. Loopback addresses
//!   are dropped, so devices announce private ones.
//! - `GET /?device=ID` answers the device's addresses (200), 404 when unknown.
//!   The id may be given as the 52-character base32 of the hash.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use sha2::{Digest, Sha256};

use crate::load::{MakeRequest, TLS_HOST};
use crate::process::ServerProcess;
use crate::tls::Certificate;

/// The `stdiscosrv` binary: `$DIG_BENCH_STDISCOSRV`, else `stdiscosrv` on the `PATH`.
pub fn find_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("DIG_BENCH_STDISCOSRV") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|folder| folder.join("stdiscosrv"))
            .find(|path| path.is_file())
    })
}

/// Starts `stdiscosrv` on a free loopback port with its database in `database` (kept between
/// runs, so a TLS instance can serve what an `-http` instance was told), plain HTTP or TLS with
/// the certificate `cert`/`key`. No replication listener is started (no `-replicate`).
pub fn start(binary: &Path, database: &Path, cert: &Path, key: &Path, tls: bool) -> ServerProcess {
    ServerProcess::spawn(|address| {
        let mut command = Command::new(binary);
        command
            .arg("-listen")
            .arg(address.to_string())
            .arg("-db-dir")
            .arg(database)
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !tls {
            command.arg("-http");
        }
        command
    })
}

/// A Syncthing device: its certificate and the id the server derives from it.
pub struct Device {
    pub certificate: Certificate,
    pub id: String,
}

/// The device id as `stdiscosrv` accepts it: base32 of the certificate's SHA-256, unpadded.
pub fn device_id(certificate_der: &[u8]) -> String {
    let digest = Sha256::digest(certificate_der);
    data_encoding::BASE32_NOPAD.encode(&digest)
}

/// `count` devices with fresh certificates, made on every core.
pub fn devices(count: usize) -> Vec<Device> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let per_thread = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let made = per_thread.min(count.saturating_sub(thread * per_thread));
                scope.spawn(move || {
                    (0..made)
                        .map(|_| {
                            // Syncthing's own device certificates are issued to "syncthing".
                            let certificate = Certificate::generate(&["syncthing"]);
                            let id = device_id(&certificate.der);
                            Device { certificate, id }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("certificate worker"))
            .collect()
    })
}

fn announcement_body(index: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"addresses":["tcp://10.{}.{}.{}:22000","quic://10.{}.{}.{}:22000"]}}"#,
        index >> 16 & 255,
        index >> 8 & 255,
        index & 255,
        index >> 16 & 255,
        index >> 8 & 255,
        index & 255,
    ))
}

/// Announcements of `devices` to an `-http` instance, the certificate in the header a TLS
/// proxy would set.
pub fn announce_with_header(devices: Arc<Vec<Device>>) -> MakeRequest {
    let engine = base64::engine::general_purpose::STANDARD;
    let headers: Arc<Vec<String>> = Arc::new(
        devices
            .iter()
            .map(|device| engine.encode(&device.certificate.der))
            .collect(),
    );
    Arc::new(move |index| {
        Request::post("/")
            .header("host", TLS_HOST)
            .header("content-type", "application/json")
            .header("x-tls-client-cert-der-base64", headers[index].as_str())
            .body(Full::new(announcement_body(index)))
            .expect("announcement request")
    })
}

/// Announcements sent over TLS connections that present the device's certificate.
pub fn announce_over_tls() -> MakeRequest {
    Arc::new(|index| {
        Request::post("/")
            .header("host", TLS_HOST)
            .header("content-type", "application/json")
            .body(Full::new(announcement_body(index)))
            .expect("announcement request")
    })
}

/// `GET /?device=ID` of every device.
pub fn lookup_paths(devices: &[Device]) -> Vec<String> {
    devices
        .iter()
        .map(|device| format!("/?device={}", device.id))
        .collect()
}
