{{/*
Names, labels, images and effective switches of the patroni chart (patroni-dr project). Names are
prefixed with the chart name; every name that becomes an object name is checked against Kubernetes'
length limits by "patroni.validate" (_validate.tpl): a name is never silently truncated where the
other site or the platform must derive the same name.
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

{{/* The tunnel target Service: the member holding the site's leader lock (primary or standby leader). */}}
{{- define "patroni.tunnelTargetService" -}}
{{- printf "%s-tunnel" (include "patroni.fullname" .) -}}
{{- end -}}

{{/* Selector of the leader Service: Patroni's tmp role label is `primary` on the lock holder in either role. */}}
{{- define "patroni.siteLeaderSelector" -}}
{{ include "patroni.selectorLabels" . }}
app.kubernetes.io/component: patroni
{{ .Values.patroni.kubernetes.scopeLabel }}: {{ include "patroni.scope" . }}
{{ .Values.patroni.kubernetes.siteLeaderLabel }}: primary
{{- end -}}

{{- define "patroni.replicaService" -}}
{{- printf "%s-replica" (include "patroni.fullname" .) -}}
{{- end -}}

{{- define "patroni.headlessService" -}}
{{- printf "%s-headless" (include "patroni.fullname" .) -}}
{{- end -}}

{{/* Service the platform creates for the peer (`<service>-<peer>`). */}}
{{- define "patroni.tunnelService" -}}
{{- default (printf "%s-%s" (include "patroni.tunnelTargetService" .) .Values.site.peer) .Values.tunnel.serviceName -}}
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

{{/*
The one physical replication slot between the sites (replication.slotName): kept by whichever site
is primary, streamed from by the other. Never derived from site names (validated in _validate.tpl).
*/}}
{{- define "patroni.slotName" -}}
{{- .Values.replication.slotName -}}
{{- end -}}

{{- define "patroni.appSecret" -}}
{{- default (printf "%s-app" (include "patroni.fullname" .)) .Values.appDatabase.existingSecret -}}
{{- end -}}

{{/* ServiceAccount of the Patroni pods. */}}
{{- define "patroni.serviceAccountName" -}}
{{- default (include "patroni.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "patroni.promotionRecordConfigMap" -}}
{{- printf "%s-promotion-record" (include "patroni.fullname" .) -}}
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
{{- $registry := default $root.Values.images.registry $root.Values.global.imageRegistry -}}
{{- $repo := printf "%s/%s" ($registry | trimSuffix "/") $img.repository -}}
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

{{- /* Both sites of a pair run the agent: what a run does follows the site's current role. */ -}}
{{- define "patroni.failoverEnabled" -}}
{{- if .Values.site.peer -}}
{{- if not (eq (toString .Values.failover.enabled) "false") -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
"true" when the metrics NetworkPolicy renders: networkPolicy.metrics.enabled, or when null,
whenever the chart sets up scraping (Sysdig annotations, ServiceMonitor, PodMonitor).
*/}}
{{- define "patroni.metricsIngress" -}}
{{- $v := .Values -}}
{{- $e := $v.networkPolicy.metrics.enabled -}}
{{- if $v.networkPolicy.enabled -}}
{{- if kindIs "bool" $e -}}
{{- if $e -}}true{{- end -}}
{{- else if or $v.monitoring.sysdig.enabled $v.monitoring.serviceMonitor.enabled $v.monitoring.podMonitor.enabled -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
"true" when pg_hba accepts only TLS on TCP (tls.enforce). null: whenever TLS is on and a NodePort
Service exposes PostgreSQL on this site: the tunnel target of a pair (the TransportServerClaim's
TransportServers reach it in both clusters, from the whole data-centre network) or a NodePort
primary Service. `false` opts out explicitly.
*/}}
{{- define "patroni.tlsEnforced" -}}
{{- $v := .Values -}}
{{- $e := $v.tls.enforce -}}
{{- if kindIs "bool" $e -}}
{{- if $e -}}true{{- end -}}
{{- else if and $v.tls.enabled (include "patroni.nodePortExposed" .) -}}true{{- end -}}
{{- end -}}

{{/* "true" when a NodePort Service of this site exposes PostgreSQL beyond the cluster. */}}
{{- define "patroni.nodePortExposed" -}}
{{- $v := .Values -}}
{{- if or (and $v.site.peer (eq $v.services.tunnel.type "NodePort")) (eq $v.services.primary.type "NodePort") -}}true{{- end -}}
{{- end -}}

{{/* Pod-level settings shared by every pod of the chart. */}}
{{- define "patroni.podCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with concat .Values.global.imagePullSecrets .Values.images.pullSecrets | uniq }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Scheduling of the Jobs and the helm test pod (scheduling.jobs). */}}
{{- define "patroni.jobScheduling" -}}
{{- with .Values.scheduling.jobs.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.scheduling.jobs.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.scheduling.jobs.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Size in MiB of a PostgreSQL size setting (kB, MB, GB, TB; a bare number is MB, as for the WAL
settings) or a Kubernetes quantity (Ki, Mi, Gi, Ti, k, M, G, T). -1 stays -1 (unlimited).
*/}}
{{- define "patroni.mebibytes" -}}
{{- $s := toString . | trim -}}
{{- if eq $s "-1" -}}-1
{{- else if regexMatch "^[0-9]+$" $s -}}{{ $s }}
{{- else -}}
{{- $n := regexFind "^[0-9]+" $s | int64 -}}
{{- $u := regexReplaceAll "^[0-9]+" $s "" -}}
{{- $kib := dict "kB" 1 "Ki" 1 "k" 1 "MB" 1024 "Mi" 1024 "M" 1024 "GB" 1048576 "Gi" 1048576 "G" 1048576 "TB" 1073741824 "Ti" 1073741824 "T" 1073741824 -}}
{{- if not (hasKey $kib $u) -}}
{{- fail (printf "cannot read the size %q: use a number with kB, MB, GB or TB (PostgreSQL) or Ki, Mi, Gi, Ti (Kubernetes)" $s) -}}
{{- end -}}
{{- div (mul $n (index $kib $u)) 1024 -}}
{{- end -}}
{{- end -}}


{{/* The read-only peer-witness identity on this site (failover.witness.peerApi.exposeOnThisSite; null: a primary site with a peer). */}}
{{- define "patroni.peerWitnessExposed" -}}
{{- $e := .Values.failover.witness.peerApi.exposeOnThisSite -}}
{{- if .Values.site.peer -}}
{{- if kindIs "bool" $e -}}
{{- if $e -}}true{{- end -}}
{{- else if eq .Values.site.role "primary" -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
A Kubernetes memory/storage quantity in MiB, leniently (for NOTES: never fails). A bare number is
bytes; decimals are allowed ("2.5Gi"); an unreadable quantity gives -1.
*/}}
{{- define "patroni.quantityMiB" -}}
{{- $s := toString . | trim -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $s -}}
{{- $u := trimPrefix $num $s -}}
{{- $mib := dict "" 0.00000095367431640625 "k" 0.0009765625 "Ki" 0.0009765625 "M" 1.0 "Mi" 1.0 "G" 1024.0 "Gi" 1024.0 "T" 1048576.0 "Ti" 1048576.0 -}}
{{- if and $num (hasKey $mib $u) -}}{{ mulf (float64 $num) (index $mib $u) | ceil | int64 }}{{- else -}}-1{{- end -}}
{{- end -}}

{{/* CPU quantity in millicores ("500m", "1", "1.5"). */}}
{{- define "patroni.millicores" -}}
{{- $s := toString . -}}
{{- if hasSuffix "m" $s -}}{{ trimSuffix "m" $s | int64 }}{{- else -}}{{ mulf (float64 $s) 1000 | int64 }}{{- end -}}
{{- end -}}

{{/*
What the release asks of the namespace quota while everything runs at once (both members with their
sidecars, a failover run, the port-patch Job, the helm test pod): JSON with requests/limits in
millicores and MiB, storage in MiB and NodePorts.
*/}}
{{- define "patroni.footprint" -}}
{{- $v := .Values -}}
{{- $pods := list (dict "n" (int $v.patroni.replicas) "rs" (list $v.patroni.resources $v.readiness.resources)) -}}
{{- if include "patroni.failoverEnabled" . }}{{ $pods = append $pods (dict "n" 1 "rs" (list $v.failover.resources)) }}{{ end -}}
{{- if include "patroni.portPatchEnabled" . }}{{ $pods = append $pods (dict "n" 1 "rs" (list $v.portPatch.resources)) }}{{ end -}}
{{- if $v.tests.enabled }}{{ $pods = append $pods (dict "n" 1 "rs" (list $v.tests.resources)) }}{{ end -}}
{{- $t := dict "requestsCpu" 0 "limitsCpu" 0 "requestsMemory" 0 "limitsMemory" 0 -}}
{{- range $p := $pods -}}
{{- range $r := $p.rs -}}
{{- $_ := set $t "requestsCpu" (add $t.requestsCpu (mul $p.n (include "patroni.millicores" (dig "requests" "cpu" "0" $r)))) -}}
{{- $_ := set $t "limitsCpu" (add $t.limitsCpu (mul $p.n (include "patroni.millicores" (dig "limits" "cpu" "0" $r)))) -}}
{{- $_ := set $t "requestsMemory" (add $t.requestsMemory (mul $p.n (include "patroni.mebibytes" (dig "requests" "memory" "0" $r)))) -}}
{{- $_ := set $t "limitsMemory" (add $t.limitsMemory (mul $p.n (include "patroni.mebibytes" (dig "limits" "memory" "0" $r)))) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $t "storage" (mul (int $v.patroni.replicas) (include "patroni.mebibytes" $v.persistence.size)) -}}
{{- $_ := set $t "nodePorts" (add (ternary 1 0 (eq $v.services.primary.type "NodePort")) (ternary 1 0 (and (not (empty $v.site.peer)) (eq $v.services.tunnel.type "NodePort")))) -}}
{{- toJson $t -}}
{{- end -}}
