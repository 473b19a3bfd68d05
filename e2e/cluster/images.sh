# shellcheck shell=bash
# Container images without a Docker engine or a registry, sourced by cluster.sh. buildah (Debian's,
# vfs storage, no daemon) runs the repository's own Dockerfile: its final stages take the binaries
# from an image of prebuilt ones (`--build-arg BINARIES=...`) and start from a runtime base made of
# this Debian's own files (`--build-arg RUNTIME_BASE=...`: glibc, libgcc, CA certificates, the
# nonroot user 65532), as distroless `cc` is. So what the tests run is what the Dockerfile ships,
# from a base that matches it. The results are docker-archive files that containerd imports.
#
#   cluster.sh images --binaries DIR   the three images from DIR/{dig-bootstrap,dig-sidecar,dig-operator}
#                                      (debug info stripped); prints the directory of the archives
#                                      and images.env (cached by content under ~/.cache/dig-e2e/images)
#
# `cluster.sh build` also makes the node's own images: pause (Kubernetes' pause.c, built static)
# and busybox (Debian's busybox-static), for the chart's `helm test` pod.

IMAGE_REGISTRY=dig-e2e.local
IMAGES_RECIPE=4

# buildah with a store of its own, removed afterwards: nothing accumulates between builds.
buildah_store() { buildah --root "$1/root" --runroot "$1/runroot" --storage-driver vfs "${@:2}"; }

# Builds an image from a Containerfile in context $3 and writes it as a docker archive to $4.
buildah_archive() {
  local store=$1 name=$2 context=$3 archive=$4
  shift 4
  quiet "$store/build.log" buildah_store "$store" bud --isolation chroot --pull-never --layers=false \
    -t "$name" "$@" "$context"
  rm -f "$archive"
  quiet "$store/build.log" buildah_store "$store" push "$name" "docker-archive:$archive:$name"
}

# Exit 3 (tools missing), as for the control-plane tools, when the image builders are not there.
need_image_tools() {
  if ! command -v buildah >/dev/null || ! command -v objcopy >/dev/null; then
    echo "cluster.sh: images are built with buildah and objcopy (apt-get install buildah binutils)" >&2
    exit 3
  fi
}

new_buildah_store() {
  mkdir -p "$cache/tmp"
  mktemp -d "$cache/tmp/buildah.XXXXXX"
}

drop_buildah_store() {
  local store=$1
  # vfs layers are plain directories, some read-only.
  chmod -R u+w "$store" 2>/dev/null || true
  rm -rf "$store"
}

# The node's images, independent of the repository's code.
build_node_images() {
  local out
  out=$(node_component_dir node-images "$KUBERNETES_VERSION-busybox-$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null | tr ':~+' '---')-$(runtime_base_key)-i$IMAGES_RECIPE")
  if [ -f "$out/.complete" ]; then
    echo "  cached: pause and busybox images"
    NODE_IMAGES_DIR=$out
    return 0
  fi
  need_image_tools
  command -v gcc >/dev/null || die "gcc is not installed; it builds the pause container"
  [ -x /bin/busybox ] || die "busybox-static is not installed (apt-get install busybox-static)"
  local start=$SECONDS store source
  rm -rf "$out"
  mkdir -p "$out"
  store=$(new_buildah_store)
  source=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | jq -r .Dir)
  # pause: the pod sandbox's process, from the Kubernetes module's own source.
  mkdir -p "$store/pause"
  gcc -Os -Wall -Werror -static -DVERSION="$KUBERNETES_VERSION" -o "$store/pause/pause" "$source/build/pause/linux/pause.c"
  strip "$store/pause/pause"
  cat >"$store/pause/Containerfile" <<'EOF'
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
EOF
  local pause_image=$IMAGE_REGISTRY/pause:${KUBERNETES_VERSION#v}
  buildah_archive "$store" "$pause_image" "$store/pause" "$out/pause.tar" -f "$store/pause/Containerfile"
  # busybox: seq, grep, sleep for the chart's test pod, on the runtime base's files (Debian's
  # static busybox still loads glibc's NSS modules to resolve names). wget is Debian's GNU wget
  # and sh is dash: the wget of Debian's busybox 1.35 crashes on `-T` (the chart's test uses it),
  # and busybox's sh would run that applet whatever the PATH says.
  command -v wget >/dev/null || die "wget is not installed (apt-get install wget)"
  command -v dash >/dev/null || die "dash is not installed (apt-get install dash)"
  mkdir -p "$store/busybox/rootfs"
  write_runtime_base "$store/busybox/rootfs"
  mkdir -p "$store/busybox/rootfs/bin" "$store/busybox/rootfs/usr/bin"
  cp /bin/busybox "$store/busybox/rootfs/bin/busybox"
  copy_with_libraries "$(command -v wget)" "$store/busybox/rootfs"
  copy_with_libraries "$(command -v dash)" "$store/busybox/rootfs"
  ln -s ../usr/bin/dash "$store/busybox/rootfs/bin/sh"
  local applet
  for applet in seq grep sleep echo cat test '[' head ls; do
    ln -s busybox "$store/busybox/rootfs/bin/$applet"
  done
  cat >"$store/busybox/Containerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/bin/sh"]
EOF
  local busybox_image
  # sed reads the whole banner: `head -1` would close the pipe early and busybox would die of
  # SIGPIPE (exit 141 under pipefail) whenever its later writes came after that.
  busybox_image=$IMAGE_REGISTRY/busybox:$(/bin/busybox | sed -n '1s/^BusyBox v\([0-9.]*\).*/\1/p')
  buildah_archive "$store" "$busybox_image" "$store/busybox" "$out/busybox.tar" -f "$store/busybox/Containerfile"
  drop_buildah_store "$store"
  {
    echo "PAUSE_IMAGE=$pause_image"
    echo "BUSYBOX_IMAGE=$busybox_image"
  } >"$out/images.env"
  touch "$out/.complete"
  NODE_IMAGES_DIR=$out
  echo "  built pause and busybox images in $((SECONDS - start)) s"
}

# Copies a dynamically linked program to /usr/bin of $2, with the shared libraries it loads.
copy_with_libraries() {
  local program=$1 rootfs=$2 lib
  install -m 0755 "$program" "$rootfs/usr/bin/$(basename "$program")"
  for lib in $(ldd "$program" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'); do
    cp -L "$lib" "$rootfs/usr/lib/x86_64-linux-gnu/"
  done
}

# The Debian files of distroless `cc`: glibc, libgcc_s, CA certificates, passwd/group with the
# nonroot user, /tmp and the nonroot home. $1 is the directory to fill.
write_runtime_base() {
  local rootfs=$1 lib
  install -d -m 0755 "$rootfs/usr/lib/x86_64-linux-gnu" "$rootfs/usr/lib64" "$rootfs/etc/ssl/certs" \
    "$rootfs/usr/local/bin"
  ln -s usr/lib "$rootfs/lib"
  ln -s usr/lib64 "$rootfs/lib64"
  for lib in $(dpkg -L libc6 libgcc-s1 | grep -E '^(/usr)?/lib/x86_64-linux-gnu/[^/]+\.so[.0-9]*$'); do
    cp -L "$lib" "$rootfs/usr/lib/x86_64-linux-gnu/"
  done
  ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$rootfs/usr/lib64/ld-linux-x86-64.so.2"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$rootfs/etc/group"
  printf '%s\n' 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
  install -d -m 1777 "$rootfs/tmp"
  install -d -m 0700 -o 65532 -g 65532 "$rootfs/home/nonroot"
}

runtime_base_key() {
  dpkg-query -W -f '${Package}=${Version}\n' libc6 libgcc-s1 ca-certificates | sha256sum | cut -c1-12
}

# The three images of the Dockerfile from the binaries in $1.
cmd_images() {
  need_image_tools
  local binaries=${images_binaries:?cluster.sh images needs --binaries DIR}
  binaries=$(cd "$binaries" && pwd) || die "no binaries directory $images_binaries"
  local repo_root dockerfile
  repo_root=$(cd "$here/../.." && pwd)
  dockerfile=$repo_root/Dockerfile
  local bin
  for bin in dig-bootstrap dig-sidecar dig-operator; do
    [ -x "$binaries/$bin" ] || die "$binaries/$bin is missing (cargo build --workspace --bins)"
  done
  mkdir -p "$cache/tmp"
  local staging
  staging=$(mktemp -d "$cache/tmp/binaries.XXXXXX")
  mkdir -p "$staging/out/data"
  # Debug info makes debug builds ten times larger; the code is the same without it.
  for bin in dig-bootstrap dig-sidecar dig-operator; do
    objcopy --strip-debug "$binaries/$bin" "$staging/out/$bin"
  done
  local tag
  tag=$(
    cd "$staging/out"
    {
      sha256sum dig-bootstrap dig-sidecar dig-operator
      sha256sum "$dockerfile"
      runtime_base_key
      echo "recipe $IMAGES_RECIPE"
    } | sha256sum | cut -c1-12
  )
  local version out
  version=$(awk -F'"' '/^version *=/ {print $2; exit}' "$repo_root/Cargo.toml")
  out=$cache/images/$version-$tag
  if [ -f "$out/.complete" ]; then
    rm -rf "$staging"
    echo "$out"
    return 0
  fi
  # One build of a set at a time (tests start clusters in parallel).
  exec 9>"$cache/images.lock"
  flock 9
  if [ -f "$out/.complete" ]; then
    rm -rf "$staging"
    echo "$out"
    return 0
  fi
  local start=$SECONDS store
  rm -rf "$out"
  mkdir -p "$out"
  store=$(new_buildah_store)
  write_runtime_base "$staging/base"
  printf '%s\n' 'FROM scratch' 'COPY base/ /' >"$staging/Containerfile.base"
  printf '%s\n' 'FROM scratch' 'COPY out/ /out/' >"$staging/Containerfile.binaries"
  local base_image=localhost/dig-e2e-runtime-base:$(runtime_base_key)
  local binaries_image=localhost/dig-e2e-binaries:$tag
  quiet "$store/build.log" buildah_store "$store" bud --isolation chroot --layers=false \
    -f "$staging/Containerfile.base" -t "$base_image" "$staging"
  quiet "$store/build.log" buildah_store "$store" bud --isolation chroot --layers=false \
    -f "$staging/Containerfile.binaries" -t "$binaries_image" "$staging"
  # The Dockerfile's final stages copy nothing from the build context: an empty one will do.
  mkdir -p "$staging/context"
  local target env_name
  : >"$out/images.env.partial"
  for target in dig-bootstrap dig-sidecar dig-operator; do
    buildah_archive "$store" "$IMAGE_REGISTRY/$target:$version-$tag" "$staging/context" "$out/$target.tar" \
      -f "$dockerfile" --target "$target" \
      --build-arg "RUNTIME_BASE=$base_image" --build-arg "BINARIES=$binaries_image"
    env_name=$(echo "${target#dig-}" | tr '[:lower:]' '[:upper:]')_IMAGE
    echo "$env_name=$IMAGE_REGISTRY/$target:$version-$tag" >>"$out/images.env.partial"
  done
  drop_buildah_store "$store"
  rm -rf "$staging"
  mv "$out/images.env.partial" "$out/images.env"
  touch "$out/.complete"
  echo "images built in $((SECONDS - start)) s: $out" >&2
  prune_old_images "$out"
  echo "$out"
}

# Image sets are rebuilt whenever the binaries change; keep the newest few.
prune_old_images() {
  local keep=$1 dir
  # shellcheck disable=SC2012
  for dir in $(ls -1dt "$cache"/images/*/ 2>/dev/null | tail -n +5); do
    [ "${dir%/}" = "$keep" ] && continue
    rm -rf "$dir"
  done
}
