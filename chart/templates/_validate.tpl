{{/*
Fails rendering with a message that says what is wrong and what to do. Included once, from
configmap-patroni.yaml (always rendered).
*/}}
{{- define "patroni.validate" -}}
{{- $v := .Values -}}
{{- if not $v.site.name -}}
{{- fail "site.name is required: install with -f chart/values-gold.yaml or -f chart/values-golddr.yaml (from the repository root), or set site.name to this site's name (e.g. gold)" -}}
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
{{- if has $tunnel (list $full (include "patroni.tunnelTargetService" .) (include "patroni.replicaService" .) (include "patroni.headlessService" .)) -}}
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
{{- $w := $v.failover.witness -}}
{{- $inSite := add (int $v.patroni.dcs.ttl) (int $v.patroni.dcs.loopWait) -}}
{{- if and (include "patroni.failoverEnabled" .) (not $v.failover.allowShortWindow) (lt (int $v.failover.minFailureSpanSeconds) $inSite) -}}
{{- fail (printf "failover.minFailureSpanSeconds (%d) is shorter than an in-site failover of the peer (patroni.dcs.ttl + patroni.dcs.loopWait = %d s): when the primary site's leader is lost without releasing its lock (node loss, a SIGKILLed Patroni), its replica takes over only after the lock expires, and meanwhile the probe fails and a GSLB marks the site down, so this site would promote next to a primary site that is recovering on its own (two writable primaries). Set failover.minFailureSpanSeconds to at least %d (both sites run the same patroni.dcs values), or failover.allowShortWindow=true for a single-member primary site" (int $v.failover.minFailureSpanSeconds) $inSite $inSite) -}}
{{- end -}}
{{- if and (include "patroni.failoverEnabled" .) (eq $v.failover.mode "auto") (not $v.failover.allowNoWitness) (not (or $w.dns.name $w.http.existingSecret $w.peerApi.url)) -}}
{{- fail "failover.mode=auto needs a witness (failover.witness.dns, .http or .peerApi): two sites alone cannot tell \"the primary site is down\" from \"the tunnel is down\", so a tunnel-only partition would promote this site while the primary still takes writes (two writable primaries). Configure a witness (README \"Witnesses\"), or set failover.allowNoWitness=true to accept that risk" -}}
{{- end -}}
{{- if and $w.peerApi.url (or (not $w.peerApi.namespace) (not $w.peerApi.existingSecret)) -}}
{{- fail "failover.witness.peerApi.url needs failover.witness.peerApi.namespace (the peer site's namespace) and failover.witness.peerApi.existingSecret (its read-only token and CA; README \"Peer-API witness\")" -}}
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
{{- if and (eq (toString $v.tls.enforce) "true") (not $v.tls.enabled) -}}
{{- fail "tls.enforce=true needs tls.enabled" -}}
{{- end -}}
{{- if and (include "patroni.tscEnabled" .) (ne $v.services.tunnel.type "NodePort") -}}
{{- fail (printf "transportServerClaim is enabled but services.tunnel.type is %s: since Feb 2026 the Service a TransportServerClaim targets (the tunnel target Service) must be NodePort. Set services.tunnel.type=NodePort (and make sure the namespace's services.nodeports quota allows one)" $v.services.tunnel.type) -}}
{{- end -}}
{{- if and $v.services.tunnel.nodePort (ne $v.services.tunnel.type "NodePort") -}}
{{- fail "services.tunnel.nodePort is set but services.tunnel.type is not NodePort" -}}
{{- end -}}
{{- if and $v.services.primary.nodePort (ne $v.services.primary.type "NodePort") -}}
{{- fail "services.primary.nodePort is set but services.primary.type is not NodePort" -}}
{{- end -}}
{{- if and $v.site.peer (not $v.replication.slotName) -}}
{{- fail (printf "replication.slotName is required with site.peer: set the same name on both sites (e.g. pgdr_%s in both values files); the primary site keeps this slot and the standby streams from it" ($v.site.role | eq "standby" | ternary $v.site.name $v.site.peer | replace "-" "_")) -}}
{{- end -}}
{{- if not $v.generateSecrets -}}
{{- if not $v.credentials.existingSecret -}}
{{- fail "generateSecrets=false needs credentials.existingSecret: create the credentials Secret on both sites (README \"Credentials under GitOps\")" -}}
{{- end -}}
{{- if and $v.tls.enabled (not $v.tls.existingSecret) -}}
{{- fail "generateSecrets=false needs tls.existingSecret (or tls.enabled=false): a generated certificate would change on every GitOps sync (README \"Credentials under GitOps\")" -}}
{{- end -}}
{{- /* Only a primary site reads the application owner's password (post_bootstrap, helm test); a standby site receives the role by replication and mounts nothing. */ -}}
{{- if and $v.appDatabase.enabled (eq $v.site.role "primary") (not $v.appDatabase.existingSecret) -}}
{{- fail "generateSecrets=false needs appDatabase.existingSecret on a primary site (or appDatabase.enabled=false): a generated password would change on every GitOps sync (README \"Credentials under GitOps\")" -}}
{{- end -}}
{{- end -}}
{{- /* Registries and pull Secret names: a placeholder left in (e.g. examples/values-artifactory.yaml's <...>) fails here, not as ImagePullBackOff on a cluster. */ -}}
{{- range $key, $reg := dict "global.imageRegistry" $v.global.imageRegistry "images.registry" $v.images.registry -}}
{{- if and $reg (not (regexMatch "^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$" $reg)) -}}
{{- fail (printf "%s %q is not a registry path (host[:port][/path], lower case): replace the placeholder with your registry, e.g. the Artifactory remote repository key (chart/examples/values-artifactory.yaml, README \"Images and registries\")" $key $reg) -}}
{{- end -}}
{{- end -}}
{{- range $name := concat $v.global.imagePullSecrets $v.images.pullSecrets -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" (toString $name)) -}}
{{- fail (printf "image pull Secret name %q is not a Secret name: replace the placeholder with the name of your pull Secret, present on both sites (chart/examples/values-artifactory.yaml, README \"Images and registries\")" (toString $name)) -}}
{{- end -}}
{{- end -}}
{{- if and (not $v.serviceAccount.create) (not $v.serviceAccount.name) -}}
{{- fail "serviceAccount.create=false needs serviceAccount.name: the existing ServiceAccount the Patroni pods run as" -}}
{{- end -}}
{{- if $v.appDatabase.enabled -}}
{{- range $n := list $v.appDatabase.owner $v.appDatabase.name -}}
{{- if not (regexMatch "^[a-z_][a-z0-9_]{0,62}$" $n) -}}
{{- fail (printf "appDatabase name/owner %q must be a lower-case SQL identifier (letters, digits, _)" $n) -}}
{{- end -}}
{{- end -}}
{{- if has $v.appDatabase.owner (list $v.credentials.superuserUsername $v.credentials.replicationUsername $v.credentials.rewindUsername) -}}
{{- fail (printf "appDatabase.owner %q must not be one of the system users (superuser, replication, rewind)" $v.appDatabase.owner) -}}
{{- end -}}
{{- end -}}
{{- include "patroni.validateWal" . -}}
{{- end -}}

{{/*
WAL vs disk: max_wal_size + wal_keep_size + max_slot_wal_keep_size must fit in half of the data
volume (the other half is for the data and headroom). persistence.size cannot change after install
(README "Resizing the data volumes").
*/}}
{{- define "patroni.validateWal" -}}
{{- $v := .Values -}}
{{- $size := include "patroni.mebibytes" $v.persistence.size | int64 -}}
{{- $max := include "patroni.mebibytes" $v.postgresql.maxWalSize | int64 -}}
{{- $min := include "patroni.mebibytes" $v.postgresql.minWalSize | int64 -}}
{{- $keep := include "patroni.mebibytes" (default "0" (get $v.postgresql.clusterParameters "wal_keep_size")) | int64 -}}
{{- $slot := include "patroni.mebibytes" $v.postgresql.maxSlotWalKeepSize | int64 -}}
{{- if lt $slot 0 -}}
{{- fail "postgresql.maxSlotWalKeepSize=-1 (unlimited) lets a dead peer site fill the primary's volume: set a size that fits persistence.size" -}}
{{- end -}}
{{- if gt $min $max -}}
{{- fail (printf "postgresql.minWalSize (%s) is larger than postgresql.maxWalSize (%s)" $v.postgresql.minWalSize $v.postgresql.maxWalSize) -}}
{{- end -}}
{{- $wal := add $max $keep $slot -}}
{{- if gt (mul $wal 2) $size -}}
{{- fail (printf "WAL does not fit the volume: max_wal_size %dMi + wal_keep_size %dMi + max_slot_wal_keep_size %dMi = %dMi, more than half of persistence.size (%s = %dMi). Lower postgresql.maxWalSize / clusterParameters.wal_keep_size / postgresql.maxSlotWalKeepSize, or give the volume at least %dMi (README \"Resizing the data volumes\")" $max $keep $slot $wal $v.persistence.size $size (mul $wal 2)) -}}
{{- end -}}
{{- end -}}
