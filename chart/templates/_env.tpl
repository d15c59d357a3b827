{{/*
Environment of the containers: the three Rust binaries (one contract each: the binary's config.rs,
chart/docs/failover-env.md for the CronJob) and the shared logging variables.
*/}}

{{/* Logging environment of a Rust binary: <PREFIX>LOG_FORMAT and RUST_LOG. Call with (list $ "PREFIX_"). */}}
{{- define "patroni.rustEnv" -}}
{{- $root := index . 0 -}}
- name: {{ index . 1 }}LOG_FORMAT
  value: {{ $root.Values.logFormat | quote }}
- name: RUST_LOG
  value: {{ $root.Values.rustLog | quote }}
{{- end -}}


{{/* Environment of the readiness sidecar (READINESS_*; crates/readiness/src/config.rs and README). GET endpoints need no credentials; the peer check logs in as the replication user. */}}
{{- define "patroni.readinessEnv" -}}
{{- $v := .Values -}}
{{- $r := $v.readiness -}}
{{- $p := include "patroni.paths" . | fromJson -}}
{{- $sslMode := ternary $v.tls.sslMode "prefer" $v.tls.enabled -}}
- name: READINESS_LISTEN
  value: {{ printf "0.0.0.0:%d" (int $r.port) | quote }}
- name: READINESS_PATRONI_URL
  value: {{ printf "http://127.0.0.1:%d" (int $v.patroni.restApi.port) | quote }}
- name: READINESS_POLL_INTERVAL
  value: {{ printf "%ds" (int $r.pollIntervalSeconds) | quote }}
- name: READINESS_MAX_LAG_BYTES
  value: {{ $r.maxLagBytes | int64 | quote }}
- name: READINESS_SITE
  value: {{ $v.site.name | quote }}
{{- if $r.preserveWal.enabled }}
# The data volume is mounted at the Patroni container's path: diverged WAL goes next to PGDATA.
- name: READINESS_PGDATA
  value: {{ $p.dataDir | quote }}
{{- end }}
{{- if and $v.site.peer $r.peerCheck.enabled }}
# Split-brain check while this member is a writable primary: the peer through the tunnel Service.
- name: READINESS_PEER_HOST
  value: {{ default (printf "%s.%s.svc" (include "patroni.tunnelService" .) .Release.Namespace) $r.peerCheck.host | quote }}
- name: READINESS_PEER_PORT
  value: {{ default $v.tunnel.bootstrapPort $r.peerCheck.port | int | quote }}
- name: READINESS_PEER_SSLMODE
  value: {{ $sslMode | quote }}
{{- if eq $sslMode "verify-ca" }}
- name: READINESS_PEER_SSLROOTCERT
  {{- /* The CA only, mounted into the sidecar from the TLS Secret (statefulset.yaml, tls-ca). */}}
  value: "/etc/pgdr/tls-ca/ca.crt"
{{- end }}
- name: READINESS_PEER_DATABASE
  value: {{ $r.peerCheck.database | quote }}
# This member's own identity: its PostgreSQL over the pod's loopback (pg_hba admits 127.0.0.1).
- name: READINESS_LOCAL_PG_HOST
  value: "127.0.0.1"
- name: READINESS_LOCAL_PG_PORT
  value: {{ $v.postgresql.port | int | quote }}
- name: READINESS_REPLICATION_USER
  value: {{ $v.credentials.replicationUsername | quote }}
- name: READINESS_REPLICATION_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "patroni.credentialsSecret" . }}
      key: {{ $v.credentials.keys.replicationPassword }}
{{- end }}
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
  value: {{ include "patroni.slotName" . | quote }}
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
- name: PORT_PATCH_PROMOTION_RECORD_CONFIGMAP
  value: {{ include "patroni.promotionRecordConfigMap" . | quote }}
- name: PORT_PATCH_DEMOTE_PROMOTED_SITE
  value: {{ .Values.portPatch.demotePromotedSite | quote }}
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
- name: FAILOVER_FENCING
  value: {{ $f.fencing | default "auto" | quote }}
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
- name: FAILOVER_PROMOTION_RECORD_CONFIGMAP
  value: {{ include "patroni.promotionRecordConfigMap" . | quote }}
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
{{- /* No Patroni REST credentials: the agent only reads (GET /patroni, /history), which
     restapi.authentication does not protect; it promotes and fences through <scope>-config. */}}
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
- name: FAILOVER_MAX_LSN_AGE
  value: {{ printf "%ds" (int $f.maxLsnAgeSeconds) | quote }}
- name: FAILOVER_FORCE
  value: {{ $f.force | quote }}
- name: FAILOVER_PROMOTE_CONFIRM_DEADLINE
  value: {{ printf "%ds" (int $f.promoteConfirmSeconds) | quote }}
- name: FAILOVER_PEER_SLOT_NAME
  value: {{ include "patroni.slotName" . | quote }}
{{- with $f.witness.dns.name }}
- name: FAILOVER_WITNESS_DNS_NAME
  value: {{ . | quote }}
- name: FAILOVER_WITNESS_DNS_EXPECTED
  value: {{ join "," $f.witness.dns.expectedAddresses | quote }}
- name: FAILOVER_WITNESS_DNS_PEER_ADDRESSES
  value: {{ join "," ($f.witness.dns.peerAddresses | default list) | quote }}
{{- end }}
- name: FAILOVER_ALLOW_NO_WITNESS
  value: {{ $f.allowNoWitness | quote }}
{{- with $f.witness.http.existingSecret }}
- name: FAILOVER_WITNESS_HTTP_URL
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $f.witness.http.key }}
{{- end }}
{{- with $f.witness.peerApi.url }}
- name: FAILOVER_WITNESS_PEER_API_URL
  value: {{ . | quote }}
- name: FAILOVER_WITNESS_PEER_API_NAMESPACE
  value: {{ $f.witness.peerApi.namespace | quote }}
- name: FAILOVER_WITNESS_PEER_API_LEADER_CONFIGMAP
  value: {{ default (printf "%s-leader" (include "patroni.scope" $)) $f.witness.peerApi.leaderConfigMap | quote }}
- name: FAILOVER_WITNESS_PEER_API_TOKEN_FILE
  value: "/etc/pgdr/peer-api/token"
- name: FAILOVER_WITNESS_PEER_API_CA_FILE
  value: "/etc/pgdr/peer-api/ca.crt"
{{- end }}
- name: FAILOVER_TUNNEL_HOST_MODE
  value: {{ $v.portPatch.hostMode | quote }}
- name: FAILOVER_REJOIN
  value: {{ $f.rejoin | quote }}
- name: FAILOVER_READINESS_PORT
  value: {{ $v.readiness.port | int | quote }}
- name: FAILOVER_MEMBER_SELECTOR
  value: {{ printf "%s,%s=%s" (include "patroni.patroniLabelsKv" .) $v.patroni.kubernetes.scopeLabel (include "patroni.scope" .) | quote }}
{{- with $f.webhook.existingSecret }}
- name: FAILOVER_WEBHOOK_URL
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $f.webhook.key }}
{{- end }}
{{ include "patroni.rustEnv" (list . "FAILOVER_") }}
{{- end -}}
