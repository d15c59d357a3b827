//! values.schema.json rejects typos and wrong types instead of rendering something plausible.

use pgdr_chart_tests::*;

fn rejected(render: Render, mentions: &[&str]) {
    let err = render.render_err();
    for m in mentions {
        assert!(
            err.contains(m),
            "helm's message does not mention {m:?}:\n{err}"
        );
    }
}

#[test]
fn misspelled_keys_are_rejected() {
    // A nested typo, a top-level typo and a typo in a deep section.
    rejected(
        Render::site("gold").yaml("site:\n  nmae: gold\n"),
        &["nmae"],
    );
    rejected(
        Render::site("gold").yaml("failovr:\n  mode: auto\n"),
        &["failovr"],
    );
    rejected(
        Render::site("golddr")
            .yaml("failover:\n  witness:\n    dns:\n      expectedAdresses: [1.2.3.4]\n"),
        &["expectedAdresses"],
    );
}

#[test]
fn wrong_types_are_rejected() {
    rejected(
        Render::site("gold").yaml("patroni:\n  replicas: two\n"),
        &["replicas"],
    );
    rejected(
        Render::site("gold").yaml("failover:\n  failureThreshold: \"6\"\n"),
        &["failureThreshold"],
    );
    rejected(
        Render::site("gold").yaml("tls:\n  enabled: \"yes\"\n"),
        &["enabled"],
    );
}

#[test]
fn bad_enums_and_patterns_are_rejected() {
    rejected(Render::site("golddr").set("failover.mode=yes"), &["mode"]);
    rejected(Render::site("gold").set("site.role=secondary"), &["role"]);
    rejected(Render::site("gold").set("site.name=Gold"), &["name"]);
    rejected(Render::site("gold").set("persistence.size=1GB"), &["size"]);
    rejected(
        Render::site("gold")
            .yaml("patroni:\n  extraBootstrapDcs:\n    standby_cluster: {host: x}\n"),
        &["extraBootstrapDcs"],
    );
    // An empty peer list would render `from: []`, which admits every source.
    rejected(
        Render::site("gold").set_json("networkPolicy.metrics.peers=[]"),
        &["peers"],
    );
    // The keys peers replaced are refused, not silently ignored.
    rejected(
        Render::site("gold")
            .yaml("networkPolicy:\n  metrics:\n    namespaceLabels: {name: monitoring}\n"),
        &["namespaceLabels"],
    );
    rejected(
        Render::site("gold")
            .set("monitoring.prometheusRule.runbookBaseUrl=https://wiki.example/runbooks"),
        &["runbookBaseUrl"],
    );
}

#[test]
fn site_files_pass_the_schema() {
    Render::site("gold").render();
    Render::site("golddr").render();
}
