//! API errors, rendered as the real server renders them: a `Status` object with reason and code.

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details.name` / `details.kind` (resource plural, as the real server puts it).
    pub name: Option<String>,
    pub kind: Option<String>,
    pub group: Option<String>,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            name: None,
            kind: None,
            group: None,
            retry_after: None,
        }
    }

    fn about(mut self, resource: &str, group: &str, name: &str) -> Self {
        self.kind = Some(resource.to_string());
        self.name = (!name.is_empty()).then(|| name.to_string());
        self.group = (!group.is_empty()).then(|| group.to_string());
        self
    }

    /// `resource` is the qualified plural (`configmaps`, `statefulsets.apps`).
    pub fn not_found(resource: &str, plural: &str, group: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
            .about(plural, group, name)
    }

    pub fn already_exists(resource: &str, plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        )
        .about(plural, group, name)
    }

    pub fn conflict(resource: &str, plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .about(plural, group, name)
    }

    pub fn invalid(kind: &str, name: &str, cause: impl std::fmt::Display) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {cause}"),
        )
        .about(kind, "", name)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
            ),
        )
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// The `Status` body.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.name.is_some() || self.kind.is_some() || self.retry_after.is_some() {
            let mut d = serde_json::Map::new();
            if let Some(n) = &self.name {
                d.insert("name".into(), json!(n));
            }
            if let Some(g) = &self.group {
                d.insert("group".into(), json!(g));
            }
            if let Some(k) = &self.kind {
                d.insert("kind".into(), json!(k));
            }
            if let Some(r) = self.retry_after {
                d.insert("retryAfterSeconds".into(), json!(r));
            }
            s["details"] = Value::Object(d);
        }
        s
    }
}

/// Maps an HTTP status to the reason the real server uses for it.
pub fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}
