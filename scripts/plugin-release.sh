#!/usr/bin/env bash
# Release archives of the kubectl plugin and its krew manifest, without a registry.
#
#   scripts/plugin-release.sh [--out DIR]    (default dist/)
#
# Builds kubectl-pgdr as a static release binary for this machine's architecture, packs
# DIR/kubectl-pgdr_<version>_linux_<arch>.tar.gz (the binary and LICENSE) with its .sha256, and
# writes DIR/pgdr.yaml: the krew plugin manifest listing every archive of this version present in
# DIR (run the script on an amd64 and on an arm64 machine into the same DIR for both). Each
# archive's uri is $RELEASE_BASE_URL/<archive> (default: the repository's GitHub release
# v<version>). Install from the manifest with `kubectl krew install --manifest=DIR/pgdr.yaml
# --archive=DIR/<archive>`, or copy the binary onto PATH. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
out=dist
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "plugin-release: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
repo=$(sed -n 's/^repository = "\(.*\)"/\1/p' Cargo.toml | head -1)
base=${RELEASE_BASE_URL:-$repo/releases/download/v$version}
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "plugin-release: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
triple="$(uname -m)-unknown-linux-gnu"

# The same static build as `make plugin` (glibc, statically linked: runs on any Linux of the arch).
RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR="$PWD/target/static" \
  cargo build --locked --release --target "$triple" -p kubectl-pgdr
bin="target/static/$triple/release/kubectl-pgdr"
"$bin" --version >/dev/null

mkdir -p "$out"
name="kubectl-pgdr_${version}_linux_${arch}.tar.gz"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$bin" "$stage/kubectl-pgdr"
install -m 0644 LICENSE "$stage/LICENSE"
# Reproducible archive: fixed owner, order and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2000-01-01 00:00Z' \
  -C "$stage" -cf - kubectl-pgdr LICENSE | gzip -n >"$out/$name"
(cd "$out" && sha256sum "$name" >"$name.sha256")
echo "plugin-release: $out/$name ($(du -h "$out/$name" | cut -f1))"

{
  cat <<YAML
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: pgdr
spec:
  version: v$version
  homepage: $repo
  shortDescription: Run one PostgreSQL across two clusters with Patroni
  description: |
    Shows both sites of a Patroni pair (one cluster primary, the other a standby cluster) side
    by side, and moves the primary between them: zero-loss switchover and failback, fence,
    unfence, promote, rejoin, hold and release of the failover agents, psql and logs per site.
    Works through each site's Kubernetes API only, one kubeconfig context per site.
  platforms:
YAML
  for f in "$out"/kubectl-pgdr_"${version}"_linux_*.tar.gz; do
    a=${f##*_linux_}
    a=${a%.tar.gz}
    cat <<YAML
    - selector:
        matchLabels:
          os: linux
          arch: $a
      uri: $base/$(basename "$f")
      sha256: $(cut -d' ' -f1 <"$f.sha256")
      bin: kubectl-pgdr
YAML
  done
} >"$out/pgdr.yaml"
echo "plugin-release: $out/pgdr.yaml (krew manifest, $(grep -c 'arch:' "$out/pgdr.yaml") platform(s))"
