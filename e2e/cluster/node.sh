# shellcheck shell=bash
# The real node of `cluster.sh up --real-node`, sourced by cluster.sh: kubelet and kube-proxy (built
# with the control plane), containerd, runc, the CNI plugins and iptables from Debian's packages,
# CoreDNS as a process, and a volume provisioner for PersistentVolumeClaims.
#
# Everything of a node lives in one network namespace of its own (named after a slot number that
# the namespace itself reserves), joined to the machine by one veth pair:
#
#   machine (control plane)              node namespace dig-e2e-n<slot>
#   dige2e<slot>  10.241.<slot>.1/24 <--> eth0  10.241.<slot>.2/24   kubelet :10250, CoreDNS :53,
#   route 10.242.<slot>.0/24 via .2       cni0  10.242.<slot>.1/24   kube-proxy, containerd
#                                          pods 10.242.<slot>.x
#
# The API server listens on the machine's end (10.241.<slot>.1), which the `kubernetes` Service
# advertises, so pods reach it through kube-proxy like on any cluster. kube-proxy's and the CNI
# plugins' iptables rules, the bridge and every port of the node are inside the namespace, so two
# nodes never see each other's; the only change to the machine's own network is the veth and its
# route, both gone when the namespace is deleted. containerd, the kubelet and the volumes keep
# their state under RUN_DIR/node, cgroups under /dig-e2e-<slot>-<id>, and `down` removes all of it.
#
# Test-environment shims (never part of what users deploy), each because of this sandbox:
# - containerd's `restrict_oom_score_adj`: the sandbox lacks CAP_SYS_RESOURCE, so runc cannot set
#   the negative oom_score_adj the kubelet asks for pod sandboxes (-998) and Guaranteed pods; the
#   option clamps it to containerd's own (0). Without it every sandbox fails with "can't get final
#   child's PID from pipe: EOF".
# - `failCgroupV1: false`: this machine has cgroup v1 only.
# - `failSwapOn: false`, no conntrack sysctls for kube-proxy (the namespace's are not writable).

NODE_NAME=dig-e2e-node
# Directory names of the node's state; `down` only ever unmounts or deletes below $run_dir/node.
node_dir() { echo "$run_dir/node"; }

# What the node needs besides the control-plane tools; exit 3 (tools missing) names what lacks.
node_tool_check() {
  if [ "$(id -u)" != 0 ]; then
    echo "cluster.sh: the real node needs root (network namespaces, mounts, cgroups)" >&2
    exit 3
  fi
  local missing=() tool
  for tool in containerd containerd-shim-runc-v2 runc ctr iptables iptables-restore nsenter ip conntrack; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  local plugin
  for plugin in bridge host-local loopback portmap; do
    [ -x "$CNI_BIN_DIR/$plugin" ] || missing+=("$CNI_BIN_DIR/$plugin")
  done
  for tool in kubelet kube-proxy coredns; do
    [ -x "$tools/$tool" ] || missing+=("$tools/$tool")
  done
  [ -f "$tools/images/pause.tar" ] || missing+=("$tools/images/pause.tar")
  if [ ${#missing[@]} -gt 0 ]; then
    echo "cluster.sh: the real node needs: ${missing[*]} (apt-get install containerd runc iptables containernetworking-plugins conntrack, then: $here/cluster.sh build)" >&2
    exit 3
  fi
}

CNI_BIN_DIR=${DIG_E2E_CNI_BIN_DIR:-/usr/lib/cni}

in_node() { nsenter --net="/run/netns/$NODE_NETNS" -- "$@"; }
# nsenter execs the program, so the recorded PID is the program's.
start_in_node() {
  local name=$1
  shift
  start_component "$name" nsenter --net="/run/netns/$NODE_NETNS" -- "$@"
}

# Reserves a slot: `ip netns add` fails when the name exists, so two runs never share one.
node_network_up() {
  command -v ip >/dev/null || die "ip (iproute2) is not installed"
  local slot first
  first=$(($(cksum <<<"$run_dir" | cut -d' ' -f1) % 200 + 20))
  NODE_SLOT=""
  for ((slot = first; slot < first + 200; slot++)); do
    local candidate=$(((slot - 20) % 200 + 20))
    if ip route show | grep -qE "^10\.24[12]\.$candidate\." || ip link show "dige2e$candidate" >/dev/null 2>&1; then
      continue
    fi
    if ip netns add "dig-e2e-n$candidate" 2>/dev/null; then
      NODE_SLOT=$candidate
      break
    fi
  done
  [ -n "$NODE_SLOT" ] || die "no free node slot: every dig-e2e-n<slot> network namespace or 10.241/10.242 route is taken"
  NODE_NETNS=dig-e2e-n$NODE_SLOT
  HOST_VETH=dige2e$NODE_SLOT
  HOST_IP=10.241.$NODE_SLOT.1
  NODE_IP=10.241.$NODE_SLOT.2
  POD_CIDR=10.242.$NODE_SLOT.0/24
  CGROUP_ROOT=/dig-e2e-$NODE_SLOT-$(openssl rand -hex 4)
  # Written at once, so that `down` finds what to remove even if the next step fails.
  cat >"$run_dir/node.env" <<EOF
NODE_SLOT=$NODE_SLOT
NODE_NETNS=$NODE_NETNS
HOST_VETH=$HOST_VETH
HOST_IP=$HOST_IP
NODE_IP=$NODE_IP
POD_CIDR=$POD_CIDR
CGROUP_ROOT=$CGROUP_ROOT
NODE_NAME=$NODE_NAME
EOF
  ip link add "$HOST_VETH" type veth peer name eth0 netns "$NODE_NETNS"
  ip addr add "$HOST_IP/24" dev "$HOST_VETH"
  ip link set "$HOST_VETH" up
  ip -n "$NODE_NETNS" addr add "$NODE_IP/24" dev eth0
  ip -n "$NODE_NETNS" link set eth0 up
  ip -n "$NODE_NETNS" link set lo up
  ip -n "$NODE_NETNS" route add default via "$HOST_IP"
  ip route add "$POD_CIDR" via "$NODE_IP" dev "$HOST_VETH"
  in_node sysctl -qw net.ipv4.ip_forward=1
}

write_node_pki() {
  local pki=$run_dir/pki
  (
    cd "$pki"
    umask 077
    # The API server's client certificate towards kubelets (logs, exec, port-forward).
    openssl ecparam -name prime256v1 -genkey -noout -out apiserver-kubelet-client.key
    openssl req -new -key apiserver-kubelet-client.key -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      -out apiserver-kubelet-client.csr
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=clientAuth" >apiserver-kubelet-client.ext
    openssl x509 -req -in apiserver-kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -sha256 -extfile apiserver-kubelet-client.ext -out apiserver-kubelet-client.crt
  ) >>"$run_dir/logs/openssl.log" 2>&1 || die "openssl failed to create the kubelet client certificate in $pki"
}

write_containerd_config() {
  local dir
  dir=$(node_dir)
  mkdir -p "$dir/containerd" "$dir/cni/net.d" "$dir/cni/ipam"
  cat >"$dir/containerd.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$dir/containerd.sock"

[ttrpc]
  address = "$dir/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Test-environment shim: see the top of node.sh.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$dir/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$dir/cni/net.d"
    max_conf_num = 1
EOF
  # ipMasq is off: the machine routes the pod range to the node, so pods keep their addresses.
  cat >"$dir/cni/net.d/10-dig-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "dig-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

ctr_node() { ctr --address "$(node_dir)/containerd.sock" --namespace k8s.io "$@"; }

containerd_ready() { ctr_node version; }

# Imports image archives (docker-archive or OCI) into the node's containerd, unpacked.
node_import_images() {
  local archive
  for archive in "$@"; do
    quiet "$run_dir/logs/image-import.log" ctr_node images import --no-unpack=false "$archive"
  done
}

write_kubelet_config() {
  local dir
  dir=$(node_dir)
  mkdir -p "$dir/kubelet" "$dir/pod-logs" "$dir/volume-plugins" "$dir/volumes"
  # Pods get the cluster DNS and no search domains of the machine.
  : >"$dir/resolv.conf"
  cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $run_dir/pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$dir/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
# Test-environment settings, see the top of node.sh.
failCgroupV1: false
failSwapOn: false
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: $dir/resolv.conf
podLogsDir: $dir/pod-logs
volumePluginDir: $dir/volume-plugins
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
serializeImagePulls: false
# Other work on the shared machine must not evict the test's pods.
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
nodeStatusReportFrequency: 10s
EOF
}

write_kube_proxy_config() {
  cat >"$(node_dir)/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $run_dir/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
mode: iptables
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables: {minSyncPeriod: 0s, syncPeriod: 30s}
# The namespace's conntrack sysctls are not writable here: leave them as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

write_corefile() {
  cat >"$(node_dir)/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    ready 127.0.0.1:8181
    health 127.0.0.1:8080
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $run_dir/coredns.kubeconfig
        pods insecure
        ttl 5
        fallthrough in-addr.arpa ip6.arpa
    }
}
EOF
}

# The kubelet wants its cgroup root to exist in every hierarchy; a new cpuset starts empty and
# gets its parent's CPUs and memory nodes.
make_node_cgroups() {
  local hierarchy dir
  for hierarchy in /sys/fs/cgroup/*/; do
    [ -f "${hierarchy}cgroup.procs" ] || continue
    dir=$hierarchy${CGROUP_ROOT#/}
    mkdir -p "$dir"
    if [ -f "${hierarchy}cpuset.cpus" ]; then
      cat "${hierarchy}cpuset.cpus" >"$dir/cpuset.cpus"
      cat "${hierarchy}cpuset.mems" >"$dir/cpuset.mems"
    fi
  done
}

node_http_ok() { in_node curl -sf --max-time 2 "$1"; }

node_ready() {
  kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True
}

node_up() {
  local dir
  dir=$(node_dir)
  mkdir -p "$dir"
  write_containerd_config
  start_in_node containerd containerd --config "$dir/containerd.toml"
  wait_for "containerd on $dir/containerd.sock" 60 containerd containerd_ready
  # The pause image (pod sandboxes) and busybox (the chart's test pod).
  node_import_images "$tools/images/"*.tar
  write_corefile
  start_in_node coredns "$tools/coredns" -conf "$dir/Corefile"
  start_component volume-provisioner "$here/cluster.sh" provision-volumes --run-dir "$run_dir"
  write_kubelet_config
  make_node_cgroups
  start_in_node kubelet "$tools/kubelet" --config "$dir/kubelet.yaml" \
    --kubeconfig "$run_dir/kubelet.kubeconfig" --root-dir "$dir/kubelet" --cert-dir "$dir/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v 1
  wait_for "node $NODE_NAME Ready" 120 kubelet node_ready
  write_kube_proxy_config
  start_in_node kube-proxy "$tools/kube-proxy" --config "$dir/kube-proxy.yaml" --v 1
  wait_for "kube-proxy /healthz" 60 kube-proxy node_http_ok http://127.0.0.1:10256/healthz
  wait_for "CoreDNS /ready" 60 coredns node_http_ok http://127.0.0.1:8181/ready
}

# Every process in the node's cgroups (the containers), killed: the kubelet is already stopped,
# so nothing restarts them.
kill_node_cgroups() {
  [ -n "${CGROUP_ROOT:-}" ] || return 0
  local round pids
  for round in 1 2 3 4 5 6 7 8 9 10; do
    # Cgroups vanish while their processes die: find's complaints about them are expected.
    pids=$(find /sys/fs/cgroup/ -path "*$CGROUP_ROOT/*" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u || true)
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.2
  done
  echo "cluster.sh: processes still in cgroup $CGROUP_ROOT: $pids" >&2
}

# containerd's shims outlive containerd (they are their own session); ours name our socket.
kill_node_shims() {
  local socket pid
  socket=$(node_dir)/containerd.sock
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $socket( |\$)" || true); do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-address $socket " && kill -KILL "$pid" 2>/dev/null
  done
  # A killed shim leaves its socket under containerd's fixed /run/containerd/s; the address files in
  # our state dir name them.
  local address
  for address in "$(node_dir)"/containerd/state/io.containerd.runtime.v2.task/*/*/address; do
    [ -f "$address" ] || continue
    socket=$(sed -n 's#^unix://##p' "$address")
    case $socket in /run/containerd/s/*) rm -f "$socket" ;; esac
  done
}

unmount_node_dir() {
  local dir mounts
  dir=$(node_dir)
  [ -d "$dir" ] || return 0
  local round
  for round in 1 2 3; do
    # Deepest first; mountinfo escapes spaces as \040, which our paths never contain.
    mounts=$(awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r || true)
    [ -n "$mounts" ] || return 0
    local mount
    for mount in $mounts; do
      umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
    done
  done
  echo "cluster.sh: mounts left under $dir: $mounts" >&2
}

remove_node_cgroups() {
  [ -n "${CGROUP_ROOT:-}" ] || return 0
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/; do
    [ -d "$hierarchy${CGROUP_ROOT#/}" ] || continue
    find "$hierarchy${CGROUP_ROOT#/}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ -d "$hierarchy${CGROUP_ROOT#/}" ] && echo "cluster.sh: cgroup $hierarchy${CGROUP_ROOT#/} could not be removed" >&2
  done
  return 0
}

# Stops the node and removes its processes, containers, mounts, cgroups and state (the network
# goes in node_network_down); safe to run on a half-started node or twice.
node_down() {
  [ -f "$run_dir/node.env" ] || return 0
  # shellcheck source=/dev/null
  . "$run_dir/node.env"
  stop_component kube-proxy
  stop_component kubelet
  stop_component volume-provisioner
  stop_component coredns
  kill_node_cgroups
  kill_node_shims
  stop_component containerd
  unmount_node_dir
  remove_node_cgroups
  # Symlinks the kubelet keeps in the fixed /var/log/containers, to our pod logs.
  local link
  for link in /var/log/containers/*.log; do
    [ -L "$link" ] || continue
    case $(readlink "$link") in "$(node_dir)"/*) rm -f "$link" ;; esac
  done
  rm -rf "$(node_dir)" 2>/dev/null || echo "cluster.sh: cannot remove $(node_dir) entirely" >&2
}

# The node's network namespace, veth and route; after the control plane stopped, since the API
# server listens on the veth (without its address it hangs on shutdown).
node_network_down() {
  [ -f "$run_dir/node.env" ] || return 0
  # shellcheck source=/dev/null
  . "$run_dir/node.env"
  if [ -n "${NODE_NETNS:-}" ] && [ -e "/run/netns/$NODE_NETNS" ]; then
    # Deleting the namespace deletes its end of the veth, so ours and its route go with it.
    ip netns delete "$NODE_NETNS" 2>/dev/null || echo "cluster.sh: cannot delete network namespace $NODE_NETNS" >&2
  fi
  if [ -n "${HOST_VETH:-}" ] && ip link show "$HOST_VETH" >/dev/null 2>&1; then
    ip link delete "$HOST_VETH" 2>/dev/null || true
  fi
  rm -f "$run_dir/node.env"
}

# --- volumes ----------------------------------------------------------------------------------

VOLUME_PROVISIONER=dig-e2e.local/local-volume
STORAGE_CLASS_REAL=dig-e2e-local
# The same volumes without allowVolumeExpansion: the API server refuses to grow its claims.
STORAGE_CLASS_FIXED=dig-e2e-local-fixed

# The default StorageClass of the real node: each claim gets a directory under RUN_DIR/node/volumes
# as a `local` PersistentVolume of the node (the kubelet applies fsGroup to it, as to a cloud disk).
# A second class of the same volumes does not allow expansion.
node_storage_class() {
  cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $STORAGE_CLASS_REAL
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: $VOLUME_PROVISIONER
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
allowVolumeExpansion: true
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $STORAGE_CLASS_FIXED
provisioner: $VOLUME_PROVISIONER
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
allowVolumeExpansion: false
EOF
}

# One pass of the provisioner: claims waiting for a volume get one, released volumes are deleted
# with their directory, and a grown claim gets the capacity it asks for (a directory has no size).
# The last stands in for a CSI driver's external-resizer and the kubelet's file system expansion:
# without a CSI driver nothing else moves the volume's and the claim's capacity.
provision_volumes_once() {
  local volumes
  volumes=$(node_dir)/volumes
  local claims
  claims=$(kubectl_admin get pvc --all-namespaces -o json) || return 0
  local ns name uid size modes class
  while IFS=$'\t' read -r ns name uid size modes class; do
    [ -n "$uid" ] || continue
    # Root-owned like a fresh disk: the kubelet gives it the pod's fsGroup.
    mkdir -p -m 0755 "$volumes/pvc-$uid"
    kubectl_admin apply -f - <<EOF || true
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pvc-$uid
  annotations: {pv.kubernetes.io/provisioned-by: $VOLUME_PROVISIONER}
spec:
  capacity: {storage: $size}
  accessModes: [$modes]
  persistentVolumeReclaimPolicy: Delete
  storageClassName: $class
  volumeMode: Filesystem
  claimRef: {namespace: $ns, name: $name, uid: $uid}
  local: {path: $volumes/pvc-$uid}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [$NODE_NAME]}
EOF
    echo "provisioned pvc-$uid for $ns/$name ($size)"
  done < <(jq -r --arg p "$VOLUME_PROVISIONER" '.items[]
      | select(.status.phase == "Pending")
      | select(.metadata.annotations["volume.kubernetes.io/storage-provisioner"] == $p)
      | select(.metadata.annotations["volume.kubernetes.io/selected-node"] != null)
      | [.metadata.namespace, .metadata.name, .metadata.uid, .spec.resources.requests.storage,
         (.spec.accessModes | join(",")), .spec.storageClassName] | @tsv' <<<"$claims")
  # Grown claims (the API server lets only the expandable class's grow): the volume and the
  # claim's status report the new size.
  local volume
  while IFS=$'\t' read -r ns name size volume; do
    [ -n "$volume" ] || continue
    kubectl_admin patch pv "$volume" --type merge -p "{\"spec\":{\"capacity\":{\"storage\":\"$size\"}}}" >/dev/null || continue
    kubectl_admin patch pvc "$name" -n "$ns" --subresource status --type merge \
      -p "{\"status\":{\"capacity\":{\"storage\":\"$size\"},\"conditions\":null,\"allocatedResources\":null,\"allocatedResourceStatuses\":null}}" >/dev/null &&
      echo "resized $ns/$name to $size"
  done < <(jq -r --arg c "$STORAGE_CLASS_REAL" '.items[]
      | select(.status.phase == "Bound" and .spec.storageClassName == $c)
      | select(.spec.resources.requests.storage != .status.capacity.storage)
      | [.metadata.namespace, .metadata.name, .spec.resources.requests.storage, .spec.volumeName]
      | @tsv' <<<"$claims")
  local released path
  released=$(kubectl_admin get pv -o json | jq -r --arg p "$VOLUME_PROVISIONER" '.items[]
      | select(.metadata.annotations["pv.kubernetes.io/provisioned-by"] == $p)
      | select(.spec.persistentVolumeReclaimPolicy == "Delete")
      | select(.status.phase == "Released" or .status.phase == "Failed")
      | [.metadata.name, .spec.local.path] | @tsv') || return 0
  while IFS=$'\t' read -r name path; do
    [ -n "$name" ] || continue
    case $path in "$volumes"/pvc-*) rm -rf "$path" ;; esac
    kubectl_admin delete pv "$name" --wait=false >/dev/null && echo "deleted $name"
  done <<<"$released"
}

cmd_provision_volumes() {
  existing_run_dir
  # shellcheck source=/dev/null
  . "$run_dir/node.env"
  echo "volume provisioner for $STORAGE_CLASS_REAL and $STORAGE_CLASS_FIXED in $(node_dir)/volumes"
  while true; do
    provision_volumes_once
    sleep 1
  done
}
