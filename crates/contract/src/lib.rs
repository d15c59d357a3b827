//! The contract between the Patroni DR processes: the failover agent, the readiness sidecar, the
//! port-patch Job and the `kubectl pgdr` plugin read and write the same documents in Patroni's
//! dynamic config and over HTTP. Each document, key and rule that crosses a process boundary is
//! defined here once, as a type, so that no process compares another's words as strings.
//!
//! Pure data and rules: no I/O (the reading and writing lives with each binary), so the plugin,
//! which must not link the agents' Kubernetes and Patroni clients, depends on it too.
//!
//! - [`keys`]: the names in Patroni's DCS objects that we read or write.
//! - [`dynamic_config`]: parsing Patroni's `config` annotation and its standby-cluster rule.
//! - [`lsn`]: PostgreSQL's `X/Y` positions.
//! - [`marker`]: the promotion marker a promotion leaves (`pgdr.promoted_from`).
//! - [`epoch`]: the promotion epoch that orders promotions (the fencing token).
//! - [`lineage`]: which of two sites is authoritative, from their identities and markers.
//! - [`fence`]: the `pgdr_fence` document, its phases and `standby_cluster` forms.
//! - [`slot`]: the one replication slot between the sites, and what a promotion declares.
//! - [`role`]: Patroni's member roles and "a writable primary".
//! - [`sidecar`]: the readiness sidecar's `/status` parts the agent reads back.
//! - [`promote`]: what every promotion writes (agent and plugin alike).
//! - [`promotion_record`]: the durable record of a promotion port-patch honours.
//! - [`vouch`]: evidence that the peer did not promote past a primary that has not seen it.

pub mod dynamic_config;
pub mod epoch;
pub mod fence;
pub mod keys;
pub mod lineage;
pub mod lsn;
pub mod marker;
pub mod promote;
pub mod promotion_record;
pub mod role;
pub mod sidecar;
pub mod slot;
pub mod vouch;

#[cfg(test)]
mod props;
