//! Fault injection: failing or delaying requests, cutting watches, refusing all traffic.
//!
//! Usable in-process ([`Faults`]) and over HTTP (`/kubesim/faults`, see `api.rs`), so tests of
//! separate processes (the drill) can break the API server the same way.

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What happens to a matching request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Answer with this status (a `Status` body), optionally with `Retry-After` seconds.
    Fail {
        status: u16,
        #[serde(default)]
        retry_after: Option<u32>,
    },
    /// Hold the request this long before handling it.
    Delay { ms: u64 },
}

/// A fault rule: which requests, what to do, how often or how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// HTTP method to match (any when absent).
    #[serde(default)]
    pub method: Option<String>,
    /// Substring of the path to match (any when absent).
    #[serde(default)]
    pub path_contains: Option<String>,
    /// Match only watch (true) or only non-watch (false) requests.
    #[serde(default)]
    pub watch: Option<bool>,
    pub action: Action,
    /// Apply to this many matching requests, then drop the rule.
    #[serde(default)]
    pub times: Option<u32>,
    /// Drop the rule after this many milliseconds.
    #[serde(default)]
    pub for_ms: Option<u64>,
}

impl Rule {
    pub fn new(action: Action) -> Rule {
        Rule {
            method: None,
            path_contains: None,
            watch: None,
            action,
            times: None,
            for_ms: None,
        }
    }
    pub fn method(mut self, m: &str) -> Rule {
        self.method = Some(m.to_uppercase());
        self
    }
    pub fn path_contains(mut self, p: &str) -> Rule {
        self.path_contains = Some(p.to_string());
        self
    }
    pub fn times(mut self, n: u32) -> Rule {
        self.times = Some(n);
        self
    }
    pub fn for_duration(mut self, d: Duration) -> Rule {
        self.for_ms = Some(d.as_millis() as u64);
        self
    }
}

struct Active {
    rule: Rule,
    expires: Option<Instant>,
}

/// Handle to the fault state of one server. Cheap to clone.
#[derive(Clone)]
pub struct Faults {
    rules: Arc<Mutex<Vec<Active>>>,
    cut: Arc<watch::Sender<u64>>,
    outage: Arc<watch::Sender<Option<Instant>>>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rules: Arc::default(),
            cut: Arc::new(watch::channel(0).0),
            outage: Arc::new(watch::channel(None).0),
        }
    }
}

impl Faults {
    pub fn add(&self, rule: Rule) {
        let expires = rule
            .for_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        self.lock().push(Active { rule, expires });
    }

    /// Every request fails with `status` until [`Faults::clear`].
    pub fn fail_all(&self, status: u16, retry_after: Option<u32>) {
        self.add(Rule::new(Action::Fail {
            status,
            retry_after,
        }));
    }

    /// The next `n` requests fail with `status`.
    pub fn fail_next(&self, n: u32, status: u16, retry_after: Option<u32>) {
        self.add(
            Rule::new(Action::Fail {
                status,
                retry_after,
            })
            .times(n),
        );
    }

    /// Every request is delayed by `d` until [`Faults::clear`].
    pub fn delay_all(&self, d: Duration) {
        self.add(Rule::new(Action::Delay {
            ms: d.as_millis() as u64,
        }));
    }

    /// Ends every open watch now (clients see a clean end of stream and re-list).
    pub fn cut_watches(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Closes every connection and refuses new ones (connection refused) for `d`.
    pub fn refuse_for(&self, d: Duration) {
        let _ = self.outage.send(Some(Instant::now() + d));
    }

    /// Drops every rule and ends an outage.
    pub fn clear(&self) {
        self.lock().clear();
        let _ = self.outage.send(None);
    }

    pub fn rules(&self) -> Vec<Rule> {
        self.lock().iter().map(|a| a.rule.clone()).collect()
    }

    pub(crate) fn cut_signal(&self) -> watch::Receiver<u64> {
        self.cut.subscribe()
    }

    pub(crate) fn outage_signal(&self) -> watch::Receiver<Option<Instant>> {
        self.outage.subscribe()
    }

    /// The end of the current outage, if one is on.
    pub fn outage_until(&self) -> Option<Instant> {
        (*self.outage.borrow()).filter(|t| *t > Instant::now())
    }

    /// The delay to apply (sum of matching delays) and the failure to answer with, if any.
    pub(crate) fn check(
        &self,
        method: &str,
        path: &str,
        is_watch: bool,
    ) -> (Duration, Option<Action>) {
        let now = Instant::now();
        let mut rules = self.lock();
        rules.retain(|a| a.expires.is_none_or(|e| e > now) && a.rule.times != Some(0));
        let mut delay = Duration::ZERO;
        let mut fail = None;
        for a in rules.iter_mut() {
            let r = &a.rule;
            let matches = r
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && r.path_contains.as_deref().is_none_or(|p| path.contains(p))
                && r.watch.is_none_or(|w| w == is_watch);
            if !matches {
                continue;
            }
            match &r.action {
                Action::Delay { ms } => delay += Duration::from_millis(*ms),
                Action::Fail { .. } if fail.is_some() => continue,
                Action::Fail { .. } => fail = Some(r.action.clone()),
            }
            if let Some(t) = a.rule.times.as_mut() {
                *t -= 1;
            }
        }
        (delay, fail)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Active>> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_rules_expire() {
        let f = Faults::default();
        f.fail_next(2, 503, Some(1));
        f.add(Rule::new(Action::Delay { ms: 5 }).method("patch"));
        assert!(f.check("GET", "/api/v1", false).1.is_some());
        let (d, fail) = f.check("PATCH", "/api/v1", false);
        assert_eq!(d, Duration::from_millis(5));
        assert_eq!(
            fail,
            Some(Action::Fail {
                status: 503,
                retry_after: Some(1)
            })
        );
        assert!(f.check("GET", "/api/v1", false).1.is_none());
        f.clear();
        assert_eq!(f.check("PATCH", "/", false), (Duration::ZERO, None));
    }

    #[test]
    fn rules_match_on_path_and_watch() {
        let f = Faults::default();
        let mut r = Rule::new(Action::Fail {
            status: 500,
            retry_after: None,
        })
        .path_contains("/configmaps");
        r.watch = Some(true);
        f.add(r);
        assert!(
            f.check("GET", "/api/v1/namespaces/default/configmaps", false)
                .1
                .is_none()
        );
        assert!(
            f.check("GET", "/api/v1/namespaces/default/configmaps", true)
                .1
                .is_some()
        );
        assert!(
            f.check("GET", "/api/v1/namespaces/default/pods", true)
                .1
                .is_none()
        );
    }
}
