//! ServiceAccount tokens as the real API server shapes them (JWTs whose claims tools can read),
//! shared by the store (which fills token Secrets like the token controller) and the
//! authenticator (which accepts only tokens it has on record). Depends on neither, so neither
//! depends on the other.

use base64::Engine as _;
use serde_json::{Value, json};

pub const SA_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
pub const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
pub const SA_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token shaped like the real ones (a JWT, so tools that decode the claims can), with a random
/// third part instead of a signature: the server accepts only tokens it has on record (its own
/// book, or the `data.token` of an existing token Secret), so the shape carries no trust.
pub(crate) fn mint(claims: &Value) -> String {
    let header = b64url(br#"{"alg":"none","typ":"JWT","kid":"kubesim"}"#);
    let payload = b64url(&serde_json::to_vec(claims).expect("JSON values serialize"));
    let secret: [u8; 32] = rand::random();
    format!("{header}.{payload}.{}", b64url(&secret))
}

/// The claims the legacy token controller puts in a Secret's token.
pub(crate) fn secret_token_claims(namespace: &str, secret: &str, sa: &str, uid: &str) -> Value {
    json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": secret,
        "kubernetes.io/serviceaccount/service-account.name": sa,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
        "sub": format!("system:serviceaccount:{namespace}:{sa}"),
    })
}
