//! Polling with a deadline.

use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// How often conditions are re-checked. Patroni's loop_wait in tests is 2 s, so this is plenty.
const INTERVAL: Duration = Duration::from_millis(250);

/// Calls `probe` until it returns `Ok(Ok(value))`, or until `timeout` has passed.
///
/// `Ok(Err(observation))` means "not yet": the latest observation goes into the timeout error so a
/// failing test says what it saw. `Err(e)` aborts at once (e.g. the process being waited on died).
/// `subject` names who is waited on (a node, a site) and `what` the condition.
pub fn poll<T>(
    subject: &str,
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Result<T, String>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        let last = match probe()? {
            Ok(value) => return Ok(value),
            Err(observation) => observation,
        };
        if start.elapsed() >= timeout {
            return Err(HarnessError::Timeout {
                node: subject.into(),
                what: what.into(),
                waited: start.elapsed(),
                last,
            });
        }
        std::thread::sleep(INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_or_the_last_observation() {
        let mut n = 0;
        let got = poll("t", "n to reach 3", Duration::from_secs(5), || {
            n += 1;
            Ok(if n >= 3 { Ok(n) } else { Err(format!("n={n}")) })
        });
        assert_eq!(got.unwrap(), 3);

        let err = poll::<()>("t", "never", Duration::ZERO, || Ok(Err("nope".into()))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("never") && text.contains("nope"), "{text}");
    }
}
