//! A server process on a free loopback port, killed by PID when dropped.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command};

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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
