//! chart/README.md's values table is generated from values.yaml; this test fails when they
//! drift apart. `PGDR_UPDATE_CHART_README=1 cargo test -p pgdr-chart-tests --test readme`
//! rewrites the table.

use pgdr_chart_tests::*;

#[test]
fn readme_values_table_matches_values_yaml() {
    let values =
        std::fs::read_to_string(chart_dir().join("values.yaml")).expect("chart/values.yaml");
    let table = values_table(&values).unwrap_or_else(|e| panic!("{e}"));
    let path = chart_dir().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("chart/README.md");
    let updated = splice_table(&readme, &table).unwrap_or_else(|e| panic!("{e}"));
    if updated == readme {
        return;
    }
    if std::env::var_os("PGDR_UPDATE_CHART_README").is_some() {
        std::fs::write(&path, updated).expect("write chart/README.md");
        return;
    }
    panic!(
        "chart/README.md's values table is out of date with chart/values.yaml; regenerate it with:\n  \
         PGDR_UPDATE_CHART_README=1 cargo test -p pgdr-chart-tests --test readme"
    );
}

#[test]
fn every_schema_property_is_a_value() {
    // The schema and values.yaml describe the same tree: a value the schema does not know is
    // rejected by helm, and a schema property without a default is a value nobody documents.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json")).unwrap(),
    )
    .unwrap();
    let values: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap())
            .unwrap();
    fn walk(
        schema: &serde_json::Value,
        values: &serde_json::Value,
        path: &str,
        out: &mut Vec<String>,
    ) {
        let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
            return;
        };
        for (k, sub) in props {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match values.get(k) {
                Some(v) => walk(sub, v, &p, out),
                None if p == "global" => {}
                None => out.push(p),
            }
        }
    }
    let mut missing = Vec::new();
    walk(&schema, &values, "", &mut missing);
    // Resources use a shared definition; resolve it away by checking the top-level list only.
    assert!(
        missing.is_empty(),
        "schema properties without a value in values.yaml: {missing:?}"
    );
}
