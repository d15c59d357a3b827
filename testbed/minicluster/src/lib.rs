//! A minicluster: one in-memory API server (kubesim) made into a small Kubernetes cluster whose
//! pods are local processes.
//!
//! A [`Site`] wires the API server to StatefulSet, Job and CronJob controllers ([`controllers`]),
//! a kubelet that runs Pods as local processes (each Pod on its own 127.x.y.z address, images
//! mapped to local programs by an [`ImageMap`], container paths mapped under a per-container root,
//! see [`view`]), volumes as folders (with the kubelet's fsGroup ownership change, see
//! [`volumes`]), each container calling the API as its pod's ServiceAccount when the site enforces
//! RBAC (see [`identity`]) and a kube-proxy that serves Services on loopback ClusterIPs and NodePorts.
//! What a platform adds between sites (the drill's TransportServerClaim) lives outside.
//!
//! Module layering (no cycles): `site` → `kubelet`, `controllers`, `services` → `node`,
//! `volumes`, `identity`, `env`, `view`, `procs`, `image`, `cron` → `api`, `objects`, `error`.
#![forbid(unsafe_code)]

pub mod api;
pub mod controllers;
pub mod cron;
pub mod env;
pub mod error;
pub mod identity;
pub mod image;
mod kubelet;
mod node;
pub mod objects;
pub mod procs;
mod services;
pub mod site;
pub mod testing;
pub mod view;
pub mod volumes;

pub use controllers::{ControllerTimings, CronTiming};
pub use error::{Error, Result};
pub use image::{Image, ImageMap};
pub use node::KubeletTimings;
pub use site::{Site, SiteConfig};
pub use volumes::FsGroupPolicy;
