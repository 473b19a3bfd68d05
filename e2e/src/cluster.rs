//! A real Kubernetes control plane for end-to-end tests: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and kwok with one fake node, on loopback; or the same
//! control plane with one real node ([`TestCluster::start_real_node`]: kubelet, kube-proxy,
//! containerd, CoreDNS, PersistentVolumes) whose pods run as containers in a network namespace
//! of their own.
//!
//! `e2e/cluster/cluster.sh` builds the tools (cached under `~/.cache/dig-e2e`) and starts and
//! stops the processes; [`TestCluster`] runs it with a fresh run dir per cluster and stops the
//! cluster when dropped.
//!
//! The methods that run `cluster.sh` or kubectl block the calling thread (a restart takes a few
//! seconds): call them from a multi-threaded tokio runtime, as the smoke test does, or through
//! `tokio::task::spawn_blocking`.
//!
//! Gating: when the tools have not been built, [`TestCluster::start_or_skip`] prints why and
//! returns `None` so that a plain `cargo test` passes on a machine without Go; with
//! `DIG_E2E_REQUIRE_CLUSTER=1` (set by `e2e/test-all.sh`, which builds the tools first) the same
//! situation fails the test instead.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Env var that turns "control-plane tools missing" from a skip into a test failure.
pub const REQUIRE_CLUSTER_ENV: &str = "DIG_E2E_REQUIRE_CLUSTER";
/// Env var naming the directory of the built tools (kube-apiserver, kubectl, helm, ...).
pub const TOOLS_ENV: &str = "DIG_E2E_TOOLS";
/// The Kubernetes version the tools are built from; `/version` of the API server reports it.
pub const KUBERNETES_VERSION: &str = "v1.34.4";
/// The fake node kwok manages; every Pod is scheduled onto it.
pub const FAKE_NODE: &str = "kwok-node-0";
/// The default StorageClass: kwok creates and binds a PersistentVolume for each of its claims.
pub const STORAGE_CLASS: &str = "kwok-volume";
/// The real node's name.
pub const REAL_NODE: &str = "dig-e2e-node";
/// The real node's default StorageClass: a directory of the run dir per claim, as a `local`
/// PersistentVolume (grows on request).
pub const REAL_NODE_STORAGE_CLASS: &str = "dig-e2e-local";
/// The real node's StorageClass of the same volumes without `allowVolumeExpansion`.
pub const REAL_NODE_FIXED_STORAGE_CLASS: &str = "dig-e2e-local-fixed";

/// `cluster.sh` exits with this code when the tools are not built.
pub(crate) const TOOLS_MISSING_EXIT: i32 = 3;
/// The file in a run dir naming the PID of the process that owns that cluster.
const OWNER_FILE: &str = "owner.pid";
/// Longest a kubectl command may run (the longest `kubectl wait` of the tests is a few minutes);
/// a hung one is killed rather than hanging the test run.
pub const KUBECTL_TIME_LIMIT: Duration = Duration::from_secs(600);
/// Longest a `cluster.sh` command may run (`up` waits for each component a bounded time).
pub const SCRIPT_TIME_LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("control-plane tools are not built: {reason}")]
    ToolsMissing { reason: String },
    #[error("`cluster.sh {command}` for run dir {run_dir} failed ({status}):\n{stderr}")]
    Script {
        command: String,
        run_dir: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot prepare run dir {path}: {source}")]
    RunDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{command}` still ran after {limit:?} and was killed; its error output:\n{stderr}")]
    TimedOut {
        command: String,
        limit: Duration,
        stderr: String,
    },
    #[error("`kubectl {args}` failed ({status}):\n{stdout}{stderr}")]
    Kubectl {
        args: String,
        status: String,
        /// What kubectl printed before failing (`auth can-i` answers `no` there).
        stdout: String,
        stderr: String,
    },
    #[error("`helm {args}` failed ({status}):\n{stderr}")]
    Helm {
        args: String,
        status: String,
        stderr: String,
    },
    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("cannot build a client from kubeconfig {path}: {source}")]
    Client { path: PathBuf, source: kube::Error },
}

/// One running control plane; stopped (every process, by PID) when dropped.
#[derive(Debug)]
pub struct TestCluster {
    run_dir: PathBuf,
    tools: PathBuf,
    kubeconfig: PathBuf,
    running: bool,
    keep_logs: bool,
}

/// The script that builds, starts and stops the control plane.
pub fn cluster_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/cluster.sh")
}

/// Whether tests must fail rather than skip when the tools are missing.
pub fn cluster_required() -> bool {
    std::env::var(REQUIRE_CLUSTER_ENV).is_ok_and(|value| value == "1")
}

/// The directory holding the built tools ($DIG_E2E_TOOLS, or the cache of `cluster.sh build`).
pub fn tools_dir() -> Result<PathBuf, ClusterError> {
    let script = cluster_script();
    let output = Command::new(&script)
        .arg("tools-dir")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ClusterError::Spawn {
            program: script.clone(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    match output.status.code() {
        Some(0) => Ok(PathBuf::from(
            String::from_utf8_lossy(&output.stdout).trim(),
        )),
        Some(TOOLS_MISSING_EXIT) => Err(ClusterError::ToolsMissing { reason: stderr }),
        _ => Err(ClusterError::Script {
            command: "tools-dir".into(),
            run_dir: PathBuf::new(),
            status: output.status.to_string(),
            stderr,
        }),
    }
}

/// The tools directory for a test that needs the tools but no cluster (helm, kubeconform);
/// `None` (after printing why) when they are not built, unless `DIG_E2E_REQUIRE_CLUSTER=1`,
/// which makes that a panic.
pub fn tools_or_skip(test: &str) -> Option<PathBuf> {
    match tools_dir() {
        Ok(dir) => Some(dir),
        Err(ClusterError::ToolsMissing { reason }) => {
            skip_or_fail(test, &reason);
            None
        }
        Err(error) => panic!("{test}: cannot locate the control-plane tools: {error}"),
    }
}

/// Runs `cluster.sh kubeconform` (offline schema validation, strict) on the YAML `documents`,
/// with kubeconform's `flags` (e.g. `["-skip", "ServiceMonitor"]`) and the schemas of the CRD
/// files `crds` (none: the repository's `crds/*.yaml`). Bounded by [`SCRIPT_TIME_LIMIT`]; the
/// output is kubeconform's, whatever its verdict.
pub fn kubeconform(
    tools: &Path,
    crds: &[&Path],
    flags: &[&str],
    documents: &str,
) -> Result<Output, ClusterError> {
    let crd_list = crds
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let mut command = Command::new(cluster_script());
    command
        .args(["kubeconform", "-output", "text"])
        .args(flags)
        .arg("-")
        .env(TOOLS_ENV, tools)
        .env("DIG_E2E_CRDS", crd_list);
    output_within(
        command,
        "cluster.sh kubeconform",
        documents,
        SCRIPT_TIME_LIMIT,
    )
}

/// Runs the tools' kubectl with `kubeconfig` and `stdin` as its standard input, at most
/// [`KUBECTL_TIME_LIMIT`]; returns its standard output, or an error with its error output.
pub fn kubectl<I, S>(
    tools: &Path,
    kubeconfig: &Path,
    args: I,
    stdin: &str,
) -> Result<String, ClusterError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let (args, shown) = owned_and_shown(args);
    let mut command = Command::new(tools.join("kubectl"));
    command.arg("--kubeconfig").arg(kubeconfig).args(&args);
    let output = output_within(
        command,
        &format!("kubectl {shown}"),
        stdin,
        KUBECTL_TIME_LIMIT,
    )?;
    if !output.status.success() {
        return Err(ClusterError::Kubectl {
            args: shown,
            status: output.status.to_string(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Prints why `test` is skipped, or panics with it when `DIG_E2E_REQUIRE_CLUSTER=1`.
pub fn skip_or_fail(test: &str, reason: &str) {
    match missing_tools_verdict(test, reason, cluster_required()) {
        Ok(skip) => eprintln!("{skip}"),
        Err(failure) => panic!("{failure}"),
    }
}

/// What a test does when the tools are missing: `Ok(message)` to print and skip, or
/// `Err(message)` to fail with when the tools are required.
fn missing_tools_verdict(test: &str, reason: &str, required: bool) -> Result<String, String> {
    let reason = reason.trim();
    if required {
        Err(format!(
            "{test}: {REQUIRE_CLUSTER_ENV}=1 but the control-plane tools are missing: {reason}"
        ))
    } else {
        Ok(format!(
            "SKIPPED {test}: {reason}\n  (this test needs the control-plane tools; build them with \
             `e2e/cluster/cluster.sh build`, or run `e2e/test-all.sh`, which builds them and sets \
             {REQUIRE_CLUSTER_ENV}=1 so that missing tools fail the test)"
        ))
    }
}

/// Where the run dirs of test clusters live: `${TMPDIR:-/tmp}/dig-e2e-clusters`.
fn runs_base() -> PathBuf {
    std::env::temp_dir().join("dig-e2e-clusters")
}

fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Stops clusters whose owning test process died without dropping them (killed, aborted), and
/// drops their etcd data; their logs stay for whoever debugs that run.
fn clean_up_abandoned_runs() {
    let Ok(entries) = std::fs::read_dir(runs_base()) else {
        return;
    };
    for entry in entries.flatten() {
        let run_dir = entry.path();
        let owner = std::fs::read_to_string(run_dir.join(OWNER_FILE))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        match owner {
            Some(pid) if !process_alive(pid) => {
                let _ = run_script("down", &run_dir);
                let _ = std::fs::remove_file(run_dir.join(OWNER_FILE));
                let _ = std::fs::remove_dir_all(run_dir.join("etcd"));
            }
            _ => {}
        }
    }
}

/// Runs `command` with `stdin` as its input until it exits, at most `limit`; one still running
/// then is killed by its PID and reported with what it wrote to its error output so far.
pub(crate) fn output_within(
    mut command: Command,
    shown: &str,
    stdin: &str,
    limit: Duration,
) -> Result<Output, ClusterError> {
    let program = PathBuf::from(command.get_program());
    let spawn_error = |source| ClusterError::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    // Input and output on their own threads, so that neither side blocks on a full pipe.
    let input = child.stdin.take();
    let stdin = stdin.to_owned();
    let writer = std::thread::spawn(move || {
        if let Some(mut input) = input {
            // A command that exits early closes its input; its exit status tells why.
            let _ = input.write_all(stdin.as_bytes());
        }
    });
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(spawn_error)? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(ClusterError::TimedOut {
            command: shown.to_string(),
            limit,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }),
    }
}

fn run_script(command: &str, run_dir: &Path) -> Result<Output, ClusterError> {
    run_script_with(command, &[], run_dir)
}

/// `cluster.sh --run-dir RUN_DIR command extra...`.
fn run_script_with(
    command: &str,
    extra: &[&OsStr],
    run_dir: &Path,
) -> Result<Output, ClusterError> {
    let script = cluster_script();
    let mut invocation = Command::new(&script);
    invocation
        .arg("--run-dir")
        .arg(run_dir)
        .arg(command)
        .args(extra);
    let shown_extra: Vec<_> = extra.iter().map(|a| a.to_string_lossy()).collect();
    let output = output_within(
        invocation,
        &format!(
            "cluster.sh --run-dir {} {command} {}",
            run_dir.display(),
            shown_extra.join(" ")
        ),
        "",
        SCRIPT_TIME_LIMIT,
    )?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.code() == Some(TOOLS_MISSING_EXIT) {
        return Err(ClusterError::ToolsMissing { reason: stderr });
    }
    if !output.status.success() {
        return Err(ClusterError::Script {
            command: command.into(),
            run_dir: run_dir.to_owned(),
            status: output.status.to_string(),
            stderr,
        });
    }
    Ok(output)
}

/// How often [`TestCluster::start`] tries when a port it picked was taken meanwhile.
const START_ATTEMPTS: u32 = 3;

/// The real node of a cluster started by [`TestCluster::start_real_node`], as `cluster.sh`
/// recorded it (RUN_DIR/node.env).
#[derive(Clone, Debug)]
pub struct RealNode {
    /// The Node object's name ([`REAL_NODE`]).
    pub name: String,
    /// The network namespace holding the kubelet, kube-proxy, containerd, CoreDNS and the pods.
    pub netns: String,
    /// The node's address (kubelet, cluster DNS); the machine routes the pod range to it.
    pub node_ip: std::net::Ipv4Addr,
    /// The machine's end of the node's link, where the API server listens.
    pub host_ip: std::net::Ipv4Addr,
    /// The pods' addresses, reachable from the machine (and so from the tests).
    pub pod_cidr: String,
    /// Where the volume provisioner puts each claim's directory (`pvc-<claim uid>`).
    pub volumes_dir: PathBuf,
}

impl RealNode {
    fn read(run_dir: &Path) -> Option<RealNode> {
        let text = std::fs::read_to_string(run_dir.join("node.env")).ok()?;
        let value = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("{key}=")))
                .map(str::to_owned)
        };
        Some(RealNode {
            name: value("NODE_NAME")?,
            netns: value("NODE_NETNS")?,
            node_ip: value("NODE_IP")?.parse().ok()?,
            host_ip: value("HOST_IP")?.parse().ok()?,
            pod_cidr: value("POD_CIDR")?,
            volumes_dir: run_dir.join("node/volumes"),
        })
    }

    /// The directory behind the PersistentVolumeClaim whose uid is `claim_uid`.
    pub fn volume_dir(&self, claim_uid: &str) -> PathBuf {
        self.volumes_dir.join(format!("pvc-{claim_uid}"))
    }
}

impl TestCluster {
    /// Starts a control plane in a fresh run dir whose name starts with `name`, and waits until
    /// the API server is ready, the fake node is Ready and the default service account exists.
    pub fn start(name: &str) -> Result<TestCluster, ClusterError> {
        Self::start_with(name, &[])
    }

    /// Starts a control plane and a real node (`cluster.sh up --real-node`), and waits until the
    /// node is Ready with kube-proxy and CoreDNS serving. `images`: a directory of image archives
    /// ([`crate::images::Images::build`]) imported into the node's containerd before returning.
    /// Needs root and Debian's containerd, runc, iptables and CNI plugins: without them this is
    /// [`ClusterError::ToolsMissing`] naming what lacks.
    pub fn start_real_node(name: &str, images: Option<&Path>) -> Result<TestCluster, ClusterError> {
        let mut args: Vec<&OsStr> = vec![OsStr::new("--real-node")];
        if let Some(dir) = images {
            args.extend([OsStr::new("--images"), dir.as_os_str()]);
        }
        Self::start_with(name, &args)
    }

    /// [`TestCluster::start_real_node`] with the skip-or-fail rule of
    /// [`TestCluster::start_or_skip`].
    pub fn start_real_node_or_skip(name: &str, images: Option<&Path>) -> Option<TestCluster> {
        match TestCluster::start_real_node(name, images) {
            Ok(cluster) => Some(cluster),
            Err(ClusterError::ToolsMissing { reason }) => {
                skip_or_fail(name, &reason);
                None
            }
            Err(error) => panic!("cannot start test cluster {name} with a real node: {error}"),
        }
    }

    /// The real node, when this cluster has one.
    pub fn real_node(&self) -> Option<RealNode> {
        RealNode::read(&self.run_dir)
    }

    /// Imports image archives (a directory of `*.tar`, or one archive) into the real node.
    pub fn load_images(&self, archives: &Path) -> Result<(), ClusterError> {
        run_script_with("load-images", &[archives.as_os_str()], &self.run_dir).map(drop)
    }

    /// Names image `source` of the real node `target` too (same content, a second tag), as a
    /// registry serves a new release: a pod spec naming `target` rolls without a new build.
    pub fn tag_image(&self, source: &str, target: &str) -> Result<(), ClusterError> {
        run_script_with(
            "tag-image",
            &[OsStr::new(source), OsStr::new(target)],
            &self.run_dir,
        )
        .map(drop)
    }

    /// The images every real node has: `PAUSE_IMAGE` and `BUSYBOX_IMAGE` (the chart's test pod).
    pub fn node_image(&self, key: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.tools.join("images/images.env")).ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
    }

    fn start_with(name: &str, up_args: &[&OsStr]) -> Result<TestCluster, ClusterError> {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        clean_up_abandoned_runs();
        let tools = tools_dir()?;
        let run_dir = runs_base().join(format!(
            "{name}-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        let prepare = |path: &Path| -> std::io::Result<()> {
            if path.exists() {
                std::fs::remove_dir_all(path)?;
            }
            std::fs::create_dir_all(path)?;
            std::fs::write(path.join(OWNER_FILE), std::process::id().to_string())
        };
        prepare(&run_dir).map_err(|source| ClusterError::RunDir {
            path: run_dir.clone(),
            source,
        })?;
        let mut cluster = TestCluster {
            kubeconfig: run_dir.join("kubeconfig"),
            run_dir,
            tools,
            running: true,
            keep_logs: false,
        };
        let started = std::time::Instant::now();
        let mut attempt = 1;
        while let Err(error) = run_script_with("up", up_args, &cluster.run_dir) {
            // `up` picks free ports before the components bind them; another process on the
            // machine can take one in between. Such a start is tried again on fresh ports.
            let port_taken = matches!(&error, ClusterError::Script { stderr, .. }
                if stderr.contains("address already in use"));
            if !port_taken || attempt == START_ATTEMPTS {
                // Dropping `cluster` stops whatever did start; its logs explain the failure.
                cluster.keep_logs = true;
                return Err(error);
            }
            eprintln!("test cluster {name}: a port was taken while starting, trying again");
            run_script("down", &cluster.run_dir)?;
            prepare(&cluster.run_dir).map_err(|source| ClusterError::RunDir {
                path: cluster.run_dir.clone(),
                source,
            })?;
            attempt += 1;
        }
        eprintln!(
            "test cluster {name} up in {:.1} s (run dir {})",
            started.elapsed().as_secs_f64(),
            cluster.run_dir.display()
        );
        Ok(cluster)
    }

    /// [`TestCluster::start`], except that missing tools skip the calling test with a message
    /// (`None`), or fail it when `DIG_E2E_REQUIRE_CLUSTER=1`. Any other failure panics.
    pub fn start_or_skip(name: &str) -> Option<TestCluster> {
        match TestCluster::start(name) {
            Ok(cluster) => Some(cluster),
            Err(ClusterError::ToolsMissing { reason }) => {
                skip_or_fail(name, &reason);
                None
            }
            Err(error) => panic!("cannot start test cluster {name}: {error}"),
        }
    }

    /// The kubeconfig of the admin user (in `system:masters`), with the CA inline.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The run dir: kubeconfigs, certificates, `logs/<component>.log`, `pids/`.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The directory of the built tools (kubectl, helm, kubeconform, ...).
    pub fn tools_dir(&self) -> &Path {
        &self.tools
    }

    /// The path of one built tool, e.g. `tool("helm")`.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.tools.join(name)
    }

    /// The log file of one component: etcd, kube-apiserver, kube-controller-manager,
    /// kube-scheduler or kwok; with a real node also containerd, kubelet, kube-proxy, coredns and
    /// volume-provisioner.
    pub fn log_path(&self, component: &str) -> PathBuf {
        self.run_dir.join("logs").join(format!("{component}.log"))
    }

    /// A client for the admin user, built from the kubeconfig file as any user's would be.
    pub async fn client(&self) -> Result<kube::Client, ClusterError> {
        self.client_with(true).await
    }

    /// [`TestCluster::client`] that returns every answer as it comes: kube's client otherwise
    /// retries 429, 503 and 504 for up to 15 attempts, which hides a refused eviction or an
    /// unavailable Service from a test that counts them.
    pub async fn client_without_retries(&self) -> Result<kube::Client, ClusterError> {
        self.client_with(false).await
    }

    async fn client_with(&self, retries: bool) -> Result<kube::Client, ClusterError> {
        dig_core::crypto::install_crypto_provider();
        let path = self.kubeconfig.clone();
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).map_err(|source| {
            ClusterError::Kubeconfig {
                path: path.clone(),
                source,
            }
        })?;
        let mut config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|source| ClusterError::Kubeconfig {
            path: path.clone(),
            source,
        })?;
        config.default_retry = retries;
        kube::Client::try_from(config).map_err(|source| ClusterError::Client { path, source })
    }

    /// Runs kubectl against this cluster; returns its standard output.
    pub fn kubectl<I, S>(&self, args: I) -> Result<String, ClusterError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kubectl_with_stdin(args, "")
    }

    /// Runs kubectl with `stdin` as its standard input (e.g. `apply -f -` with a manifest).
    pub fn kubectl_with_stdin<I, S>(&self, args: I, stdin: &str) -> Result<String, ClusterError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let cache = self.run_dir.join("kubectl-cache");
        let cache_args = [OsStr::new("--cache-dir"), cache.as_os_str()];
        let args = cache_args
            .into_iter()
            .map(OsStr::to_owned)
            .chain(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        kubectl(&self.tools, &self.kubeconfig, args, stdin)
    }

    /// Runs helm against this cluster, with a home of its own in the run dir (no user config or
    /// repositories leak in); returns its standard output.
    pub fn helm<I, S>(&self, args: I) -> Result<String, ClusterError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (args, shown) = owned_and_shown(args);
        let home = self.run_dir.join("helm-home");
        let mut command = Command::new(self.tool("helm"));
        command
            .args(&args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"));
        let output = output_within(command, &format!("helm {shown}"), "", KUBECTL_TIME_LIMIT)?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            return Err(ClusterError::Helm {
                args: shown,
                status: output.status.to_string(),
                stderr: format!("{}{stdout}", String::from_utf8_lossy(&output.stderr)),
            });
        }
        Ok(stdout)
    }

    /// Stops kube-apiserver and starts it again on the same port with the same state; returns
    /// once `/readyz` answers. Clients see connection errors in between.
    pub fn restart_apiserver(&self) -> Result<(), ClusterError> {
        run_script("restart-apiserver", &self.run_dir).map(drop)
    }

    /// Stops every component now (also done on drop).
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        run_script("down", &self.run_dir).map(drop)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!(
                "stopping test cluster in {}: {error}",
                self.run_dir.display()
            );
        }
        if self.keep_logs || std::thread::panicking() {
            // Keep the logs of a failed test; etcd's preallocated WAL files are just weight.
            let _ = std::fs::remove_dir_all(self.run_dir.join("etcd"));
            let _ = std::fs::remove_file(self.run_dir.join(OWNER_FILE));
            eprintln!(
                "test cluster logs kept in {}",
                self.run_dir.join("logs").display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}

/// Arguments as owned strings, and as one line for messages.
fn owned_and_shown<I, S>(args: I) -> (Vec<std::ffi::OsString>, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args
        .into_iter()
        .map(|arg| arg.as_ref().to_owned())
        .collect();
    let shown = args
        .iter()
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    (args, shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_commands_pass_input_and_output_through() {
        let mut command = Command::new("sh");
        command.args(["-c", "cat; echo oops >&2; exit 3"]);
        let output =
            output_within(command, "sh", "a manifest\n", Duration::from_secs(60)).expect("runs");
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(output.stdout, b"a manifest\n");
        assert_eq!(output.stderr, b"oops\n");
    }

    #[test]
    fn a_command_over_its_time_limit_is_killed_and_reported() {
        let pid_file =
            std::env::temp_dir().join(format!("dig-e2e-bounded-{}.pid", std::process::id()));
        let mut command = Command::new("sh");
        command.arg("-c").arg(format!(
            "echo $$ > {}; echo started >&2; exec sleep 600",
            pid_file.display()
        ));
        let error = output_within(command, "sleepy", "", Duration::from_millis(500))
            .expect_err("the command outlives its limit");
        let pid = std::fs::read_to_string(&pid_file).expect("the pid file");
        std::fs::remove_file(&pid_file).expect("remove the pid file");
        match error {
            ClusterError::TimedOut {
                command, stderr, ..
            } => {
                assert_eq!(command, "sleepy");
                assert_eq!(stderr, "started\n");
            }
            other => panic!("expected a time-out, got {other}"),
        }
        assert!(
            !process_alive(pid.trim().parse().expect("a pid")),
            "the command was killed and reaped"
        );
    }

    #[test]
    fn missing_tools_skip_with_a_hint_unless_required() {
        let skip =
            missing_tools_verdict("smoke", "kubectl missing\n", false).expect("not required: skip");
        assert!(skip.starts_with("SKIPPED smoke: kubectl missing"), "{skip}");
        assert!(skip.contains("cluster.sh build"), "{skip}");

        let failure =
            missing_tools_verdict("smoke", "kubectl missing", true).expect_err("required: fail");
        assert!(failure.contains(REQUIRE_CLUSTER_ENV), "{failure}");
        assert!(failure.contains("kubectl missing"), "{failure}");
    }

    #[test]
    fn an_empty_tools_dir_is_reported_as_missing_tools() {
        // The script, not this process, gets the override: tests share the environment.
        let empty = std::env::temp_dir().join(format!("dig-e2e-no-tools-{}", std::process::id()));
        std::fs::create_dir_all(&empty).expect("create an empty tools dir");
        let output = Command::new(cluster_script())
            .arg("tools-dir")
            .env(TOOLS_ENV, &empty)
            .stdin(Stdio::null())
            .output()
            .expect("run cluster.sh tools-dir");
        std::fs::remove_dir_all(&empty).expect("remove the empty tools dir");
        assert_eq!(output.status.code(), Some(TOOLS_MISSING_EXIT), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        for tool in [
            "etcd",
            "kube-apiserver",
            "kubectl",
            "kwok",
            "helm",
            "kubeconform",
        ] {
            assert!(stderr.contains(tool), "{tool} not named in: {stderr}");
        }
        assert!(stderr.contains("cluster.sh build"), "{stderr}");
    }
}
