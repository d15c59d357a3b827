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
        identity_from_row(&cols).map_err(IdentifyError::Unusable)
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
