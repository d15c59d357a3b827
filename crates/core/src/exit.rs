//! Exit codes shared by the three binaries, so a Job's status means the same everywhere.
//!
//! | code | meaning | used by |
//! |---|---|---|
//! | 0 | done (or, for failover: no action needed, blocked, would promote, promoted, already primary) | all |
//! | 1 | the run failed (Kubernetes API after retries, tunnel not ready, a refusal, the server) | all |
//! | 2 | bad configuration (the message names the variable) | all |
//! | 3 | the failover state ConfigMap is unusable; it was left untouched | failover |
//! | 4 | promotion attempted but failed or was not confirmed within the deadline | failover |

/// Done.
pub const OK: u8 = 0;
/// The run failed; the message says why and what to do.
pub const FAILED: u8 = 1;
/// Bad configuration (the message names the variable).
pub const CONFIG: u8 = 2;
/// The failover state ConfigMap holds something unusable; it was left untouched.
pub const STATE: u8 = 3;
/// A promotion was attempted but failed or was not confirmed within its deadline.
pub const PROMOTION: u8 = 4;
