//! The witnesses: third opinions on where the application runs, asked the same way by every
//! role, in one vocabulary ([`Witness`]). Each role reads an answer in its own terms: a standby
//! site promotes only on `Here` (the primary site is down or the application already came here:
//! [`crate::standby::primary_site`]); a writable primary fences itself only on `Peer` (the
//! application moved to the peer: [`crate::primary::application`]).
//!
//! One function per witness kind: [`dns`], [`http`], the peer-API's [`peer_lock`] (with the lookups
//! in [`ask`]).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::Value;

use crate::config::{PeerApi, Settings, WitnessConfig};

/// What one witness says about where the application runs, seen from the asking site, with its
/// reason (which names the witness; decision logs print it).
#[derive(Clone, Debug, PartialEq)]
pub enum Witness {
    /// At the peer site: the GSLB sends the application there (HTTP `alive`, a DNS answer naming
    /// only the peer's addresses), or the peer holds its leader lock (peer API). The standby's
    /// "the primary site is alive"; the primary's "the application moved".
    Peer(String),
    /// At this site alone, or the peer is down (HTTP `down`, a DNS answer naming only this site,
    /// an expired peer lock). The standby's "the primary site is down"; the primary's "the
    /// application is still here".
    Here(String),
    /// Not at this site alone, and not at the peer alone (a DNS answer naming both sites, or
    /// neither). A standby reads it as alive (no promotion); a primary as no evidence.
    NotOnlyHere(String),
    /// The witness could not be asked or gave no clear answer.
    Unknown(String),
}

impl Witness {
    /// The reason the witness's answer carries.
    pub fn reason(&self) -> &str {
        match self {
            Witness::Peer(r) | Witness::Here(r) | Witness::NotOnlyHere(r) | Witness::Unknown(r) => {
                r
            }
        }
    }
}

/// Asks every configured witness, concurrently, each bounded by the probe timeout.
pub async fn ask_all(settings: &Settings, http: &reqwest::Client) -> Vec<Witness> {
    let asks = settings.witnesses.iter().map(|w| ask(w, settings, http));
    futures_util::future::join_all(asks).await
}

/// Asks one witness. `Here` and `Peer` only from explicit evidence; anything else is unknown.
pub async fn ask(w: &WitnessConfig, settings: &Settings, client: &reqwest::Client) -> Witness {
    let timeout = settings.config.probe_timeout.get();
    match w {
        WitnessConfig::Dns {
            name,
            expected,
            peer,
        } => {
            let lookup = tokio::net::lookup_host((name.as_str(), 0));
            match tokio::time::timeout(timeout, lookup).await {
                Err(_) => Witness::Unknown(format!(
                    "DNS witness: resolving {name} took more than {timeout:?}"
                )),
                Ok(Err(e)) => Witness::Unknown(format!("DNS witness: cannot resolve {name}: {e}")),
                Ok(Ok(addrs)) => {
                    let got: BTreeSet<IpAddr> = addrs.map(|a| a.ip()).collect();
                    dns(name, &got, expected, peer)
                }
            }
        }
        WitnessConfig::PeerApi(peer) => peer_api(peer, timeout).await,
        WitnessConfig::Http { url } => {
            // The URL is never logged: it may carry a token.
            let answer = async {
                let r = client.get(url.expose()).timeout(timeout).send().await?;
                let status = r.status().as_u16();
                let body = r.text().await?;
                Ok::<_, reqwest::Error>((status, body))
            };
            match tokio::time::timeout(timeout, answer).await {
                Err(_) => Witness::Unknown(format!("HTTP witness: no answer within {timeout:?}")),
                Ok(Err(e)) if e.is_timeout() => {
                    Witness::Unknown(format!("HTTP witness: no answer within {timeout:?}"))
                }
                Ok(Err(_)) => Witness::Unknown("HTTP witness: unreachable".into()),
                Ok(Ok((status, body))) => http(status, &body),
            }
        }
    }
}

/// Margin on top of the lock's ttl before a lock counts as expired (clock skew between sites,
/// Patroni's loop_wait jitter).
const LOCK_MARGIN: jiff::SignedDuration = jiff::SignedDuration::from_secs(10);

/// The peer-API witness: reads the peer site's `<scope>-leader` through its own API server.
async fn peer_api(peer: &PeerApi, timeout: std::time::Duration) -> Witness {
    let object = format!("{}/{}", peer.namespace, peer.leader_configmap);
    match peer_api_get(peer, timeout, &peer.leader_configmap).await {
        Err(why) => Witness::Unknown(why),
        // No lock object: a wrong name or namespace, or a peer Patroni with `use_endpoints`,
        // looks the same as a cluster without a leader. Only the cluster's config object proves
        // the cluster exists (and so that the missing lock means "no leader").
        Ok(PeerAnswer { status: 404, .. }) => {
            let config = config_of(&peer.leader_configmap);
            match peer_api_get(peer, timeout, &config).await {
                Ok(PeerAnswer { status: 200, .. }) => Witness::Here(format!(
                    "peer-API witness: {object} does not exist while {config} does (the peer's \
                     Patroni cluster has no leader lock)"
                )),
                Ok(PeerAnswer { status, .. }) => Witness::Unknown(format!(
                    "peer-API witness: neither {object} nor {config} can be read (HTTP 404, \
                     {status}): check FAILOVER_WITNESS_PEER_LEADER_CONFIGMAP and its namespace"
                )),
                Err(why) => Witness::Unknown(why),
            }
        }
        Ok(a) => peer_lock(&object, a.status, &a.body, a.date),
    }
}

/// The peer's `<scope>-config` next to its `<scope>-leader`.
pub fn config_of(leader_configmap: &str) -> String {
    format!("{}-config", leader_configmap.trim_end_matches("-leader"))
}

/// What the peer's API server answered.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerAnswer {
    pub status: u16,
    pub body: String,
    /// The peer API server's own clock (its `Date` header): a lock's age is judged on the clock
    /// that stamped it, never on ours (two clusters' clocks may disagree by more than a ttl).
    pub date: Option<jiff::Timestamp>,
}

/// An HTTP `Date` (RFC 9110 IMF-fixdate, an RFC 2822 form).
pub fn http_date(text: &str) -> Option<jiff::Timestamp> {
    jiff::fmt::rfc2822::parse(text.trim())
        .ok()
        .map(|z| z.timestamp())
}

/// GET one ConfigMap of the peer's namespace through the peer's API server, or why there is no
/// answer (the witness's text).
pub async fn peer_api_get(
    peer: &PeerApi,
    timeout: std::time::Duration,
    name: &str,
) -> Result<PeerAnswer, String> {
    let token = std::fs::read_to_string(&peer.token_file)
        .map(|t| t.trim().to_string())
        .map_err(|e| {
            format!(
                "peer-API witness: cannot read the token file {}: {e}",
                peer.token_file.display()
            )
        })?;
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout);
    if let Some(pem) = &peer.ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem).unwrap_or_default() {
            builder = builder.add_root_certificate(cert);
        }
    }
    let http = builder
        .build()
        .map_err(|_| "peer-API witness: cannot build its HTTP client".to_string())?;
    let url = format!(
        "{}/api/v1/namespaces/{}/configmaps/{name}",
        peer.url, peer.namespace
    );
    let answer = async {
        let r = http.get(&url).bearer_auth(&token).send().await?;
        let status = r.status().as_u16();
        let date = r
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(http_date);
        Ok::<_, reqwest::Error>(PeerAnswer {
            status,
            body: r.text().await?,
            date,
        })
    };
    match tokio::time::timeout(timeout, answer).await {
        Err(_) => Err(format!(
            "peer-API witness: {} did not answer within {timeout:?}",
            peer.url
        )),
        Ok(Err(e)) => Err(format!(
            "peer-API witness: {} unreachable: {}",
            peer.url,
            e.without_url()
        )),
        Ok(Ok(answer)) => Ok(answer),
    }
}

/// The leader lock as the peer API server returned it, aged on that server's clock (`now`, its
/// `Date`; without one the age cannot be judged: unknown). Renewed within its ttl (+ margin) →
/// alive; expired → down; names no leader → down only once its last renewal is older than the ttl
/// too (before that an election may be running: unknown); absent → unknown here (see
/// [`peer_api`]); anything else (401/403, other errors, unreadable) → unknown.
pub fn peer_lock(object: &str, status: u16, body: &str, now: Option<jiff::Timestamp>) -> Witness {
    let who = "peer-API witness";
    match status {
        200 => {}
        // Judged by the caller, which asks whether the cluster exists at all.
        404 => {
            return Witness::Unknown(format!("{who}: {object} does not exist"));
        }
        s => return Witness::Unknown(format!("{who}: reading {object} answered HTTP {s}")),
    }
    let Ok(cm) = serde_json::from_str::<Value>(body) else {
        return Witness::Unknown(format!("{who}: {object} is not a readable object"));
    };
    let Some(now) = now else {
        return Witness::Unknown(format!(
            "{who}: the peer's API server sent no Date: the lock's age is not judged on this \
             cluster's clock"
        ));
    };
    let ann = &cm["metadata"]["annotations"];
    let leader = ann["leader"].as_str().unwrap_or_default();
    let ttl = ann["ttl"]
        .as_str()
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or(30);
    let Some(renewed) = ann["renewTime"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        if leader.is_empty() {
            return Witness::Here(format!("{who}: {object} names no leader"));
        }
        return Witness::Unknown(format!("{who}: {object} has no readable renewTime"));
    };
    let age = now.duration_since(renewed);
    let limit = jiff::SignedDuration::from_secs(ttl) + LOCK_MARGIN;
    match (leader.is_empty(), age <= limit) {
        (false, true) => Witness::Peer(format!(
            "{who}: {leader} renewed the leader lock {age:#} ago (ttl {ttl}s, the peer API \
             server's clock)"
        )),
        (false, false) => Witness::Here(format!(
            "{who}: the leader lock of {leader} expired, last renewed {age:#} ago (ttl {ttl}s, \
             the peer API server's clock)"
        )),
        (true, true) => Witness::Unknown(format!(
            "{who}: {object} names no leader, changed {age:#} ago (ttl {ttl}s): an election may \
             be running"
        )),
        (true, false) => Witness::Here(format!(
            "{who}: {object} names no leader since at least {age:#} (ttl {ttl}s)"
        )),
    }
}

/// The HTTP witness contract: 200 with `{"primary": "alive"|"down", "reason": "..."}`.
/// Anything else is unknown: the witness fails closed.
pub fn http(status: u16, body: &str) -> Witness {
    #[derive(serde::Deserialize)]
    struct Answer {
        primary: String,
        #[serde(default)]
        reason: Option<String>,
    }
    if status != 200 {
        return Witness::Unknown(format!("HTTP witness answered HTTP {status}"));
    }
    let Ok(answer) = serde_json::from_str::<Answer>(body) else {
        return Witness::Unknown(
            "HTTP witness answered 200 without the expected JSON {\"primary\": \"alive\"|\"down\"}"
                .into(),
        );
    };
    let why = answer
        .reason
        .map(|r| format!(": {}", r.chars().take(200).collect::<String>()))
        .unwrap_or_default();
    match answer.primary.as_str() {
        "alive" => Witness::Peer(format!("HTTP witness says alive{why}")),
        "down" => Witness::Here(format!("HTTP witness says down{why}")),
        other => Witness::Unknown(format!(
            "HTTP witness answered primary={:?}, neither alive nor down",
            other.chars().take(40).collect::<String>()
        )),
    }
}

/// What a DNS witness's answer says about this site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DnsAnswer {
    /// The name resolved to no address.
    Empty,
    /// Only to addresses of this site.
    Here,
    /// To addresses of this site and others.
    Mixed,
    /// Only to the peer site's addresses.
    Peer,
    /// To none of this site's addresses, and not only to the peer's (a GSLB's last-resort
    /// answer, a stale address list): it says nothing about where the application runs.
    Neither,
}

impl DnsAnswer {
    fn read(got: &BTreeSet<IpAddr>, expected: &[IpAddr], peer: &[IpAddr]) -> DnsAnswer {
        if got.is_empty() {
            DnsAnswer::Empty
        } else if got.iter().all(|ip| expected.contains(ip)) {
            DnsAnswer::Here
        } else if got.iter().any(|ip| expected.contains(ip)) {
            DnsAnswer::Mixed
        } else if got.iter().all(|ip| peer.contains(ip)) {
            DnsAnswer::Peer
        } else {
            DnsAnswer::Neither
        }
    }
}

/// The DNS witness: `name` resolved to `got`; this site's addresses are `expected`, the peer's
/// `peer` (may be empty: not configured). `Here` only when it resolves to this site alone, `Peer`
/// only when to the peer's addresses alone; both sites, or neither, is `NotOnlyHere`.
pub fn dns(name: &str, got: &BTreeSet<IpAddr>, expected: &[IpAddr], peer: &[IpAddr]) -> Witness {
    let list = got
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    match DnsAnswer::read(got, expected, peer) {
        DnsAnswer::Empty => Witness::Unknown(format!("DNS witness: {name} resolved to no address")),
        DnsAnswer::Here => {
            Witness::Here(format!("DNS witness: {name} resolves to {list}, this site"))
        }
        DnsAnswer::Mixed => Witness::NotOnlyHere(format!(
            "DNS witness: {name} resolves to {list}, this site and another"
        )),
        DnsAnswer::Peer => Witness::Peer(format!(
            "DNS witness: {name} resolves to {list}, the peer site"
        )),
        DnsAnswer::Neither if peer.is_empty() => Witness::NotOnlyHere(format!(
            "DNS witness: {name} resolves to {list}, not this site (the peer's addresses are not \
             configured: FAILOVER_WITNESS_DNS_PEER_ADDRESSES)"
        )),
        DnsAnswer::Neither => Witness::NotOnlyHere(format!(
            "DNS witness: {name} resolves to {list}, neither this site nor the peer (a last-resort \
             answer or a stale address list)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_witness_contract_fails_closed() {
        let cases: &[(u16, &str, &str)] = &[
            (200, r#"{"primary":"alive"}"#, "alive"),
            (
                200,
                r#"{"primary":"down","reason":"gold health checks failing"}"#,
                "down",
            ),
            (200, r#"{"primary":"maybe"}"#, "unknown"),
            (200, "OK", "unknown"),
            (200, "", "unknown"),
            (204, r#"{"primary":"down"}"#, "unknown"),
            (404, r#"{"primary":"down"}"#, "unknown"),
            (500, "", "unknown"),
            (503, r#"{"primary":"down"}"#, "unknown"),
        ];
        for (status, body, want) in cases {
            let got = match http(*status, body) {
                Witness::Peer(_) => "alive",
                Witness::Here(_) => "down",
                Witness::Unknown(_) => "unknown",
                Witness::NotOnlyHere(_) => "not only here",
            };
            assert_eq!(got, *want, "{status} {body}");
        }
        let Witness::Here(why) = http(200, r#"{"primary":"down","reason":"r1"}"#) else {
            panic!("down expected")
        };
        assert!(why.contains("r1"), "{why}");
    }

    #[tokio::test]
    async fn http_witness_nobody_listening_is_unknown() {
        pgdr_core::tls::install_crypto_provider();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/gold");
        let settings =
            crate::config::tests_support::settings_with(&[("FAILOVER_WITNESS_HTTP_URL", &url)]);
        let got = ask_all(&settings, &reqwest::Client::new()).await;
        assert!(matches!(got.as_slice(), [Witness::Unknown(_)]), "{got:?}");
    }

    /// The lock is aged on the peer API server's clock (its `Date`), never on ours: a 30 s skew
    /// between the clusters no longer turns a live primary into "down" (issue 20 item 8).
    #[test]
    fn peer_api_lock_is_aged_on_the_peer_clock() {
        assert_eq!(
            http_date("Fri, 04 Dec 2026 17:28:32 GMT"),
            Some("2026-12-04T17:28:32Z".parse().unwrap())
        );
        assert_eq!(http_date("yesterday"), None);
        let body = serde_json::json!({"metadata": {"annotations": {"leader": "pg0", "ttl": "30",
            "renewTime": "2026-12-04T17:28:30+00:00"}}})
        .to_string();
        let peer_now = http_date("Fri, 04 Dec 2026 17:28:32 GMT");
        assert!(matches!(
            peer_lock("ns/demo-leader", 200, &body, peer_now),
            Witness::Peer(_)
        ));
        // Without the peer's clock there is no judgement (never ours instead).
        assert!(matches!(
            peer_lock("ns/demo-leader", 200, &body, None),
            Witness::Unknown(_)
        ));
    }

    #[test]
    fn peer_api_lock_table() {
        let now: jiff::Timestamp = "2026-11-23T23:21:00Z".parse().unwrap();
        let lock = |leader: &str, renew: &str| {
            serde_json::json!({"metadata": {"annotations": {"leader": leader, "ttl": "30",
                "renewTime": renew, "acquireTime": "2026-11-23T23:19:50.733460+00:00"}}})
            .to_string()
        };
        let cases = [
            (
                200,
                lock("pg0", "2026-11-23T23:20:50.912478+00:00"),
                "alive",
            ),
            (
                200,
                lock("pg0", "2026-11-23T23:20:25.000000+00:00"),
                "alive",
            ),
            (200, lock("pg0", "2026-11-23T23:20:15.000000+00:00"), "down"),
            // No leader, changed within the ttl: an election may be running.
            (200, lock("", "2026-11-23T23:20:50.912478+00:00"), "unknown"),
            (200, lock("", "2026-11-23T23:20:15.000000+00:00"), "down"),
            // No lock object: judged by the caller (does the cluster exist at all?).
            (404, String::new(), "unknown"),
            (200, lock("pg0", "garbage"), "unknown"),
            (200, "not json".to_string(), "unknown"),
            (401, String::new(), "unknown"),
            (403, String::new(), "unknown"),
            (503, String::new(), "unknown"),
        ];
        for (status, body, want) in cases {
            let got = match peer_lock("ns/demo-leader", status, &body, Some(now)) {
                Witness::Peer(_) => "alive",
                Witness::Here(_) => "down",
                Witness::Unknown(_) => "unknown",
                Witness::NotOnlyHere(_) => "not only here",
            };
            assert_eq!(got, want, "{status} {body}");
        }
    }

    /// The DNS witness in both roles' terms (the standby's table and the primary's, one answer).
    /// A standby reads the answer the same whether the peer's addresses are configured or not.
    #[test]
    fn dns_witness_table() {
        use crate::primary::{Application, application};
        use crate::standby::{PrimarySite, primary_site};
        let here: Vec<IpAddr> = vec!["10.9.0.1".parse().unwrap()];
        let peer: Vec<IpAddr> = vec!["10.1.0.1".parse().unwrap()];
        let set = |ips: &[&str]| {
            ips.iter()
                .map(|i| i.parse().unwrap())
                .collect::<BTreeSet<IpAddr>>()
        };
        // (answer, peer addresses configured, the standby's reading, the primary's)
        let rows: &[(&[&str], bool, PrimarySite, Application)] = &[
            (&["10.9.0.1"], true, PrimarySite::Down, Application::Here),
            (&["10.1.0.1"], true, PrimarySite::Alive, Application::Moved),
            (
                &["10.1.0.1", "10.9.0.1"],
                true,
                PrimarySite::Alive,
                Application::Unknown,
            ),
            (&[], true, PrimarySite::Unknown, Application::Unknown),
            // Issue 20 item 9: an answer naming neither site (a GSLB's last resort, a stale list)
            // is unknown to a primary, and so is any answer when the peer's addresses are not
            // configured.
            (
                &["10.7.0.1"],
                true,
                PrimarySite::Alive,
                Application::Unknown,
            ),
            (
                &["10.1.0.1", "10.7.0.1"],
                true,
                PrimarySite::Alive,
                Application::Unknown,
            ),
            (
                &["10.1.0.1"],
                false,
                PrimarySite::Alive,
                Application::Unknown,
            ),
            (&["10.9.0.1"], false, PrimarySite::Down, Application::Here),
            (
                &["10.1.0.1", "10.9.0.1"],
                false,
                PrimarySite::Alive,
                Application::Unknown,
            ),
            (&[], false, PrimarySite::Unknown, Application::Unknown),
        ];
        for (ips, with_peer, standby, primary) in rows {
            let peer: &[IpAddr] = if *with_peer { &peer } else { &[] };
            let w = dns("a", &set(ips), &here, peer);
            assert_eq!(primary_site(&w), *standby, "{ips:?} {with_peer}: {w:?}");
            assert_eq!(application(&w), *primary, "{ips:?} {with_peer}: {w:?}");
            // The standby ignores whether the peer's addresses are configured.
            let other: &[IpAddr] = if *with_peer {
                &[]
            } else {
                &["10.1.0.1".parse().unwrap()]
            };
            assert_eq!(primary_site(&dns("a", &set(ips), &here, other)), *standby);
        }
    }
}
