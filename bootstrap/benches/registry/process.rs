//! A server process on a free loopback port, killed by PID when dropped.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command};
use std::sync::OnceLock;

pub struct ServerProcess {
    child: Child,
    pub address: SocketAddr,
}

impl ServerProcess {
    /// Spawns `command(address)` for a loopback address whose port was free a moment ago.
    pub fn spawn(command: impl FnOnce(SocketAddr) -> Command) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free loopback port")
            .port();
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut command = command(address);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", command.get_program()));
        Self { child, address }
    }

    /// Resident memory (VmRSS) in MiB.
    pub fn resident_mib(&self) -> f64 {
        self.status_mib("VmRSS:")
    }

    /// The most resident memory the process has had (VmHWM) in MiB.
    pub fn peak_resident_mib(&self) -> f64 {
        self.status_mib("VmHWM:")
    }

    fn status_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        kib as f64 / 1024.0
    }

    /// CPU time (user + system, every thread) the server has used, in seconds: what a phase
    /// cost the server alone, whatever else runs on the machine.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces): state is the first, utime
        // the 12th and stime the 13th (fields 14 and 15 of proc(5)).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&index| fields.get(index)?.parse::<f64>().ok())
            .sum();
        ticks / clock_ticks_per_second()
    }
}

/// The kernel's clock tick rate for /proc times (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
