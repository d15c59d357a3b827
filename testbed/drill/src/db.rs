//! SQL against a site: the rows the rehearsal writes and counts.
//!
//! Every write is its own autocommit statement, so "acknowledged" has the usual meaning: the
//! server answered the COMMIT. The table records which site took each row.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::error::{DrillError, Result};

pub const TABLE: &str = "drill_rows";

/// One connection to one PostgreSQL server (a Service address or a pod address).
pub struct Db {
    client: Client,
    target: String,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Db {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Db {
    /// Connects as the superuser; `timeout` bounds the connection attempt.
    pub async fn connect(addr: SocketAddr, password: &str, timeout: Duration) -> Result<Db> {
        let target = addr.to_string();
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(addr.ip().to_string())
            .port(addr.port())
            .user("postgres")
            .password(password)
            .dbname("postgres")
            .application_name("pgdr-drill")
            .connect_timeout(timeout);
        let connect = async { cfg.connect(NoTls).await };
        let (client, conn) = match tokio::time::timeout(timeout, connect).await {
            Ok(r) => r.map_err(|source| DrillError::Sql {
                target: target.clone(),
                source,
            })?,
            Err(_) => {
                return Err(DrillError::Timeout {
                    what: format!("connecting to PostgreSQL at {target}"),
                    waited: timeout,
                });
            }
        };
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Db {
            client,
            target,
            driver,
        })
    }

    fn err(&self, source: tokio_postgres::Error) -> DrillError {
        DrillError::Sql {
            target: self.target.clone(),
            source,
        }
    }

    /// Whether the server is a writable primary (not in recovery, not read-only).
    pub async fn writable(&self) -> Result<bool> {
        let row = self
            .client
            .query_one(
                "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'",
                &[],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.get(0))
    }

    pub async fn create_table(&self) -> Result<()> {
        self.client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY, site text NOT NULL, \
                 at timestamptz NOT NULL DEFAULT now())"
            ))
            .await
            .map_err(|e| self.err(e))
    }

    /// Inserts one row in its own transaction; Ok means the commit was acknowledged.
    pub async fn insert(&self, id: i64, site: &str) -> Result<()> {
        self.client
            .execute(
                &format!("INSERT INTO {TABLE} (id, site) VALUES ($1, $2)"),
                &[&id, &site],
            )
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Every row id present.
    pub async fn ids(&self) -> Result<BTreeSet<i64>> {
        let rows = self
            .client
            .query(&format!("SELECT id FROM {TABLE}"), &[])
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// State of the WAL receiver (`streaming`, ...) on a standby; None when there is none.
    pub async fn wal_receiver(&self) -> Result<Option<String>> {
        let rows = self
            .client
            .query("SELECT status FROM pg_stat_wal_receiver", &[])
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.first().map(|r| r.get(0)))
    }
}
