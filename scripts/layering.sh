#!/usr/bin/env bash
# Layering check: no crate that ships (crates/) depends on a test-bed crate (testbed/) through a
# normal or build dependency; dev-dependencies are what the test bed is for. Also: the contract
# crate (crates/contract) depends on no other workspace crate, and the kubectl plugin on no
# workspace crate but the contract. Prints each offending edge and exits 1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo metadata --format-version 1 --no-deps --offline 2>/dev/null >/tmp/pgdr-metadata.$$ ||
  cargo metadata --format-version 1 --no-deps >/tmp/pgdr-metadata.$$
trap 'rm -f /tmp/pgdr-metadata.$$' EXIT
python3 - "$root" /tmp/pgdr-metadata.$$ <<'PY'
import json, os, sys
root, path = sys.argv[1], sys.argv[2]
meta = json.load(open(path))
where = {}
for p in meta["packages"]:
    rel = os.path.relpath(os.path.dirname(p["manifest_path"]), root)
    where[p["name"]] = rel.split(os.sep)[0]
# Rules on workspace-internal edges: (package predicate, allowed internal deps or None = any
# shipping crate).
allowed_only = {"pgdr-contract": set(), "kubectl-pgdr": {"pgdr-contract"}}
bad = []
edges = 0
for p in meta["packages"]:
    if where[p["name"]] != "crates":
        continue
    for d in p["dependencies"]:
        if d["name"] not in where or d.get("kind") == "dev":
            continue
        edges += 1
        if where[d["name"]] == "testbed":
            bad.append(f'{p["name"]} -> {d["name"]} (a test-bed crate; only as a dev-dependency)')
        elif p["name"] in allowed_only and d["name"] not in allowed_only[p["name"]]:
            bad.append(f'{p["name"]} -> {d["name"]} (allowed: {sorted(allowed_only[p["name"]]) or "none"})')
if bad:
    print("layering: shipping crates depend on what they must not:")
    for b in bad:
        print("  " + b)
    sys.exit(1)
if edges == 0:
    print("layering: found no workspace dependency at all: the check reads nothing")
    sys.exit(1)
print(f"layering: ok ({edges} workspace dependencies of shipping crates checked)")
PY
