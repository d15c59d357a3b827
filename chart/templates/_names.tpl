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

