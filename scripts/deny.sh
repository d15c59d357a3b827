#!/usr/bin/env bash
# cargo-deny over Cargo.lock: licences, bans (e.g. the unmaintained `backoff`), sources.
# Installs cargo-deny from crates.io into the project's tools folder once (about 8 minutes of
# compiling on 2 cores), then checks in about a second. Advisories need the RustSec database from
# github.com, which these machines cannot reach: the GitHub workflow checks them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${PGDR_TOOLS:-$root/.tools}
VERSION=0.20.2
deny=$TOOLS/cargo-deny/bin/cargo-deny
if ! { [ -x "$deny" ] && "$deny" --version 2>/dev/null | grep -q "$VERSION"; }; then
  echo "deny: installing cargo-deny $VERSION into $TOOLS/cargo-deny (once)"
  cargo install --quiet --locked "cargo-deny@$VERSION" --root "$TOOLS/cargo-deny"
fi
cd "$root"
"$deny" --locked check licenses bans sources
