//! The bench's own network namespace: loopback with many IPv4 and IPv6 source addresses (a
//! botnet's 1,000 hosts, a /64 of 256 addresses), none of them on the machine's interfaces.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, ExitStatus, Stdio};

/// Set in the re-executed bench, inside its namespace.
const INSIDE: &str = "DIG_BENCH_NAMESPACE";

/// The /64 the flooding attacker holds, and the one of an honest IPv6 client.
pub const ATTACKER_PREFIX: [u16; 4] = [0x2001, 0xdb8, 0xa, 0];
pub const HONEST_PREFIX: [u16; 4] = [0x2001, 0xdb8, 0xb, 0];
/// Addresses of the attacker's /64 put on loopback.
pub const ATTACKER_ADDRESSES: usize = 256;

pub fn inside() -> bool {
    std::env::var_os(INSIDE).is_some()
}

/// Why this bench cannot make its namespace, if it cannot.
pub fn why_unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root".into());
    }
    for (tool, version) in [("unshare", "--version"), ("ip", "-V")] {
        if Command::new(tool).arg(version).output().is_err() {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// Runs this bench again in a new network namespace (gone when it exits), with `env` set.
pub fn run_inside(env: &[(&str, String)]) -> std::io::Result<ExitStatus> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new("unshare");
    command
        .args(["--net", "--"])
        .arg("sh")
        .arg("-c")
        // Room for the attackers' sockets; the server inherits it.
        .arg(r#"ulimit -n 65536 2>/dev/null; exec "$0" "$@""#)
        .arg(exe)
        .args(std::env::args().skip(1))
        .env(INSIDE, "1")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.status()
}

fn ip(args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new("ip")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("running ip");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("ip's stdin")
            .write_all(text.as_bytes())
            .expect("writing to ip");
    }
    let status = child.wait().expect("ip");
    assert!(status.success(), "ip {args:?} failed");
}

fn address(prefix: [u16; 4], host: u16) -> Ipv6Addr {
    Ipv6Addr::new(prefix[0], prefix[1], prefix[2], prefix[3], 0, 0, 0, host)
}

/// Brings loopback up with the attacker's /64 addresses and the honest client's address.
pub fn set_up_loopback() {
    ip(&["link", "set", "lo", "up"], None);
    let mut batch = String::new();
    for host in 1..=ATTACKER_ADDRESSES as u16 {
        batch.push_str(&format!(
            "address add {}/128 dev lo nodad\n",
            address(ATTACKER_PREFIX, host)
        ));
    }
    batch.push_str(&format!(
        "address add {}/128 dev lo nodad\n",
        address(HONEST_PREFIX, 1)
    ));
    ip(&["-batch", "-"], Some(&batch));
}

/// The flooding attacker's addresses, all in one /64.
pub fn attacker_ipv6() -> Vec<IpAddr> {
    (1..=ATTACKER_ADDRESSES as u16)
        .map(|host| IpAddr::V6(address(ATTACKER_PREFIX, host)))
        .collect()
}

pub fn honest_ipv6() -> IpAddr {
    IpAddr::V6(address(HONEST_PREFIX, 1))
}

/// `count` distinct IPv4 loopback addresses in `127.<net>.0.0/16` (all of 127/8 is local).
pub fn ipv4_hosts(net: u8, count: usize) -> Vec<IpAddr> {
    (0..count)
        .map(|i| {
            IpAddr::V4(Ipv4Addr::new(
                127,
                net,
                (i / 250) as u8,
                (i % 250 + 1) as u8,
            ))
        })
        .collect()
}
