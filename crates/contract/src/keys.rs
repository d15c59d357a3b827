//! Names in Patroni's DCS objects (`<scope>-config`, `<scope>-leader`) that we read or write.
//! Patroni's own names are from its Kubernetes DCS and `global_config.py`; ours are the keys
//! Patroni keeps untouched because it does not know them.

/// Annotation of `<scope>-config` holding the dynamic config JSON.
pub const CONFIG_ANNOTATION: &str = "config";
/// Annotation of `<scope>-config` holding the system identifier once the cluster bootstrapped.
/// Removing it (with no leader) makes Patroni bootstrap the cluster again (a standby clones).
pub const INITIALIZE_ANNOTATION: &str = "initialize";
/// Annotation of `<scope>-config` holding Patroni's cluster history (timeline switches).
pub const HISTORY_ANNOTATION: &str = "history";

/// Dynamic config: the standby-cluster section (present and truthy: a standby cluster).
pub const STANDBY_CLUSTER: &str = "standby_cluster";
/// Dynamic config: permanent replication slots.
pub const SLOTS: &str = "slots";
/// Dynamic config: Patroni paused (maintenance mode).
pub const PAUSE: &str = "pause";
/// Dynamic config: the `postgresql` section and its `parameters`.
pub const POSTGRESQL: &str = "postgresql";
pub const PARAMETERS: &str = "parameters";

/// Dynamic config: our fence document ([`crate::fence`]); absent or null means not fenced.
pub const FENCE: &str = "pgdr_fence";
/// Dynamic config: the highest promotion epoch this site has seen at its peer ([`crate::epoch`]).
pub const EPOCH_SEEN: &str = "pgdr_epoch_seen";
/// Dynamic config: evidence that the peer did not promote past this site ([`crate::vouch`]).
pub const PEER_VOUCH: &str = "pgdr_peer_vouch";
