#!/usr/bin/env bash
# Build the Rust images here, without a registry: static binaries on the host, then
# `FROM scratch` images with buildah (vfs storage), each smoke-run with `buildah run --isolation
# chroot`, each image's size printed. Idempotent; exits non-zero on the first failure.
#
#   scripts/images.sh                        all four images
#   scripts/images.sh --one pgdr-readiness   one image (quicker CI check); IMAGES="a b" works too
#   scripts/images.sh --no-build             reuse the binaries already in $CARGO_TARGET_DIR
#   scripts/images.sh --archive DIR          also write each image as DIR/<image>.oci.tar
#
# Environment: IMAGES, VERSION (default: the workspace version), REVISION (default: git HEAD),
# REGISTRY (tag prefix, default localhost), BUILDAH (default buildah; CI: "sudo buildah"),
# CARGO_TARGET_DIR (default target/static: a separate
# target dir so the static release build does not invalidate the debug builds in target/).
# The Patroni image (docker/patroni) needs a Debian base from a registry: built in CI only.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

ALL_IMAGES="pgdr-port-patch pgdr-failover pgdr-readiness kubectl-pgdr"
images=${IMAGES:-$ALL_IMAGES}
build=1
archive=""
while [ $# -gt 0 ]; do
  case "$1" in
    --one) images=${2:?--one needs an image name}; shift 2 ;;
    --no-build) build=0; shift ;;
    --archive) archive=${2:?--archive needs a folder}; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "images: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for i in $images; do
  case " $ALL_IMAGES " in *" $i "*) ;; *) echo "images: unknown image $i (one of: $ALL_IMAGES)" >&2; exit 2 ;; esac
done

say() { printf 'images: %s\n' "$*"; }
fail() { printf 'images: FAILED: %s\n' "$*" >&2; exit 1; }

# --- buildah ----------------------------------------------------------------------------------
# BUILDAH: the command to run buildah with (CI: "sudo buildah", since vfs + chroot need root).
BUILDAH=${BUILDAH:-buildah}
if ! command -v buildah >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing buildah (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null
  else
    fail "buildah is not installed; install it (Debian/Ubuntu: apt-get install buildah) or run as root"
  fi
fi
bh() { $BUILDAH --storage-driver vfs "$@"; }
SUDO=""; case "$BUILDAH" in sudo\ *) SUDO=sudo ;; esac

# --- static binaries --------------------------------------------------------------------------
triple="$(uname -m)-unknown-linux-gnu"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/static}
bindir=$CARGO_TARGET_DIR/$triple/release
if [ "$build" = 1 ]; then
  pkgs=()
  for i in $images; do pkgs+=(-p "$i"); done
  say "cargo build --release (static, $triple) ${pkgs[*]} -> $CARGO_TARGET_DIR"
  start=$SECONDS
  RUSTFLAGS='-C target-feature=+crt-static' cargo build --locked --release --target "$triple" "${pkgs[@]}"
  say "static build took $((SECONDS - start)) s"
fi
for i in $images; do
  [ -x "$bindir/$i" ] || fail "$bindir/$i missing (run without --no-build)"
  # A static binary has no dynamic section / interpreter; refuse anything else.
  if ldd "$bindir/$i" 2>&1 | grep -q '=>'; then
    ldd "$bindir/$i" >&2
    fail "$i is dynamically linked; the scratch image would not run it"
  fi
done

# --- context ----------------------------------------------------------------------------------
ca=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca" ] || fail "$ca missing (apt-get install ca-certificates)"
ctx=$CARGO_TARGET_DIR/images/context
rm -rf "$ctx"
mkdir -p "$ctx/bin" "$ctx/rootfs/etc/ssl/certs"
cp -r docker/rootfs/etc/. "$ctx/rootfs/etc/"
cp "$ca" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
chmod -R a+rX,go-w "$ctx/rootfs"
for i in $images; do cp "$bindir/$i" "$ctx/bin/$i"; chmod 0755 "$ctx/bin/$i"; done

version=${VERSION:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)}
revision=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
registry=${REGISTRY:-localhost}

# --- smoke runs -------------------------------------------------------------------------------
# The three component binaries have no --version/--help: each starts by parsing its environment
# and exits 2 with the name of the missing or bad variable. kubectl-pgdr (a command line) must
# print its version, and refuse to run without two sites (exit 1, what to pass). The smoke run executes the image's configured
# ENTRYPOINT inside the image, so it proves: the entrypoint path exists, the binary runs on
# `scratch` (static), and it fails fast and clearly. pgdr-readiness needs no variable (all have
# defaults), so it is given a bad one, and additionally served for real: /live must answer.
expect_exit2() { # image container var-to-set-or-empty expected-text
  local image=$1 ctr=$2 env=$3 want=$4 out rc
  if [ -n "$env" ]; then bh config --env "$env" "$ctr" >/dev/null; fi
  set +e
  out=$(bh run --isolation chroot "$ctr" -- "${entrypoint[@]}" 2>&1 </dev/null)
  rc=$?
  set -e
  if [ "$rc" != 2 ] || ! grep -qF -- "$want" <<<"$out"; then
    printf '%s\n' "$out" >&2
    fail "$image: expected exit 2 and \"$want\", got exit $rc"
  fi
  say "$image: smoke run ok (exit 2: $(head -n1 <<<"$out" | cut -c1-140))"
}

plugin_smoke() { # container
  local ctr=$1 out rc ver
  ver=$(bh run --isolation chroot "$ctr" -- "${entrypoint[@]}" --version 2>&1 </dev/null) \
    || fail "kubectl-pgdr: --version failed inside the image: $ver"
  grep -qF "kubectl-pgdr $version" <<<"$ver" || fail "kubectl-pgdr: --version printed '$ver', expected kubectl-pgdr $version"
  set +e
  out=$(bh run --isolation chroot "$ctr" -- "${entrypoint[@]}" status 2>&1 </dev/null)
  rc=$?
  set -e
  if [ "$rc" != 1 ] || ! grep -qF -- "exactly two sites" <<<"$out"; then
    printf '%s\n' "$out" >&2
    fail "kubectl-pgdr: expected exit 1 and \"exactly two sites\" without a config, got exit $rc"
  fi
  say "kubectl-pgdr: smoke run ok ($ver; without sites: $(head -n1 <<<"$out" | cut -c1-120))"
}

# The PID of the first process named $2 below PID $1 (only processes this script started).
descendant_named() {
  local parent=$1 name=$2 queue=("$1") p child comm
  while [ "${#queue[@]}" -gt 0 ]; do
    p=${queue[0]}; queue=("${queue[@]:1}")
    for child in $(ps -o pid= --ppid "$p" 2>/dev/null); do
      comm=$(ps -o comm= -p "$child" 2>/dev/null || true)
      if [ "$comm" = "$name" ]; then echo "$child"; return 0; fi
      queue+=("$child")
    done
  done
  [ -n "$parent" ] && return 0
}

serve_readiness() { # container
  local ctr=$1 port pid code="" n
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 18080)
  bh config --env READINESS_MAX_LAG_BYTES=16777216 --env "READINESS_LISTEN=127.0.0.1:$port" \
    --env READINESS_PATRONI_URL=http://127.0.0.1:9 "$ctr" >/dev/null
  bh run --isolation chroot "$ctr" -- "${entrypoint[@]}" >"$CARGO_TARGET_DIR/images/readiness.log" 2>&1 </dev/null &
  pid=$!
  for n in $(seq 1 50); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/live" 2>/dev/null || true)
    [ "$code" = 200 ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  local ready metrics
  ready=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ready" 2>/dev/null || true)
  metrics=$(curl -s "http://127.0.0.1:$port/metrics" 2>/dev/null | grep -c '^[a-z]' || true)
  # Stop it as Kubernetes does: SIGTERM to the binary itself (a descendant of the buildah
  # process started above, found by parent PID), which must drain and exit 0.
  local bin_pid="" rc=0
  bin_pid=$(descendant_named "$pid" pgdr-readiness)
  if [ -n "$bin_pid" ]; then $SUDO kill -TERM "$bin_pid" 2>/dev/null || true; else kill -TERM "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || rc=$?
  if [ "$code" != 200 ]; then
    cat "$CARGO_TARGET_DIR/images/readiness.log" >&2
    fail "pgdr-readiness: /live answered '${code:-nothing}' inside the image (port $port)"
  fi
  if [ -z "$bin_pid" ] || [ "$rc" != 0 ] || ! grep -q 'SIGTERM received' "$CARGO_TARGET_DIR/images/readiness.log"; then
    cat "$CARGO_TARGET_DIR/images/readiness.log" >&2
    fail "pgdr-readiness: no clean exit 0 on SIGTERM inside the image (pid '${bin_pid}', exit $rc)"
  fi
  say "pgdr-readiness: served in the image: /live 200, /ready $ready (no Patroni), /metrics $metrics sample lines, SIGTERM -> exit 0"
}

# --- images -----------------------------------------------------------------------------------
[ -n "$archive" ] && mkdir -p "$archive"
for i in $images; do
  tag="$registry/$i:$version"
  old=$(bh images -q --no-trunc "$tag" 2>/dev/null || true)
  say "building $tag (docker/Containerfile.local, target $i)"
  bh bud -q --layers=false -f docker/Containerfile.local --target "$i" \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" \
    -t "$tag" "$ctx" >/dev/null
  new=$(bh images -q --no-trunc "$tag")
  if [ -n "$old" ] && [ "$old" != "$new" ]; then bh rmi "$old" >/dev/null 2>&1 || true; fi

  mapfile -t entrypoint < <(bh inspect --type image --format '{{range .OCIv1.Config.Entrypoint}}{{println .}}{{end}}' "$tag" | sed '/^$/d')
  [ "${#entrypoint[@]}" -gt 0 ] || fail "$i: image has no ENTRYPOINT"
  user=$(bh inspect --type image --format '{{.OCIv1.Config.User}}' "$tag")
  case "$user" in [1-9]*) ;; *) fail "$i: image user '$user' is not a numeric non-root UID" ;; esac

  ctr=$(bh from --pull-never "$tag")
  trap 'bh rm "$ctr" >/dev/null 2>&1 || true' EXIT
  case "$i" in
    pgdr-port-patch) expect_exit2 "$i" "$ctr" "" "PORT_PATCH_" ;;
    pgdr-failover)   expect_exit2 "$i" "$ctr" "" "FAILOVER_" ;;
    kubectl-pgdr)    plugin_smoke "$ctr" ;;
    pgdr-readiness)
      expect_exit2 "$i" "$ctr" "READINESS_MAX_LAG_BYTES=lots" "READINESS_MAX_LAG_BYTES"
      serve_readiness "$ctr" ;;
  esac
  bh rm "$ctr" >/dev/null
  trap - EXIT

  if [ -n "$archive" ]; then
    rm -f "$archive/$i.oci.tar"
    bh push -q "$tag" "oci-archive:$archive/$i.oci.tar:$tag" >/dev/null
  fi
  size=$(bh images --format '{{.Size}}' "$tag" | head -n1)
  bin_kib=$(( $(stat -c %s "$ctx/bin/$i") / 1024 ))
  say "$tag: image $size (binary ${bin_kib} KiB, user $user, entrypoint ${entrypoint[*]})"
done
say "done: $images"
