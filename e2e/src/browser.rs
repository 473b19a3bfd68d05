//! Headless Chromium for the page tests: the machine's Chromium (Debian package `chromium`)
//! driven by playwright-core (npm, never a downloaded browser) through `e2e/browser/driver.mjs`,
//! one JSON command per line. playwright-core is installed once under
//! `~/.cache/dig-e2e/playwright-core-<version>`; the driver process is killed by PID when dropped.
//!
//! Without Chromium, Node.js or npm a test skips (prints why and passes), unless
//! `DIG_E2E_REQUIRE_CLUSTER=1` (as `e2e/test-all.sh` sets), which makes that a failure.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{cluster, process::workspace_root};

/// The playwright-core release the driver is written against.
pub const PLAYWRIGHT_VERSION: &str = "1.65.1";
/// Longest one command may take (a page load, a screenshot).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest the one-time `npm install` may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Where a program is on the `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The Chromium executable: `$CHROMIUM`, else `chromium` on the `PATH`.
pub fn chromium() -> Option<PathBuf> {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .filter(|path| path.is_file())
        .or_else(|| find_program("chromium"))
}

/// The folder holding `node_modules/playwright-core`, installed with npm when missing.
pub fn playwright_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let dir = Path::new(&home)
        .join(".cache/dig-e2e")
        .join(format!("playwright-core-{PLAYWRIGHT_VERSION}"));
    let marker = dir.join("node_modules/playwright-core/package.json");
    if marker.is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut npm = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--prefix",
        ])
        .arg(&dir)
        .arg(format!("playwright-core@{PLAYWRIGHT_VERSION}"))
        .stdin(Stdio::null())
        .spawn()
        .context("running npm install playwright-core")?;
    let started = Instant::now();
    loop {
        if let Some(status) = npm.try_wait()? {
            if !status.success() || !marker.is_file() {
                bail!(
                    "npm install playwright-core@{PLAYWRIGHT_VERSION} into {} failed ({status})",
                    dir.display()
                );
            }
            return Ok(dir);
        }
        if started.elapsed() > INSTALL_TIMEOUT {
            let _ = npm.kill();
            let _ = npm.wait();
            bail!("npm install playwright-core took more than {INSTALL_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A headless Chromium page, driven command by command.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::Receiver<String>,
}

impl Browser {
    /// Starts the browser, or returns `None` (after printing why) when Chromium, Node.js or npm
    /// is missing and the tools are not required.
    pub fn start_or_skip(test: &str) -> Option<Browser> {
        let missing: Vec<&str> = [
            ("chromium", chromium().is_none()),
            ("node", find_program("node").is_none()),
            ("npm", find_program("npm").is_none()),
        ]
        .into_iter()
        .filter(|(_, missing)| *missing)
        .map(|(name, _)| name)
        .collect();
        if !missing.is_empty() {
            let reason = format!(
                "{} not installed (Debian packages chromium, nodejs, npm)",
                missing.join(", ")
            );
            if cluster::cluster_required() {
                panic!("{test}: DIG_E2E_REQUIRE_CLUSTER=1 but {reason}");
            }
            eprintln!("SKIPPED {test}: {reason}");
            return None;
        }
        Some(Self::start().unwrap_or_else(|error| panic!("{test}: starting Chromium: {error:#}")))
    }

    pub fn start() -> anyhow::Result<Browser> {
        let dir = playwright_dir()?;
        // The driver runs from the folder whose node_modules holds playwright-core.
        let driver = dir.join("driver.mjs");
        std::fs::copy(workspace_root().join("e2e/browser/driver.mjs"), &driver)
            .with_context(|| format!("copying the driver to {}", driver.display()))?;
        let mut command = Command::new("node");
        command
            .arg(&driver)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(path) = chromium() {
            command.env("CHROMIUM", path);
        }
        let mut child = command.spawn().context("starting node")?;
        let stdin = child.stdin.take().context("driver stdin")?;
        let stdout = child.stdout.take().context("driver stdout")?;
        let (sender, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Browser {
            child,
            stdin,
            replies,
        })
    }

    fn command(&mut self, command: Value) -> anyhow::Result<Value> {
        writeln!(self.stdin, "{command}").context("writing to the browser driver")?;
        self.stdin.flush()?;
        let line = self
            .replies
            .recv_timeout(COMMAND_TIMEOUT)
            .with_context(|| format!("no answer from the browser driver to {command}"))?;
        let reply: Value = serde_json::from_str(&line)
            .with_context(|| format!("the browser driver answered {line:?}"))?;
        if reply["ok"] != true {
            bail!("{command} failed: {}", reply["error"]);
        }
        Ok(reply)
    }

    /// Loads `url` and waits for its `load` event; returns the HTTP status.
    pub fn open(&mut self, url: &str) -> anyhow::Result<u64> {
        let reply = self.command(json!({"cmd": "open", "url": url}))?;
        Ok(reply["status"].as_u64().unwrap_or(0))
    }

    /// The value of a JavaScript expression in the page (promises are awaited).
    pub fn eval(&mut self, js: &str) -> anyhow::Result<Value> {
        Ok(self.command(json!({"cmd": "eval", "js": js}))?["value"].take())
    }

    /// Evaluates `js` every 200 ms until it is truthy (not null, false, 0 or ""), for at most
    /// `timeout`; returns that value.
    pub fn wait_for(&mut self, what: &str, js: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(js)?;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                bail!("{what}: not seen within {timeout:?} (last value {value})");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A full-page PNG screenshot at `path`.
    pub fn screenshot(&mut self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        self.command(json!({"cmd": "screenshot", "path": path}))?;
        Ok(())
    }

    /// Console errors and warnings, uncaught exceptions and failed requests seen so far.
    pub fn console_problems(&mut self) -> anyhow::Result<Vec<String>> {
        let reply = self.command(json!({"cmd": "console"}))?;
        Ok(reply["value"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "close"}));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Child::kill signals the driver by its PID; Chromium exits with its pipe to the driver.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
