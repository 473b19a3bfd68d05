//! Test clusters never outlive their tests: a cluster whose owning process died is stopped by the
//! next `TestCluster::start`, and dropping a `TestCluster` stops every process it started.
//!
//! Skipped with a message when the tools are not built, unless DIG_E2E_REQUIRE_CLUSTER=1.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dig_e2e::cluster::{TOOLS_ENV, TestCluster, cluster_script, tools_or_skip};

const COMPONENTS: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
];

/// The PID of each component, from the run dir's `pids/`.
fn component_pids(run_dir: &Path) -> Vec<(String, u32)> {
    COMPONENTS
        .iter()
        .map(|name| {
            let file = run_dir.join("pids").join(format!("{name}.pid"));
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let pid = text
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", file.display()));
            (name.to_string(), pid)
        })
        .collect()
}

/// Running means present and not a zombie (an exited child its parent has not reaped yet).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

/// The hand-made "abandoned" run: stopped and removed however the test ends, so that a failed
/// assertion leaves no control plane running.
struct AbandonedRun(PathBuf);

impl Drop for AbandonedRun {
    fn drop(&mut self) {
        let _ = Command::new(cluster_script())
            .args(["down", "--run-dir"])
            .arg(&self.0)
            .stdin(Stdio::null())
            .output();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A PID that belonged to a process which has exited.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("run true");
    let pid = child.id();
    child.wait().expect("wait for true");
    pid
}

#[test]
fn abandoned_clusters_are_stopped_and_dropped_clusters_leave_no_process() {
    let Some(tools) = tools_or_skip("cluster_lifecycle") else {
        return;
    };
    // A cluster started outside any TestCluster, as a killed test would leave it.
    let abandoned: PathBuf = std::env::temp_dir()
        .join("dig-e2e-clusters")
        .join(format!("abandoned-{}", std::process::id()));
    std::fs::create_dir_all(&abandoned).expect("create the abandoned run dir");
    let abandoned_run = AbandonedRun(abandoned.clone());
    // Owned by this live process while starting, so that no concurrent cleanup takes it early.
    std::fs::write(abandoned.join("owner.pid"), std::process::id().to_string())
        .expect("write owner.pid");
    let up = Command::new(cluster_script())
        .args(["up", "--run-dir"])
        .arg(&abandoned)
        .env(TOOLS_ENV, &tools)
        .stdin(Stdio::null())
        .output()
        .expect("run cluster.sh up");
    assert!(
        up.status.success(),
        "cluster.sh up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let abandoned_pids = component_pids(&abandoned);
    for (name, pid) in &abandoned_pids {
        assert!(running(*pid), "{name} (pid {pid}) runs after up");
    }
    std::fs::write(abandoned.join("owner.pid"), dead_pid().to_string()).expect("orphan the run");

    let cluster =
        TestCluster::start_or_skip("lifecycle").expect("the tools are there: the cluster starts");
    for (name, pid) in &abandoned_pids {
        assert!(
            !running(*pid),
            "{name} (pid {pid}) of the abandoned cluster still runs"
        );
    }
    assert!(
        !abandoned.join("etcd").exists(),
        "the abandoned etcd data is removed"
    );
    assert!(
        abandoned.join("logs/kube-apiserver.log").exists(),
        "the abandoned logs are kept"
    );

    let run_dir = cluster.run_dir().to_owned();
    let own_pids = component_pids(&run_dir);
    for (name, pid) in &own_pids {
        assert!(running(*pid), "{name} (pid {pid}) runs");
    }
    drop(cluster);
    for (name, pid) in &own_pids {
        assert!(
            !running(*pid),
            "{name} (pid {pid}) outlived its TestCluster"
        );
    }
    assert!(
        !run_dir.exists(),
        "the run dir of a passing test is removed"
    );
    drop(abandoned_run);
    assert!(!abandoned.exists(), "the abandoned run dir is removed");
}

/// What of a real node is visible on the machine: its network namespace and veth, mounts under
/// the run dir, its cgroups, processes naming the run dir, and containerd's shim sockets named
/// in its state.
fn real_node_traces(run_dir: &Path, node: &dig_e2e::cluster::RealNode) -> Vec<String> {
    let mut traces = Vec::new();
    if Path::new("/run/netns").join(&node.netns).exists() {
        traces.push(format!("network namespace {}", node.netns));
    }
    let routes = Command::new("ip").args(["route", "show"]).output().unwrap();
    let prefix = node.pod_cidr.split('/').next().unwrap().to_owned();
    if String::from_utf8_lossy(&routes.stdout).contains(&prefix) {
        traces.push(format!("route to {}", node.pod_cidr));
    }
    let run = format!("{}/", run_dir.display());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    traces.extend(
        mounts
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|mount| mount.starts_with(&run))
            .map(|mount| format!("mount {mount}")),
    );
    let env = std::fs::read_to_string(run_dir.join("node.env")).unwrap_or_default();
    if let Some(root) = env.lines().find_map(|l| l.strip_prefix("CGROUP_ROOT=")) {
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let dir = hierarchy.path().join(root.trim_start_matches('/'));
            if dir.exists() {
                traces.push(format!("cgroup {}", dir.display()));
            }
        }
    }
    for process in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = process.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() || name == std::process::id().to_string() {
            continue;
        }
        let cmdline = std::fs::read(process.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&run) && running(name.parse().unwrap()) {
            traces.push(format!("process {name}: {cmdline}"));
        }
    }
    traces
}

#[test]
fn a_real_node_leaves_nothing_behind() {
    let Some(mut cluster) = TestCluster::start_real_node_or_skip("real-node-lifecycle", None)
    else {
        return;
    };
    let run_dir = cluster.run_dir().to_owned();
    let node = cluster.real_node().expect("the node's record");
    // A pod with a claim: a container, its sandbox, a netns, overlay and volume mounts.
    let busybox = cluster
        .node_image("BUSYBOX_IMAGE")
        .expect("the busybox image");
    let manifest = format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: scratch}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 1Gi}}}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: sleeper}}\nspec:\n  securityContext: {{runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532}}\n  containers:\n  - name: sleeper\n    image: {busybox}\n    command: [sh, -c, 'echo hello > /scratch/file && sleep 3600']\n    volumeMounts: [{{name: scratch, mountPath: /scratch}}]\n  volumes:\n  - name: scratch\n    persistentVolumeClaim: {{claimName: scratch}}\n"
    );
    cluster
        .kubectl_with_stdin(["apply", "-f", "-"], &manifest)
        .unwrap();
    cluster
        .kubectl([
            "wait",
            "--for=condition=Ready",
            "pod/sleeper",
            "--timeout=120s",
        ])
        .unwrap();
    let claim_uid = cluster
        .kubectl(["get", "pvc", "scratch", "-o", "jsonpath={.metadata.uid}"])
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(node.volume_dir(claim_uid.trim()).join("file")).unwrap(),
        "hello\n",
        "the pod, as user 65532 with fsGroup, wrote into its root-owned volume"
    );
    // A grown claim gets its new size (a directory has none to grow).
    cluster
        .kubectl([
            "patch",
            "pvc",
            "scratch",
            "--type=merge",
            "-p",
            r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
        ])
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let capacity = cluster
            .kubectl([
                "get",
                "pvc",
                "scratch",
                "-o",
                "jsonpath={.status.capacity.storage}",
            ])
            .unwrap();
        if capacity == "2Gi" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the claim never reported 2Gi (now {capacity:?})"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let before = real_node_traces(&run_dir, &node);
    assert!(
        before.iter().any(|t| t.starts_with("mount "))
            && before.iter().any(|t| t.starts_with("cgroup ")),
        "a running node has mounts and cgroups: {before:?}"
    );

    cluster.stop().expect("cluster.sh down");
    let after = real_node_traces(&run_dir, &node);
    assert!(after.is_empty(), "left behind by down: {after:?}");
}
