//! Network namespaces that a test creates for itself, so that processes get their own addresses
//! (as pods do) without touching the machine's interfaces: one namespace per "pod", each joined by
//! a veth pair to a bridge that lives in a namespace of its own. Everything is deleted on drop.

use std::net::Ipv4Addr;
use std::process::Command;

use thiserror::Error;

/// A namespace could not be created or wired.
#[derive(Debug, Error)]
pub enum NetnsError {
    #[error("network namespaces are unavailable: {0}")]
    Unavailable(String),
    #[error("`ip {args}` failed: {reason}")]
    Ip { args: String, reason: String },
}

/// Why this machine cannot run namespace tests (not root, no iproute2), if it cannot.
pub fn why_unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("the `ip` command (iproute2) is not installed".into());
    }
    None
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    let failed = |reason: String| NetnsError::Ip {
        args: args.join(" "),
        reason,
    };
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| failed(error.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}

/// One namespace on the bridge, with its address.
#[derive(Clone, Debug)]
pub struct PodNamespace {
    pub name: String,
    pub address: Ipv4Addr,
}

/// A bridge and the namespaces plugged into it, in `10.<subnet>.0/24` (addresses `.1`, `.2`, ...).
pub struct PodNetwork {
    switch: String,
    pub pods: Vec<PodNamespace>,
}

impl PodNetwork {
    /// Creates `count` namespaces named `<tag>-<pid>-<index>` on one bridge. `subnet` picks the
    /// second and third octets (`10.<a>.<b>.0/24`) so that tests running at once do not clash.
    pub fn create(tag: &str, count: usize, subnet: (u8, u8)) -> Result<Self, NetnsError> {
        if let Some(reason) = why_unavailable() {
            return Err(NetnsError::Unavailable(reason));
        }
        let id = std::process::id() % 100_000;
        let switch = format!("{tag}-{id}-sw");
        ip(&["netns", "add", &switch])?;
        // From here on, drop removes whatever was made.
        let mut network = Self {
            switch,
            pods: Vec::new(),
        };
        ip(&[
            "-n",
            &network.switch,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
        ])?;
        ip(&["-n", &network.switch, "link", "set", "br0", "up"])?;
        for index in 0..count {
            let name = format!("{tag}-{id}-{index}");
            ip(&["netns", "add", &name])?;
            let address = Ipv4Addr::new(10, subnet.0, subnet.1, index as u8 + 1);
            network.pods.push(PodNamespace {
                name: name.clone(),
                address,
            });
            // Every pod's end is eth0 in its own namespace; the switch ends are unique in theirs.
            let switch_end = format!("veth{index}");
            ip(&[
                "-n",
                &name,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                &switch_end,
                "netns",
                &network.switch,
            ])?;
            let cidr = format!("{address}/24");
            ip(&["-n", &name, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &name, "link", "set", "eth0", "up"])?;
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &network.switch,
                "link",
                "set",
                &switch_end,
                "master",
                "br0",
            ])?;
            ip(&["-n", &network.switch, "link", "set", &switch_end, "up"])?;
        }
        Ok(network)
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        // Deleting a namespace deletes its interfaces, and with them the veth peers.
        for pod in &self.pods {
            let _ = ip(&["netns", "del", &pod.name]);
        }
        let _ = ip(&["netns", "del", &self.switch]);
    }
}

/// `dig-sidecar status --json` run inside a namespace, against a node API on its port 8080;
/// `None` while the node does not answer.
pub fn sidecar_status_in(namespace: &str) -> Option<serde_json::Value> {
    let sidecar = crate::process::binary_path("dig-sidecar").ok()?;
    let output = Command::new("ip")
        .args(["netns", "exec", namespace])
        .arg(sidecar)
        .args(["status", "--json", "--api", "http://127.0.0.1:8080"])
        .output()
        .ok()?;
    serde_json::from_slice(&output.stdout).ok()
}

/// A network namespace with only its loopback, whose `/etc/hosts` (for processes started with
/// [`LoopbackNamespace::command`], which is `ip netns exec`) maps names to chosen loopback
/// addresses: several servers behind one name, without touching the machine's resolver.
pub struct LoopbackNamespace {
    pub name: String,
    hosts_dir: std::path::PathBuf,
}

impl LoopbackNamespace {
    /// Creates `<tag>-<pid>` with `lo` up and `hosts` (name, address) in its hosts file.
    pub fn create(tag: &str, hosts: &[(&str, Ipv4Addr)]) -> Result<Self, NetnsError> {
        if let Some(reason) = why_unavailable() {
            return Err(NetnsError::Unavailable(reason));
        }
        let name = format!("{tag}-{}", std::process::id() % 100_000);
        ip(&["netns", "add", &name])?;
        let namespace = Self {
            hosts_dir: std::path::Path::new("/etc/netns").join(&name),
            name,
        };
        ip(&["-n", &namespace.name, "link", "set", "lo", "up"])?;
        let mut text = String::from("127.0.0.1 localhost\n");
        for (host, address) in hosts {
            text.push_str(&format!("{address} {host}\n"));
        }
        std::fs::create_dir_all(&namespace.hosts_dir)
            .and_then(|()| std::fs::write(namespace.hosts_dir.join("hosts"), text))
            .map_err(|e| {
                NetnsError::Unavailable(format!("writing {:?}: {e}", namespace.hosts_dir))
            })?;
        Ok(namespace)
    }

    /// `ip netns exec <name> <program>`: the program runs in the namespace with its hosts file.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

impl Drop for LoopbackNamespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = std::fs::remove_dir_all(&self.hosts_dir);
    }
}
