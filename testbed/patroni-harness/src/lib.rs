//! Test harness: real PostgreSQL and Patroni processes against the in-memory API server.
//!
//! ```no_run
//! use std::time::Duration;
//! use pgdr_patroni_harness::{PatroniNode, Scratch};
//!
//! let scratch = Scratch::new().expect("tools (run `make deps` first)");
//! let server = kubesim::Server::spawn(kubesim::Config::default()).unwrap();
//! let pg0 = PatroniNode::builder("demo", "pg0").start(&scratch, &server).unwrap();
//! pg0.wait_rest("/primary", 200, Duration::from_secs(60)).unwrap();
//! assert_eq!(pg0.psql("SELECT 1").unwrap(), "1");
//! // Dropping `pg0` stops Patroni and PostgreSQL; dropping `scratch` removes the files.
//! ```
//!
//! Each node gets its own loopback address (127.x.y.z), so PostgreSQL and Patroni listen on
//! their usual ports and parallel test processes never collide. As root (CI), the processes run as
//! user `postgres`, because `initdb` refuses root.
#![forbid(unsafe_code)]

mod addr;
mod config;
mod error;
mod http;
mod node;
mod process;
mod scratch;
mod tools;
mod wait;

pub use addr::allocate_loopback;
pub use config::{Credentials, KUBE_CONTEXT, NodePaths, NodeSpec, StandbyCluster, Timings};
pub use error::{HarnessError, Result};
pub use http::Response;
pub use node::{PatroniNode, PatroniNodeBuilder};
pub use process::alive as process_alive;
pub use scratch::Scratch;
pub use tools::{ENV_PG_BIN, ENV_TOOLS, RunAs, Tools};
pub use wait::poll;
