//! What RBAC answered the chart's pods. The drill's API servers enforce RBAC and every pod calls
//! as its ServiceAccount (see `pgdr_minicluster::identity`), so a verb missing from the chart's
//! Roles is a 403 here, as on OpenShift: [`Calls::failures`] turns each into a drill failure.
//! The drill itself, helm and kubectl call as the admin and are not counted.

use std::collections::BTreeMap;

use pgdr_minicluster::Site;

/// Prefix of every ServiceAccount user name.
const SA_PREFIX: &str = "system:serviceaccount:";

/// `system:serviceaccount:<namespace>:<name>`, the user a pod of that ServiceAccount calls as.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("{SA_PREFIX}{namespace}:{name}")
}

/// The requests a site's pods made (ServiceAccounts and anonymous callers), from the API server's
/// request log (its most recent 20 000 requests).
#[derive(Debug, Default)]
pub struct Calls {
    /// Requests per user.
    pub by_user: BTreeMap<String, usize>,
    /// Every request answered 401 or 403: "user METHOD path?query -> status".
    pub denied: Vec<String>,
}

impl Calls {
    pub fn of(site: &Site) -> Calls {
        let mut calls = Calls::default();
        for r in site.server().requests() {
            if !(r.user.starts_with(SA_PREFIX) || r.user == "system:anonymous") {
                continue;
            }
            *calls.by_user.entry(r.user.clone()).or_default() += 1;
            if r.status == 401 || r.status == 403 {
                let query = if r.query.is_empty() {
                    String::new()
                } else {
                    format!("?{}", r.query)
                };
                calls.denied.push(format!(
                    "{} {} {}{query} -> {}",
                    r.user, r.method, r.path, r.status
                ));
            }
        }
        calls
    }

    /// Requests made by `user`.
    pub fn count(&self, user: &str) -> usize {
        self.by_user.get(user).copied().unwrap_or(0)
    }

    /// One line: requests per caller and how many were denied.
    pub fn summary(&self) -> String {
        let users: Vec<String> = self
            .by_user
            .iter()
            .map(|(u, n)| format!("{} {n}", u.strip_prefix(SA_PREFIX).unwrap_or(u)))
            .collect();
        format!(
            "API calls by ServiceAccount: {}; denied: {}",
            if users.is_empty() {
                "none".into()
            } else {
                users.join(", ")
            },
            self.denied.len()
        )
    }

    /// A failure per distinct denied request, query aside (a Role of the chart misses a verb or
    /// a name), with how often it was denied.
    pub fn failures(&self, site: &str) -> Vec<String> {
        let mut distinct: BTreeMap<String, (usize, &str)> = BTreeMap::new();
        for d in &self.denied {
            let key = match d.split_once('?') {
                Some((head, tail)) => format!("{head} {}", tail.rsplit(' ').next().unwrap_or("")),
                None => d.clone(),
            };
            distinct.entry(key).or_insert((0, d)).0 += 1;
        }
        distinct
            .into_values()
            .map(|(n, d)| format!("{site}: RBAC denied a pod's request {n} time(s), e.g. {d}"))
            .collect()
    }
}
