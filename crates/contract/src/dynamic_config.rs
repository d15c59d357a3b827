//! Patroni's dynamic configuration as stored in the `config` annotation of `<scope>-config`,
//! and the standby-cluster rules Patroni applies to it (reference section 9.1).

use serde_json::{Map, Value};

pub use crate::keys::{CONFIG_ANNOTATION, INITIALIZE_ANNOTATION, STANDBY_CLUSTER};

/// Why a `config` annotation cannot be used. The caller adds which object it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedConfig {
    #[error("the config annotation is not valid JSON ({0})")]
    NotJson(String),
    #[error("the config annotation is a JSON {0}, expected an object")]
    NotObject(&'static str),
    #[error("standby_cluster is a JSON {0}, expected an object or null")]
    StandbyNotObject(&'static str),
}

/// Parses the annotation text into the config object, checking the parts we rely on.
pub fn parse(text: &str) -> Result<Map<String, Value>, MalformedConfig> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| MalformedConfig::NotJson(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(MalformedConfig::NotObject(kind(&value)));
    };
    match map.get(STANDBY_CLUSTER) {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(map),
        Some(other) => Err(MalformedConfig::StandbyNotObject(kind(other))),
    }
}

/// Serializes a config object the way Patroni writes it (compact JSON).
pub fn render(config: &Map<String, Value>) -> String {
    serde_json::to_string(config).expect("a JSON map always serializes")
}

/// Patroni's rule (`global_config.py` `is_standby_cluster`): `standby_cluster` is an object with
/// a truthy `host`, `port` or `restore_command`.
pub fn is_standby_cluster(config: &Map<String, Value>) -> bool {
    match config.get(STANDBY_CLUSTER) {
        Some(Value::Object(sc)) => ["host", "port", "restore_command"]
            .iter()
            .any(|k| sc.get(*k).is_some_and(truthy)),
        _ => false,
    }
}

/// Python truthiness of a JSON value, as Patroni evaluates it.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, Result<(), MalformedConfig>)] = &[
            (r#"{"ttl":30}"#, Ok(())),
            (r#"{"standby_cluster":null}"#, Ok(())),
            (r#"{"standby_cluster":{"host":"h"}}"#, Ok(())),
            ("{not json", Err(MalformedConfig::NotJson(String::new()))),
            ("[1,2]", Err(MalformedConfig::NotObject("array"))),
            ("\"x\"", Err(MalformedConfig::NotObject("string"))),
            (
                r#"{"standby_cluster":"host=a"}"#,
                Err(MalformedConfig::StandbyNotObject("string")),
            ),
        ];
        for (text, want) in cases {
            let got = parse(text).map(|_| ());
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(MalformedConfig::NotJson(_)), Err(MalformedConfig::NotJson(_))) => {}
                (g, w) => assert_eq!(&g, w, "{text}"),
            }
        }
    }

    #[test]
    fn standby_truthiness_matches_patroni() {
        let cases = [
            (r#"{}"#, false),
            (r#"{"standby_cluster":null}"#, false),
            (r#"{"standby_cluster":{}}"#, false),
            (r#"{"standby_cluster":{"host":"","port":0}}"#, false),
            (r#"{"standby_cluster":{"primary_slot_name":"s"}}"#, false),
            (r#"{"standby_cluster":{"host":"a"}}"#, true),
            (r#"{"standby_cluster":{"port":5432}}"#, true),
            (r#"{"standby_cluster":{"port":"5432"}}"#, true),
            (
                r#"{"standby_cluster":{"restore_command":"cp %f %p"}}"#,
                true,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(is_standby_cluster(&parse(text).unwrap()), want, "{text}");
        }
    }

    #[test]
    fn render_is_compact() {
        let m = parse(r#"{ "ttl" : 30 , "loop_wait": 10 }"#).unwrap();
        let text = render(&m);
        assert!(!text.contains(' '), "{text}");
        assert_eq!(parse(&text).unwrap(), m);
    }
}
