"""Validates a site's rendered Patroni configuration with Patroni itself.

Usage: validate_patroni_config.py <render.yaml> <workdir> <patroni binary>

Takes the StatefulSet's Patroni container from a `helm template` render, rebuilds the
environment it would get (PATRONI_* literals, `$(VAR)` references expanded, fieldRefs and secrets
replaced by stand-ins), writes the mounted patroni.yml and runs `patroni --validate-config` on it.
"""
import os
import re
import subprocess
import sys

import yaml

render, workdir, patroni = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(open(render)) if d]
sts = next(d for d in docs if d["kind"] == "StatefulSet")
pod = sts["spec"]["template"]["spec"]
container = next(c for c in pod["containers"] if c["name"] == "patroni")
config_name = next(v["configMap"]["name"] for v in pod["volumes"] if v["name"] == "patroni-config")
cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == config_name)
stand_ins = {
    "status.podIP": "10.1.2.3",
    "metadata.name": sts["metadata"]["name"] + "-0",
    "metadata.namespace": sts["metadata"]["namespace"],
}
env = {"PATH": "/usr/bin:/bin"}
for e in container["env"]:
    if "value" in e:
        env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), ""), e["value"])
    elif "fieldRef" in e["valueFrom"]:
        env[e["name"]] = stand_ins[e["valueFrom"]["fieldRef"]["fieldPath"]]
    else:
        env[e["name"]] = "stand-in-secret"
os.makedirs(workdir, exist_ok=True)
local = os.path.join(workdir, os.path.basename(container["args"][0]))
with open(local, "w") as f:
    f.write(cm["data"]["patroni.yml"])
r = subprocess.run([patroni, "--validate-config", local], env=env, capture_output=True, text=True)
if r.returncode != 0:
    sys.exit(f"patroni --validate-config failed for {sts['metadata']['name']}:\n{r.stdout}{r.stderr}")
