//! The chart's half of "promote only on positive evidence": auto needs a witness, the witnesses'
//! settings and secrets, the durable promotion record's RBAC, the timing defaults.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use pgdr_chart_tests::*;
use serde_json::{Value, json};

fn failover_container(objs: &Objects) -> Value {
    let cj = objs.one("CronJob");
    container(
        &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        "failover",
    )
    .clone()
}

fn rules<'a>(objs: &'a Objects, role: &str) -> &'a Vec<Value> {
    objs.get("Role", role)["rules"].as_array().unwrap()
}

fn allows(rules: &[Value], resource: &str, verb: &str, name: Option<&str>) -> bool {
    rules.iter().any(|r| {
        r["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == resource)
            && r["verbs"].as_array().unwrap().iter().any(|v| v == verb)
            && match (r.get("resourceNames"), name) {
                (None, _) => true,
                (Some(names), Some(n)) => names.as_array().unwrap().iter().any(|x| x == n),
                (Some(_), None) => false,
            }
    })
}

#[test]
fn auto_without_a_witness_is_refused() {
    let err = Render::site("golddr")
        .set("failover.mode=auto")
        .render_err();
    assert!(err.contains("failover.mode=auto needs a witness"), "{err}");
    assert!(err.contains("two writable primaries"), "{err}");
    assert!(err.contains("allowNoWitness"), "{err}");
    // Any one witness suffices.
    for witness in [
        vec![
            "failover.witness.dns.name=app.glb.gov.bc.ca",
            "failover.witness.dns.expectedAddresses[0]=142.34.229.5",
        ],
        vec!["failover.witness.http.existingSecret=dr-witness"],
        vec![
            "failover.witness.peerApi.url=https://api.gold.example:6443",
            "failover.witness.peerApi.namespace=abc123-prod",
            "failover.witness.peerApi.existingSecret=gold-peer-witness",
        ],
    ] {
        let mut r = Render::site("golddr").set("failover.mode=auto");
        for s in &witness {
            r = r.set(s);
        }
        r.render();
    }
    // Accepting the risk explicitly renders, says so in the environment and in NOTES.
    let r = Render::site("golddr")
        .set("failover.mode=auto")
        .set("failover.allowNoWitness=true");
    let c = failover_container(&r.render());
    assert_eq!(env_value(&c, "FAILOVER_ALLOW_NO_WITNESS"), "true");
    let notes = r.notes();
    assert!(
        notes.contains("failover.allowNoWitness=true with mode=auto"),
        "{notes}"
    );
    // The drill's overlay is `auto` with the drill's GSLB as witness (set by the drill): alone it
    // is refused like any auto without a witness, with the witness Secret it renders.
    let drill = workspace_root().join("testbed/drill/values-drill.yaml");
    let err = Render::site("golddr")
        .values_file(drill.clone())
        .render_err();
    assert!(err.contains("allowNoWitness"), "{err}");
    Render::site("golddr")
        .values_file(drill)
        .set("failover.witness.http.existingSecret=gslb-witness")
        .render();
}

#[test]
fn http_witness_url_comes_from_a_secret_and_the_plain_value_is_gone() {
    let objs = Render::site("golddr")
        .set("failover.witness.http.existingSecret=dr-witness")
        .set("failover.witness.http.key=endpoint")
        .render();
    let c = failover_container(&objs);
    let e = env(&c, "FAILOVER_WITNESS_HTTP_URL").unwrap();
    assert!(e.get("value").is_none());
    assert_eq!(
        e["valueFrom"]["secretKeyRef"],
        json!({"name": "dr-witness", "key": "endpoint"})
    );
    let err = Render::site("golddr")
        .set("failover.witness.http.url=https://status.example.org")
        .render_err();
    assert!(err.contains("url"), "{err}");
}

#[test]
fn peer_api_witness_reads_a_token_volume() {
    let objs = Render::site("golddr")
        .set("failover.witness.peerApi.url=https://api.gold.example:6443")
        .set("failover.witness.peerApi.namespace=abc123-prod")
        .set("failover.witness.peerApi.existingSecret=gold-peer-witness")
        .render();
    let c = failover_container(&objs);
    assert_eq!(
        env_value(&c, "FAILOVER_WITNESS_PEER_API_URL"),
        "https://api.gold.example:6443"
    );
    assert_eq!(
        env_value(&c, "FAILOVER_WITNESS_PEER_API_NAMESPACE"),
        "abc123-prod"
    );
    assert_eq!(
        env_value(&c, "FAILOVER_WITNESS_PEER_API_LEADER_CONFIGMAP"),
        "patroni-leader"
    );
    assert_eq!(
        env_value(&c, "FAILOVER_WITNESS_PEER_API_TOKEN_FILE"),
        "/etc/pgdr/peer-api/token"
    );
    assert_eq!(
        env_value(&c, "FAILOVER_WITNESS_PEER_API_CA_FILE"),
        "/etc/pgdr/peer-api/ca.crt"
    );
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/etc/pgdr/peer-api")
        .unwrap();
    let spec = &objs.one("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let vol = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(vol["secret"]["secretName"], "gold-peer-witness");
    let err = Render::site("golddr")
        .set("failover.witness.peerApi.url=https://api.gold.example:6443")
        .render_err();
    assert!(err.contains("peerApi.namespace"), "{err}");
}

#[test]
fn primary_site_exposes_a_read_only_peer_witness_identity() {
    let g = Render::site("gold").render();
    let sa = g.get("ServiceAccount", "patroni-peer-witness");
    assert_eq!(sa["automountServiceAccountToken"], false);
    let r = rules(&g, "patroni-peer-witness");
    assert_eq!(
        r,
        &vec![
            json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["patroni-leader", "patroni-config"], "verbs": ["get"]})
        ]
    );
    let rb = g.get("RoleBinding", "patroni-peer-witness");
    assert_eq!(rb["subjects"][0]["name"], "patroni-peer-witness");
    let token = g.get("Secret", "patroni-peer-witness-token");
    assert_eq!(token["type"], "kubernetes.io/service-account-token");
    assert_eq!(
        token["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        "patroni-peer-witness"
    );
    let d = Render::site("golddr").render();
    assert!(d.find("ServiceAccount", "patroni-peer-witness").is_none());
    let off = Render::site("gold")
        .set("failover.witness.peerApi.exposeOnThisSite=false")
        .render();
    assert!(off.find("Secret", "patroni-peer-witness-token").is_none());

    // What the Role grants is what NOTES and README "Peer-API witness" say it grants (the
    // witness reads the config too: a standby cluster holds a fresh lock as well).
    let notes = Render::site("gold").notes();
    assert!(
        notes.contains("(get on patroni-leader and patroni-config only)"),
        "{notes}"
    );
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    let start = readme.find("### Peer-API witness").unwrap();
    let section = &readme[start..start + readme[start..].find("\n## ").unwrap()];
    for name in r[0]["resourceNames"].as_array().unwrap() {
        assert!(
            section.contains(&format!("`{}`", name.as_str().unwrap())),
            "README \"Peer-API witness\" does not name {name}"
        );
    }
    assert!(
        !readme.contains("`patroni-leader` only"),
        "stale: the Role grants the config too"
    );
    assert!(section.contains("#### Rotating the witness token"));
}

#[test]
fn promotion_record_is_named_and_reachable_by_rbac() {
    let d = Render::site("golddr").render();
    let c = failover_container(&d);
    assert_eq!(
        env_value(&c, "FAILOVER_PROMOTION_RECORD_CONFIGMAP"),
        "patroni-promotion-record"
    );
    // Not templated by Helm: `helm uninstall` must not delete it.
    assert!(d.find("ConfigMap", "patroni-promotion-record").is_none());
    let fo = rules(&d, "patroni-failover");
    assert!(allows(fo, "configmaps", "create", None), "{fo:?}");
    for verb in ["get", "patch", "update"] {
        assert!(
            allows(fo, "configmaps", verb, Some("patroni-promotion-record")),
            "failover cannot {verb} the promotion record"
        );
        assert!(allows(
            fo,
            "configmaps",
            verb,
            Some("patroni-failover-state")
        ));
    }
    let job = d.one("Job");
    let pp = container(&job["spec"]["template"]["spec"], "port-patch");
    assert_eq!(
        env_value(pp, "PORT_PATCH_PROMOTION_RECORD_CONFIGMAP"),
        "patroni-promotion-record"
    );
    assert_eq!(env_value(pp, "PORT_PATCH_DEMOTE_PROMOTED_SITE"), "false");
    assert!(allows(
        rules(&d, "patroni-port-patch"),
        "configmaps",
        "get",
        Some("patroni-promotion-record")
    ));
    let demote = Render::site("golddr")
        .set("portPatch.demotePromotedSite=true")
        .render();
    let pp = container(&demote.one("Job")["spec"]["template"]["spec"], "port-patch");
    assert_eq!(env_value(pp, "PORT_PATCH_DEMOTE_PROMOTED_SITE"), "true");
}

#[test]
fn timing_defaults_promote_within_a_minute_and_stay_debounced() {
    let d = Render::site("golddr").render();
    let c = failover_container(&d);
    let secs = |name: &str| -> u64 {
        env_value(&c, name)
            .strip_suffix('s')
            .unwrap()
            .parse()
            .unwrap()
    };
    let interval = secs("FAILOVER_SAMPLE_INTERVAL");
    let span = secs("FAILOVER_MIN_FAILURE_SPAN");
    let n: u64 = env_value(&c, "FAILOVER_FAILURE_THRESHOLD").parse().unwrap();
    let per_run: u64 = env_value(&c, "FAILOVER_SAMPLES_PER_RUN").parse().unwrap();
    // N and T agree: a streak that spans T across the gap between two runs' samples (a minute
    // minus a run's sampling) already has N samples, so N never delays a promotion beyond T; and
    // inside one run the span cannot be reached with fewer than N samples.
    let gap = 60 - (per_run - 1) * interval;
    let fewest_across_gap = span.saturating_sub(gap).div_ceil(interval) + 2;
    assert!(
        n <= fewest_across_gap,
        "N={n} waits past T={span}s after a {gap}s run gap ({fewest_across_gap} samples span it)"
    );
    assert!(
        (n - 1) * interval <= span,
        "N={n} at {interval}s takes longer than T={span}s inside a run"
    );
    // Debounced: more than a couple of lost probes, and at least 15 s.
    assert!(n >= 4 && span >= 15, "N={n}, T={span}s");
    // A blackholed tunnel ends the WAL receiver within the window.
    let cfg: Value = serde_saphyr::from_str(
        d.get("ConfigMap", "patroni-golddr-config")["data"]["patroni.yml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let wrt: u64 = cfg["postgresql"]["parameters"]["wal_receiver_timeout"]
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(wrt <= 20, "wal_receiver_timeout {wrt}s");
    // Worst path at p50, blackholed tunnel: receiver timeout + half a spacing + the streak + half
    // of Patroni's loop (promotion) stays within 60 s.
    assert!(wrt + interval / 2 + span + 5 <= 60);
    // A run fits the minute (Forbid never skips the next one) and the deadline.
    let cj = d.one("CronJob");
    assert!(
        per_run * interval <= 50,
        "a run lasts {}s",
        per_run * interval
    );
    let deadline = cj["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"]
        .as_u64()
        .unwrap();
    assert!(deadline >= per_run * interval + secs("FAILOVER_PROMOTE_CONFIRM_DEADLINE") + 30);
    // The primary site does not get the standby's receiver timeout.
    let g: Value = serde_saphyr::from_str(
        Render::site("gold")
            .render()
            .get("ConfigMap", "patroni-gold-config")["data"]["patroni.yml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(
        g["postgresql"]["parameters"]
            .get("wal_receiver_timeout")
            .is_none()
    );
}

#[test]
fn verify_full_is_not_offered() {
    let err = Render::site("golddr")
        .set("tls.existingSecret=pg-tls")
        .set("tls.sslMode=verify-full")
        .render_err();
    assert!(err.contains("sslMode"), "{err}");
    let values = std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap();
    let line = values
        .lines()
        .find(|l| l.contains("`sslmode` of the connections through the tunnel"))
        .unwrap();
    assert!(line.contains("`verify-full` is not offered"), "{line}");
}

#[test]
fn the_failure_window_covers_an_in_site_failover_of_the_peer() {
    // The default (40 s) is ttl + loopWait (30 + 10) and renders.
    Render::site("golddr").render();
    let err = Render::site("golddr")
        .set("failover.minFailureSpanSeconds=39")
        .render_err();
    assert!(
        err.contains("failover.minFailureSpanSeconds (39) is shorter than an in-site failover"),
        "{err}"
    );
    assert!(err.contains("= 40 s"), "{err}");
    assert!(err.contains("allowShortWindow"), "{err}");
    // The rule follows the Patroni timings it protects.
    Render::site("golddr")
        .set("failover.minFailureSpanSeconds=25")
        .set("patroni.dcs.ttl=20")
        .set("patroni.dcs.loopWait=5")
        .render();
    let err = Render::site("golddr")
        .set("patroni.dcs.ttl=60")
        .render_err();
    assert!(err.contains("= 70 s"), "{err}");
    // A single-member primary site may accept a shorter window, explicitly.
    Render::site("golddr")
        .set("failover.minFailureSpanSeconds=10")
        .set("failover.allowShortWindow=true")
        .render();
}
