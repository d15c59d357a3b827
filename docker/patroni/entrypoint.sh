#!/bin/sh
# pgdr-patroni entrypoint: make the running UID resolvable, then exec Patroni.
#
# Image contract (chart/README.md, "Image contract"): the chart passes the Patroni config file as
# the only argument (`args: ["/etc/patroni/patroni.yml"]`). The root filesystem is read-only;
# only /tmp, /var/run/postgresql and the data volume are writable.
#
# OpenShift runs the container under a random UID (group 0) that has no /etc/passwd entry.
# initdb and libpq look the user up (getpwuid) and refuse to start without a name, so when the
# lookup fails we give the UID a name through nss_wrapper: a passwd copy under /tmp (writable),
# with the image's `postgres` entry replaced by the running UID, preloaded into Patroni and every
# PostgreSQL process it starts. /etc/passwd is never written (read-only root, no group-writable
# passwd file in the image).
#
# Storage permissions: on OpenShift the restricted-v2 SCC gives the pod an fsGroup, and the kubelet's
# ownership change on mount makes every folder of the volume group-writable and setgid: the data
# directory becomes 02770, and PostgreSQL refuses to start ("data directory has invalid
# permissions"). Before Patroni starts, an existing data directory gets 0700 back (a missing one is
# created 0700 by initdb or pg_basebackup).
set -eu

uid=$(id -u)
gid=$(id -g)

if [ "$uid" = 0 ]; then
  echo "pgdr-patroni: refusing to run as root (initdb refuses it too); run as a non-root UID" >&2
  exit 1
fi

if ! getent passwd "$uid" >/dev/null 2>&1; then
  nss_dir=${NSS_WRAPPER_DIR:-/tmp/nss_wrapper}
  mkdir -p "$nss_dir"
  grep -v '^postgres:' /etc/passwd >"$nss_dir/passwd"
  echo "postgres:x:$uid:$gid:PostgreSQL (random UID):/home/postgres:/bin/sh" >>"$nss_dir/passwd"
  cp /etc/group "$nss_dir/group"
  if ! getent group "$gid" >/dev/null 2>&1; then
    echo "postgres:x:$gid:" >>"$nss_dir/group"
  fi
  NSS_WRAPPER_PASSWD=$nss_dir/passwd
  NSS_WRAPPER_GROUP=$nss_dir/group
  LD_PRELOAD=${NSS_WRAPPER_LIB:-libnss_wrapper.so}${LD_PRELOAD:+ $LD_PRELOAD}
  export NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP LD_PRELOAD
fi

if [ "$#" -eq 0 ]; then
  set -- /etc/patroni/patroni.yml
fi

# The data directory: Patroni's environment override, else postgresql.data_dir of the config file
# (the only data_dir key in it), else PGDATA.
data_dir() {
  if [ -n "${PATRONI_POSTGRESQL_DATA_DIR:-}" ]; then
    echo "$PATRONI_POSTGRESQL_DATA_DIR"
    return
  fi
  for arg in "$@"; do
    case "$arg" in
      *.yml|*.yaml)
        if [ -f "$arg" ]; then
          dir=$(sed -n 's/^[[:space:]]*data_dir:[[:space:]]*//p' "$arg" | head -n 1 |
            sed 's/[[:space:]]*$//; s/^["'"'"']//; s/["'"'"']$//')
          if [ -n "$dir" ]; then
            echo "$dir"
            return
          fi
        fi
        ;;
    esac
  done
  echo "${PGDATA:-}"
}

restore_data_dir_mode() {
  dir=$(data_dir "$@")
  if [ -n "$dir" ] && [ -d "$dir" ]; then
    if ! chmod 0700 "$dir"; then
      echo "pgdr-patroni: cannot chmod 0700 $dir (owner: $(ls -ld "$dir")); PostgreSQL will refuse it" >&2
    fi
  fi
}

case "$1" in
  -*|*.yml|*.yaml)
    restore_data_dir_mode "$@"
    exec patroni "$@"
    ;;
  # Anything else is a command (e.g. `patronictl list`, `psql`), run with the same identity fix.
  *) exec "$@" ;;
esac
