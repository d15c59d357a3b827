//! The drill: both sites of the project on one machine, with the real chart, and the scenarios
//! that rehearse losing one.
//!
//! Each site is a [`pgdr_minicluster::Site`] (an in-memory API server made into a small cluster
//! whose pods are local processes). On top of that the drill adds what is specific to this project:
//! the BC Gov platform between the sites ([`platform`]: TransportServerClaims and a tunnel that
//! scenarios can cut, blackhole, slow and move), the chart installed with the real helm
//! ([`chart`]), the running pair ([`stage::Stage`]), the emulated GSLB that health-checks both
//! sites and answers the failover CronJob as its witness ([`gslb`]), the rehearsal ([`rehearse`]),
//! the failover benchmark ([`bench`]), the planned switchover round trip with the kubectl plugin
//! ([`switchover`]), what the one-writable-primary scenarios measure ([`fencing`]) and the command
//! line ([`cli`]). [`chaos`] holds the randomized fault drill's schedule and invariant checker.
//!
//! Module layering (no cycles): `cli` → `rehearse`, `bench`, `switchover` → `stage`, `fencing` → `gslb` →
//! `chart`, `platform`, `db`, `images`, `timeline` → `options`, `error`; `rbac` (what the API
//! servers' RBAC answered the pods) → `minicluster`.
#![forbid(unsafe_code)]

pub mod bench;
pub mod chaos;
pub mod chart;
pub mod cli;
pub mod cronjob;
pub mod db;
pub mod error;
pub mod fencing;
pub mod gslb;
pub mod images;
pub mod options;
pub mod platform;
pub mod rbac;
pub mod rehearse;
pub mod stage;
pub mod switchover;
pub mod timeline;
pub mod walscan;

pub use error::{DrillError, Result};
pub use pgdr_minicluster as minicluster;
pub use platform::Platform;
