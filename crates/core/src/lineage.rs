//! Reading a server's identity (I/O): one SQL query to a site ([`IDENTITY_SQL`]). The pure
//! rules (identities, the promotion marker, which site is authoritative) are the contract's
//! ([`pgdr_contract::lineage`]), re-exported here for the binaries.

use std::time::Duration;

use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{SimpleQueryMessage, Socket};

pub use pgdr_contract::lineage::*;

/// Why [`identify`] has no identity. Mirrors the failover probe's distinction: a server that
/// answered (even with an error) is alive; silence is not evidence of anything else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifyError {
    #[error("no answer: {0}")]
    NoAnswer(String),
    #[error("the server answered with an error: {0}")]
    Rejected(String),
    #[error("the server answered but its identity is unusable: {0}")]
    Unusable(String),
    /// There is no address to ask (e.g. a member without a `conn_url`).
    #[error("{0}")]
    NoAddress(String),
}

/// Connects with `pg` and `tls`, runs [`IDENTITY_SQL`], all within `timeout`.
pub async fn identify<T>(
    pg: &tokio_postgres::Config,
    tls: T,
    timeout: Duration,
) -> Result<Identity, IdentifyError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let attempt = async {
        let (client, connection) = pg.connect(tls).await.map_err(classify)?;
        let driver = tokio::spawn(connection);
        let rows = client.simple_query(IDENTITY_SQL).await;
        drop(client);
        driver.abort();
        let rows = rows.map_err(classify)?;
        let row = rows
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .ok_or_else(|| IdentifyError::Unusable("the identity query returned no row".into()))?;
        let cols: Vec<Option<&str>> = (0..row.len()).map(|i| row.get(i)).collect();
        identity_from_row(&cols).map_err(|e| IdentifyError::Unusable(e.to_string()))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(IdentifyError::NoAnswer(format!(
            "no answer within {timeout:?}"
        ))),
    }
}

fn classify(e: tokio_postgres::Error) -> IdentifyError {
    match e.as_db_error() {
        Some(db) => IdentifyError::Rejected(format!("{} {}", db.code().code(), db.message())),
        None => IdentifyError::NoAnswer(match std::error::Error::source(&e) {
            Some(src) => format!("{e}: {src}"),
            None => e.to_string(),
        }),
    }
}

/// [`identify`] with the tunnel's TLS ([`crate::tls::ProbeTls`]; `None`: plain text).
pub async fn identify_with(
    pg: &tokio_postgres::Config,
    tls: Option<&crate::tls::ProbeTls>,
    timeout: Duration,
) -> Result<Identity, IdentifyError> {
    match tls {
        None => identify(pg, tokio_postgres::NoTls, timeout).await,
        Some(tls) => identify(pg, tls.connector().0, timeout).await,
    }
}

/// What one look at the peer found ([`check_peer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerView {
    /// No answer: silence is not evidence of anything else.
    Silent(String),
    /// It answered, but with an error or an unusable identity: alive, not judged.
    Unidentified(String),
    Seen(Box<Sighting>),
}

/// The peer identified, and this site's own identity (or why it is unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub peer: Identity,
    pub own: Result<Identity, IdentifyError>,
}

impl Sighting {
    pub fn writable(&self) -> bool {
        !self.peer.in_recovery
    }

    /// How the peer relates to this site ([`lineage`]); `Err`: our own identity is unknown.
    pub fn lineage(&self) -> Result<Lineage, &IdentifyError> {
        match &self.own {
            Ok(own) => Ok(lineage(own, &self.peer)),
            Err(why) => Err(why),
        }
    }
}

/// The one lineage check of the agent and the sidecar: identify the peer (through the tunnel)
/// and this site (locally) at once. Authority is the promotion epoch ([`lineage`]), so nothing
/// else is read.
pub async fn check_peer<P, O>(peer: P, own: O) -> PeerView
where
    P: std::future::Future<Output = Result<Identity, IdentifyError>>,
    O: std::future::Future<Output = Result<Identity, IdentifyError>>,
{
    let (peer, own) = tokio::join!(peer, own);
    match peer {
        Ok(peer) => PeerView::Seen(Box::new(Sighting { peer, own })),
        Err(IdentifyError::NoAnswer(why)) => PeerView::Silent(why),
        Err(IdentifyError::Rejected(why) | IdentifyError::Unusable(why)) => {
            PeerView::Unidentified(why)
        }
        // Never from a peer identity (its address is the tunnel's); said as it is.
        Err(e @ IdentifyError::NoAddress(_)) => PeerView::Silent(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(timeline: u32, in_recovery: bool, marker: Option<(u32, u64)>) -> Identity {
        Identity {
            system_id: "7000".into(),
            timeline,
            in_recovery,
            wal_end: 0x6000000,
            marker: marker.map(|(timeline, fork_lsn)| PromotionMarker {
                epoch: 1,
                fork_pending: false,
                timeline,
                fork_lsn,
                site: "golddr".into(),
                at: String::new(),
            }),
        }
    }

    async fn look(
        peer: Result<Identity, IdentifyError>,
        own: Result<Identity, IdentifyError>,
    ) -> PeerView {
        check_peer(async { peer }, async { own }).await
    }

    /// The agent and the sidecar read the same verdict from one look: silence, an answer without
    /// an identity, a standby, a writable peer judged against us, or our own identity missing.
    #[tokio::test]
    async fn one_look_at_the_peer() {
        let silent = look(
            Err(IdentifyError::NoAnswer("refused".into())),
            Ok(id(1, false, None)),
        );
        assert_eq!(silent.await, PeerView::Silent("refused".into()));
        let rejected = look(
            Err(IdentifyError::Rejected("28P01 password".into())),
            Ok(id(1, false, None)),
        );
        assert_eq!(
            rejected.await,
            PeerView::Unidentified("28P01 password".into())
        );

        let PeerView::Seen(standby) = look(Ok(id(1, true, None)), Ok(id(1, false, None))).await
        else {
            panic!("a standby is seen")
        };
        assert!(!standby.writable());
        assert_eq!(standby.lineage(), Ok(Lineage::SameTimeline));

        let PeerView::Seen(forked) =
            look(Ok(id(2, false, Some((1, 0x500)))), Ok(id(1, false, None))).await
        else {
            panic!("a writable peer is seen")
        };
        assert!(forked.writable());
        assert_eq!(
            forked.lineage(),
            Ok(Lineage::PeerAuthoritative {
                epoch: 1,
                fork_lsn: 0x500,
                timeline: 1,
                fork_pending: false,
            })
        );

        let PeerView::Seen(unknown_self) = look(
            Ok(id(2, false, None)),
            Err(IdentifyError::NoAddress("no conn_url".into())),
        )
        .await
        else {
            panic!("the peer is seen even when we are not")
        };
        assert_eq!(
            unknown_self.lineage(),
            Err(&IdentifyError::NoAddress("no conn_url".into()))
        );
    }
}
