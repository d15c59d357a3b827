//! Observe: everything one standby-role sample looks at (the witnesses: [`crate::witness`]). Network I/O only; no decisions.
//!
//! Failures of the primary site, the local leader or the witness are *observations* (they go into
//! the [`Sample`]); only a failing Kubernetes API is an error, because then nothing can be
//! decided safely.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::Value;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{NoTls, Socket};

use pgdr_core::dynamic_config;
use pgdr_core::k8s::Kube;
use pgdr_core::patroni::{MemberStatus, PatroniClient, PatroniClientConfig};

use crate::Error;
use crate::config::{Settings, SslMode};
use crate::standby::{Leader, LocalLeader, Probe, Sample, SiteConfig};
use crate::tls::Handshake;

/// The local site's dynamic config: standby or not, and whether Patroni is paused there.
pub async fn site_config(kube: &Kube, name: &str) -> Result<(SiteConfig, bool), Error> {
    let Some(cm) = kube.get_opt(&kube.config_maps(), name).await? else {
        return Ok((
            SiteConfig::Malformed(format!("ConfigMap {} does not exist", kube.object(name))),
            false,
        ));
    };
    let text = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(dynamic_config::CONFIG_ANNOTATION));
    let Some(text) = text else {
        return Ok((
            SiteConfig::Malformed(format!(
                "ConfigMap {} has no config annotation",
                kube.object(name)
            )),
            false,
        ));
    };
    Ok(match dynamic_config::parse(text) {
        Ok(map) => {
            let paused = map.get("pause").is_some_and(|v| v.as_bool() == Some(true));
            let site = if dynamic_config::is_standby_cluster(&map) {
                SiteConfig::Standby
            } else {
                SiteConfig::NotStandby
            };
            (site, paused)
        }
        Err(e) => (
            SiteConfig::Malformed(format!("{}: {e}", kube.object(name))),
            false,
        ),
    })
}

/// Where the local leader's REST API is: the configured URL, or the lock holder's `api_url`.
/// `Err` carries the observation when there is no leader to ask.
pub async fn leader_url(
    settings: &Settings,
    kube: &Kube,
) -> Result<Result<(String, String), LocalLeader>, Error> {
    if let Some(url) = &settings.config.patroni_url {
        return Ok(Ok((
            "(FAILOVER_PATRONI_URL)".into(),
            url.expose().to_string(),
        )));
    }
    let lock = settings.leader_map();
    let Some(cm) = kube.get_opt(&kube.config_maps(), &lock).await? else {
        return Ok(Err(LocalLeader::Missing(format!(
            "ConfigMap {} does not exist",
            kube.object(&lock)
        ))));
    };
    let annotations = cm.metadata.annotations.unwrap_or_default();
    let Some(name) = annotations.get("leader").filter(|n| !n.is_empty()) else {
        return Ok(Err(LocalLeader::Missing(format!(
            "{} names no leader",
            kube.object(&lock)
        ))));
    };
    let Some(pod) = kube.get_opt(&kube.api::<Pod>(), name).await? else {
        return Ok(Err(LocalLeader::Missing(format!(
            "leader Pod {} does not exist",
            kube.object(name)
        ))));
    };
    let api_url = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("status"))
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| v.get("api_url").and_then(Value::as_str).map(str::to_string));
    match api_url {
        Some(url) => Ok(Ok((
            name.clone(),
            url.trim_end_matches("/patroni").to_string(),
        ))),
        None => Ok(Err(LocalLeader::Unreachable {
            name: name.clone(),
            reason: "its Pod has no api_url in the status annotation".into(),
        })),
    }
}

pub fn patroni_client(
    settings: &Settings,
    url: &str,
) -> Result<PatroniClient, pgdr_core::patroni::PatroniError> {
    let c = &settings.config;
    PatroniClient::new(&PatroniClientConfig {
        url: url.to_string(),
        timeout: c.probe_timeout.get(),
        username: c.patroni_username.clone(),
        password: c.patroni_password.clone(),
        ca_file: None,
    })
}

/// The local leader as its REST API reports it.
pub async fn local_leader(
    settings: &Settings,
    kube: &Kube,
) -> Result<(LocalLeader, Option<PatroniClient>), Error> {
    let (name, url) = match leader_url(settings, kube).await? {
        Ok(found) => found,
        Err(observed) => return Ok((observed, None)),
    };
    let client = match patroni_client(settings, &url) {
        Ok(c) => c,
        Err(e) => {
            return Ok((
                LocalLeader::Unreachable {
                    name,
                    reason: e.to_string(),
                },
                None,
            ));
        }
    };
    let status = client.member_status().await;
    Ok(match status {
        Ok(s) => (LocalLeader::Found(leader_from(&name, &s)), Some(client)),
        Err(e) => (
            LocalLeader::Unreachable {
                name,
                reason: e.short(),
            },
            Some(client),
        ),
    })
}

pub fn leader_from(name: &str, s: &MemberStatus) -> Leader {
    let name = s
        .patroni
        .as_ref()
        .and_then(|p| p.name.clone())
        .unwrap_or_else(|| name.to_string());
    Leader {
        name,
        role: s.role.clone(),
        state: s.state.clone(),
        replication_state: s.replication_state.clone(),
        received_lsn: s.xlog.as_ref().and_then(|x| x.received_location),
        replayed_lsn: s.xlog.as_ref().and_then(|x| x.replayed_location),
        pause: s.pause,
    }
}

/// Why the tunnel Service gives no target: the sample says nothing about the peer (a Service
/// being reconciled is not a dying site).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TunnelUnusable {
    #[error("tunnel Service {0} does not exist")]
    Missing(String),
    #[error("tunnel Service {0} has no port")]
    NoPort(String),
}

/// Host and port of the tunnel: the Service's cluster IP (what its DNS name resolves to) and
/// `.spec.ports[0].port`, read at every sample because the platform may change the port.
/// Headless or IP-less Services fall back to the DNS name `<name>.<namespace>.svc`.
pub async fn tunnel_target(
    settings: &Settings,
    kube: &Kube,
) -> Result<Result<(String, u16), TunnelUnusable>, Error> {
    let name = &settings.config.tunnel_service;
    let Some(svc) = kube.get_opt(&kube.api::<Service>(), name).await? else {
        return Ok(Err(TunnelUnusable::Missing(kube.object(name))));
    };
    let spec = svc.spec.unwrap_or_default();
    let Some(port) = spec
        .ports
        .as_ref()
        .and_then(|p| p.first())
        .and_then(|p| u16::try_from(p.port).ok())
    else {
        return Ok(Err(TunnelUnusable::NoPort(kube.object(name))));
    };
    let host = match spec.cluster_ip.as_deref() {
        Some(ip) if ip.parse::<IpAddr>().is_ok() => ip.to_string(),
        _ => format!("{name}.{}.svc", kube.namespace),
    };
    Ok(Ok((host, port)))
}

/// PostgreSQL-protocol probe: connect as the replication user, ask whether the server is in
/// recovery and where its WAL is. Any PostgreSQL answer, even an error, means the far side is
/// alive; only silence (refused, reset, timeout) is a failure.
///
/// With TLS (`FAILOVER_TUNNEL_SSLMODE`, see [`crate::tls`]), the server's answer to the SSL
/// request is such an answer too: a server that declined TLS under `require`/`verify-ca`, or
/// agreed and then failed the handshake or the certificate check, is alive and misconfigured
/// (rejected, never a reason to promote), not silent.
pub async fn probe(settings: &Settings, host: &str, port: u16) -> Probe {
    probe_seeing(settings, host, port).await.0
}

/// [`probe`], and the promotion epoch of the server's marker when it answered with a readable
/// one (the agent records it as seen: a later promotion of this site is numbered above it).
pub async fn probe_seeing(settings: &Settings, host: &str, port: u16) -> (Probe, Option<u64>) {
    let c = &settings.config;
    let timeout = c.probe_timeout.get();
    let pg = pg_config(settings, host, port);
    let (connector, handshake) = match &settings.tls {
        None => (None, None),
        Some(tls) => {
            let (connector, handshake) = tls.connector();
            (Some(connector), Some(handshake))
        }
    };
    let attempt = async {
        match connector {
            None => status_query(&pg, NoTls).await,
            Some(connector) => status_query(&pg, connector).await,
        }
    };
    let handshake = || {
        handshake
            .as_ref()
            .map(|h| h.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or(Handshake::NotStarted)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => (
            Probe::NoAnswer {
                reason: match handshake() {
                    Handshake::Started => {
                        format!("no answer within {timeout:?} (stalled in the TLS handshake)")
                    }
                    _ => format!("no answer within {timeout:?}"),
                },
            },
            None,
        ),
        Ok(Err(e)) => (classify(&e, &handshake(), c.tunnel_sslmode), None),
        Ok(Ok(Err(e))) => {
            tracing::debug!(error = %e, "probe connected but the status query failed");
            (
                Probe::Accepting {
                    in_recovery: None,
                    lsn: None,
                },
                None,
            )
        }
        Ok(Ok(Ok(messages))) => {
            let row = messages.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            });
            let in_recovery = row.and_then(|r| r.get(0)).map(|v| v == "true");
            let lsn = row.and_then(|r| r.get(1)).and_then(|text| {
                let parsed = parse_lsn(text);
                if parsed.is_none() {
                    tracing::warn!(
                        lsn = text,
                        "the primary reported a WAL position that is not an LSN; the lag guard \
                         cannot use this sample's position"
                    );
                }
                parsed
            });
            let epoch = row
                .and_then(|r| r.get(2))
                .filter(|t| !t.trim().is_empty())
                .and_then(|t| pgdr_core::lineage::PromotionMarker::parse(t).ok())
                .map(|m| m.epoch);
            (Probe::Accepting { in_recovery, lsn }, epoch)
        }
    }
}

/// The probe's connection settings: the replication user into the probe database.
pub fn pg_config(settings: &Settings, host: &str, port: u16) -> tokio_postgres::Config {
    let c = &settings.config;
    let mut pg = tokio_postgres::Config::new();
    pg.host(host)
        .port(port)
        .user(&c.replication_user)
        .password(c.replication_password.expose())
        .dbname(&c.probe_database)
        .application_name("pgdr-failover-probe")
        .connect_timeout(c.probe_timeout.get())
        .ssl_mode(c.tunnel_sslmode.driver_mode());
    pg
}

/// The server's identity (`pgdr_core::lineage::identify`) with the probe's user and TLS.
pub async fn identity(
    settings: &Settings,
    host: &str,
    port: u16,
) -> Result<pgdr_core::lineage::Identity, pgdr_core::lineage::IdentifyError> {
    let pg = pg_config(settings, host, port);
    pgdr_core::lineage::identify_with(
        &pg,
        settings.tls.as_ref(),
        settings.config.probe_timeout.get(),
    )
    .await
}

type StatusRows = Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error>;

/// Connects (the outer `Result`) and runs the status query (the inner one).
async fn status_query<T>(
    pg: &tokio_postgres::Config,
    tls: T,
) -> Result<StatusRows, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = pg.connect(tls).await?;
    let driver = tokio::spawn(connection);
    let rows = client
        .simple_query(
            concat!(
                "SELECT pg_is_in_recovery()::text, \
                 CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn()::text END, \
                 current_setting('",
                pgdr_core::contract::marker_guc!(),
                "', true)"
            ),
        )
        .await;
    drop(client);
    driver.abort();
    Ok(rows)
}

/// A server error message (auth, starting up, too many clients) is an answer, and so is the
/// server's side of the TLS negotiation (see [`probe`]); anything else (I/O, closed connection,
/// garbage) is not.
fn classify(e: &tokio_postgres::Error, handshake: &Handshake, mode: SslMode) -> Probe {
    if let Some(db) = e.as_db_error() {
        return Probe::Rejected {
            reason: format!("{} {}", db.code().code(), db.message()),
        };
    }
    let detail = match std::error::Error::source(e) {
        Some(src) => format!("{e}: {src}"),
        None => e.to_string(),
    };
    let mode = mode_name(mode);
    match handshake {
        // The server answered `S` to the SSL request: only a PostgreSQL server does.
        Handshake::Failed(why) => Probe::Rejected {
            reason: format!(
                "the server agreed to TLS but the handshake failed (sslmode={mode}): {why}"
            ),
        },
        // tokio-postgres' only TLS error before a handshake, with a host name given, is the
        // server's `N` under sslmode=require (pinned by `probe_of_a_server_declining_tls...`).
        Handshake::NotStarted if is_tls_error(e) => Probe::Rejected {
            reason: format!("the server declined TLS (sslmode={mode}): {detail}"),
        },
        _ => Probe::NoAnswer { reason: detail },
    }
}

/// tokio-postgres does not expose its error kind; its `Display` is the kind alone.
fn is_tls_error(e: &tokio_postgres::Error) -> bool {
    e.to_string() == "error performing TLS handshake"
}

fn mode_name(mode: SslMode) -> &'static str {
    mode.as_str()
}

/// `0/5000A28` → bytes (one parser for the workspace: `pgdr_core::lineage`).
pub use pgdr_core::lineage::parse_lsn;

/// One sample: the tunnel probe, the local site, the witness — concurrently, each bounded.
/// One standby-role sample, the local leader's REST client, and the peer's promotion epoch when
/// its probe read one.
pub async fn sample(
    settings: &Settings,
    kube: &Kube,
    run_id: &str,
) -> Result<(Sample, Option<PatroniClient>, Option<u64>), Error> {
    let http = reqwest::Client::builder()
        .timeout(settings.config.probe_timeout.get())
        .build()
        .expect("a plain reqwest client always builds");
    let probe = async {
        Ok::<_, Error>(match tunnel_target(settings, kube).await? {
            Ok((host, port)) => probe_seeing(settings, &host, port).await,
            // A Service being reconciled is not a dying primary site: no opinion.
            Err(unusable) => {
                let reason = unusable.to_string();
                tracing::warn!(%reason, "tunnel Service unusable: this sample is unknown (not counted)");
                (Probe::Unknown { reason }, None)
            }
        })
    };
    let config_map = settings.config_map();
    let (probe, site, leader, witnesses) = tokio::join!(
        probe,
        site_config(kube, &config_map),
        local_leader(settings, kube),
        crate::witness::ask_all(settings, &http),
    );
    let (site, config_paused) = site?;
    let (leader, patroni) = leader?;
    let (probe, peer_epoch) = probe?;
    Ok((
        Sample {
            at: jiff::Timestamp::now(),
            run: run_id.to_string(),
            probe,
            site,
            leader,
            witnesses,
            // Filled in from the state ConfigMap read just before deciding.
            hold: false,
            config_paused,
        },
        patroni,
        peer_epoch,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lsn_parsing() {
        assert_eq!(parse_lsn("0/3000060"), Some(0x3000060));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("x"), None);
        assert_eq!(parse_lsn("0/zz"), None);
    }

    #[tokio::test]
    async fn probe_of_a_closed_port_is_no_answer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let settings = crate::config::tests_support::settings();
        match probe(&settings, "127.0.0.1", port).await {
            Probe::NoAnswer { .. } => {}
            other => panic!("{other:?}"),
        }
    }

    /// A fake server: reads the 8-byte SSLRequest, answers `reply`, then sends `after` and closes.
    async fn fake_server(
        reply: &'static [u8],
        after: &'static [u8],
    ) -> (u16, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 8];
            conn.read_exact(&mut request).await.unwrap();
            // Length 8, code 80877103: the SSLRequest.
            assert_eq!(request, [0, 0, 0, 8, 4, 210, 22, 47]);
            conn.write_all(reply).await.unwrap();
            conn.write_all(after).await.unwrap();
            let _ = conn.shutdown().await;
        });
        (port, task)
    }

    fn tls_settings(mode: &str) -> Settings {
        crate::config::tests_support::settings_with(&[("FAILOVER_TUNNEL_SSLMODE", mode)])
    }

    #[tokio::test]
    async fn probe_of_a_server_declining_tls_under_require_is_rejected() {
        // `N`: a PostgreSQL server with ssl=off. Alive, so never a reason to promote.
        let (port, server) = fake_server(b"N", b"").await;
        match probe(&tls_settings("require"), "127.0.0.1", port).await {
            Probe::Rejected { reason } => {
                assert!(
                    reason.contains("declined TLS (sslmode=require)"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        server.await.unwrap();
    }

    #[tokio::test]
    async fn probe_of_a_failed_tls_handshake_is_rejected() {
        // `S`, then not TLS: the server answered, the handshake failed.
        let (port, server) = fake_server(b"S", b"this is not a TLS ServerHello").await;
        match probe(&tls_settings("require"), "127.0.0.1", port).await {
            Probe::Rejected { reason } => {
                assert!(
                    reason.contains("agreed to TLS but the handshake failed"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        server.await.unwrap();
    }

    #[tokio::test]
    async fn probe_closed_before_the_tls_answer_is_no_answer() {
        // What the tunnel does when it cannot reach the primary: accept, then close.
        for mode in ["prefer", "require"] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                let (conn, _) = listener.accept().await.unwrap();
                drop(conn);
            });
            match probe(&tls_settings(mode), "127.0.0.1", port).await {
                Probe::NoAnswer { .. } => {}
                other => panic!("{mode}: {other:?}"),
            }
            server.await.unwrap();
        }
    }

    #[tokio::test]
    async fn probe_of_a_closed_port_under_require_is_no_answer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        match probe(&tls_settings("require"), "127.0.0.1", port).await {
            Probe::NoAnswer { .. } => {}
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn probe_of_a_silent_server_times_out() {
        // Accepts TCP but never speaks: a blackholed tunnel.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let _conn = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let settings = crate::config::tests_support::settings();
        let started = std::time::Instant::now();
        match probe(&settings, "127.0.0.1", port).await {
            Probe::NoAnswer { reason } => assert!(reason.contains("no answer within"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        hold.abort();
    }
}
