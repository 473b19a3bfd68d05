//! moto's server, the AWS stand-in of the Route53 and CloudWatch tests: PyPI `moto` with the
//! Route53 and CloudWatch extras and the two packages its server needs (Flask, Flask-CORS),
//! installed once into a venv under `~/.cache/dig-e2e/` (keyed by the versions), started on a
//! free loopback port, killed by its PID when dropped. That is moto's server as `moto[server]`
//! runs it, without the server extra's other services' dependencies (cfn-lint, sympy, docker...):
//! 140 MB instead of 317 MB, and a third of the install time.
//!
//! Without python3 (or without PyPI) a test prints `SKIPPED` and passes, unless
//! `DIG_E2E_REQUIRE_CLUSTER=1` (set by `e2e/test-all.sh`) turns that into a failure.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    cluster::cluster_required,
    process::{ProcessSpec, TestProcess, free_loopback_port, wait_for_http_ok},
};

/// The moto release the tests run.
pub const MOTO_VERSION: &str = "5.2.5";
/// What is installed: moto's Route53 and CloudWatch, and its server's web framework.
const PACKAGES: [&str; 3] = [
    "moto[route53,cloudwatch]==5.2.5",
    "flask==3.1.3",
    "flask-cors==6.0.5",
];

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error("{command} failed ({status}): {output}")]
    Install {
        command: String,
        status: String,
        output: String,
    },
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Process(#[from] crate::process::ProcessError),
    #[error("moto did not answer on {url}: {reason}\n--- output ---\n{output}")]
    NotReady {
        url: String,
        reason: String,
        output: String,
    },
}

/// `~/.cache/dig-e2e` (or `$XDG_CACHE_HOME/dig-e2e`).
fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("dig-e2e")
}

fn run(command: &mut Command) -> Result<(), MotoError> {
    let text = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| MotoError::Spawn {
            command: text.clone(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(MotoError::Install {
        command: text,
        status: output.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// The venv's python, installing `moto[server]` first if needed. The venv is built beside its
/// final place and renamed into it, so concurrent test runs never see half an install (`python
/// -m` works from a renamed venv; its scripts' shebangs would not, and are not used).
pub fn install() -> Result<PathBuf, MotoError> {
    let venv = cache_dir().join(format!("moto-{MOTO_VERSION}-route53-cloudwatch"));
    let python = venv.join("bin/python");
    if python.is_file() {
        return Ok(python);
    }
    std::fs::create_dir_all(cache_dir()).map_err(|source| MotoError::Spawn {
        command: format!("mkdir -p {}", cache_dir().display()),
        source,
    })?;
    let building = cache_dir().join(format!(
        "moto-{MOTO_VERSION}.building-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&building);
    run(Command::new("python3").args(["-m", "venv"]).arg(&building))?;
    let result = run(Command::new(building.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PACKAGES));
    if let Err(error) = result {
        let _ = std::fs::remove_dir_all(&building);
        return Err(error);
    }
    if std::fs::rename(&building, &venv).is_err() {
        // Another run finished first: use its venv.
        let _ = std::fs::remove_dir_all(&building);
    }
    Ok(python)
}

/// A running moto server on loopback.
pub struct MotoServer {
    process: TestProcess,
    pub endpoint: String,
}

impl MotoServer {
    /// Installs (once) and starts moto; waits until it answers.
    pub async fn start(name: &str) -> Result<MotoServer, MotoError> {
        let python = install()?;
        let port = free_loopback_port()?;
        let process = ProcessSpec::new(&python)
            .name(format!("moto-{name}"))
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .spawn()?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let url = format!("{endpoint}/moto-api/");
        if let Err(error) = wait_for_http_ok(&url, Duration::from_secs(60)).await {
            return Err(MotoError::NotReady {
                url,
                reason: format!("{error:#}"),
                output: process.output(),
            });
        }
        Ok(MotoServer { process, endpoint })
    }

    /// [`MotoServer::start`], or `None` after printing why when python3 or PyPI is missing,
    /// unless `DIG_E2E_REQUIRE_CLUSTER=1`.
    pub async fn start_or_skip(test: &str) -> Option<MotoServer> {
        match Self::start(test).await {
            Ok(server) => Some(server),
            Err(error @ (MotoError::Install { .. } | MotoError::Spawn { .. }))
                if !cluster_required() =>
            {
                eprintln!("SKIPPED {test}: moto[server] could not be installed: {error}");
                None
            }
            Err(error) => panic!("{test}: moto: {error}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Everything moto logged (one line per request).
    pub fn output(&self) -> String {
        self.process.output()
    }
}
