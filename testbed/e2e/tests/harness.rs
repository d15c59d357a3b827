//! The test harness itself: whatever happens to a node, no process and no file is left behind.

use std::process::Command;
use std::time::Duration;

use kubesim::{Config, Server};
use pgdr_patroni_harness::{PatroniNode, Scratch, process_alive};

const DEADLINE: Duration = Duration::from_secs(90);

#[test]
fn kill_hard_loses_the_site_and_start_again_brings_it_back() {
    let scratch = Scratch::new().expect("locating tools");
    let server = Server::spawn(Config::default()).expect("starting kubesim");
    let node = PatroniNode::builder("lost", "lost-0")
        .start(&scratch, &server)
        .expect("starting lost-0");
    node.wait_writable(DEADLINE)
        .expect("lost-0 becomes primary");
    node.psql("CREATE TABLE t AS SELECT 42 AS answer")
        .expect("writing on lost-0");
    let patroni = node.patroni_pid().expect("Patroni runs");
    let postmaster = node.postmaster_pid().expect("PostgreSQL runs");

    node.kill_hard();

    assert!(!process_alive(patroni), "Patroni {patroni} survived");
    assert!(
        !process_alive(postmaster),
        "postmaster {postmaster} survived"
    );
    assert!(
        node.rest("GET", "/patroni", None).is_err(),
        "REST still answers"
    );
    assert!(node.ensure_running().is_err());
    // Nobody released the leader lock: it stays until its TTL runs out, as when a site is lost.
    let (status, leader) = server.request(
        "GET",
        "/api/v1/namespaces/default/configmaps/lost-leader",
        None,
        None,
    );
    assert_eq!(status, 200, "{leader}");
    assert_eq!(leader["metadata"]["annotations"]["leader"], "lost-0");

    // The site comes back: same folder, address and Pod; crash recovery keeps committed data.
    node.start_again().expect("restarting lost-0");
    node.wait_writable(DEADLINE)
        .expect("lost-0 is primary again");
    assert_eq!(node.psql("SELECT answer FROM t").expect("reading t"), "42");
}

#[test]
fn drop_stops_a_postgres_orphaned_by_patroni() {
    let scratch = Scratch::new().expect("locating tools");
    let dir = scratch.path().to_path_buf();
    let server = Server::spawn(Config::default()).expect("starting kubesim");
    let node = PatroniNode::builder("orphan", "orphan-0")
        .start(&scratch, &server)
        .expect("starting orphan-0");
    node.wait_writable(DEADLINE)
        .expect("orphan-0 becomes primary");
    let patroni = node.patroni_pid().expect("Patroni runs");
    let postmaster = node.postmaster_pid().expect("PostgreSQL runs");

    // Only Patroni dies; PostgreSQL, in a session of its own, keeps running.
    let killed = Command::new("kill")
        .args(["-s", "KILL", &patroni.to_string()])
        .status()
        .expect("running kill");
    assert!(killed.success());
    assert!(process_alive(postmaster));

    drop(node);
    assert!(
        !process_alive(postmaster),
        "postmaster {postmaster} survived the drop"
    );
    drop(scratch);
    assert!(!dir.exists(), "{} was not removed", dir.display());
}
