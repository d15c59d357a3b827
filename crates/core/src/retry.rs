//! Retries: jittered exponential backoff (`backon`) bounded by a hard overall deadline.

use std::fmt::Display;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};

/// Backoff used by default: 250 ms doubling to 5 s, with jitter so that concurrent Jobs spread out.
pub fn default_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(usize::MAX)
}

/// Backoff for calls inside a short budget (one failover sample, one Event): 100 ms doubling
/// to 2 s, so several attempts fit in a few seconds.
pub fn fast_backoff() -> ExponentialBuilder {
    default_backoff()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
}

/// One round of a compare-and-set loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Cas<T> {
    /// Written (or nothing to write); the loop ends with this value.
    Done(T),
    /// Someone else wrote first: read again and redo the round.
    Lost,
}

/// The one compare-and-set loop: runs `round` (read, compute, conditional write) until it is
/// not lost, at most `rounds` times. `Ok(None)` means every round was lost (contention); an
/// error of a round ends the loop at once.
pub async fn compare_and_set<T, E, F, Fut>(rounds: u32, mut round: F) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Cas<T>, E>>,
{
    for i in 0..rounds {
        match round().await? {
            Cas::Done(v) => return Ok(Some(v)),
            Cas::Lost => tracing::info!(
                round = i + 1,
                "compare-and-set lost to another writer; reading again"
            ),
        }
    }
    Ok(None)
}

/// How a retried operation ended without success.
#[derive(Debug)]
pub enum RetryError<E> {
    /// The operation failed with an error that retrying cannot fix.
    Fatal(E),
    /// The deadline passed; `last` is the last retryable error seen (rendered), if any.
    Deadline {
        elapsed: Duration,
        last: Option<String>,
    },
}

/// How long the server asked us to wait before the next attempt: a Kubernetes API `Status` with
/// `details.retryAfterSeconds` (what the API server sends with a 429 from priority and fairness,
/// and with some 503s, beside its `Retry-After` header). `None` for any other error.
pub fn server_retry_after<E: 'static>(e: &E) -> Option<Duration> {
    let any: &dyn std::any::Any = e;
    match any.downcast_ref::<kube::Error>()? {
        kube::Error::Api(status) => status
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(u64::from(s))),
        _ => None,
    }
}

/// Runs `op` until it succeeds, fails with a non-retryable error, or `deadline` passes.
/// Each retry is logged at `warn` with `what` so a Job's log shows what it was waiting for.
/// A server that says when to come back ([`server_retry_after`]) is not asked again before
/// then; the deadline still bounds the whole (a longer wait ends as `Deadline`).
pub async fn until_deadline<T, E, Fut, F, R>(
    what: &str,
    deadline: Duration,
    backoff: ExponentialBuilder,
    op: F,
    retryable: R,
) -> Result<T, RetryError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    R: Fn(&E) -> bool,
    E: Display + 'static,
{
    let started = Instant::now();
    let last: Mutex<Option<String>> = Mutex::new(None);
    // The deadline is enforced by the timeout below, not by a sleep budget: backon's
    // `with_total_delay` would give up early, when the next sleep no longer fits.
    let attempt = op
        .retry(backoff)
        .when(|e| retryable(e))
        .adjust(|e, wait| wait.map(|w| server_retry_after(e).map_or(w, |asked| asked.max(w))))
        .notify(|e, wait| {
            tracing::warn!(what, error = %e, retry_in_ms = wait.as_millis() as u64, "not yet, retrying");
            *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        });
    let outcome = tokio::time::timeout(deadline, attempt).await;
    let last = last.into_inner().unwrap_or_else(|p| p.into_inner());
    match outcome {
        Ok(Ok(v)) => Ok(v),
        // Only reachable when the caller's backoff has a retry limit.
        Ok(Err(e)) if retryable(&e) => Err(RetryError::Deadline {
            elapsed: started.elapsed(),
            last: Some(e.to_string()),
        }),
        Ok(Err(e)) => Err(RetryError::Fatal(e)),
        Err(_) => Err(RetryError::Deadline {
            elapsed: started.elapsed(),
            last,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug, PartialEq)]
    enum E {
        Transient(u32),
        Fatal,
    }
    impl Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    fn fast() -> ExponentialBuilder {
        default_backoff()
            .with_min_delay(Duration::from_millis(1))
            .with_max_delay(Duration::from_millis(5))
    }

    #[tokio::test]
    async fn succeeds_after_transient_errors() {
        let n = AtomicU32::new(0);
        let r = until_deadline(
            "t",
            Duration::from_secs(5),
            fast(),
            || async {
                let i = n.fetch_add(1, Ordering::SeqCst);
                if i < 3 { Err(E::Transient(i)) } else { Ok(i) }
            },
            |e| matches!(e, E::Transient(_)),
        )
        .await;
        assert_eq!(r.unwrap(), 3);
    }

    #[tokio::test]
    async fn fatal_stops_at_once() {
        let n = AtomicU32::new(0);
        let r: Result<(), _> = until_deadline(
            "t",
            Duration::from_secs(5),
            fast(),
            || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(E::Fatal)
            },
            |e| matches!(e, E::Transient(_)),
        )
        .await;
        assert!(matches!(r, Err(RetryError::Fatal(E::Fatal))));
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn compare_and_set_redoes_lost_rounds_and_gives_up() {
        let n = AtomicU32::new(0);
        let won: Result<Option<u32>, E> = compare_and_set(5, || async {
            let i = n.fetch_add(1, Ordering::SeqCst);
            Ok(if i < 2 { Cas::Lost } else { Cas::Done(i) })
        })
        .await;
        assert_eq!(won.unwrap(), Some(2));
        let always_lost: Result<Option<()>, E> =
            compare_and_set(3, || async { Ok(Cas::Lost) }).await;
        assert_eq!(always_lost.unwrap(), None);
        let failed: Result<Option<()>, E> = compare_and_set(3, || async { Err(E::Fatal) }).await;
        assert_eq!(failed.unwrap_err(), E::Fatal);
    }

    #[tokio::test]
    async fn deadline_reports_last_error() {
        let r: Result<(), _> = until_deadline(
            "t",
            Duration::from_millis(100),
            fast(),
            || async { Err(E::Transient(7)) },
            |e| matches!(e, E::Transient(_)),
        )
        .await;
        match r {
            Err(RetryError::Deadline { elapsed, last }) => {
                assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
                assert_eq!(last.as_deref(), Some("Transient(7)"));
            }
            other => panic!("{other:?}"),
        }
    }

    fn too_many_requests(retry_after: u32) -> kube::Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 429, "reason": "TooManyRequests",
            "message": "too many requests", "details": {"retryAfterSeconds": retry_after}
        }))
        .unwrap();
        kube::Error::Api(Box::new(status))
    }

    /// The API server's `retryAfterSeconds` stretches the next wait (never shortens it); other
    /// errors keep the backoff's.
    #[tokio::test]
    async fn a_server_that_says_when_is_not_asked_before() {
        assert_eq!(
            server_retry_after(&too_many_requests(2)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(server_retry_after(&too_many_requests(0)), None);
        assert_eq!(server_retry_after(&E::Transient(1)), None);
        let n = AtomicU32::new(0);
        let started = Instant::now();
        let r = until_deadline(
            "t",
            Duration::from_secs(5),
            fast(),
            || async {
                match n.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(too_many_requests(1)),
                    _ => Ok(()),
                }
            },
            |_| true,
        )
        .await;
        assert!(r.is_ok());
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(950),
            "retried after {waited:?}, before the server's 1 s"
        );
        // A wait longer than the budget ends at the budget, as a deadline.
        let r: Result<(), _> = until_deadline(
            "t",
            Duration::from_millis(300),
            fast(),
            || async { Err(too_many_requests(60)) },
            |_| true,
        )
        .await;
        assert!(matches!(r, Err(RetryError::Deadline { .. })));
    }
}
