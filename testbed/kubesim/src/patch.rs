//! The PATCH flavours the API server accepts, applied to `serde_json::Value` documents.
//!
//! - [`merge_patch`]: RFC 7386 JSON merge patch (`application/merge-patch+json`).
//! - [`json_patch`]: RFC 6902 JSON patch (`application/json-patch+json`).
//! - [`strategic_merge`]: Kubernetes strategic merge patch
//!   (`application/strategic-merge-patch+json`), driven by a built-in table of list merge keys
//!   because there is no OpenAPI schema here.
//! - [`apply_patch`]: a rough stand-in for server-side apply (`application/apply-patch+yaml`).
//!
//! Functions returning `Result` leave the target untouched on error: they work on a copy and
//! swap it in only on success, so a rejected PATCH never half-applies.

use serde_json::{Map, Value};

use crate::json;

/// Why a patch could not be applied. Paths are JSON pointers into the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// A merge, strategic or apply patch body that is not a JSON object.
    #[error("patch body must be a JSON object")]
    NotAnObject,
    /// The patch document has the wrong JSON type (a JSON patch that is not an array).
    #[error("{what} must be a JSON {expected}, got {got}")]
    WrongType {
        what: &'static str,
        expected: &'static str,
        got: &'static str,
    },
    /// A JSON patch operation object is malformed (missing member, unknown op, bad pointer).
    #[error("json patch operation {index}: {reason}")]
    InvalidOperation { index: usize, reason: String },
    /// A well-formed JSON patch operation could not be carried out on the document.
    #[error("json patch operation {index} ({op} {path:?}): {reason}")]
    OperationFailed {
        index: usize,
        op: String,
        path: String,
        reason: String,
    },
    /// A JSON patch `test` operation found a different value.
    #[error("json patch operation {index}: test failed: value at {path:?} is not the expected one")]
    TestFailed { index: usize, path: String },
    /// A strategic merge patch used a `$` key this server does not know.
    #[error("strategic merge patch at {path:?}: unknown directive {directive:?}")]
    UnknownDirective { path: String, directive: String },
    /// A strategic merge patch is malformed at `path` (bad directive value, missing merge key).
    #[error("strategic merge patch at {path:?}: {reason}")]
    Strategic { path: String, reason: String },
}

/// Removes `key` keeping the order of the other keys, whether or not serde_json's
/// `preserve_order` feature is on (its `Map::remove` is then a swap-remove, and
/// `shift_remove` does not exist without the feature).
fn remove_key(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let value = map.get(key)?.clone();
    map.retain(|k, _| k != key);
    Some(value)
}

// ---- RFC 7386 ----

/// RFC 7386 JSON merge patch (application/merge-patch+json): objects merge recursively, null
/// deletes, anything else (arrays too) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        unreachable!("target was just made an object");
    };
    for (key, value) in patch {
        if value.is_null() {
            remove_key(target, key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

// ---- RFC 6902 ----

/// RFC 6902 JSON patch (application/json-patch+json): ops add/remove/replace/move/copy/test
/// with RFC 6901 pointers (`~0` `~1` escapes, `-` to append). The patch must be an array of
/// operation objects; on any failure the target is left unchanged.
///
/// Array indexes must be canonical (`0`, `12`, never `01` or negative), as the RFC says.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Array(ops) = patch else {
        return Err(PatchError::WrongType {
            what: "json patch",
            expected: "array of operations",
            got: json::kind(patch),
        });
    };
    let mut doc = target.clone();
    for (index, op) in ops.iter().enumerate() {
        apply_op(&mut doc, index, op)?;
    }
    *target = doc;
    Ok(())
}

fn apply_op(doc: &mut Value, index: usize, op: &Value) -> Result<(), PatchError> {
    let invalid = |reason: String| PatchError::InvalidOperation { index, reason };
    let Value::Object(op) = op else {
        return Err(invalid(format!(
            "must be an object, got {}",
            json::kind(op)
        )));
    };
    let str_member = |name: &str| -> Result<&str, PatchError> {
        match op.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(invalid(format!(
                "member {name:?} must be a string, got {}",
                json::kind(other)
            ))),
            None => Err(invalid(format!("missing member {name:?}"))),
        }
    };
    let name = str_member("op")?;
    let path = str_member("path")?;
    let tokens = parse_pointer(path).map_err(invalid)?;
    // `value` may legitimately be null, so presence is what counts.
    let value = || {
        op.get("value")
            .cloned()
            .ok_or_else(|| invalid(format!("{name:?} needs a \"value\" member")))
    };
    let from = || -> Result<Vec<String>, PatchError> {
        parse_pointer(str_member("from")?).map_err(invalid)
    };
    let failed = |reason: String| PatchError::OperationFailed {
        index,
        op: name.to_owned(),
        path: path.to_owned(),
        reason,
    };
    match name {
        "add" => add(doc, &tokens, value()?).map_err(failed),
        "remove" => remove(doc, &tokens).map(|_| ()).map_err(failed),
        "replace" => {
            let new = value()?;
            *get_mut(doc, &tokens).map_err(failed)? = new;
            Ok(())
        }
        "move" => {
            let from = from()?;
            if from == tokens {
                return Ok(());
            }
            if tokens.starts_with(&from) {
                return Err(failed(
                    "cannot move a value into one of its own children".into(),
                ));
            }
            let moved = remove(doc, &from).map_err(|e| failed(format!("from: {e}")))?;
            add(doc, &tokens, moved).map_err(failed)
        }
        "copy" => {
            let from = from()?;
            let copied = get(doc, &from)
                .map_err(|e| failed(format!("from: {e}")))?
                .clone();
            add(doc, &tokens, copied).map_err(failed)
        }
        "test" => {
            let expected = value()?;
            if json_eq(get(doc, &tokens).map_err(failed)?, &expected) {
                Ok(())
            } else {
                Err(PatchError::TestFailed {
                    index,
                    path: path.to_owned(),
                })
            }
        }
        other => Err(invalid(format!("unknown op {other:?}"))),
    }
}

/// RFC 6901: "" is the whole document, otherwise `/`-separated tokens with `~1` = `/` and
/// `~0` = `~` (decoded in one pass so `~01` means `~1`, not `/`).
fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "invalid JSON pointer {pointer:?}: must be empty or start with '/'"
        ));
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    _ => {
                        return Err(format!(
                            "invalid JSON pointer {pointer:?}: '~' must be followed by 0 or 1"
                        ));
                    }
                }
            }
            Ok(out)
        })
        .collect()
}

/// An array index token: digits without leading zeros; `-` (one past the end) only when
/// `allow_end`, which also allows `len` itself.
fn array_index(token: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if allow_end && token == "-" {
        return Ok(len);
    }
    let canonical = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    let index: usize = match token.parse() {
        Ok(i) if canonical => i,
        _ => return Err(format!("invalid array index {token:?}")),
    };
    if index > len || (index == len && !allow_end) {
        return Err(format!("array index {index} out of bounds (length {len})"));
    }
    Ok(index)
}

fn get<'a>(doc: &'a Value, tokens: &[String]) -> Result<&'a Value, String> {
    let mut cur = doc;
    for token in tokens {
        cur = match cur {
            Value::Object(m) => m.get(token).ok_or_else(|| format!("no member {token:?}"))?,
            Value::Array(a) => &a[array_index(token, a.len(), false)?],
            other => {
                return Err(format!(
                    "cannot index into a {} with {token:?}",
                    json::kind(other)
                ));
            }
        };
    }
    Ok(cur)
}

fn get_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for token in tokens {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(token)
                .ok_or_else(|| format!("no member {token:?}"))?,
            Value::Array(a) => {
                let i = array_index(token, a.len(), false)?;
                &mut a[i]
            }
            other => {
                return Err(format!(
                    "cannot index into a {} with {token:?}",
                    json::kind(other)
                ));
            }
        };
    }
    Ok(cur)
}

/// RFC 6902 `add`: sets an object member (replacing it) or inserts into an array; the
/// parent must exist. The empty pointer replaces the whole document.
fn add(doc: &mut Value, tokens: &[String], value: Value) -> Result<(), String> {
    let Some((last, parent)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match get_mut(doc, parent)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = array_index(last, a.len(), true)?;
            a.insert(i, value);
        }
        other => {
            return Err(format!(
                "parent is a {}, not an object or array",
                json::kind(other)
            ));
        }
    }
    Ok(())
}

fn remove(doc: &mut Value, tokens: &[String]) -> Result<Value, String> {
    let Some((last, parent)) = tokens.split_last() else {
        return Err("cannot remove the whole document".into());
    };
    match get_mut(doc, parent)? {
        Value::Object(m) => remove_key(m, last).ok_or_else(|| format!("no member {last:?}")),
        Value::Array(a) => {
            let i = array_index(last, a.len(), false)?;
            Ok(a.remove(i))
        }
        other => Err(format!(
            "parent is a {}, not an object or array",
            json::kind(other)
        )),
    }
}

/// JSON equality for `test`: numbers compare by value (`1` equals `1.0`), objects ignore order.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

// ---- strategic merge patch ----

const PATCH_DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// How a list field merges, keyed on the field name alone (no schema is available).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    /// The patch list replaces the original (the default for every unknown field).
    Replace,
    /// Items are objects merged by this key (`patchMergeKey` in the k8s API types).
    MergeByKey(&'static str),
    /// A list of scalars merged as a set union (`patchStrategy:"merge"` without a key).
    Union,
}

/// The merge strategy of list field `field`, from the `patchStrategy`/`patchMergeKey` tags of
/// the Kubernetes API types. `ports` is keyed by `containerPort` in containers but by `port`
/// in Services, so it is decided by what the items carry.
fn list_strategy(field: &str, original: &[Value], patch: &[Value]) -> ListStrategy {
    use ListStrategy::*;
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => MergeByKey("name"),
        "volumeMounts" => MergeByKey("mountPath"),
        "volumeDevices" => MergeByKey("devicePath"),
        "conditions" => MergeByKey("type"),
        "hostAliases" => MergeByKey("ip"),
        "topologySpreadConstraints" => MergeByKey("topologyKey"),
        "ownerReferences" => MergeByKey("uid"),
        "ports" => {
            let container = patch
                .iter()
                .chain(original)
                .any(|item| item.get("containerPort").is_some());
            MergeByKey(if container { "containerPort" } else { "port" })
        }
        "finalizers" => Union,
        // envFrom, args, command, tolerations, subsets (Endpoints; Patroni relies on it), ...
        _ => Replace,
    }
}

fn child(path: &str, key: &str) -> String {
    format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    }
}

fn strategic_err(path: &str, reason: impl Into<String>) -> PatchError {
    PatchError::Strategic {
        path: at(path),
        reason: reason.into(),
    }
}

/// Kubernetes strategic merge patch (application/strategic-merge-patch+json).
///
/// Maps merge recursively, `null` deletes, scalars replace. Lists are replaced unless the
/// field has a known merge key (see `list_strategy`): then patch items are merged into the
/// original item with the same key (original order kept, new items appended). Directives:
/// `$patch: replace|delete` (in maps and list items), `$deleteFromPrimitiveList/<field>`,
/// `$retainKeys` (keys of the original not listed are dropped), `$setElementOrder/<field>`
/// (accepted, ignored: item order is not rearranged). Directive keys are never stored; any
/// other `$` key is an error. On error the target is unchanged.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::WrongType {
            what: "strategic merge patch",
            expected: "object",
            got: json::kind(patch),
        });
    };
    let mut merged = match target {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    merge_map(&mut merged, patch, "")?;
    *target = Value::Object(merged);
    Ok(())
}

/// Approximate server-side apply: the applied configuration is strategic-merged into the live
/// object (fields present in the applied config win; fields absent are kept).
///
/// Not emulated: field managers and ownership (`managedFields`, conflicts, `force`), and
/// removal of fields a manager previously applied but has now dropped from its config;
/// list semantics come from the strategic-merge key table, not `x-kubernetes-list-type`.
pub fn apply_patch(target: &mut Value, applied: &Value) -> Result<(), PatchError> {
    if !applied.is_object() {
        return Err(PatchError::WrongType {
            what: "apply configuration",
            expected: "object",
            got: json::kind(applied),
        });
    }
    strategic_merge(target, applied)
}

/// A patch value turned into a stored value: directives resolved and stripped, nulls dropped
/// (as the real server does with `IgnoreUnmatchedNulls` for fields absent from the original).
fn normalize(patch: &Value, path: &str) -> Result<Value, PatchError> {
    Ok(match patch {
        Value::Object(m) => {
            let mut out = Map::new();
            merge_map(&mut out, m, path)?;
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| normalize(item, &child(path, &i.to_string())))
                .collect::<Result<_, _>>()?,
        ),
        scalar => scalar.clone(),
    })
}

fn merge_map(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &str,
) -> Result<(), PatchError> {
    match patch.get(PATCH_DIRECTIVE) {
        None => {}
        Some(Value::String(d)) if d == "replace" => {
            let mut rest = patch.clone();
            remove_key(&mut rest, PATCH_DIRECTIVE);
            let mut replaced = Map::new();
            merge_map(&mut replaced, &rest, path)?;
            *original = replaced;
            return Ok(());
        }
        Some(Value::String(d)) if d == "delete" => {
            // As in k8s: deleting a map directive leaves an empty map.
            original.clear();
            return Ok(());
        }
        Some(Value::String(d)) if d == "merge" => {}
        Some(other) => {
            return Err(strategic_err(
                path,
                format!("invalid $patch directive {other} for a map"),
            ));
        }
    }

    // Validate every `$` key before touching anything.
    for (key, value) in patch {
        if key == PATCH_DIRECTIVE || key.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if key == RETAIN_KEYS {
            let ok = value
                .as_array()
                .is_some_and(|keys| keys.iter().all(Value::is_string));
            if !ok {
                return Err(strategic_err(path, "$retainKeys must be a list of strings"));
            }
        } else if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            if !value.is_array() {
                return Err(strategic_err(path, format!("{key} must be a list")));
            }
        } else if key.starts_with('$') {
            return Err(PatchError::UnknownDirective {
                path: at(path),
                directive: key.clone(),
            });
        }
    }

    if let Some(Value::Array(keep)) = patch.get(RETAIN_KEYS) {
        original.retain(|k, _| keep.iter().any(|kept| kept.as_str() == Some(k.as_str())));
    }
    for (key, value) in patch {
        if let (Some(field), Value::Array(drop)) =
            (key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST), value)
            && let Some(Value::Array(items)) = original.get_mut(field)
        {
            items.retain(|item| !drop.contains(item));
        }
    }

    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        let here = child(path, key);
        match value {
            Value::Null => {
                remove_key(original, key);
            }
            Value::Object(sub) => match original.get_mut(key) {
                Some(Value::Object(existing)) => merge_map(existing, sub, &here)?,
                // Absent, or a different type: the patch value, cleaned, replaces it.
                _ => {
                    let mut fresh = Map::new();
                    merge_map(&mut fresh, sub, &here)?;
                    original.insert(key.clone(), Value::Object(fresh));
                }
            },
            Value::Array(items) => {
                let existing = match original.get_mut(key) {
                    Some(Value::Array(existing)) => Some(std::mem::take(existing)),
                    _ => None,
                };
                let merged = merge_list(key, existing, items, &here)?;
                original.insert(key.clone(), Value::Array(merged));
            }
            scalar => {
                original.insert(key.clone(), scalar.clone());
            }
        }
    }
    Ok(())
}

/// Merges patch list `patch` for field `field` into `original` (`None` when the field was
/// absent or not a list).
fn merge_list(
    field: &str,
    original: Option<Vec<Value>>,
    patch: &[Value],
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let present = original.is_some();
    let original = original.unwrap_or_default();
    match list_strategy(field, &original, patch) {
        ListStrategy::Replace => match normalize(&Value::Array(patch.to_vec()), path)? {
            Value::Array(items) => Ok(items),
            _ => unreachable!("normalizing an array yields an array"),
        },
        ListStrategy::Union => {
            let mut replace = false;
            let mut scalars = Vec::new();
            for (i, item) in patch.iter().enumerate() {
                match item.get(PATCH_DIRECTIVE) {
                    None => scalars.push(item),
                    Some(d) if d == "replace" => replace = true,
                    Some(d) => {
                        return Err(strategic_err(
                            &child(path, &i.to_string()),
                            format!("invalid $patch directive {d} in a list of scalars"),
                        ));
                    }
                }
            }
            let mut out = if replace { Vec::new() } else { original };
            for item in scalars {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            Ok(out)
        }
        ListStrategy::MergeByKey(key) => merge_keyed_list(key, present, original, patch, path),
    }
}

fn merge_keyed_list(
    key: &str,
    present: bool,
    mut out: Vec<Value>,
    patch: &[Value],
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    // First pass: special items (`$patch: delete|replace`), as k8s does before merging.
    let mut replace = false;
    let mut plain = Vec::new();
    for (i, item) in patch.iter().enumerate() {
        let here = child(path, &i.to_string());
        let Value::Object(item) = item else {
            return Err(strategic_err(
                &here,
                format!("list items must be objects to merge by {key:?}"),
            ));
        };
        match item.get(PATCH_DIRECTIVE).map(|d| (d, d.as_str())) {
            None => plain.push((here, item)),
            Some((_, Some("delete"))) => {
                let Some(wanted) = item.get(key) else {
                    return Err(strategic_err(
                        &here,
                        format!("$patch: delete item does not contain merge key {key:?}"),
                    ));
                };
                out.retain(|o| o.get(key) != Some(wanted));
            }
            Some((_, Some("replace"))) => replace = true,
            Some((_, Some("merge"))) => {
                return Err(strategic_err(
                    &here,
                    "merging lists cannot yet be specified in the patch",
                ));
            }
            Some((d, _)) => {
                return Err(strategic_err(
                    &here,
                    format!("invalid $patch directive {d} in a list"),
                ));
            }
        }
    }
    if replace {
        return plain
            .into_iter()
            .map(|(here, item)| normalize(&Value::Object(item.clone()), &here))
            .collect();
    }
    for (here, item) in plain {
        let Some(wanted) = item.get(key) else {
            // k8s stores items of a list that did not exist yet as given, but refuses to
            // merge a keyless item into an existing list.
            if present {
                return Err(strategic_err(
                    &here,
                    format!("list item does not contain merge key {key:?}"),
                ));
            }
            out.push(normalize(&Value::Object(item.clone()), &here)?);
            continue;
        };
        match out.iter_mut().find(|o| o.get(key) == Some(wanted)) {
            Some(Value::Object(existing)) => merge_map(existing, item, &here)?,
            _ => out.push(normalize(&Value::Object(item.clone()), &here)?),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // ---- merge patch ----

    #[test]
    fn merge_patch_cases() {
        // (target, patch, expected)
        let cases = [
            (
                json!({"a": {"b": 1, "c": 2}, "d": 3}),
                json!({"a": {"b": null}}),
                json!({"a": {"c": 2}, "d": 3}),
            ),
            (
                json!({"a": [1, 2, 3]}),
                json!({"a": [4]}),
                json!({"a": [4]}),
            ),
            (
                json!({"a": [{"name": "x", "v": 1}]}),
                json!({"a": [{"name": "y"}]}),
                json!({"a": [{"name": "y"}]}),
            ),
            (
                json!({"a": 1}),
                json!({"b": {"c": null, "d": 1}}),
                json!({"a": 1, "b": {"d": 1}}),
            ),
            (
                json!({"a": "x"}),
                json!({"a": {"b": 1}}),
                json!({"a": {"b": 1}}),
            ),
            (json!({"a": 1}), json!([1]), json!([1])),
            (json!([1]), json!({"a": 1}), json!({"a": 1})),
            (json!({"a": 1}), json!({}), json!({"a": 1})),
            (json!({"a": 1}), json!({"missing": null}), json!({"a": 1})),
        ];
        for (mut target, patch, want) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, want, "patch {patch}");
        }
    }

    // ---- JSON patch ----

    fn jp(target: Value, ops: Value) -> Result<Value, PatchError> {
        let mut t = target;
        json_patch(&mut t, &ops).map(|()| t)
    }

    #[test]
    fn json_patch_every_op() {
        let doc = json!({"a": {"b": 1}, "l": [1, 2, 3]});
        let cases = [
            (
                json!([{"op": "add", "path": "/a/c", "value": 2}]),
                json!({"a": {"b": 1, "c": 2}, "l": [1, 2, 3]}),
            ),
            (
                json!([{"op": "add", "path": "/a/b", "value": 9}]),
                json!({"a": {"b": 9}, "l": [1, 2, 3]}),
            ),
            (
                json!([{"op": "add", "path": "/l/1", "value": 9}]),
                json!({"a": {"b": 1}, "l": [1, 9, 2, 3]}),
            ),
            (
                json!([{"op": "add", "path": "/l/3", "value": 9}]),
                json!({"a": {"b": 1}, "l": [1, 2, 3, 9]}),
            ),
            (
                json!([{"op": "add", "path": "/l/-", "value": 9}]),
                json!({"a": {"b": 1}, "l": [1, 2, 3, 9]}),
            ),
            (
                json!([{"op": "add", "path": "/n", "value": null}]),
                json!({"a": {"b": 1}, "l": [1, 2, 3], "n": null}),
            ),
            (json!([{"op": "add", "path": "", "value": [1]}]), json!([1])),
            (
                json!([{"op": "remove", "path": "/a/b"}]),
                json!({"a": {}, "l": [1, 2, 3]}),
            ),
            (
                json!([{"op": "remove", "path": "/l/0"}]),
                json!({"a": {"b": 1}, "l": [2, 3]}),
            ),
            (
                json!([{"op": "replace", "path": "/a/b", "value": "x"}]),
                json!({"a": {"b": "x"}, "l": [1, 2, 3]}),
            ),
            (
                json!([{"op": "replace", "path": "/l/2", "value": 0}]),
                json!({"a": {"b": 1}, "l": [1, 2, 0]}),
            ),
            (json!([{"op": "replace", "path": "", "value": 5}]), json!(5)),
            (
                json!([{"op": "move", "from": "/a/b", "path": "/c"}]),
                json!({"a": {}, "l": [1, 2, 3], "c": 1}),
            ),
            (
                json!([{"op": "move", "from": "/l/0", "path": "/l/-"}]),
                json!({"a": {"b": 1}, "l": [2, 3, 1]}),
            ),
            (
                json!([{"op": "move", "from": "/a", "path": "/a"}]),
                json!({"a": {"b": 1}, "l": [1, 2, 3]}),
            ),
            (
                json!([{"op": "copy", "from": "/a", "path": "/l/0"}]),
                json!({"a": {"b": 1}, "l": [{"b": 1}, 1, 2, 3]}),
            ),
            (
                json!([{"op": "test", "path": "/a", "value": {"b": 1}}]),
                doc.clone(),
            ),
            (
                json!([{"op": "test", "path": "/a/b", "value": 1.0}]),
                doc.clone(),
            ),
            (json!([]), doc.clone()),
            (
                json!([
                    {"op": "test", "path": "/l/1", "value": 2},
                    {"op": "remove", "path": "/l/1"},
                    {"op": "add", "path": "/a/d", "value": [true]},
                ]),
                json!({"a": {"b": 1, "d": [true]}, "l": [1, 3]}),
            ),
        ];
        for (ops, want) in cases {
            assert_eq!(jp(doc.clone(), ops.clone()).unwrap(), want, "ops {ops}");
        }
    }

    #[test]
    fn json_patch_pointer_escapes() {
        let doc = json!({"metadata": {"annotations": {"a/b": "1", "m~n": "2"}}});
        let got = jp(
            doc,
            json!([
                {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "x"},
                {"op": "remove", "path": "/metadata/annotations/m~0n"},
                {"op": "add", "path": "/metadata/annotations/~01", "value": "y"},
            ]),
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"metadata": {"annotations": {"a/b": "x", "~1": "y"}}})
        );
    }

    #[test]
    fn json_patch_failures_leave_target_unchanged() {
        let doc = json!({"a": {"b": 1}, "l": [1, 2]});
        let bad = [
            // A failed test after a successful op must undo that op too.
            json!([{"op": "add", "path": "/x", "value": 1}, {"op": "test", "path": "/a/b", "value": 2}]),
            json!([{"op": "test", "path": "/missing", "value": null}]),
            json!([{"op": "remove", "path": "/missing"}]),
            json!([{"op": "remove", "path": "/l/2"}]),
            json!([{"op": "remove", "path": "/l/-"}]),
            json!([{"op": "remove", "path": ""}]),
            json!([{"op": "replace", "path": "/missing", "value": 1}]),
            json!([{"op": "add", "path": "/no/parent", "value": 1}]),
            json!([{"op": "add", "path": "/l/3", "value": 1}]),
            json!([{"op": "add", "path": "/l/01", "value": 1}]),
            json!([{"op": "add", "path": "/l/-1", "value": 1}]),
            json!([{"op": "add", "path": "/a/b/c", "value": 1}]),
            json!([{"op": "add", "path": "/x"}]),
            json!([{"op": "add", "path": "x", "value": 1}]),
            json!([{"op": "add", "path": "/a~2", "value": 1}]),
            json!([{"op": "move", "from": "/a", "path": "/a/b/c"}]),
            json!([{"op": "move", "from": "/missing", "path": "/x"}]),
            json!([{"op": "copy", "path": "/x"}]),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"path": "/a"}]),
            json!([{"op": "remove"}]),
            json!(["add"]),
            json!({"op": "add", "path": "/x", "value": 1}),
        ];
        for ops in bad {
            let mut target = doc.clone();
            assert!(
                json_patch(&mut target, &ops).is_err(),
                "ops {ops} should fail"
            );
            assert_eq!(target, doc, "ops {ops} must not change the target");
        }
    }

    #[test]
    fn json_patch_errors_name_the_problem() {
        let mut doc = json!({"a": 1});
        let err =
            json_patch(&mut doc, &json!([{"op": "test", "path": "/a", "value": 2}])).unwrap_err();
        assert_eq!(
            err,
            PatchError::TestFailed {
                index: 0,
                path: "/a".into()
            }
        );
        let err = json_patch(&mut doc, &json!([{"op": "remove", "path": "/b"}])).unwrap_err();
        assert!(err.to_string().contains("remove \"/b\""), "{err}");
    }

    // ---- strategic merge ----

    fn smp(target: Value, patch: Value) -> Value {
        let mut t = target;
        strategic_merge(&mut t, &patch).unwrap_or_else(|e| panic!("patch {patch}: {e}"));
        t
    }

    #[test]
    fn strategic_patroni_leader_annotations() {
        let ep = json!({
            "metadata": {
                "name": "pg", "namespace": "ns",
                "annotations": {"leader": "pg-0", "optime": "4", "ttl": "30"},
                "labels": {"application": "patroni", "cluster-name": "pg"},
            },
            "subsets": [],
        });
        let got = smp(
            ep,
            json!({"metadata": {"annotations": {"leader": null, "optime": "5"}, "labels": {"application": "patroni", "cluster-name": "pg"}}}),
        );
        assert_eq!(
            got,
            json!({
                "metadata": {
                    "name": "pg", "namespace": "ns",
                    "annotations": {"optime": "5", "ttl": "30"},
                    "labels": {"application": "patroni", "cluster-name": "pg"},
                },
                "subsets": [],
            })
        );
    }

    fn pod_spec() -> Value {
        json!({"spec": {"containers": [
            {"name": "pg", "image": "pg:16", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
             "ports": [{"containerPort": 5432, "name": "pg"}, {"containerPort": 8008, "name": "api"}]},
            {"name": "exporter", "image": "exp:1"},
        ]}})
    }

    #[test]
    fn strategic_containers_merged_by_name() {
        let got = smp(
            pod_spec(),
            json!({"spec": {"containers": [{"name": "exporter", "image": "exp:2"}]}}),
        );
        let containers = &got["spec"]["containers"];
        assert_eq!(containers.as_array().unwrap().len(), 2);
        assert_eq!(containers[0]["image"], "pg:16");
        assert_eq!(containers[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(containers[1], json!({"name": "exporter", "image": "exp:2"}));

        // A new name is appended after the existing items, in patch order.
        let got = smp(
            pod_spec(),
            json!({"spec": {"containers": [{"name": "z", "image": "z"}, {"name": "pg", "image": "pg:17"}, {"name": "y", "image": "y"}]}}),
        );
        let names: Vec<_> = got["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["pg", "exporter", "z", "y"]);
        assert_eq!(got["spec"]["containers"][0]["image"], "pg:17");
    }

    #[test]
    fn strategic_env_merged_by_name() {
        let got = smp(
            pod_spec(),
            json!({"spec": {"containers": [{"name": "pg", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}, {"name": "A", "$patch": "delete"}]}]}}),
        );
        assert_eq!(
            got["spec"]["containers"][0]["env"],
            json!([{"name": "B", "value": "20"}, {"name": "C", "value": "3"}])
        );
    }

    #[test]
    fn strategic_delete_container() {
        let got = smp(
            pod_spec(),
            json!({"spec": {"containers": [{"name": "exporter", "$patch": "delete"}]}}),
        );
        let containers = got["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["name"], "pg");
        // Deleting a name that is not there is a no-op.
        let same = smp(
            pod_spec(),
            json!({"spec": {"containers": [{"name": "nope", "$patch": "delete"}]}}),
        );
        assert_eq!(same, pod_spec());
    }

    #[test]
    fn strategic_replace_directives() {
        let target = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let got = smp(
            target.clone(),
            json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
        );
        assert_eq!(got, json!({"metadata": {"labels": {"c": "3"}}}));
        let got = smp(
            target,
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
        );
        assert_eq!(got, json!({"metadata": {"labels": {}}}));

        let got = smp(
            pod_spec(),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "o"}]}}),
        );
        assert_eq!(
            got,
            json!({"spec": {"containers": [{"name": "only", "image": "o"}]}})
        );
    }

    #[test]
    fn strategic_replaced_lists() {
        let ep = json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 5432, "name": "pg"}]},
            {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 5432, "name": "pg"}]},
        ]});
        // Patroni rewrites the Endpoints subsets and relies on the list being replaced.
        let patch = json!({"subsets": [{"addresses": [{"ip": "10.0.0.3"}], "ports": [{"port": 5432, "name": "pg"}]}]});
        assert_eq!(smp(ep.clone(), patch.clone()), patch);
        assert_eq!(smp(ep, json!({"subsets": []})), json!({"subsets": []}));

        let c = json!({"args": ["a", "b"], "command": ["x"], "tolerations": [{"key": "k"}], "envFrom": [{"secretRef": {"name": "s"}}]});
        let patch = json!({"args": ["c"], "command": [], "tolerations": [{"key": "j"}], "envFrom": [{"configMapRef": {"name": "m"}}]});
        assert_eq!(smp(c, patch.clone()), patch);
    }

    #[test]
    fn strategic_ports_merge_key_depends_on_items() {
        let got = smp(
            pod_spec(),
            json!({"spec": {"containers": [{"name": "pg", "ports": [{"containerPort": 8008, "name": "patroni"}, {"containerPort": 9187}]}]}}),
        );
        assert_eq!(
            got["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 5432, "name": "pg"}, {"containerPort": 8008, "name": "patroni"}, {"containerPort": 9187}])
        );

        let svc = json!({"spec": {"ports": [{"port": 5432, "targetPort": 5432, "name": "pg"}, {"port": 8008, "name": "api"}]}});
        let got = smp(
            svc,
            json!({"spec": {"ports": [{"port": 5432, "targetPort": 6432}, {"port": 9000, "name": "new"}]}}),
        );
        assert_eq!(
            got["spec"]["ports"],
            json!([{"port": 5432, "targetPort": 6432, "name": "pg"}, {"port": 8008, "name": "api"}, {"port": 9000, "name": "new"}])
        );
    }

    #[test]
    fn strategic_other_merge_keys() {
        let obj = json!({
            "metadata": {"finalizers": ["a", "b"], "ownerReferences": [{"uid": "1", "name": "x"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Synced", "status": "True"}]},
            "spec": {"volumes": [{"name": "data", "emptyDir": {}}], "containers": [{"name": "c", "volumeMounts": [{"mountPath": "/d", "name": "data"}]}]},
        });
        let got = smp(
            obj,
            json!({
                "metadata": {"finalizers": ["b", "c"], "ownerReferences": [{"uid": "2", "name": "y"}]},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
                "spec": {"volumes": [{"name": "cfg", "configMap": {"name": "m"}}], "containers": [{"name": "c", "volumeMounts": [{"mountPath": "/d", "readOnly": true}]}]},
            }),
        );
        assert_eq!(got["metadata"]["finalizers"], json!(["a", "b", "c"]));
        assert_eq!(
            got["metadata"]["ownerReferences"],
            json!([{"uid": "1", "name": "x"}, {"uid": "2", "name": "y"}])
        );
        assert_eq!(
            got["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}])
        );
        assert_eq!(got["spec"]["volumes"].as_array().unwrap().len(), 2);
        assert_eq!(
            got["spec"]["containers"][0]["volumeMounts"],
            json!([{"mountPath": "/d", "name": "data", "readOnly": true}])
        );
    }

    #[test]
    fn strategic_primitive_list_directives() {
        let obj = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let got = smp(
            obj.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "x"]}}),
        );
        assert_eq!(got, json!({"metadata": {"finalizers": ["a", "c"]}}));
        let got = smp(
            obj,
            json!({"metadata": {"finalizers": [{"$patch": "replace"}, "z"]}}),
        );
        assert_eq!(got, json!({"metadata": {"finalizers": ["z"]}}));
    }

    #[test]
    fn strategic_directives_are_stripped() {
        let got = smp(
            pod_spec(),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "exporter"}, {"name": "pg"}],
                "containers": [{"name": "exporter", "image": "exp:3", "$setElementOrder/env": [{"name": "X"}], "env": [{"name": "X", "value": "x"}]}],
            }}),
        );
        let text = got.to_string();
        assert!(!text.contains('$'), "directive stored: {text}");
        assert_eq!(got["spec"]["containers"][1]["image"], "exp:3");
        assert_eq!(
            got["spec"]["containers"][1]["env"],
            json!([{"name": "X", "value": "x"}])
        );

        // New fields are cleaned too: no nulls, no directives.
        let got = smp(
            json!({}),
            json!({"spec": {"a": null, "containers": [{"name": "n", "x": null, "$patch": "delete"}, {"name": "m", "y": null}], "b": {"$patch": "replace", "c": 1}}}),
        );
        assert_eq!(
            got,
            json!({"spec": {"containers": [{"name": "m"}], "b": {"c": 1}}})
        );
    }

    #[test]
    fn strategic_retain_keys_drops_unlisted_keys() {
        let d = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let got = smp(
            d,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(got, json!({"spec": {"strategy": {"type": "Recreate"}}}));
    }

    #[test]
    fn strategic_maps_scalars_and_types() {
        let got = smp(
            json!({"a": {"b": 1, "c": {"d": 2}}, "s": "x", "keep": true, "t": [1]}),
            json!({"a": {"c": {"e": 3}}, "s": 2, "t": {"now": "object"}, "n": {"m": null}}),
        );
        assert_eq!(
            got,
            json!({"a": {"b": 1, "c": {"d": 2, "e": 3}}, "s": 2, "keep": true, "t": {"now": "object"}, "n": {}})
        );
    }

    #[test]
    fn strategic_rejects_bad_patches_without_changing_target() {
        let bad = [
            json!([{"name": "x"}]),
            json!("x"),
            json!(null),
            json!({"$unknown": 1}),
            json!({"spec": {"$foo/bar": []}}),
            json!({"metadata": {"labels": {"$patch": "explode"}}}),
            json!({"spec": {"containers": [{"image": "keyless"}]}}),
            json!({"spec": {"containers": [{"$patch": "delete", "image": "keyless"}]}}),
            json!({"spec": {"containers": [{"name": "pg", "$patch": "merge"}]}}),
            json!({"spec": {"containers": ["pg"]}}),
            json!({"spec": {"$retainKeys": "containers"}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
            // Errors deep inside must not leave earlier keys applied.
            json!({"metadata": {"name": "changed"}, "spec": {"containers": [{"name": "pg", "env": [{"$weird": 1, "name": "A"}]}]}}),
        ];
        let original = json!({"metadata": {"name": "p"}, "spec": pod_spec()["spec"].clone()});
        for patch in bad {
            let mut target = original.clone();
            assert!(
                strategic_merge(&mut target, &patch).is_err(),
                "patch {patch} should fail"
            );
            assert_eq!(target, original, "patch {patch} must not change the target");
        }
        let err = strategic_merge(&mut json!({}), &json!({"spec": {"$unknown": 1}})).unwrap_err();
        assert_eq!(
            err,
            PatchError::UnknownDirective {
                path: "/spec".into(),
                directive: "$unknown".into()
            }
        );
        let err = strategic_merge(&mut json!({}), &json!([1])).unwrap_err();
        assert!(err.to_string().contains("must be a JSON object"), "{err}");
    }

    #[test]
    fn apply_patch_merges_applied_config() {
        let live = json!({
            "metadata": {"name": "cm", "resourceVersion": "7", "labels": {"a": "1"}},
            "data": {"x": "1", "y": "2"},
        });
        let mut target = live;
        apply_patch(&mut target, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "labels": {"b": "2"}}, "data": {"x": "10"}})).unwrap();
        assert_eq!(
            target,
            json!({
                "metadata": {"name": "cm", "resourceVersion": "7", "labels": {"a": "1", "b": "2"}},
                "data": {"x": "10", "y": "2"},
                "apiVersion": "v1", "kind": "ConfigMap",
            })
        );
        let before = target.clone();
        assert!(apply_patch(&mut target, &json!("kind: ConfigMap")).is_err());
        assert_eq!(target, before);
    }
}
