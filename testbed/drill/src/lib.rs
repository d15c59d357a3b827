//! The drill: both sites of the project on one machine.
//!
//! A [`Site`] is an in-memory API server (kubesim) made into a small cluster: StatefulSet, Job
//! and CronJob controllers, a kubelet that runs Pods as local processes (each Pod on its own
//! 127.x.y.z address, images mapped to local programs by an [`ImageMap`], container paths mapped
//! under a per-container root, see [`view`]), and a kube-proxy that serves Services on loopback
//! ClusterIPs and NodePorts. A [`Platform`] adds the BC Gov TransportServerClaim behaviour between
//! two sites, with a tunnel that scenarios can cut, blackhole, slow and move.
#![forbid(unsafe_code)]

pub mod api;
pub mod bench;
pub mod chart;
pub mod cron;
pub mod db;
pub mod drill;
pub mod env;
pub mod error;
pub mod image;
mod kubelet;
pub mod platform;
mod procs;
pub mod rehearse;
mod services;
pub mod site;
pub mod stage;
pub mod view;
mod volumes;
mod workloads;

pub use error::{DrillError, Result};
pub use image::{Image, ImageMap};
pub use kubelet::KubeletTimings;
pub use platform::Platform;
pub use site::{Site, SiteConfig};
pub use workloads::{ControllerTimings, CronTiming};
