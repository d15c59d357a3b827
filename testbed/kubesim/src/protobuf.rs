//! Decoding of the few protobuf bodies kubectl sends for built-in types (`kubectl create
//! configmap|secret|namespace`): the `k8s\0` envelope around a `runtime.Unknown`, then the
//! object. Responses are always JSON, which clients accept.
//!
//! Only the fields of those types are known; anything else gets a clear 415.

use base64::Engine as _;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates over (field number, value) of one message.
fn fields(mut b: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let tag = varint(&mut b)?;
        let (field, wire) = (tag >> 3, tag & 7);
        let v = match wire {
            0 => Wire::Varint(varint(&mut b)?),
            2 => {
                let n = varint(&mut b)? as usize;
                if n > b.len() {
                    return Err("truncated field".into());
                }
                let (v, rest) = b.split_at(n);
                b = rest;
                Wire::Bytes(v)
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if n > b.len() {
                    return Err("truncated field".into());
                }
                b = &b[n..];
                Wire::Fixed
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        out.push((field, v));
    }
    Ok(out)
}

fn varint(b: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first().ok_or("truncated varint")?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn string(w: Wire<'_>) -> Result<String, String> {
    match w {
        Wire::Bytes(b) => {
            String::from_utf8(b.to_vec()).map_err(|_| "string is not UTF-8".to_string())
        }
        _ => Err("expected a string".into()),
    }
}

/// A map entry message {1: key, 2: value}; `bytes` values are base64-encoded (JSON form).
fn map_entry(w: Wire<'_>, bytes: bool, into: &mut Map<String, Value>) -> Result<(), String> {
    let Wire::Bytes(b) = w else {
        return Err("expected a map entry".into());
    };
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    for (f, x) in fields(b)? {
        match (f, x) {
            (1, x) => k = string(x)?,
            (2, Wire::Bytes(raw)) if bytes => {
                v = json!(base64::engine::general_purpose::STANDARD.encode(raw))
            }
            (2, x) => v = json!(string(x)?),
            _ => {}
        }
    }
    into.insert(k, v);
    Ok(())
}

fn object_meta(b: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    let (mut labels, mut annotations, mut finalizers) = (Map::new(), Map::new(), Vec::new());
    for (f, w) in fields(b)? {
        match f {
            1 => drop(m.insert("name".into(), json!(string(w)?))),
            2 => drop(m.insert("generateName".into(), json!(string(w)?))),
            3 => drop(m.insert("namespace".into(), json!(string(w)?))),
            6 => drop(m.insert("resourceVersion".into(), json!(string(w)?))),
            11 => map_entry(w, false, &mut labels)?,
            12 => map_entry(w, false, &mut annotations)?,
            14 => finalizers.push(json!(string(w)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(m))
}

/// `ResourceAttributes` {1 namespace, 2 verb, 3 group, 4 version, 5 resource, 6 subresource,
/// 7 name} or `NonResourceAttributes` {1 path, 2 verb}.
fn attributes(b: &[u8], names: &[&str]) -> Result<Value, String> {
    let mut m = Map::new();
    for (f, w) in fields(b)? {
        if let Some(name) = usize::try_from(f)
            .ok()
            .and_then(|i| names.get(i.wrapping_sub(1)))
        {
            m.insert(name.to_string(), json!(string(w)?));
        }
    }
    Ok(Value::Object(m))
}

/// The spec of a (Self)SubjectAccessReview: {1 resourceAttributes, 2 nonResourceAttributes,
/// 3 user, 4 groups}.
fn review_spec(b: &[u8]) -> Result<Value, String> {
    let mut spec = Map::new();
    let mut groups = Vec::new();
    for (f, w) in fields(b)? {
        let Wire::Bytes(x) = w else { continue };
        match f {
            1 => drop(spec.insert(
                "resourceAttributes".into(),
                attributes(
                    x,
                    &[
                        "namespace",
                        "verb",
                        "group",
                        "version",
                        "resource",
                        "subresource",
                        "name",
                    ],
                )?,
            )),
            2 => drop(spec.insert(
                "nonResourceAttributes".into(),
                attributes(x, &["path", "verb"])?,
            )),
            3 => drop(spec.insert("user".into(), json!(string(w)?))),
            4 => groups.push(json!(string(w)?)),
            _ => {}
        }
    }
    if !groups.is_empty() {
        spec.insert("groups".into(), Value::Array(groups));
    }
    Ok(Value::Object(spec))
}

/// Decodes a protobuf request body into the JSON form of the object.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let inner = body
        .strip_prefix(MAGIC)
        .ok_or("missing the k8s protobuf envelope")?;
    let (mut kind, mut api_version, mut raw) = (String::new(), String::new(), None);
    for (f, w) in fields(inner)? {
        match (f, w) {
            (1, Wire::Bytes(tm)) => {
                for (tf, tw) in fields(tm)? {
                    match tf {
                        1 => api_version = string(tw)?,
                        2 => kind = string(tw)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(r)) => raw = Some(r),
            _ => {}
        }
    }
    let raw = raw.ok_or("the envelope carries no object")?;
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    let (mut data, mut binary, mut string_data) = (Map::new(), Map::new(), Map::new());
    for (f, w) in fields(raw)? {
        let Wire::Bytes(b) = w else {
            if let (4 | 5, Wire::Varint(v)) = (f, w) {
                obj.insert("immutable".into(), json!(v != 0));
            }
            continue;
        };
        match (kind.as_str(), f) {
            (_, 1) => drop(obj.insert("metadata".into(), object_meta(b)?)),
            ("ConfigMap", 2) => map_entry(w, false, &mut data)?,
            ("ConfigMap", 3) => map_entry(w, true, &mut binary)?,
            ("Secret", 2) => map_entry(w, true, &mut data)?,
            ("Secret", 3) => drop(obj.insert("type".into(), json!(string(w)?))),
            ("Secret", 4) => map_entry(w, false, &mut string_data)?,
            ("SelfSubjectAccessReview" | "SubjectAccessReview", 2) => {
                drop(obj.insert("spec".into(), review_spec(b)?))
            }
            ("ConfigMap" | "Secret" | "Namespace", _) => {}
            ("SelfSubjectAccessReview" | "SubjectAccessReview", _) => {}
            (other, _) => {
                return Err(format!(
                    "protobuf bodies are understood only for ConfigMap, Secret, Namespace and access reviews, not {other}; send JSON"
                ));
            }
        }
    }
    for (name, m) in [
        ("data", data),
        ("binaryData", binary),
        ("stringData", string_data),
    ] {
        if !m.is_empty() {
            obj.insert(name.into(), Value::Object(m));
        }
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![((n << 3) | 2) as u8, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_a_configmap_like_kubectl_sends() {
        let entry = [field(1, b"a"), field(2, b"b")].concat();
        let meta = [
            field(1, b"foo"),
            field(3, b"default"),
            field(11, &[field(1, b"app"), field(2, b"x")].concat()),
        ]
        .concat();
        let cm = [field(1, &meta), field(2, &entry)].concat();
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [MAGIC.to_vec(), field(1, &tm), field(2, &cm)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "foo", "namespace": "default", "labels": {"app": "x"}}, "data": {"a": "b"}})
        );
    }

    #[test]
    fn rejects_garbage_and_unknown_kinds() {
        assert!(decode(b"{}").is_err());
        assert!(decode(&[MAGIC, &[0x0a, 0x40]].concat()).is_err());
        let tm = [field(1, b"apps/v1"), field(2, b"StatefulSet")].concat();
        let body = [MAGIC.to_vec(), field(1, &tm), field(2, &field(2, b"x"))].concat();
        assert!(decode(&body).unwrap_err().contains("StatefulSet"));
    }
}
