//! The Job's run: wait for the tunnel, then observe → decide → act until it is done, refused,
//! or the deadline passes. A lost compare-and-set (409) goes back to observe.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use kube::Client;
use pgdr_core::k8s::{self, Kube};
use pgdr_core::retry::{self, RetryError};
use tracing::{Instrument, info, info_span};

use crate::decide::{self, Target};
use crate::{Error, Outcome, Report, Settings, act, observe};

/// Runs the Job with a client built from the environment.
pub async fn run(settings: &Settings) -> Result<Report, Error> {
    let (client, default_ns) = k8s::client(settings.request_timeout).await?;
    let namespace = settings.namespace.clone().unwrap_or(default_ns);
    run_with(client, &namespace, settings).await
}

/// Runs the Job against `client` in `namespace`.
pub async fn run_with(client: Client, namespace: &str, s: &Settings) -> Result<Report, Error> {
    let started = Instant::now();
    let deadline = started + s.deadline;
    let kube = Kube {
        client,
        namespace: namespace.to_string(),
        deadline: s.request_timeout,
    };
    let target = observe::tunnel_target(&kube, s)
        .instrument(info_span!("wait_for_tunnel", service = %s.tunnel_service))
        .await?;
    info!(host = %target.host, port = target.port, "tunnel target found");

    let conflicts = AtomicU32::new(0);
    let attempt = || async {
        let result = round(&kube, s, &target).await;
        if let Err(Error::Api { source, .. }) = &result
            && k8s::is_conflict(source)
        {
            conflicts.fetch_add(1, Ordering::Relaxed);
        }
        result
    };
    let outcome = retry::until_deadline(
        "compare-and-set of the config annotation",
        deadline.saturating_duration_since(Instant::now()),
        retry::default_backoff(),
        attempt,
        Error::is_retryable,
    )
    .instrument(info_span!("apply", config_map = %s.config_map))
    .await
    .map_err(|e| match e {
        RetryError::Fatal(e) => e,
        RetryError::Deadline { elapsed, last } => Error::WriteDeadline {
            namespace: namespace.to_string(),
            name: s.config_map.clone(),
            waited: elapsed,
            last: last.unwrap_or_else(|| "no attempt finished".into()),
        },
    })?;

    Ok(Report {
        outcome,
        namespace: namespace.to_string(),
        config_map: s.config_map.clone(),
        elapsed: started.elapsed(),
        conflicts: conflicts.into_inner(),
    })
}

/// One observe → decide → act round. A lost compare-and-set comes back as a retryable 409.
async fn round(kube: &Kube, s: &Settings, target: &Target) -> Result<Outcome, Error> {
    let (observed, config_cm) = observe::config_and_leader(kube, s).await?;
    let decision = match decide::decide(&observed, target, &s.base_config, s.force) {
        // The promotion record is read only when it matters, so the usual rounds stay as they were.
        Ok(plan) if plan.adds_standby_cluster() && !s.demote_promoted_site => {
            let record = observe::promotion_record(kube, s).await?;
            decide::check_promotion_record(plan, record.as_ref(), s.demote_promoted_site)
        }
        other => other,
    };
    act::apply(kube, s, target, decision, config_cm.as_ref()).await
}
