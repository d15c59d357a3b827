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
