#!/usr/bin/env bash
# The whole test suite: formatting, lints, the control-plane tools, then every test in the workspace.
# Each stage prints how long it took. Tools built from source are cached under ~/.cache/dig-e2e.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

stage() {
  local name=$1; shift
  local start=$SECONDS
  echo "==> $name"
  "$@"
  echo "<== $name: $((SECONDS - start)) s"
}

stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
stage "build binaries" cargo build --workspace --bins --locked
if [ -x e2e/cluster/cluster.sh ]; then
  # Also the real node's CoreDNS and its pause and test-pod images.
  stage "control-plane tools" e2e/cluster/cluster.sh build
  # The cluster tests find the tools here, and must fail (not skip) if they cannot start.
  DIG_E2E_TOOLS=$(e2e/cluster/cluster.sh tools-dir)
  export DIG_E2E_TOOLS DIG_E2E_REQUIRE_CLUSTER=1
fi
stage "unit tests" cargo test --workspace --exclude dig-e2e --locked --no-fail-fast
# The end-to-end tests start real networks and control planes (kwok, and a real node whose pods
# run the images built from the binaries above: kubernetes_walkthrough, cluster_lifecycle); one at
# a time keeps a 2-core machine from starving them into timeouts.
stage "end-to-end tests" cargo test -p dig-e2e --locked --no-fail-fast -- --test-threads=1
