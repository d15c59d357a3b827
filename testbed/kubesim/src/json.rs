//! The kind of a JSON value as the real API server names it in its messages.

use serde_json::Value;

/// `null`, `boolean`, `number`, `string`, `array` or `object` (JSON's names: patch and selector
/// messages).
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The same in Go's words (`bool` for a boolean), for messages that quote Go's JSON decoder
/// (`json: cannot unmarshal bool into Go struct field ...`).
pub(crate) fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        other => kind(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        let cases = [
            (json!(null), "null", "null"),
            (json!(true), "boolean", "bool"),
            (json!(1), "number", "number"),
            (json!("a"), "string", "string"),
            (json!([]), "array", "array"),
            (json!({}), "object", "object"),
        ];
        for (v, json, go) in cases {
            assert_eq!((kind(&v), go_kind(&v)), (json, go), "{v}");
        }
    }
}
