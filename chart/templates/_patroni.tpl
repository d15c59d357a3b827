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
{{- dict "host" (printf "%s.%s.svc" (include "patroni.tunnelService" .) .Release.Namespace) "port" (int .Values.tunnel.bootstrapPort) "primary_slot_name" (include "patroni.slotName" .) "create_replica_methods" (list "basebackup") | toJson -}}
{{- end -}}

{{- define "patroni.bootstrapDcs" -}}
{{- $v := .Values -}}
{{- $pg := dict "use_pg_rewind" true "use_slots" true "parameters" (deepCopy $v.postgresql.clusterParameters) -}}
{{- $dcs := dict "ttl" (int $v.patroni.dcs.ttl) "loop_wait" (int $v.patroni.dcs.loopWait) "retry_timeout" (int $v.patroni.dcs.retryTimeout) "maximum_lag_on_failover" (int64 $v.patroni.dcs.maximumLagOnFailover) "postgresql" $pg -}}
{{- if and $v.site.peer $v.replication.permanentSlot (eq $v.site.role "primary") -}}
{{- $_ := set $dcs "slots" (dict (include "patroni.slotName" .) (dict "type" "physical")) -}}
{{- end -}}
{{- if eq $v.site.role "standby" -}}
{{- $_ := set $dcs "standby_cluster" (include "patroni.standbyClusterPlaceholder" . | fromJson) -}}
{{- end -}}
{{- $dcs = mergeOverwrite $dcs (deepCopy $v.patroni.extraBootstrapDcs) -}}
{{- toJson $dcs -}}
{{- end -}}

{{/*
pg_hba (first match wins). The tunnel is reachable from the whole data centre, so:
- loopback and the Unix socket admit everyone (Patroni's own connections);
- the superuser comes only from loopback and postgresql.superuserNetworks (the pod network), never
  through the tunnel;
- with TLS on, replication and the pg_rewind user need TLS (hostssl) and plain TCP is rejected;
- extraPgHba lines come next, then the catch-all for applications (hostssl when tls.enforce, by
  default whenever a NodePort exposes PostgreSQL: "patroni.tlsEnforced").
*/}}
{{- define "patroni.pgHba" -}}
{{- $v := .Values -}}
{{- if $v.postgresql.pgHba -}}
{{- toJson $v.postgresql.pgHba -}}
{{- else -}}
{{- $tls := $v.tls.enabled -}}
{{- $dr := ternary "hostssl" "host" $tls -}}
{{- $enforce := include "patroni.tlsEnforced" . -}}
{{- $app := ternary "hostssl" "host" (not (empty $enforce)) -}}
{{- $c := $v.credentials -}}
{{- $any := list "0.0.0.0/0" "::/0" -}}
{{- $rules := list
  "local all all scram-sha-256"
  "host all all 127.0.0.1/32 scram-sha-256"
  "host all all ::1/128 scram-sha-256"
-}}
{{- range $net := $v.postgresql.superuserNetworks -}}
{{- $rules = append $rules (printf "host all %s %s scram-sha-256" $c.superuserUsername $net) -}}
{{- end -}}
{{- range $net := $any -}}
{{- $rules = append $rules (printf "host all %s %s reject" $c.superuserUsername $net) -}}
{{- end -}}
{{- range $net := $any -}}
{{- $rules = append $rules (printf "%s replication %s %s scram-sha-256" $dr $c.replicationUsername $net) -}}
{{- end -}}
{{- range $net := $any -}}
{{- $rules = append $rules (printf "%s all %s %s scram-sha-256" $dr $c.rewindUsername $net) -}}
{{- end -}}
{{- if $tls -}}
{{- range $net := $any -}}
{{- $rules = append $rules (printf "hostnossl replication all %s reject" $net) -}}
{{- $rules = append $rules (printf "hostnossl all %s %s reject" $c.rewindUsername $net) -}}
{{- end -}}
{{- end -}}
{{- range $v.postgresql.extraPgHba -}}
{{- $rules = append $rules . -}}
{{- end -}}
{{- if $enforce -}}
{{- range $net := $any -}}
{{- $rules = append $rules (printf "hostnossl all all %s reject" $net) -}}
{{- end -}}
{{- end -}}
{{- range $net := $any -}}
{{- $rules = append $rules (printf "%s all all %s scram-sha-256" $app $net) -}}
{{- end -}}
{{- toJson $rules -}}
{{- end -}}
{{- end -}}

{{/* Path of the application owner's password inside the Patroni container (primary site only). */}}
{{- define "patroni.appPasswordFile" -}}/etc/pgdr/app/password{{- end -}}

{{/*
post_bootstrap script: creates the application owner and database once, when Patroni bootstraps a
new cluster on the primary site. Patroni passes the superuser's connection URL as the last argument
(with PGPASSFILE set); the password is read from the mounted Secret, never from an argument.
*/}}
{{- define "patroni.postBootstrapScript" -}}
#!/bin/sh
# Usage (by Patroni): post-bootstrap.sh <owner> <database> <password file> <connection URL>
set -eu
owner=$1 db=$2 pwfile=$3 url=$4
psql "$url" --no-psqlrc -v ON_ERROR_STOP=1 -v owner="$owner" -v db="$db" -v pw="$(cat "$pwfile")" <<'SQL'
CREATE ROLE :"owner" LOGIN PASSWORD :'pw';
CREATE DATABASE :"db" OWNER :"owner";
SQL
{{- end -}}

{{- define "patroni.bootstrapSection" -}}
{{- $v := .Values -}}
{{- $b := dict "dcs" (include "patroni.bootstrapDcs" . | fromJson) "initdb" (deepCopy $v.postgresql.initdb) -}}
{{- if and $v.appDatabase.enabled (eq $v.site.role "primary") -}}
{{- $p := include "patroni.paths" . | fromJson -}}
{{- $_ := set $b "post_bootstrap" (printf "sh %s/post-bootstrap.sh %s %s %s" $p.configDir $v.appDatabase.owner $v.appDatabase.name (include "patroni.appPasswordFile" .)) -}}
{{- end -}}
{{- toJson $b -}}
{{- end -}}

{{- define "patroni.patroniYaml" -}}
{{- $v := .Values -}}
{{- $p := include "patroni.paths" . | fromJson -}}
{{- $params := dict "unix_socket_directories" $p.socketDir "max_slot_wal_keep_size" $v.postgresql.maxSlotWalKeepSize "max_wal_size" $v.postgresql.maxWalSize "min_wal_size" $v.postgresql.minWalSize -}}
{{- if eq $v.site.role "standby" -}}
{{/* A blackholed tunnel must end the WAL receiver within the failover window (issue: 60 s default). */}}
{{- $_ := set $params "wal_receiver_timeout" (printf "%ds" (int $v.failover.walReceiverTimeoutSeconds)) -}}
{{- end -}}
{{- with $v.postgresql.archiveCommand -}}
{{- $_ := set $params "archive_mode" "on" -}}
{{- $_ := set $params "archive_command" . -}}
{{- end -}}
{{- if $v.tls.enabled -}}
{{- $_ := set $params "ssl" "on" -}}
{{- $_ := set $params "ssl_cert_file" (printf "%s/tls.crt" $p.tlsDir) -}}
{{- $_ := set $params "ssl_key_file" (printf "%s/tls.key" $p.tlsDir) -}}
{{- if $v.tls.existingSecret -}}
{{- $_ := set $params "ssl_ca_file" (printf "%s/ca.crt" $p.tlsDir) -}}
{{- end -}}
{{- end -}}
{{- $params = mergeOverwrite $params (deepCopy $v.postgresql.parameters) -}}
{{/* basebackup checkpoint=fast: a (re)clone of the DR site must not wait for a spread checkpoint on the primary (minutes at checkpoint_timeout 5 min). */}}
{{- $postgresql := dict
  "data_dir" $p.dataDir
  "bin_dir" $v.postgresql.binDir
  "pgpass" (printf "%s/pgpass" $p.tmpDir)
  "use_unix_socket" true
  "use_unix_socket_repl" false
  "use_pg_rewind" true
  "remove_data_directory_on_rewind_failure" false
  "remove_data_directory_on_diverged_timelines" false
  "basebackup" (list (dict "checkpoint" "fast"))
  "parameters" $params
  "pg_hba" (include "patroni.pgHba" . | fromJsonArray)
-}}
{{- $config := dict
  "log" (dict "type" $v.patroni.log.type "level" $v.patroni.logLevel)
  "bootstrap" (include "patroni.bootstrapSection" . | fromJson)
  "postgresql" $postgresql
  "watchdog" (dict "mode" "off")
  "tags" (dict "nofailover" false "noloadbalance" false "clonefrom" false "nosync" false)
-}}
{{- toYaml $config -}}
{{- end -}}
