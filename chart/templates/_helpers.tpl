{{/*
Helpers of the patroni chart (patroni-dr project). Names are prefixed with the chart name; every name that becomes an
object name is checked against Kubernetes' length limits by "patroni.validate" (a name is never
silently truncated where the other site or the platform must derive the same name).
*/}}

{{- define "patroni.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "patroni.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "patroni.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Label key carrying the site name. */}}
{{- define "patroni.siteLabel" -}}patroni-dr/site{{- end -}}

{{/* Labels on every object. */}}
{{- define "patroni.labels" -}}
helm.sh/chart: {{ include "patroni.chart" . }}
{{ include "patroni.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: patroni-dr
{{ include "patroni.siteLabel" . }}: {{ .Values.site.name | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels identifying the release (subset of every selector). */}}
{{- define "patroni.selectorLabels" -}}
app.kubernetes.io/name: {{ include "patroni.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels Patroni puts on (and selects) its DCS objects and member pods: kubernetes.labels. */}}
{{- define "patroni.patroniLabels" -}}
{{- dict "app.kubernetes.io/name" (include "patroni.name" .) "app.kubernetes.io/instance" .Release.Name "app.kubernetes.io/component" "patroni" | toJson -}}
{{- end -}}

{{/* The same labels as key=value,key=value (PORT_PATCH_LABELS). */}}
{{- define "patroni.patroniLabelsKv" -}}
{{- $pairs := list -}}
{{- range $k, $v := (include "patroni.patroniLabels" . | fromJson) -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/* Selector of this site's Patroni pods (StatefulSet selector; never the role label). */}}
{{- define "patroni.podSelectorLabels" -}}
{{ include "patroni.selectorLabels" . }}
app.kubernetes.io/component: patroni
{{ include "patroni.siteLabel" . }}: {{ .Values.site.name | quote }}
{{- end -}}

{{/* Selector of this site's Patroni members as Patroni sees them, plus a role value (for Services). */}}
{{- define "patroni.roleSelector" -}}
{{- $root := index . 0 -}}
{{- $role := index . 1 -}}
{{ include "patroni.selectorLabels" $root }}
app.kubernetes.io/component: patroni
{{ $root.Values.patroni.kubernetes.scopeLabel }}: {{ include "patroni.scope" $root }}
{{ $root.Values.patroni.kubernetes.roleLabel }}: {{ $role }}
{{- end -}}

{{- define "patroni.scope" -}}
{{- default (include "patroni.fullname" .) .Values.patroni.scope -}}
{{- end -}}

{{/* StatefulSet of this site. */}}
{{- define "patroni.statefulsetName" -}}
{{- printf "%s-%s" (include "patroni.fullname" .) .Values.site.name -}}
{{- end -}}

{{/* Primary Service: the same name on both sites, since the tunnel connects Services of one name. */}}
{{- define "patroni.primaryService" -}}
{{- include "patroni.fullname" . -}}
{{- end -}}

{{- define "patroni.replicaService" -}}
{{- printf "%s-replica" (include "patroni.fullname" .) -}}
{{- end -}}

{{- define "patroni.headlessService" -}}
{{- printf "%s-headless" (include "patroni.fullname" .) -}}
{{- end -}}

{{/* Service the platform creates for the peer (`<service>-<peer>`). */}}
{{- define "patroni.tunnelService" -}}
{{- default (printf "%s-%s" (include "patroni.primaryService" .) .Values.site.peer) .Values.tunnel.serviceName -}}
{{- end -}}

{{- define "patroni.patroniConfigMap" -}}
{{- printf "%s-%s-config" (include "patroni.fullname" .) .Values.site.name -}}
{{- end -}}

{{- define "patroni.failoverStateConfigMap" -}}
{{- printf "%s-failover-state" (include "patroni.fullname" .) -}}
{{- end -}}

{{- define "patroni.credentialsSecret" -}}
{{- default (printf "%s-credentials" (include "patroni.fullname" .)) .Values.credentials.existingSecret -}}
{{- end -}}

{{- define "patroni.tlsSecret" -}}
{{- default (printf "%s-%s-tls" (include "patroni.fullname" .) .Values.site.name) .Values.tls.existingSecret -}}
{{- end -}}

{{/* Replication slot a site keeps for site `$site`: <prefix><site> with '-' as '_'. Call with (list $ $site). */}}
{{- define "patroni.slotFor" -}}
{{- $root := index . 0 -}}
{{- printf "%s%s" $root.Values.replication.slotPrefix (index . 1) | replace "-" "_" -}}
{{- end -}}

{{/* Component name helpers: <fullname>-<component>. */}}
{{- define "patroni.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "patroni.fullname" $root) (index . 1) -}}
{{- end -}}

{{/* Image reference. Call with (list $ .Values.images.<x>). */}}
{{- define "patroni.image" -}}
{{- $root := index . 0 -}}
{{- $img := index . 1 -}}
{{- $repo := printf "%s/%s" ($root.Values.images.registry | trimSuffix "/") $img.repository -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default $root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Effective switches ("true" or ""). */}}
{{- define "patroni.isStandby" -}}
{{- if eq .Values.site.role "standby" -}}true{{- end -}}
{{- end -}}

{{- define "patroni.tscEnabled" -}}
{{- if .Values.site.peer -}}
{{- if kindIs "bool" .Values.transportServerClaim.enabled -}}
{{- if .Values.transportServerClaim.enabled -}}true{{- end -}}
{{- else if eq .Values.site.role "primary" -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{- define "patroni.portPatchEnabled" -}}
{{- if .Values.site.peer -}}
{{- if kindIs "bool" .Values.portPatch.enabled -}}
{{- if .Values.portPatch.enabled -}}true{{- end -}}
{{- else if eq .Values.site.role "standby" -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{- define "patroni.failoverEnabled" -}}
{{- if .Values.site.peer -}}
{{- if kindIs "bool" .Values.failover.enabled -}}
{{- if .Values.failover.enabled -}}true{{- end -}}
{{- else if eq .Values.site.role "standby" -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* Pod-level settings shared by every pod of the chart. */}}
{{- define "patroni.podCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Logging environment of a Rust binary: <PREFIX>LOG_FORMAT and RUST_LOG. Call with (list $ "PREFIX_"). */}}
{{- define "patroni.rustEnv" -}}
{{- $root := index . 0 -}}
- name: {{ index . 1 }}LOG_FORMAT
  value: {{ $root.Values.logFormat | quote }}
- name: RUST_LOG
  value: {{ $root.Values.rustLog | quote }}
{{- end -}}

{{/*
Fails rendering with a message that says what is wrong and what to do. Included once, from
configmap-patroni.yaml (always rendered).
*/}}
{{- define "patroni.validate" -}}
{{- $v := .Values -}}
{{- if not $v.site.name -}}
{{- fail "site.name is required: install with -f values-gold.yaml or -f values-golddr.yaml, or set site.name to this site's name (e.g. gold)" -}}
{{- end -}}
{{- if and $v.site.peer (eq $v.site.peer $v.site.name) -}}
{{- fail (printf "site.peer (%s) must differ from site.name" $v.site.peer) -}}
{{- end -}}
{{- if and (eq $v.site.role "standby") (not $v.site.peer) -}}
{{- fail "site.role=standby needs site.peer: the name of the primary site this standby follows" -}}
{{- end -}}
{{- if and (eq $v.site.role "standby") (not $v.credentials.existingSecret) -}}
{{- fail "site.role=standby needs credentials.existingSecret: a standby is a physical copy of the primary, so its passwords must be the primary's. Copy the primary site's Secret (README \"Credentials\") and set credentials.existingSecret to its name" -}}
{{- end -}}
{{- $full := include "patroni.fullname" . -}}
{{- $sts := include "patroni.statefulsetName" . -}}
{{- if gt (len $sts) 52 -}}
{{- fail (printf "StatefulSet name %q is %d characters; at most 52 are allowed (pod labels carry <name>-<hash>). Shorten the release name, fullnameOverride or site.name" $sts (len $sts)) -}}
{{- end -}}
{{- if $v.site.peer -}}
{{- $tunnel := include "patroni.tunnelService" . -}}
{{- if gt (len $tunnel) 63 -}}
{{- fail (printf "the tunnel Service name %q is %d characters, over 63. Shorten the release name, fullnameOverride or the site names" $tunnel (len $tunnel)) -}}
{{- end -}}
{{- if has $tunnel (list $full (include "patroni.replicaService" .) (include "patroni.headlessService" .)) -}}
{{- fail (printf "tunnel Service name %q collides with a Service of this chart; set tunnel.serviceName or change the names" $tunnel) -}}
{{- end -}}
{{- end -}}
{{- $fo := printf "%s-failover" $full -}}
{{- if gt (len $fo) 52 -}}
{{- fail (printf "CronJob name %q is over 52 characters; shorten the release name or fullnameOverride" $fo) -}}
{{- end -}}
{{- $scope := include "patroni.scope" . -}}
{{- $ours := list (include "patroni.patroniConfigMap" .) (include "patroni.failoverStateConfigMap" .) -}}
{{- range $suffix := list "leader" "config" "sync" "failover" -}}
{{- if has (printf "%s-%s" $scope $suffix) $ours -}}
{{- fail (printf "Patroni's DCS ConfigMap %s-%s would collide with a ConfigMap of this chart; change patroni.scope" $scope $suffix) -}}
{{- end -}}
{{- end -}}
{{- if hasKey $v.patroni.extraBootstrapDcs "standby_cluster" -}}
{{- fail "patroni.extraBootstrapDcs must not contain standby_cluster: the chart writes the bootstrap placeholder and the port-patch Job writes the real tunnel address" -}}
{{- end -}}
{{- if and $v.failover.witness.dns.name (not $v.failover.witness.dns.expectedAddresses) -}}
{{- fail "failover.witness.dns.name is set but failover.witness.dns.expectedAddresses is empty: list the addresses that mean the application already runs on this site" -}}
{{- end -}}
{{- $budget := add (mul $v.failover.samplesPerRun $v.failover.sampleIntervalSeconds) $v.failover.promoteConfirmSeconds 30 -}}
{{- if gt (int $budget) (int $v.failover.activeDeadlineSeconds) -}}
{{- fail (printf "failover.activeDeadlineSeconds (%d) is too short: a run needs samplesPerRun x sampleIntervalSeconds + promoteConfirmSeconds + 30 = %d seconds" (int $v.failover.activeDeadlineSeconds) (int $budget)) -}}
{{- end -}}
{{- if and (eq $v.tls.sslMode "verify-ca") (or (not $v.tls.enabled) (not $v.tls.existingSecret)) -}}
{{- fail "tls.sslMode=verify-ca needs tls.enabled and tls.existingSecret with a ca.crt shared by both sites (a generated self-signed certificate cannot be verified by the peer)" -}}
{{- end -}}
{{- if and $v.tls.enforce (not $v.tls.enabled) -}}
{{- fail "tls.enforce needs tls.enabled" -}}
{{- end -}}
{{- end -}}

{{/* Environment of the readiness sidecar (READINESS_*; crates/readiness/src/config.rs and README). GET endpoints need no credentials. */}}
{{- define "patroni.readinessEnv" -}}
- name: READINESS_LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.readiness.port) | quote }}
- name: READINESS_PATRONI_URL
  value: {{ printf "http://127.0.0.1:%d" (int .Values.patroni.restApi.port) | quote }}
- name: READINESS_POLL_INTERVAL
  value: {{ printf "%ds" (int .Values.readiness.pollIntervalSeconds) | quote }}
- name: READINESS_MAX_LAG_BYTES
  value: {{ .Values.readiness.maxLagBytes | int64 | quote }}
- name: READINESS_SITE
  value: {{ .Values.site.name | quote }}
{{ include "patroni.rustEnv" (list . "READINESS_") }}
{{- end -}}

{{/* Environment of the port-patch Job (PORT_PATCH_*; crates/port-patch/src/config.rs and README). */}}
{{- define "patroni.portPatchEnv" -}}
- name: PORT_PATCH_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: PORT_PATCH_SCOPE
  value: {{ include "patroni.scope" . | quote }}
- name: PORT_PATCH_TUNNEL_SERVICE
  value: {{ include "patroni.tunnelService" . | quote }}
- name: PORT_PATCH_PORT_FIELD
  value: "port"
- name: PORT_PATCH_HOST_MODE
  value: {{ .Values.portPatch.hostMode | quote }}
- name: PORT_PATCH_PRIMARY_SLOT_NAME
  value: {{ include "patroni.slotFor" (list . .Values.site.name) | quote }}
- name: PORT_PATCH_CREATE_REPLICA_METHODS
  value: "basebackup"
- name: PORT_PATCH_LABELS
  value: {{ include "patroni.patroniLabelsKv" . | quote }}
- name: PORT_PATCH_SCOPE_LABEL
  value: {{ .Values.patroni.kubernetes.scopeLabel | quote }}
# Patroni's bootstrap.dcs: the config to start from when Patroni has not written one yet.
- name: PORT_PATCH_BASE_CONFIG
  valueFrom:
    configMapKeyRef:
      name: {{ include "patroni.patroniConfigMap" . }}
      key: bootstrap-dcs.json
- name: PORT_PATCH_DEADLINE
  value: {{ printf "%ds" (int .Values.portPatch.deadlineSeconds) | quote }}
- name: PORT_PATCH_FORCE
  value: {{ .Values.portPatch.force | quote }}
{{ include "patroni.rustEnv" (list . "PORT_PATCH_") }}
{{- end -}}

{{/* Environment of the failover CronJob (FAILOVER_*; contract in chart/docs/failover-env.md). */}}
{{- define "patroni.failoverEnv" -}}
{{- $v := .Values -}}
{{- $f := $v.failover -}}
{{- $secret := include "patroni.credentialsSecret" . -}}
{{- $sslMode := ternary $v.tls.sslMode "prefer" $v.tls.enabled -}}
- name: FAILOVER_MODE
  value: {{ $f.mode | quote }}
- name: FAILOVER_SITE
  value: {{ $v.site.name | quote }}
- name: FAILOVER_PEER_SITE
  value: {{ $v.site.peer | quote }}
- name: FAILOVER_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: FAILOVER_SCOPE
  value: {{ include "patroni.scope" . | quote }}
- name: FAILOVER_STATE_CONFIGMAP
  value: {{ include "patroni.failoverStateConfigMap" . | quote }}
- name: FAILOVER_HOLD_ANNOTATION
  value: "patroni-dr/hold"
- name: FAILOVER_TUNNEL_SERVICE
  value: {{ include "patroni.tunnelService" . | quote }}
- name: FAILOVER_TUNNEL_SSLMODE
  value: {{ $sslMode | quote }}
{{- if eq $sslMode "verify-ca" }}
- name: FAILOVER_TUNNEL_SSLROOTCERT
  value: "/etc/pgdr/tls/ca.crt"
{{- end }}
- name: FAILOVER_REPLICATION_USER
  value: {{ $v.credentials.replicationUsername | quote }}
- name: FAILOVER_REPLICATION_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.credentials.keys.replicationPassword }}
{{- with $f.patroniUrl }}
- name: FAILOVER_PATRONI_URL
  value: {{ . | quote }}
{{- end }}
{{- if $v.patroni.restApi.authentication }}
- name: FAILOVER_PATRONI_USERNAME
  value: {{ $v.credentials.restApiUsername | quote }}
- name: FAILOVER_PATRONI_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.credentials.keys.restApiPassword }}
{{- end }}
- name: FAILOVER_SAMPLE_INTERVAL
  value: {{ printf "%ds" (int $f.sampleIntervalSeconds) | quote }}
- name: FAILOVER_SAMPLES_PER_RUN
  value: {{ $f.samplesPerRun | int | quote }}
- name: FAILOVER_FAILURE_THRESHOLD
  value: {{ $f.failureThreshold | int | quote }}
- name: FAILOVER_MIN_FAILURE_SPAN
  value: {{ printf "%ds" (int $f.minFailureSpanSeconds) | quote }}
- name: FAILOVER_PROBE_TIMEOUT
  value: {{ printf "%ds" (int $f.probeTimeoutSeconds) | quote }}
- name: FAILOVER_MAX_LAG_BYTES
  value: {{ $f.maxLagBytes | int64 | quote }}
- name: FAILOVER_FORCE
  value: {{ $f.force | quote }}
- name: FAILOVER_PROMOTE_CONFIRM_DEADLINE
  value: {{ printf "%ds" (int $f.promoteConfirmSeconds) | quote }}
- name: FAILOVER_PEER_SLOT_NAME
  value: {{ include "patroni.slotFor" (list . $v.site.peer) | quote }}
{{- with $f.witness.dns.name }}
- name: FAILOVER_WITNESS_DNS_NAME
  value: {{ . | quote }}
- name: FAILOVER_WITNESS_DNS_EXPECTED
  value: {{ join "," $f.witness.dns.expectedAddresses | quote }}
{{- end }}
{{- with $f.witness.http.url }}
- name: FAILOVER_WITNESS_HTTP_URL
  value: {{ . | quote }}
{{- end }}
{{- with $f.webhook.existingSecret }}
- name: FAILOVER_WEBHOOK_URL
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $f.webhook.key }}
{{- end }}
{{ include "patroni.rustEnv" (list . "FAILOVER_") }}
{{- end -}}
