{{/*
Quota shortfalls for NOTES: one warning per ResourceQuota key whose room for this release is
smaller than what the release needs with everything running ("patroni.footprint"). The room is
what the namespace has left plus what this release already holds there:
  spec.hard - status.used + this release's own usage
(on an upgrade the release's pods, PVCs and NodePorts are counted in status.used and are replaced,
not added; on a first install it holds nothing). Without status.used (a quota the controller has
not filled in yet) the room is spec.hard. This release's usage: its non-terminated pods'
container resources, its PVCs' requested storage and its NodePort Services, found by the label
app.kubernetes.io/instance.
Call with (dict "root" $ "quotas" <ResourceQuota items> "pods" <Pod items> "pvcs" <PVC items>
"services" <Service items>); the lists come from `lookup` (empty under `helm template`).
*/}}
{{- define "patroni.quotaShortfalls" -}}
{{- $root := .root -}}
{{- $release := $root.Release.Name -}}
{{- $fp := include "patroni.footprint" $root | fromJson -}}
{{- $need := dict "requests.cpu" (list $fp.requestsCpu "cpu") "limits.cpu" (list $fp.limitsCpu "cpu") "requests.memory" (list $fp.requestsMemory "mem") "limits.memory" (list $fp.limitsMemory "mem") "requests.storage" (list $fp.storage "mem") "services.nodeports" (list $fp.nodePorts "count") -}}
{{- $ours := dict "requests.cpu" 0 "limits.cpu" 0 "requests.memory" 0 "limits.memory" 0 "requests.storage" 0 "services.nodeports" 0 -}}
{{- range $p := (default (list) .pods) -}}
{{- if and (eq (toString (dig "metadata" "labels" "app.kubernetes.io/instance" "" $p)) $release) (not (has (toString (dig "status" "phase" "" $p)) (list "Succeeded" "Failed"))) -}}
{{- range $c := (dig "spec" "containers" (list) $p) -}}
{{- $r := default (dict) (get $c "resources") -}}
{{- $_ := set $ours "requests.cpu" (add (index $ours "requests.cpu") (include "patroni.millicores" (dig "requests" "cpu" "0" $r))) -}}
{{- $_ := set $ours "limits.cpu" (add (index $ours "limits.cpu") (include "patroni.millicores" (dig "limits" "cpu" "0" $r))) -}}
{{- $_ := set $ours "requests.memory" (add (index $ours "requests.memory") (include "patroni.quantityMiB" (dig "requests" "memory" "0" $r))) -}}
{{- $_ := set $ours "limits.memory" (add (index $ours "limits.memory") (include "patroni.quantityMiB" (dig "limits" "memory" "0" $r))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $c := (default (list) .pvcs) -}}
{{- if eq (toString (dig "metadata" "labels" "app.kubernetes.io/instance" "" $c)) $release -}}
{{- $_ := set $ours "requests.storage" (add (index $ours "requests.storage") (include "patroni.quantityMiB" (dig "spec" "resources" "requests" "storage" "0" $c))) -}}
{{- end -}}
{{- end -}}
{{- range $s := (default (list) .services) -}}
{{- if and (eq (toString (dig "metadata" "labels" "app.kubernetes.io/instance" "" $s)) $release) (eq (toString (dig "spec" "type" "" $s)) "NodePort") -}}
{{- $_ := set $ours "services.nodeports" (add1 (index $ours "services.nodeports")) -}}
{{- end -}}
{{- end -}}
{{- range $q := (default (list) .quotas) -}}
{{- $used := default (dict) (dig "status" "used" (dict) $q) -}}
{{- range $key, $hard := (default (dict) (dig "spec" "hard" (dict) $q)) -}}
{{- if hasKey $need $key -}}
{{- $n := index $need $key -}}
{{- $kind := index $n 1 -}}
{{- $unit := "" -}}
{{- $have := 0 -}}
{{- $u := 0 -}}
{{- $usedRaw := get $used $key | default "0" -}}
{{- if eq $kind "cpu" -}}
{{- $unit = "m" -}}{{- $have = include "patroni.millicores" $hard | int64 -}}{{- $u = include "patroni.millicores" $usedRaw | int64 -}}
{{- else if eq $kind "mem" -}}
{{- $unit = "Mi" -}}{{- $have = include "patroni.quantityMiB" $hard | int64 -}}{{- $u = include "patroni.quantityMiB" $usedRaw | int64 -}}
{{- else -}}
{{- $have = $hard | int64 -}}{{- $u = $usedRaw | int64 -}}
{{- end -}}
{{- $mine := index $ours $key | int64 -}}
{{- if gt $mine $u -}}{{- $mine = $u -}}{{- end -}}
{{- $room := add (sub $have $u) $mine -}}
{{- if and (ge $have 0) (ge $u 0) (gt (index $n 0 | int64) $room) }}
  * ResourceQuota {{ $q.metadata.name }}: {{ $key }} leaves {{ $room }}{{ $unit }} for this release (hard {{ $hard }}, used {{ $usedRaw }}{{ if $mine }}, {{ $mine }}{{ $unit }} of it by this release{{ end }}) but it needs {{ index $n 0 }}{{ $unit }}.
    Pods, PVCs{{ if eq $key "services.nodeports" }} or the NodePort Service (required by the TransportServerClaim){{ end }} will be rejected: free some of the quota or request a bigger one (README "Sizing").
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
