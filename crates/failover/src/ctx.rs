//! What every part of a run works with: the settings, the Kubernetes handle, the HTTP client
//! for witnesses, webhooks and sidecars, and the run's id (its Pod name in a cluster). Built once
//! per run (by `run_with`) and passed as one value instead of four parameters.

use pgdr_core::k8s::Kube;

use crate::Settings;

pub struct Ctx<'a> {
    pub settings: &'a Settings,
    pub kube: Kube,
    pub http: reqwest::Client,
    pub run: String,
}
