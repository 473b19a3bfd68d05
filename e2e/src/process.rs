//! Real processes for tests and benches: locating the workspace binaries, picking free loopback
//! ports, starting a binary with its output captured, signalling it by PID, and killing it when the
//! handle is dropped (so a failing test never leaves a process behind).
//!
//! Binaries are not built here: `e2e/test-all.sh` runs `cargo build --workspace --bins` first.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use parking_lot::Mutex;

/// Most bytes of a process's output kept in memory (the newest are kept).
const MAX_CAPTURED_OUTPUT: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(
        "binary {name} not found in {searched:?}; build it first with `cargo build --workspace --bins`"
    )]
    BinaryNotFound {
        name: String,
        searched: Vec<PathBuf>,
    },
    #[error("starting {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("signalling {name} (pid {pid}) with {signal}: {source}")]
    Signal {
        name: String,
        pid: u32,
        signal: Signal,
        #[source]
        source: nix::Error,
    },
    #[error("waiting for {name} (pid {pid}): {source}")]
    Wait {
        name: String,
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("no free loopback port: {0}")]
    NoPort(std::io::Error),
}

/// The workspace root (the folder holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ sits in the workspace root")
        .to_path_buf()
}

/// The cargo target folder: `$CARGO_TARGET_DIR`, or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// Path of a workspace binary, e.g. `binary_path("dig-bootstrap")`. Looks in the profile this
/// code was built with first (`debug` or `release`), then the other one.
pub fn binary_path(name: &str) -> Result<PathBuf, ProcessError> {
    let profiles: [&str; 2] = if cfg!(debug_assertions) {
        ["debug", "release"]
    } else {
        ["release", "debug"]
    };
    let searched: Vec<PathBuf> = profiles
        .iter()
        .map(|profile| target_dir().join(profile).join(name))
        .collect();
    searched
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| ProcessError::BinaryNotFound {
            name: name.to_owned(),
            searched,
        })
}

/// A loopback port that was free a moment ago. Another process may take it before the caller
/// binds it; callers that start servers retry on a bind failure.
pub fn free_loopback_port() -> Result<u16, ProcessError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(ProcessError::NoPort)?;
    Ok(listener.local_addr().map_err(ProcessError::NoPort)?.port())
}

/// A loopback socket address on a free port.
pub fn free_loopback_addr() -> Result<SocketAddr, ProcessError> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_loopback_port()?)))
}

/// What to start.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    binary: PathBuf,
    name: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    current_dir: Option<PathBuf>,
}

impl ProcessSpec {
    /// A workspace binary by name (see [`binary_path`]).
    pub fn workspace_binary(name: &str) -> Result<Self, ProcessError> {
        Ok(Self::new(binary_path(name)?))
    }

    pub fn new(binary: impl Into<PathBuf>) -> Self {
        let binary = binary.into();
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| binary.display().to_string());
        Self {
            binary,
            name,
            args: Vec::new(),
            envs: Vec::new(),
            current_dir: None,
        }
    }

    /// A label used in errors and in the output dump (e.g. `node-2`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Starts the process with stdout and stderr captured (see [`TestProcess::output`]).
    pub fn spawn(&self) -> Result<TestProcess, ProcessError> {
        let mut command = Command::new(&self.binary);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !self.envs.iter().any(|(k, _)| k == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let output = Arc::new(Mutex::new(Vec::new()));
        let readers = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|stream| capture(stream, output.clone()))
        .collect();
        Ok(TestProcess {
            child,
            name: self.name.clone(),
            output,
            readers,
            exit: None,
        })
    }
}

fn capture(
    mut stream: Box<dyn Read + Send>,
    output: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            let mut output = output.lock();
            output.extend_from_slice(&buffer[..n]);
            if output.len() > MAX_CAPTURED_OUTPUT {
                let excess = output.len() - MAX_CAPTURED_OUTPUT;
                output.drain(..excess);
            }
        }
    })
}

/// A running process, killed (SIGKILL, by PID) when dropped. If the current thread is panicking
/// (a failing test), its captured output is printed to stderr first.
pub struct TestProcess {
    child: Child,
    name: String,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

impl TestProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything the process wrote to stdout and stderr so far (interleaved as read).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock()).into_owned()
    }

    /// Sends `signal` to the process by PID, unless it has already been reaped.
    pub fn signal(&mut self, signal: Signal) -> Result<(), ProcessError> {
        if self.try_exit_status()?.is_some() {
            return Ok(());
        }
        let pid = self.pid();
        kill(Pid::from_raw(pid as i32), signal).map_err(|source| ProcessError::Signal {
            name: self.name.clone(),
            pid,
            signal,
            source,
        })
    }

    /// SIGTERM: ask the process to shut down gracefully.
    pub fn terminate(&mut self) -> Result<(), ProcessError> {
        self.signal(Signal::SIGTERM)
    }

    /// The exit status if the process has exited (reaping it), without waiting.
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().map_err(|source| ProcessError::Wait {
                name: self.name.clone(),
                pid: self.child.id(),
                source,
            })?;
        }
        Ok(self.exit)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.try_exit_status(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit. `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Async version of [`Self::wait_timeout`], for tokio tests.
    pub async fn wait_timeout_async(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<ExitStatus>, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if matches!(self.try_exit_status(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGKILL);
            self.exit = self.child.wait().ok();
        }
    }
}

impl Drop for TestProcess {
    fn drop(&mut self) {
        self.kill();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- output of {} (pid {}) -----\n{}\n----- end of {} -----",
                self.name,
                self.child.id(),
                self.output(),
                self.name
            );
        }
    }
}

/// Polls `url` with GET until it answers 2xx, for at most `timeout`. Returns the last error.
pub async fn wait_for_http_ok(url: &str, timeout: Duration) -> anyhow::Result<()> {
    // reqwest is built without a default rustls provider: install one before any client.
    dig_core::crypto::install_crypto_provider();
    wait_for_http_ok_with(&reqwest::Client::new(), url, timeout).await
}

/// [`wait_for_http_ok`] with a given client (e.g. one that trusts a test certificate).
pub async fn wait_for_http_ok_with(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_error;
    loop {
        match client.get(url).timeout(Duration::from_secs(2)).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => last_error = format!("HTTP {}", response.status()),
            Err(e) => last_error = e.to_string(),
        }
        if Instant::now() >= deadline {
            anyhow::bail!("{url} did not answer 2xx within {timeout:?}: {last_error}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` every 250 ms until it gives a value, for at most `limit`. Panics, with every
/// process's output, when one of `processes` exits meanwhile or the time is up: `what` says what
/// was awaited.
pub fn wait_while_running<T>(
    limit: Duration,
    what: &str,
    processes: &mut [TestProcess],
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    let logs = |processes: &[TestProcess]| {
        processes
            .iter()
            .map(|p| format!("--- {}:\n{}", p.name(), p.output()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    loop {
        if let Some(value) = check() {
            return value;
        }
        if let Some(exited) = processes.iter_mut().position(|p| !p.is_running()) {
            let name = processes[exited].name().to_string();
            panic!(
                "{name} exited while waiting for {what}\n{}",
                logs(processes)
            );
        }
        if Instant::now() >= deadline {
            panic!(
                "no {what} within {} s\n{}",
                limit.as_secs(),
                logs(processes)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
