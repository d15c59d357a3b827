//! End-to-end scenarios live in `tests/`; this library holds what several of them share.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;

pub mod pair;

/// Runs a scenario and catches its panic (a failed assertion), so the caller can still print
/// diagnostics and stop both sites before failing the test.
pub async fn catching(scenario: impl Future<Output = ()>) -> Result<(), Box<dyn Any + Send>> {
    AssertUnwindSafe(scenario).catch_unwind().await
}
