{{/*
Patroni's configuration. Split on purpose:
- local configuration (patroni.yml): everything Helm should keep controlling after the first
  install (PostgreSQL parameters, pg_hba, TLS, paths). Patroni lets local postgresql.* settings win
  over the dynamic configuration, so an upgrade changes them without touching the DCS.
- bootstrap.dcs: only what Patroni accepts nowhere else (timings, cluster-wide parameters,
  permanent slots) and, on a standby site, the standby_cluster placeholder. It is read only when the
  DCS holds no configuration yet; the chart never writes the `config` annotation itself.
Pod-specific values (name, addresses, namespace, credentials) come from PATRONI_* environment
variables set in the StatefulSet.
*/}}

{{- define "patroni.paths" -}}
{{- dict "dataMount" "/home/postgres/pgdata" "dataDir" "/home/postgres/pgdata/pgroot/data" "configDir" "/etc/patroni" "configFile" "/etc/patroni/patroni.yml" "tlsDir" "/etc/pgdr/tls" "socketDir" "/var/run/postgresql" "tmpDir" "/tmp" | toJson -}}
{{- end -}}

{{/*
The standby_cluster section: bootstrap placeholder on a standby site (README "Standby bootstrap").
The host is written the way the port-patch Job writes it (PORT_PATCH_HOST_MODE=dns), so that the
Job changes nothing when the port is already right.
*/}}
{{- define "patroni.standbyClusterPlaceholder" -}}
{{- dict "host" (printf "%s.%s.svc" (include "patroni.tunnelService" .) .Release.Namespace) "port" (int .Values.tunnel.bootstrapPort) "primary_slot_name" (include "patroni.slotFor" (list . .Values.site.name)) "create_replica_methods" (list "basebackup") | toJson -}}
{{- end -}}

{{- define "patroni.bootstrapDcs" -}}
{{- $v := .Values -}}
{{- $pg := dict "use_pg_rewind" true "use_slots" true "parameters" (deepCopy $v.postgresql.clusterParameters) -}}
{{- $dcs := dict "ttl" (int $v.patroni.dcs.ttl) "loop_wait" (int $v.patroni.dcs.loopWait) "retry_timeout" (int $v.patroni.dcs.retryTimeout) "maximum_lag_on_failover" (int64 $v.patroni.dcs.maximumLagOnFailover) "postgresql" $pg -}}
{{- if and $v.site.peer $v.replication.permanentSlot (eq $v.site.role "primary") -}}
{{- $_ := set $dcs "slots" (dict (include "patroni.slotFor" (list . $v.site.peer)) (dict "type" "physical")) -}}
{{- end -}}
{{- if eq $v.site.role "standby" -}}
{{- $_ := set $dcs "standby_cluster" (include "patroni.standbyClusterPlaceholder" . | fromJson) -}}
{{- end -}}
{{- $dcs = mergeOverwrite $dcs (deepCopy $v.patroni.extraBootstrapDcs) -}}
{{- toJson $dcs -}}
{{- end -}}

{{- define "patroni.pgHba" -}}
{{- $v := .Values -}}
{{- if $v.postgresql.pgHba -}}
{{- toJson $v.postgresql.pgHba -}}
{{- else -}}
{{- $h := ternary "hostssl" "host" $v.tls.enforce -}}
{{- $repl := $v.credentials.replicationUsername -}}
{{- $rules := list
  "local all all scram-sha-256"
  "host all all 127.0.0.1/32 scram-sha-256"
  "host all all ::1/128 scram-sha-256"
  (printf "%s replication %s 0.0.0.0/0 scram-sha-256" $h $repl)
  (printf "%s replication %s ::/0 scram-sha-256" $h $repl)
  (printf "%s all all 0.0.0.0/0 scram-sha-256" $h)
  (printf "%s all all ::/0 scram-sha-256" $h)
-}}
{{- toJson $rules -}}
{{- end -}}
{{- end -}}

{{- define "patroni.patroniYaml" -}}
{{- $v := .Values -}}
{{- $p := include "patroni.paths" . | fromJson -}}
{{- $params := dict "unix_socket_directories" $p.socketDir "max_slot_wal_keep_size" $v.postgresql.maxSlotWalKeepSize -}}
{{- if $v.tls.enabled -}}
{{- $_ := set $params "ssl" "on" -}}
{{- $_ := set $params "ssl_cert_file" (printf "%s/tls.crt" $p.tlsDir) -}}
{{- $_ := set $params "ssl_key_file" (printf "%s/tls.key" $p.tlsDir) -}}
{{- if $v.tls.existingSecret -}}
{{- $_ := set $params "ssl_ca_file" (printf "%s/ca.crt" $p.tlsDir) -}}
{{- end -}}
{{- end -}}
{{- $params = mergeOverwrite $params (deepCopy $v.postgresql.parameters) -}}
{{- $postgresql := dict
  "data_dir" $p.dataDir
  "bin_dir" $v.postgresql.binDir
  "pgpass" (printf "%s/pgpass" $p.tmpDir)
  "use_unix_socket" true
  "use_unix_socket_repl" false
  "use_pg_rewind" true
  "remove_data_directory_on_rewind_failure" false
  "remove_data_directory_on_diverged_timelines" false
  "parameters" $params
  "pg_hba" (include "patroni.pgHba" . | fromJsonArray)
-}}
{{- $config := dict
  "log" (dict "type" $v.patroni.log.type "level" $v.patroni.logLevel)
  "bootstrap" (dict "dcs" (include "patroni.bootstrapDcs" . | fromJson) "initdb" (deepCopy $v.postgresql.initdb))
  "postgresql" $postgresql
  "watchdog" (dict "mode" "off")
  "tags" (dict "nofailover" false "noloadbalance" false "clonefrom" false "nosync" false)
-}}
{{- toYaml $config -}}
{{- end -}}
