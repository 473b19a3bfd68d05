#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for the end-to-end tests: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (which plays the kubelet of one fake node); or,
# with --real-node, the same control plane and one real node (kubelet, kube-proxy, containerd,
# CoreDNS, a volume provisioner) whose pods run as containers (node.sh).
#
#   cluster.sh build                 build the tools once from the Go module proxy (cached under
#                                    ~/.cache/dig-e2e, keyed by versions) and the kubeconform schemas
#   cluster.sh tools-dir             print the directory holding the built tools (exit 3 if not built)
#   cluster.sh up                    start a control plane in the run dir, wait until it is ready
#   cluster.sh up --real-node        the same with a real node instead of kwok; --images DIR also
#                                    imports the archives of `cluster.sh images` into its containerd
#   cluster.sh images --binaries DIR build the three images from the Dockerfile with DIR's binaries
#                                    (images.sh); prints the directory of their archives
#   cluster.sh load-images DIR|FILE  import image archives into the real node of the run dir
#                                    (options before the command: cluster.sh --run-dir R load-images D)
#   cluster.sh tag-image SOURCE NEW  give an image of the real node a second name (NEW), as a
#                                    registry would serve a new tag of the same build
#   cluster.sh down                  stop every process recorded in the run dir
#   cluster.sh env                   print `export KUBECONFIG=...` lines for a shell
#   cluster.sh status                show which components of the run dir are alive
#   cluster.sh restart-apiserver     stop and start kube-apiserver only, wait until it is ready
#   cluster.sh kubeconform ARGS...   kubeconform -strict with the offline schemas of Kubernetes and
#                                    of the CRDs in crds/*.yaml (or $DIG_E2E_CRDS); ARGS are files
#                                    or `-` for standard input
#
# Options (before or after the command): --run-dir DIR (or env DIG_E2E_RUN_DIR; default
# ${TMPDIR:-/tmp}/dig-e2e-cluster). Env DIG_E2E_TOOLS overrides where the tools are looked up,
# DIG_E2E_CACHE where they are built (default ~/.cache/dig-e2e). `build` makes the real node's
# tools too (CoreDNS, the pause and busybox images); the real node needs root and Debian's
# containerd, runc, iptables and containernetworking-plugins.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# --- versions: bumping any of them builds a new set of tools next to the old ones -------------
KUBERNETES_VERSION=v1.34.4   # the newest 1.34 patch; k8s-openapi 0.29 feature v1_34
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
KUBERNETES_VALIDATE_VERSION=1.37.0   # PyPI package that ships the JSON schemas of 1.25 to 1.37
COREDNS_VERSION=v1.14.1      # the real node's cluster DNS: the newest on client-go 0.34 (see build_coredns)
# Bump when the way a tool is built changes, so caches made by an older recipe are not reused.
BUILD_RECIPE=3

cache=${DIG_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dig-e2e}
run_dir=${DIG_E2E_RUN_DIR:-${TMPDIR:-/tmp}/dig-e2e-cluster}
real_node=0
up_images=""
images_binaries=""
# Where the API server listens: loopback, or with a real node the machine's end of its veth.
API_HOST=127.0.0.1

die() {
  echo "cluster.sh: $*" >&2
  exit 1
}

# shellcheck source=e2e/cluster/node.sh
. "$here/node.sh"
# shellcheck source=e2e/cluster/images.sh
. "$here/images.sh"

# Go writes its module and build caches under our cache so that CI can keep them between runs,
# never downloads a toolchain (only the module proxy is reachable) and builds static binaries.
go_env() {
  command -v go >/dev/null || die "go is not installed; the control-plane tools are built with it"
  export GOTOOLCHAIN=local CGO_ENABLED=0
  export GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build GOPATH=$cache/go/path
  export GOFLAGS=-buildvcs=false
  go_version=$(go env GOVERSION)
}

timed() {
  local what=$1
  shift
  local start=$SECONDS
  "$@"
  echo "  built $what in $((SECONDS - start)) s"
}

# Runs a chatty command with its output in a log file, shown only when it fails.
quiet() {
  local log=$1
  shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "failed: $* (full log: $log)"
  fi
}

# The directory of one component's binaries; it holds a `.complete` marker once fully built.
component_dir() { echo "$cache/build/$1-$2-$go_version-r$BUILD_RECIPE"; }
# The real node's own components live beside, not in, build/: a cluster.sh of an older recipe
# prunes build/ of what it does not know, and other worktrees may run one.
node_component_dir() { echo "$cache/node/$1-$2-$go_version-r$BUILD_RECIPE"; }
tools_key() {
  echo "k8s-$KUBERNETES_VERSION.etcd-$ETCD_VERSION.kwok-$KWOK_VERSION.helm-$HELM_VERSION.kubeconform-$KUBECONFORM_VERSION.schemas-$KUBERNETES_VALIDATE_VERSION.$go_version.r$BUILD_RECIPE"
}
tools_set_dir() { echo "$cache/tools/$(tools_key)"; }
default_tools_dir() { echo "$(tools_set_dir)/bin"; }

# Version metadata of a module version as the proxy reports it (commit time; the hash is not
# served by the proxy, so the binaries report an empty git commit).
module_time() {
  local info
  info=$(go mod download -json "$1" | jq -r .Info)
  jq -r '.Time // empty' "$info"
}

build_kubernetes() {
  local out
  out=$(component_dir kubernetes "$KUBERNETES_VERSION")
  if [ -f "$out/.complete" ]; then
    echo "  cached: Kubernetes $KUBERNETES_VERSION"
    return 0
  fi
  echo "building Kubernetes $KUBERNETES_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy)"
  # k8s.io/kubernetes replaces its staging modules (k8s.io/api, ...) with local paths, which
  # `go install pkg@version` refuses. A throw-away module requires it and points each staging
  # module at its published v0.Y.Z tag instead.
  local work=$cache/go/work/kubernetes-$KUBERNETES_VERSION
  rm -rf "$work" "$out"
  mkdir -p "$work" "$out/bin"
  local gomod staging_version=v0.${KUBERNETES_VERSION#v1.}
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | jq -r .GoMod)
  {
    echo "module dig-e2e.local/kubernetes-build"
    echo
    grep -E '^go [0-9.]+$' "$gomod"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    grep -E '^\s+k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}' 
    echo ")"
  } >"$work/go.mod"
  local packages=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
  local time major minor
  time=$(module_time "k8s.io/kubernetes@$KUBERNETES_VERSION")
  major=${KUBERNETES_VERSION#v}
  major=${major%%.*}
  minor=${KUBERNETES_VERSION#v*.}
  minor=${minor%%.*}
  local ldflags="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitCommit= -X $pkg.gitTreeState=clean -X $pkg.buildDate=$time"
  done
  (
    cd "$work"
    local p start
    start=$SECONDS
    local targets=()
    for p in "${packages[@]}"; do targets+=("k8s.io/kubernetes/cmd/$p@$KUBERNETES_VERSION"); done
    quiet "$work/get.log" nice -n 10 go get "${targets[@]}"
    echo "  resolved modules in $((SECONDS - start)) s"
    for p in "${packages[@]}"; do
      timed "$p" nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$out/bin/$p" "k8s.io/kubernetes/cmd/$p"
    done
  )
  touch "$out/.complete"
}

build_etcd() {
  local out
  out=$(component_dir etcd "$ETCD_VERSION")
  if [ -f "$out/.complete" ]; then
    echo "  cached: etcd $ETCD_VERSION"
    return 0
  fi
  echo "building etcd $ETCD_VERSION"
  # etcd's server module also replaces its sibling modules with local paths; same way round.
  local work=$cache/go/work/etcd-$ETCD_VERSION
  rm -rf "$work" "$out"
  mkdir -p "$work" "$out/bin"
  local gomod
  gomod=$(go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" | jq -r .GoMod)
  {
    echo "module dig-e2e.local/etcd-build"
    echo
    grep -E '^go [0-9.]+$' "$gomod"
    echo
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  } >"$work/go.mod"
  (
    cd "$work"
    local start=$SECONDS
    quiet "$work/get.log" nice -n 10 go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    echo "  resolved modules in $((SECONDS - start)) s"
    timed etcd nice -n 10 go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
      -o "$out/bin/etcd" go.etcd.io/etcd/server/v3
  )
  touch "$out/.complete"
}

# Modules without replace directives install directly.
build_installable() {
  local name=$1 version=$2 package=$3 ldflags=$4
  local out
  out=$(component_dir "$name" "$version")
  if [ -f "$out/.complete" ]; then
    echo "  cached: $name $version"
    return 0
  fi
  echo "building $name $version"
  rm -rf "$out"
  mkdir -p "$out/bin"
  GOBIN=$out/bin timed "$name" quiet "$out/install.log" \
    nice -n 10 go install -trimpath -ldflags "-s -w $ldflags" "$package@$version"
  touch "$out/.complete"
}

build_helm() {
  # Helm derives the Kubernetes version it assumes (for .Capabilities) from its client-go.
  local gomod client_go major minor
  gomod=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | jq -r .GoMod)
  client_go=$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$gomod")
  client_go=${client_go#v}
  major=$((${client_go%%.*} + 1))
  minor=${client_go#*.}
  minor=${minor%%.*}
  build_installable helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
}

# CoreDNS with only the plugins the real node's Corefile uses (node.sh), the way CoreDNS documents
# building a trimmed server: a main package that sets the directive list and imports the plugins.
build_coredns() {
  local out
  out=$(node_component_dir coredns "$COREDNS_VERSION")
  if [ -f "$out/.complete" ]; then
    echo "  cached: CoreDNS $COREDNS_VERSION"
    return 0
  fi
  echo "building CoreDNS $COREDNS_VERSION"
  local work=$cache/go/work/coredns-$COREDNS_VERSION
  rm -rf "$work" "$out"
  mkdir -p "$work" "$out/bin"
  local gomod
  gomod=$(go mod download -json "github.com/coredns/coredns@$COREDNS_VERSION" | jq -r .GoMod)
  {
    echo "module dig-e2e.local/coredns-build"
    echo
    grep -E '^go [0-9.]+$' "$gomod"
    echo
    echo "require github.com/coredns/coredns $COREDNS_VERSION"
    # The Kubernetes build's own API modules: their compiled packages come from the Go build
    # cache instead of being compiled a second time.
    echo "require k8s.io/api v0.${KUBERNETES_VERSION#v1.}"
    echo "require k8s.io/apimachinery v0.${KUBERNETES_VERSION#v1.}"
    echo "require k8s.io/client-go v0.${KUBERNETES_VERSION#v1.}"
  } >"$work/go.mod"
  cat >"$work/main.go" <<'GO'
// CoreDNS with the plugins of the e2e real node only (their order is CoreDNS's plugin.cfg order).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	"github.com/coredns/coredns/coremain"
)

func init() {
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "log", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GO
  (
    cd "$work"
    local start=$SECONDS
    quiet "$work/get.log" nice -n 10 go mod tidy
    echo "  resolved modules in $((SECONDS - start)) s"
    timed coredns nice -n 10 go build -trimpath -ldflags "-s -w" -o "$out/bin/coredns" .
  )
  touch "$out/.complete"
}

# kwok's stage definitions ship in its module source (kustomize/stage); `up` feeds them to kwok.
copy_kwok_stages() {
  local out source stages
  out=$(component_dir kwok "$KWOK_VERSION")
  stages=$out/bin/kwok-stages
  [ -f "$stages/.complete" ] && return 0
  source=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | jq -r .Dir)
  rm -rf "$stages"
  mkdir -p "$stages"
  local set file
  for set in node/fast node/heartbeat-with-lease pod/fast volume/fast; do
    for file in "$source/kustomize/stage/$set"/*.yaml; do
      case $(basename "$file") in
        kustomization.yaml | storage-class.yaml) continue ;;
      esac
      cp "$file" "$stages/${set//\//-}-$(basename "$file")"
    done
  done
  chmod -R u+w "$stages"
  touch "$stages/.complete"
}

link_tools() {
  local tools
  tools=$(default_tools_dir)
  mkdir -p "$tools"
  local component version binary
  while read -r component version binary; do
    ln -sfn "$(component_dir "$component" "$version")/bin/$binary" "$tools/$binary"
  done <<EOF
kubernetes $KUBERNETES_VERSION kube-apiserver
kubernetes $KUBERNETES_VERSION kube-controller-manager
kubernetes $KUBERNETES_VERSION kube-scheduler
kubernetes $KUBERNETES_VERSION kubectl
etcd $ETCD_VERSION etcd
kwok $KWOK_VERSION kwok
helm $HELM_VERSION helm
kubeconform $KUBECONFORM_VERSION kubeconform
kwok $KWOK_VERSION kwok-stages
kubernetes $KUBERNETES_VERSION kubelet
kubernetes $KUBERNETES_VERSION kube-proxy
EOF
  ln -sfn "$(node_component_dir coredns "$COREDNS_VERSION")/bin/coredns" "$tools/coredns"
  ln -sfn "$NODE_IMAGES_DIR" "$tools/images"
  touch "$tools/.complete"
}

# Builds of other versions or recipes are dead weight once the current set is complete.
prune_old_builds() {
  local keep=" $(component_dir kubernetes "$KUBERNETES_VERSION") $(component_dir etcd "$ETCD_VERSION") $(component_dir kwok "$KWOK_VERSION") $(component_dir helm "$HELM_VERSION") $(component_dir kubeconform "$KUBECONFORM_VERSION") $(tools_set_dir) $(node_component_dir coredns "$COREDNS_VERSION") $NODE_IMAGES_DIR "
  local dir
  for dir in "$cache"/build/* "$cache"/tools/* "$cache"/node/*; do
    [ -d "$dir" ] || continue
    [[ $keep == *" $dir "* ]] && continue
    echo "  removing outdated build $dir"
    chmod -R u+w "$dir" && rm -rf "$dir"
  done
}

cmd_build() {
  go_env
  command -v jq >/dev/null || die "jq is not installed (apt-get install jq)"
  local start=$SECONDS
  echo "Go $go_version; caches under $cache"
  build_kubernetes
  build_etcd
  build_installable kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok \
    "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBERNETES_VERSION#v}"
  copy_kwok_stages
  build_helm
  build_installable kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform \
    "-X main.version=$KUBECONFORM_VERSION"
  build_coredns
  build_node_images
  link_tools
  prune_old_builds
  local step=$SECONDS
  build_kubernetes_schemas
  echo "  kubeconform schemas ready in $((SECONDS - step)) s"
  echo "tools ready in $(default_tools_dir) ($((SECONDS - start)) s)"
}

# --- offline schemas for kubeconform --------------------------------------------------------

python_venv() { echo "$cache/venv/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"; }

# kubernetes-validate ships the Kubernetes OpenAPI schemas of each minor version as JSON schemas
# that share one definitions file; jsonschemas.py makes the self-contained files kubeconform reads.
build_kubernetes_schemas() {
  local venv out minor
  venv=$(python_venv)
  out=$cache/schemas/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION-$KUBERNETES_VERSION
  if [ ! -f "$out/.complete" ]; then
    command -v python3 >/dev/null || die "python3 is not installed; it makes the kubeconform schemas"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
      rm -rf "$venv"
      quiet "$cache/venv.log" python3 -m venv "$venv"
      quiet "$cache/venv.log" "$venv/bin/pip" install --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    fi
    local package
    package=$("$venv/bin/python" -c 'import kubernetes_validate, os; print(os.path.dirname(kubernetes_validate.__file__))')
    minor=${KUBERNETES_VERSION%.*}
    local source=$package/kubernetes-json-schema/$minor.0-local
    [ -d "$source" ] || die "kubernetes-validate $KUBERNETES_VALIDATE_VERSION has no schemas for $minor (looked for $source)"
    rm -rf "$out"
    # Patch releases never change the API, so the x.y.0 schemas describe $KUBERNETES_VERSION.
    "$venv/bin/python" "$here/jsonschemas.py" kubernetes "$source" "$out/$KUBERNETES_VERSION-standalone"
    "$venv/bin/python" "$here/jsonschemas.py" kubernetes "$source-strict" "$out/$KUBERNETES_VERSION-standalone-strict"
    touch "$out/.complete"
  fi
  mkdir -p "$(tools_set_dir)"
  ln -sfn "$out" "$(tools_set_dir)/schemas"
}

# kubeconform with the offline schemas: Kubernetes' own kinds and the repository's CRDs (made
# from crds/*.yaml, or from the CRD files in $DIG_E2E_CRDS, a space-separated list).
cmd_kubeconform() {
  find_tools
  local schemas
  schemas=$(cd "$tools/../schemas" 2>/dev/null && pwd) || die "kubeconform schemas missing next to $tools; run: $0 build"
  local crd_files=()
  if [ -n "${DIG_E2E_CRDS:-}" ]; then
    read -r -a crd_files <<<"$DIG_E2E_CRDS"
  else
    shopt -s nullglob
    crd_files=("$here"/../../crds/*.yaml)
    shopt -u nullglob
  fi
  crd_dir=$(mktemp -d "${TMPDIR:-/tmp}/dig-e2e-crd-schemas.XXXXXX")
  trap 'rm -rf "$crd_dir"' EXIT
  if [ ${#crd_files[@]} -gt 0 ]; then
    "$(python_venv)/bin/python" "$here/jsonschemas.py" crds "$crd_dir" "${crd_files[@]}" >/dev/null
  fi
  "$tools/kubeconform" -strict -summary -kubernetes-version "${KUBERNETES_VERSION#v}" \
    -schema-location "$schemas/{{.NormalizedKubernetesVersion}}-standalone{{.StrictSuffix}}/{{.ResourceKind}}{{.KindSuffix}}.json" \
    -schema-location "$crd_dir/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json" \
    "$@"
}

# --- running a control plane -------------------------------------------------------------------

# Stop order is the reverse of start order: the fake kubelet first, etcd last. A real node's
# processes are stopped (and its state removed) by node_down, before these.
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
node_components=(containerd coredns volume-provisioner kubelet kube-proxy)

find_tools() {
  local dir
  if [ -n "${DIG_E2E_TOOLS:-}" ]; then
    dir=$DIG_E2E_TOOLS
  else
    if ! command -v go >/dev/null; then
      echo "cluster.sh: go is not installed, so the control-plane tools cannot have been built here; set DIG_E2E_TOOLS or install Go and run: $here/cluster.sh build" >&2
      exit 3
    fi
    go_env
    dir=$(default_tools_dir)
  fi
  local missing=() tool
  for tool in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm kubeconform; do
    [ -x "$dir/$tool" ] || missing+=("$tool")
  done
  [ -d "$dir/kwok-stages" ] || missing+=(kwok-stages)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "cluster.sh: control-plane tools missing in $dir: ${missing[*]}; run: $here/cluster.sh build" >&2
    exit 3
  fi
  tools=$dir
  if [ "$real_node" = 1 ]; then
    node_tool_check
  fi
}

# A TCP port nobody listens on, not already handed out by this run, and outside the kernel's
# ephemeral range: a port picked inside it can be taken by any outgoing connection before the
# component binds it (kwok then exits with "address already in use").
taken_ports=()
free_port() {
  local attempt ephemeral_low ephemeral_high low=10000 high
  read -r ephemeral_low ephemeral_high </proc/sys/net/ipv4/ip_local_port_range
  if [ "$ephemeral_low" -gt 20000 ]; then
    high=$ephemeral_low
  else
    low=$((ephemeral_high + 1)) high=65536
  fi
  [ "$high" -gt "$((low + 1000))" ] || die "no room for ports outside the ephemeral range $ephemeral_low-$ephemeral_high"
  for attempt in $(seq 1 200); do
    port=$((low + (RANDOM * 32768 + RANDOM) % (high - low)))
    [[ " ${taken_ports[*]} " == *" $port "* ]] && continue
    if [ -z "$(ss -Htan "sport = :$port")" ]; then
      taken_ports+=("$port")
      return 0
    fi
  done
  die "no free TCP port found on 127.0.0.1 after 200 attempts"
}

pid_file() { echo "$run_dir/pids/$1.pid"; }
start_time_file() { echo "$run_dir/pids/$1.started"; }

# "START STATE" of a process: its start time (clock ticks after boot, field 22 of
# /proc/PID/stat) and its state letter. Fields are counted after the last ')', since the command
# name in field 2 may hold spaces.
process_start_and_state() {
  local stat fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  read -ra fields <<<"${stat##*) }"
  [ "${#fields[@]}" -ge 20 ] || return 1
  echo "${fields[19]} ${fields[0]}"
}

# A PID from the run dir is ours only while it names the process started then: PIDs are reused,
# and `down` must never signal a stranger. A process keeps its start time across exec, and a
# reused PID gets a new one. (Matching the command line instead had a hole: while the kernel
# execs a program, /proc/PID/cmdline reads empty for a moment, and a component that was starting
# was taken for one that had exited.)
our_pid() {
  local pid started now state
  pid=$(cat "$(pid_file "$1")" 2>/dev/null) || return 1
  started=$(cat "$(start_time_file "$1")" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ && $started =~ ^[0-9]+$ ]] || return 1
  read -r now state < <(process_start_and_state "$pid") || return 1
  [ "$now" = "$started" ] || return 1
  # An exited child not yet reaped by its parent is a zombie: it is gone for our purposes.
  [ "$state" != Z ] || return 1
  echo "$pid"
}

show_log_tail() {
  local log=$run_dir/logs/$1.log
  echo "---- last lines of $log ----" >&2
  tail -n 30 "$log" >&2 || true
  echo "---- end of $log ----" >&2
}

start_component() {
  local name=$1
  shift
  nohup "$@" </dev/null >>"$run_dir/logs/$name.log" 2>&1 &
  local pid=$! start_and_state
  echo "$pid" >"$(pid_file "$name")"
  # Read at once: the process is our unreaped child or still running. One that already exited
  # leaves no start time, and reads as exited.
  start_and_state=$(process_start_and_state "$pid") || start_and_state=""
  echo "${start_and_state%% *}" >"$(start_time_file "$name")"
}

stop_component() {
  local name=$1 pid
  if pid=$(our_pid "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    local waited
    for waited in $(seq 1 100); do
      our_pid "$name" >/dev/null || break
      sleep 0.1
    done
    if our_pid "$name" >/dev/null; then
      echo "cluster.sh: $name (pid $pid) ignored SIGTERM for 10 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$(pid_file "$name")" "$(start_time_file "$name")"
}

# Polls until the command succeeds, at most $2 seconds; $3 names the component whose log to show
# when it does not (or when that component exits meanwhile).
wait_for() {
  local what=$1 seconds=$2 component=$3
  shift 3
  local deadline=$((SECONDS + seconds))
  while ! "$@" >/dev/null 2>&1; do
    if ! our_pid "$component" >/dev/null; then
      echo "cluster.sh: $component exited while waiting for $what" >&2
      show_log_tail "$component"
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "cluster.sh: $what not reached within $seconds s" >&2
      show_log_tail "$component"
      exit 1
    fi
    sleep 0.25
  done
}

write_pki() {
  local pki=$run_dir/pki
  mkdir -p "$pki"
  (
    cd "$pki"
    umask 077
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=dig-e2e-ca" -out ca.crt \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl ecparam -name prime256v1 -genkey -noout -out apiserver.key
    openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr
    {
      echo "basicConstraints=critical,CA:FALSE"
      echo "keyUsage=critical,digitalSignature,keyEncipherment"
      echo "extendedKeyUsage=serverAuth"
      echo "subjectAltName=IP:$API_HOST,IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    } >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
      -extfile apiserver.ext -out apiserver.crt
    # The front proxy's own CA: the API server trusts identity headers only from its client
    # certificate, and the controller manager and scheduler read this CA for their own auth.
    openssl ecparam -name prime256v1 -genkey -noout -out front-proxy-ca.key
    openssl req -x509 -new -key front-proxy-ca.key -sha256 -days 3650 -subj "/CN=dig-e2e-front-proxy-ca" \
      -out front-proxy-ca.crt -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl ecparam -name prime256v1 -genkey -noout -out front-proxy-client.key
    openssl req -new -key front-proxy-client.key -subj "/CN=front-proxy-client" -out front-proxy-client.csr
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=clientAuth" >front-proxy-client.ext
    openssl x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key \
      -CAcreateserial -days 3650 -sha256 -extfile front-proxy-client.ext -out front-proxy-client.crt
    # Service-account tokens are signed with this key and verified with its public half.
    openssl genrsa -out service-account.key 2048
    openssl rsa -in service-account.key -pubout -out service-account.pub
  ) >"$run_dir/logs/openssl.log" 2>&1 || {
    tail -n 20 "$run_dir/logs/openssl.log" >&2
    die "openssl failed to create the certificates in $pki"
  }
}

# Static bearer tokens: the admin and kwok are in system:masters; the controller manager and the
# scheduler are the users the RBAC bootstrap policy already grants their rights to.
write_tokens() {
  local user token name groups
  (umask 077 && : >"$run_dir/tokens.csv")
  local users=(admin kwok kube-controller-manager kube-scheduler)
  [ "$real_node" = 1 ] && users+=(kubelet kube-proxy coredns)
  for user in "${users[@]}"; do
    token=$(openssl rand -hex 32)
    # The node's users are the ones the bootstrap RBAC policy and the Node authorizer know.
    case $user in
      admin) name=dig-e2e-admin groups=system:masters ;;
      kwok) name=kwok groups=system:masters ;;
      kubelet) name=system:node:$NODE_NAME groups=system:nodes ;;
      coredns) name=dig-e2e:coredns groups="" ;;
      *) name=system:$user groups="" ;;
    esac
    echo "$token,$name,$name,\"$groups\"" >>"$run_dir/tokens.csv"
    write_kubeconfig "$run_dir/$user.kubeconfig" "$token"
  done
  cp "$run_dir/admin.kubeconfig" "$run_dir/kubeconfig"
}

write_kubeconfig() {
  local file=$1 token=$2 ca_data
  ca_data=$(base64 -w0 <"$run_dir/pki/ca.crt")
  (umask 077 && cat >"$file") <<EOF
apiVersion: v1
kind: Config
clusters:
- name: dig-e2e
  cluster:
    server: https://$API_HOST:$API_PORT
    certificate-authority-data: $ca_data
users:
- name: dig-e2e
  user:
    token: $token
contexts:
- name: dig-e2e
  context:
    cluster: dig-e2e
    user: dig-e2e
    namespace: default
current-context: dig-e2e
EOF
}

start_etcd() {
  # No fsync: the data dies with the run, and fsync on a shared disk makes every write slow.
  start_component etcd "$tools/etcd" \
    --name dig-e2e --data-dir "$run_dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "dig-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn
  wait_for "etcd /health on 127.0.0.1:$ETCD_PORT" 60 etcd \
    curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"
}

apiserver_ready() {
  curl -sf --max-time 2 --cacert "$run_dir/pki/ca.crt" "https://$API_HOST:$API_PORT/readyz"
}

start_apiserver() {
  local pki=$run_dir/pki
  # On loopback the endpoint reconciler would publish 127.0.0.1 as the `kubernetes` Service's
  # endpoint, which Endpoints validation rejects, and no pod dials that Service. With a real node
  # the API server listens on the machine's end of the node's veth, publishes that for the
  # `kubernetes` Service (pods reach it through kube-proxy), calls webhooks and services at their
  # pod addresses (aggregator routing: the machine has a route to the pods, not to Service IPs)
  # and the kubelet with a client certificate. Without --shutdown-send-retry-after, SIGTERM waits
  # up to the 60 s request timeout for open watches.
  local mode_flags=(--endpoint-reconciler-type none)
  if [ "$real_node" = 1 ]; then
    mode_flags=(--endpoint-reconciler-type lease --enable-aggregator-routing=true
      --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt"
      --kubelet-client-key "$pki/apiserver-kubelet-client.key"
      --kubelet-preferred-address-types InternalIP)
  fi
  start_component kube-apiserver "$tools/kube-apiserver" \
    --bind-address "$API_HOST" --advertise-address "$API_HOST" --secure-port "$API_PORT" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --requestheader-client-ca-file "$pki/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$pki/front-proxy-client.crt" --proxy-client-key-file "$pki/front-proxy-client.key" \
    --token-auth-file "$run_dir/tokens.csv" \
    --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/service-account.pub" \
    --service-account-signing-key-file "$pki/service-account.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    "${mode_flags[@]}" \
    --shutdown-send-retry-after \
    --allow-privileged \
    --profiling=false
  wait_for "kube-apiserver /readyz on $API_HOST:$API_PORT" 120 kube-apiserver apiserver_ready
}

# Client rate limits: kube-controller-manager's default 20 requests/s (burst 30) per controller
# caps pod creation at a few pods a second (each pod also costs a status update and an event),
# which alone keeps 200 networks from starting within a minute. The operator bench measures the
# operator, so the harness lifts the limits as a large cluster would; the scheduler likewise.
# DIG_E2E_CONTROL_PLANE_QPS=20 DIG_E2E_CONTROL_PLANE_BURST=30 gives kcm's defaults back.
CONTROL_PLANE_QPS=${DIG_E2E_CONTROL_PLANE_QPS:-200}
CONTROL_PLANE_BURST=${DIG_E2E_CONTROL_PLANE_BURST:-400}

start_controller_manager() {
  local kubeconfig=$run_dir/kube-controller-manager.kubeconfig
  start_component kube-controller-manager "$tools/kube-controller-manager" \
    --kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$CONTROLLER_MANAGER_PORT" \
    --cert-dir "$run_dir/pki/kube-controller-manager" \
    --leader-elect=false --controllers '*' \
    --use-service-account-credentials \
    --service-account-private-key-file "$run_dir/pki/service-account.key" \
    --root-ca-file "$run_dir/pki/ca.crt" \
    --cluster-signing-cert-file "$run_dir/pki/ca.crt" --cluster-signing-key-file "$run_dir/pki/ca.key" \
    --service-cluster-ip-range 10.96.0.0/16 --cluster-name dig-e2e \
    --kube-api-qps "$CONTROL_PLANE_QPS" --kube-api-burst "$CONTROL_PLANE_BURST" \
    --profiling=false
}

start_scheduler() {
  local kubeconfig=$run_dir/kube-scheduler.kubeconfig
  start_component kube-scheduler "$tools/kube-scheduler" \
    --kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" \
    --cert-dir "$run_dir/pki/kube-scheduler" \
    --kube-api-qps "$CONTROL_PLANE_QPS" --kube-api-burst "$CONTROL_PLANE_BURST" \
    --leader-elect=false --profiling=false
}

start_kwok() {
  # kwok v0.8 does nothing without stages: the node, pod and volume stages of its kustomize
  # `stage/fast` set (copied next to the binary at build time) make the fake node Ready, Pods
  # Running and Ready, and provision a PersistentVolume for each claim of StorageClass kwok-volume.
  local config=$run_dir/kwok.yaml stage
  {
    echo "apiVersion: config.kwok.x-k8s.io/v1alpha1"
    echo "kind: KwokConfiguration"
    echo "options:"
    echo "  manageAllNodes: false"
    echo "  manageNodesWithAnnotationSelector: kwok.x-k8s.io/node=fake"
    echo "  cidr: 10.244.0.0/16"
    echo "  nodeIP: 127.0.0.1"
    echo "  nodePort: $KWOK_PORT"
    echo "  serverAddress: 127.0.0.1:$KWOK_PORT"
    echo "  nodeLeaseDurationSeconds: 40"
    # A KwokConfiguration read from a file is not defaulted: spell out what kwok's defaults are.
    echo "  nodeLeaseParallelism: 4"
    echo "  podPlayStageParallelism: 4"
    echo "  nodePlayStageParallelism: 4"
    echo "  podsOnNodeSyncParallelism: 1"
    echo "  enablePodsOnNodeSyncListPager: true"
    echo "  enablePodsOnNodeSyncStreamWatch: false"
    echo "  heartbeatFactor: 5"
    echo "  enableDebuggingHandlers: false"
    echo "  enableProfilingHandler: false"
    echo "  enableContentionProfiling: false"
    for stage in "$tools/kwok-stages/"*.yaml; do
      echo "---"
      cat "$stage"
    done
  } >"$config"
  start_component kwok "$tools/kwok" --kubeconfig "$run_dir/kwok.kubeconfig" --config "$config"
}

kubectl_admin() {
  "$tools/kubectl" --kubeconfig "$run_dir/kubeconfig" --cache-dir "$run_dir/kubectl-cache" "$@"
}

# The fake node kwok manages (no taint: every Pod may land on it), and the default StorageClass
# whose claims kwok's volume stages bind to a PersistentVolume they create.
apply_cluster_objects() {
  kubectl_admin apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: kwok-node-0
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  allocatable:
    cpu: "32"
    memory: 256Gi
    pods: "110"
  capacity:
    cpu: "32"
    memory: 256Gi
    pods: "110"
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: kwok-volume
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kwok.x-k8s.io/volume
reclaimPolicy: Delete
volumeBindingMode: Immediate
allowVolumeExpansion: true
EOF
}

# A real node's cluster objects: its default StorageClass and what CoreDNS may read.
apply_real_node_objects() {
  {
    node_storage_class
    cat <<EOF
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: dig-e2e:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: dig-e2e:coredns
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "dig-e2e:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "dig-e2e:coredns"}
EOF
  } | kubectl_admin apply -f - >/dev/null
}

component_healthy() {
  curl -sfk --max-time 2 "https://127.0.0.1:$1/healthz"
}

default_service_account_exists() {
  kubectl_admin get serviceaccount default --namespace default
}

load_run_env() {
  [ -f "$run_dir/cluster.env" ] || die "no control plane in $run_dir (cluster.env missing); run: $0 up --run-dir $run_dir"
  # shellcheck source=/dev/null
  . "$run_dir/cluster.env"
}

cmd_up() {
  local start=$SECONDS
  find_tools
  local need
  for need in openssl curl ss base64; do
    command -v "$need" >/dev/null || die "$need is not installed (.ci/run installs it: apt-get install openssl curl iproute2 coreutils)"
  done
  mkdir -p "$run_dir"
  run_dir=$(cd "$run_dir" && pwd)
  # Whatever a previous run left behind in this run dir is stopped and wiped first.
  cmd_down
  rm -rf "${run_dir:?}"/{etcd,pki,logs,pids,kubectl-cache} "$run_dir"/*.kubeconfig "$run_dir"/kubeconfig \
    "$run_dir"/cluster.env "$run_dir"/tokens.csv "$run_dir"/kwok.yaml
  mkdir -p "$run_dir/logs" "$run_dir/pids"
  # A failed start leaves nothing running.
  trap 'status=$?; [ $status -eq 0 ] || cmd_down; exit $status' EXIT
  if [ "$real_node" = 1 ]; then
    [ "$(id -u)" = 0 ] || die "the real node needs root (network namespaces, mounts, cgroups)"
    # shellcheck source=/dev/null
    . "$(readlink -f "$tools/images")/images.env"
    node_network_up
    API_HOST=$HOST_IP
  fi
  free_port && ETCD_PORT=$port
  free_port && ETCD_PEER_PORT=$port
  free_port && API_PORT=$port
  free_port && CONTROLLER_MANAGER_PORT=$port
  free_port && SCHEDULER_PORT=$port
  free_port && KWOK_PORT=$port
  cat >"$run_dir/cluster.env" <<EOF
TOOLS=$tools
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
API_PORT=$API_PORT
CONTROLLER_MANAGER_PORT=$CONTROLLER_MANAGER_PORT
SCHEDULER_PORT=$SCHEDULER_PORT
KWOK_PORT=$KWOK_PORT
API_HOST=$API_HOST
REAL_NODE=$real_node
EOF
  write_pki
  [ "$real_node" = 1 ] && write_node_pki
  write_tokens
  start_etcd
  start_apiserver
  echo "kube-apiserver ready on https://$API_HOST:$API_PORT after $((SECONDS - start)) s" >&2
  if [ "$real_node" = 1 ]; then
    apply_real_node_objects
  else
    apply_cluster_objects
  fi
  start_controller_manager
  start_scheduler
  [ "$real_node" = 1 ] || start_kwok
  wait_for "kube-controller-manager /healthz" 60 kube-controller-manager component_healthy "$CONTROLLER_MANAGER_PORT"
  wait_for "kube-scheduler /healthz" 60 kube-scheduler component_healthy "$SCHEDULER_PORT"
  if [ "$real_node" = 1 ]; then
    node_up
    [ -z "$up_images" ] || cmd_load_images "$up_images"
  else
    wait_for "node kwok-node-0 Ready" 60 kwok \
      kubectl_admin wait --for=condition=Ready node/kwok-node-0 --timeout=2s
  fi
  wait_for "service account default/default" 60 kube-controller-manager default_service_account_exists
  trap - EXIT
  echo "control plane up in $((SECONDS - start)) s; KUBECONFIG=$run_dir/kubeconfig" >&2
}

# Imports image archives (a file, or every *.tar of a directory) into the run's real node.
cmd_load_images() {
  local source=${1:?load-images needs a directory or an archive}
  [ -f "$run_dir/node.env" ] || die "no real node in $run_dir (start one with: $0 up --real-node)"
  # shellcheck source=/dev/null
  . "$run_dir/node.env"
  local archives=()
  if [ -d "$source" ]; then
    archives=("$source"/*.tar)
  else
    archives=("$source")
  fi
  [ -f "${archives[0]}" ] || die "no image archives in $source"
  local start=$SECONDS
  node_import_images "${archives[@]}"
  echo "imported ${#archives[@]} images in $((SECONDS - start)) s" >&2
}

# Names an image of the run's real node a second time: a new tag without a new build.
cmd_tag_image() {
  local source=${1:?tag-image needs the image to tag} target=${2:?tag-image needs the new name}
  [ -f "$run_dir/node.env" ] || die "no real node in $run_dir (start one with: $0 up --real-node)"
  # shellcheck source=/dev/null
  . "$run_dir/node.env"
  ctr_node images tag --force "$source" "$target" >/dev/null || die "cannot tag $source as $target on the node"
}

cmd_down() {
  [ -d "$run_dir" ] || return 0
  run_dir=$(cd "$run_dir" && pwd)
  # Each step of a node's clean-up is tried even when one before it failed.
  node_down || echo "cluster.sh: the node's clean-up in $run_dir failed part-way; continuing" >&2
  local i
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do
    stop_component "${components[$i]}"
  done
  node_network_down || echo "cluster.sh: cannot remove the node's network of $run_dir" >&2
}

existing_run_dir() {
  run_dir=$(cd "$run_dir" 2>/dev/null && pwd) || die "run dir $run_dir does not exist"
  load_run_env
  tools=$TOOLS
  API_HOST=${API_HOST:-127.0.0.1}
  real_node=${REAL_NODE:-0}
}

cmd_restart_apiserver() {
  existing_run_dir
  local start=$SECONDS
  stop_component kube-apiserver
  start_apiserver
  echo "kube-apiserver restarted in $((SECONDS - start)) s" >&2
}

cmd_env() {
  existing_run_dir
  echo "export KUBECONFIG=$run_dir/kubeconfig"
  echo "export PATH=$TOOLS:\$PATH"
  if [ "${REAL_NODE:-0}" = 1 ] && [ -f "$run_dir/node.env" ]; then
    sed 's/^/export DIG_E2E_/' "$run_dir/node.env"
    echo "export CONTAINERD_ADDRESS=$run_dir/node/containerd.sock CONTAINERD_NAMESPACE=k8s.io"
  fi
}

cmd_status() {
  existing_run_dir
  local name pid all_up=0 names=("${components[@]}")
  if [ "${REAL_NODE:-0}" = 1 ]; then
    names=(etcd kube-apiserver kube-controller-manager kube-scheduler "${node_components[@]}")
  fi
  for name in "${names[@]}"; do
    if pid=$(our_pid "$name"); then
      echo "$name: running (pid $pid, log $run_dir/logs/$name.log)"
    else
      echo "$name: not running (log $run_dir/logs/$name.log)"
      all_up=1
    fi
  done
  echo "kubeconfig: $run_dir/kubeconfig (https://${API_HOST:-127.0.0.1}:$API_PORT)"
  if [ -f "$run_dir/node.env" ]; then
    # shellcheck source=/dev/null
    . "$run_dir/node.env"
    echo "node $NODE_NAME: network namespace $NODE_NETNS, node IP $NODE_IP, pods $POD_CIDR, cgroups $CGROUP_ROOT"
  fi
  return $all_up
}

cmd_tools_dir() {
  find_tools
  echo "$tools"
}

main() {
  local command=""
  while [ $# -gt 0 ]; do
    case $1 in
      --run-dir) run_dir=${2:?--run-dir needs a directory}; shift 2 ;;
      --run-dir=*) run_dir=${1#--run-dir=}; shift ;;
      --real-node) real_node=1; shift ;;
      --images) up_images=${2:?--images needs a directory}; shift 2 ;;
      --binaries) images_binaries=${2:?--binaries needs a directory}; shift 2 ;;
      -h | --help | help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
      -*) die "unknown option $1 (see --help)" ;;
      *)
        [ -z "$command" ] || die "one command at a time (got $command and $1)"
        command=$1
        shift
        # Everything after `kubeconform` belongs to kubeconform, and so for load-images.
        case $command in kubeconform | load-images | tag-image) break ;; esac
        ;;
    esac
  done
  case $command in
    build) cmd_build ;;
    tools-dir) cmd_tools_dir ;;
    up) cmd_up ;;
    down) cmd_down ;;
    env) cmd_env ;;
    status) cmd_status ;;
    restart-apiserver) cmd_restart_apiserver ;;
    images) cmd_images ;;
    load-images) existing_run_dir; cmd_load_images "${1:-}" ;;
    tag-image) existing_run_dir; cmd_tag_image "${1:-}" "${2:-}" ;;
    provision-volumes) cmd_provision_volumes ;;
    kubeconform) cmd_kubeconform "$@" ;;
    "") die "no command given (see --help)" ;;
    *) die "unknown command '$command' (see --help)" ;;
  esac
}

# One line, so that bash has read it whole before running: editing this file meanwhile is safe.
main "$@"; exit
