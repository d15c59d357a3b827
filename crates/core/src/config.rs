//! Configuration from the environment: one struct per binary, parsed once with `envy`, failing
//! fast with the name of the variable that is missing or wrong.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

/// A configuration error, always naming the environment variable it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {var} is required but not set")]
    Missing { var: String },
    #[error("environment variable {var} is invalid: {reason}")]
    Invalid { var: String, reason: String },
    /// envy could not say which variable failed and isolating it did not either.
    #[error("configuration with prefix {prefix} is invalid: {reason}")]
    Unattributed { prefix: String, reason: String },
}

impl ConfigError {
    /// A validation failure found after parsing, for `var` (the full variable name).
    pub fn invalid(var: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            var: var.into(),
            reason: reason.into(),
        }
    }
}

/// The full variable name of config field `field` (`scope` or `SCOPE`) under `prefix`.
pub fn var(prefix: &str, field: &str) -> String {
    format!("{prefix}{}", field.to_uppercase())
}

/// Parses `T` from the process environment, using variables that start with `prefix`
/// (e.g. `PORT_PATCH_`). Field `foo_bar` is read from `<prefix>FOO_BAR`.
pub fn from_env<T: DeserializeOwned>(prefix: &str) -> Result<T, ConfigError> {
    from_vars(prefix, std::env::vars())
}

/// Same as [`from_env`] over an explicit list of variables (for tests).
pub fn from_vars<T, I>(prefix: &str, vars: I) -> Result<T, ConfigError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (String, String)>,
{
    let vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .collect();
    match envy::prefixed(prefix).from_iter::<_, T>(vars.clone()) {
        Ok(v) => Ok(v),
        Err(envy::Error::MissingValue(field)) => Err(ConfigError::Missing {
            var: format!("{prefix}{}", field.to_uppercase()),
        }),
        Err(envy::Error::Custom(reason)) => Err(attribute::<T>(prefix, &vars, reason)),
    }
}

/// envy reports value errors without the variable name (unless the value was a plain number or
/// bool). Deserializing each variable on its own finds the culprit: serde only reports missing
/// fields after every present entry was accepted, so a lone variable can fail with a custom
/// error only because of its own value.
fn attribute<T: DeserializeOwned>(
    prefix: &str,
    vars: &[(String, String)],
    reason: String,
) -> ConfigError {
    for (k, v) in vars {
        let one = std::iter::once((k.clone(), v.clone()));
        if let Err(envy::Error::Custom(r)) = envy::prefixed(prefix).from_iter::<_, T>(one) {
            return ConfigError::Invalid {
                var: k.clone(),
                reason: r,
            };
        }
    }
    ConfigError::Unattributed {
        prefix: prefix.to_string(),
        reason,
    }
}

/// The environment variables config struct `T` reads: `prefix` + each field, upper-cased, in
/// declaration order. Read from serde's own field list, so it cannot drift from the struct.
pub fn variables<T: DeserializeOwned>(prefix: &str) -> Vec<String> {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields.iter().map(|f| var(prefix, f)).collect()
}

/// The variables a Markdown document lists, one per table row (`| \`VAR\` |`) or list item
/// (`- \`VAR\``), for the test that keeps each binary's documentation and code identical.
pub fn documented_variables(markdown: &str, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = markdown
        .lines()
        .filter_map(|l| l.strip_prefix("| `").or_else(|| l.strip_prefix("- `")))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect();
    out.sort();
    out
}

/// A deserializer that only records the field list of the struct asked for, then stops.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl serde::de::Error for Stop {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// A secret value. `Debug` and `Display` print `***` so a config struct can be logged whole.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value itself; call only where it is sent (an auth header), never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL that may carry credentials (`https://user:pass@host/…?token=…`). `Debug` and `Display`
/// show only scheme, host, port and path, so a config struct holding it can be logged whole.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Url(String);

impl Url {
    pub fn new(value: impl Into<String>) -> Self {
        Url(value.into())
    }
    /// The full URL; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// `scheme://host:port/path` of `url`, without user info, query or fragment (`***` marks what
/// was dropped). Text that is not a URL prints as `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    let cut = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before, after) = rest.split_at(cut);
    let (authority, path) = before.split_at(before.find('/').unwrap_or(before.len()));
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((_, host)) => ("***@", host),
        None => ("", authority),
    };
    let tail = if after.is_empty() { "" } else { "?***" };
    format!("{scheme}://{userinfo}{host}{path}{tail}")
}

/// A duration from the environment: a whole number of seconds (`30`) or a friendly duration
/// (`500ms`, `90s`, `5m`, `1h 30m`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(n) = s.parse::<u64>() {
            return Ok(Dur(Duration::from_secs(n)));
        }
        let d: jiff::SignedDuration = s.parse().map_err(|e| {
            format!("'{s}' is not a duration (use seconds like 30, or 500ms, 90s, 5m): {e}")
        })?;
        Duration::try_from(d)
            .map(Dur)
            .map_err(|_| format!("'{s}' is negative; a duration must be zero or more"))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = jiff::SignedDuration::try_from(self.0).unwrap_or(jiff::SignedDuration::MAX);
        write!(f, "{d:#}")
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Log output format, shared by every binary's `<PREFIX>LOG_FORMAT`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    #[default]
    Json,
    /// Human-readable lines.
    Plain,
}

/// `key=value,key2=value2` (Kubernetes labels). Empty string means no labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValues(pub BTreeMap<String, String>);

impl FromStr for KeyValues {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut map = BTreeMap::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                format!(
                    "'{pair}' is not key=value (expected a list like app=patroni,cluster-name=demo)"
                )
            })?;
            let k = k.trim();
            if k.is_empty() {
                return Err(format!("'{pair}' has an empty key"));
            }
            map.insert(k.to_string(), v.trim().to_string());
        }
        Ok(KeyValues(map))
    }
}

impl<'de> Deserialize<'de> for KeyValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sample {
        scope: String,
        #[serde(default = "default_timeout")]
        timeout: Dur,
        #[serde(default)]
        port: Option<u16>,
        #[serde(default)]
        log_format: LogFormat,
        #[serde(default)]
        password: Option<Secret>,
        #[serde(default)]
        labels: KeyValues,
    }

    fn default_timeout() -> Dur {
        Dur::secs(10)
    }

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_with_defaults_and_ignores_other_prefixes() {
        let s: Sample = from_vars("T_", vars(&[("T_SCOPE", "demo"), ("OTHER_PORT", "x")])).unwrap();
        assert_eq!(s.scope, "demo");
        assert_eq!(s.timeout, Dur::secs(10));
        assert_eq!(s.port, None);
        assert_eq!(s.log_format, LogFormat::Json);
        assert!(s.labels.0.is_empty());
    }

    #[test]
    fn each_failure_names_its_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "T_SCOPE"),
            (&[("T_SCOPE", "d"), ("T_PORT", "99999")], "T_PORT"),
            (&[("T_SCOPE", "d"), ("T_TIMEOUT", "soon")], "T_TIMEOUT"),
            (&[("T_SCOPE", "d"), ("T_LOG_FORMAT", "xml")], "T_LOG_FORMAT"),
            (&[("T_SCOPE", "d"), ("T_LABELS", "a=b,oops")], "T_LABELS"),
            // The bad variable is found even when a required one is missing too.
            (&[("T_TIMEOUT", "-5s")], "T_TIMEOUT"),
        ];
        for (input, want) in cases {
            let err = from_vars::<Sample, _>("T_", vars(input)).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(want), "{input:?}: {text}");
        }
    }

    #[test]
    fn variables_come_from_the_struct_and_the_document() {
        assert_eq!(
            variables::<Sample>("T_"),
            [
                "T_SCOPE",
                "T_TIMEOUT",
                "T_PORT",
                "T_LOG_FORMAT",
                "T_PASSWORD",
                "T_LABELS"
            ]
        );
        let doc = "| Variable | x |\n|---|---|\n| `T_SCOPE` | required |\n- `T_PORT` (default none)\n\
                   | `OTHER_X` | no |\ntext `T_LABELS` in prose is not a listing\n";
        assert_eq!(documented_variables(doc, "T_"), ["T_PORT", "T_SCOPE"]);
    }

    #[test]
    fn durations() {
        let cases = [
            ("30", Some(Duration::from_secs(30))),
            ("500ms", Some(Duration::from_millis(500))),
            ("5m", Some(Duration::from_secs(300))),
            ("1h 30m", Some(Duration::from_secs(5400))),
            ("-1s", None),
            ("later", None),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<Dur>().ok().map(Dur::get), want, "{s}");
        }
        assert_eq!(format!("{:?}", Dur::secs(90)), "1m 30s");
    }

    #[test]
    fn secrets_never_print() {
        let s: Sample =
            from_vars("T_", vars(&[("T_SCOPE", "d"), ("T_PASSWORD", "hunter2")])).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
        assert_eq!(s.password.unwrap().expose(), "hunter2");
    }

    #[test]
    fn urls_print_without_credentials() {
        let cases = [
            ("http://127.0.0.1:8008", "http://127.0.0.1:8008"),
            (
                "https://admin:s3cret@pg-0.pg:8008/patroni",
                "https://***@pg-0.pg:8008/patroni",
            ),
            ("https://h/p?token=s3cret", "https://h/p?***"),
            ("not a url s3cret", "***"),
        ];
        for (url, shown) in cases {
            assert_eq!(format!("{:?}", Url::new(url)), shown);
            assert_eq!(Url::new(url).to_string(), shown);
        }
        assert_eq!(Url::new("https://a:b@h").expose(), "https://a:b@h");
    }

    #[test]
    fn key_values() {
        let kv: KeyValues = " application=patroni, cluster-name=demo ,".parse().unwrap();
        assert_eq!(kv.0.get("application").map(String::as_str), Some("patroni"));
        assert_eq!(kv.0.get("cluster-name").map(String::as_str), Some("demo"));
        assert!("=x".parse::<KeyValues>().is_err());
        assert!("".parse::<KeyValues>().unwrap().0.is_empty());
    }
}
