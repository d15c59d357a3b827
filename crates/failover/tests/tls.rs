//! The probe's TLS modes against a real PostgreSQL with `ssl=on` (one Patroni primary).
//!
//! The CA and the server certificate are made with the `openssl` command line at test time. The
//! server certificate names `gold-primary.invalid`, never the address the probe dials: verify-ca
//! must not check the host name (libpq semantics).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pgdr_failover::standby::Probe;
use pgdr_failover::{Config, Settings, observe};
use pgdr_patroni_harness::{PatroniNode, Scratch};

const DEADLINE: Duration = Duration::from_secs(90);

/// Runs `openssl <args>` (split at whitespace) in `dir`.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("running `openssl` (the TLS test needs the openssl command line)");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

/// A self-signed CA (EC P-256) in `dir`: `<name>.crt`, `<name>.key`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 {EC} -days 2 -subj /CN=pgdr-test-{name} -keyout {name}.key -out {name}.crt"
        ),
    );
}

/// `server.crt` / `server.key` signed by `ca`, for a name the probe never dials.
fn make_server_cert(dir: &Path, ca: &str) {
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = DNS:gold-primary.invalid\n",
    )
    .unwrap();
    openssl(
        dir,
        &format!("req -new {EC} -subj /CN=gold-primary.invalid -keyout server.key -out server.csr"),
    );
    openssl(
        dir,
        &format!(
            "x509 -req -in server.csr -CA {ca}.crt -CAkey {ca}.key -set_serial 2 -days 2 \
             -extfile server.ext -out server.crt"
        ),
    );
}

fn settings(extra: &[(&str, &str)]) -> Settings {
    let creds = pgdr_patroni_harness::Credentials::shared();
    let mut vars: Vec<(String, String)> = [
        ("FAILOVER_SITE", "golddr"),
        ("FAILOVER_PEER_SITE", "gold"),
        ("FAILOVER_NAMESPACE", "default"),
        ("FAILOVER_SCOPE", "golddr"),
        ("FAILOVER_STATE_CONFIGMAP", "golddr-failover-state"),
        ("FAILOVER_TUNNEL_SERVICE", "golddr-gold"),
        ("FAILOVER_REPLICATION_USER", creds.replication_user.as_str()),
        (
            "FAILOVER_REPLICATION_PASSWORD",
            creds.replication_password.as_str(),
        ),
        ("FAILOVER_PEER_SLOT_NAME", "standby_gold"),
        (
            "FAILOVER_PROMOTION_RECORD_CONFIGMAP",
            "golddr-promotion-record",
        ),
        ("FAILOVER_PROBE_TIMEOUT", "5s"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_vars(vars).unwrap().validate().unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn probe_tls_modes_against_postgresql_with_ssl() {
    let scratch = Scratch::new().expect("locating tools (run `make deps` first)");
    let server = kubesim::Server::spawn(kubesim::Config::default()).expect("kubesim");
    let node = PatroniNode::builder("gold", "gold-0")
        .start(&scratch, &server)
        .expect("starting the primary");
    node.wait_writable(DEADLINE).expect("primary writable");

    // Certificates: made in a private folder, then copied into the scratch folder owned by the
    // user PostgreSQL runs as (the key with mode 0600, as PostgreSQL demands).
    let work = tempfile::tempdir().unwrap();
    make_ca(work.path(), "ca");
    make_ca(work.path(), "other-ca");
    make_server_cert(work.path(), "ca");
    let tls_dir: PathBuf = scratch.subdir("tls").unwrap();
    let copy = |name: &str, mode: u32| {
        let to = tls_dir.join(name);
        let text = std::fs::read_to_string(work.path().join(name)).unwrap();
        scratch.write_file(&to, &text, mode).unwrap();
        to
    };
    let server_crt = copy("server.crt", 0o644);
    let server_key = copy("server.key", 0o600);
    let ca = copy("ca.crt", 0o644);
    let other_ca = copy("other-ca.crt", 0o644);

    for sql in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", path(&server_crt)),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", path(&server_key)),
        "ALTER SYSTEM SET ssl = on".to_string(),
        "SELECT pg_reload_conf()".to_string(),
    ] {
        node.psql(&sql).expect(&sql);
    }
    // psql (sslmode=prefer) gets TLS once the reload loaded the certificate.
    node.wait_query(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        "t",
        DEADLINE,
    )
    .expect("PostgreSQL serves TLS");

    let host = node.address().to_string();
    let port = node.pg_port();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let probe = |extra: &[(&str, &str)]| rt.block_on(observe::probe(&settings(extra), &host, port));
    let accepting_primary = |what: &str, p: Probe| match p {
        Probe::Accepting {
            in_recovery: Some(false),
            lsn: Some(_),
        } => {}
        other => panic!("{what}: expected an accepting primary, got {other:?}"),
    };

    accepting_primary(
        "require (no certificate check)",
        probe(&[("FAILOVER_TUNNEL_SSLMODE", "require")]),
    );
    accepting_primary(
        "verify-ca with the right CA (host name not checked)",
        probe(&[
            ("FAILOVER_TUNNEL_SSLMODE", "verify-ca"),
            ("FAILOVER_TUNNEL_SSLROOTCERT", path(&ca)),
        ]),
    );
    accepting_primary(
        "verify-ca with the server certificate itself as the root",
        probe(&[
            ("FAILOVER_TUNNEL_SSLMODE", "verify-ca"),
            ("FAILOVER_TUNNEL_SSLROOTCERT", path(&server_crt)),
        ]),
    );
    accepting_primary("prefer", probe(&[("FAILOVER_TUNNEL_SSLMODE", "prefer")]));
    accepting_primary(
        "disable (pg_hba allows plain text)",
        probe(&[("FAILOVER_TUNNEL_SSLMODE", "disable")]),
    );

    // A live server whose certificate does not verify: alive, never a reason to promote.
    for mode in ["verify-ca", "require"] {
        match probe(&[
            ("FAILOVER_TUNNEL_SSLMODE", mode),
            ("FAILOVER_TUNNEL_SSLROOTCERT", path(&other_ca)),
        ]) {
            Probe::Rejected { reason } => assert!(
                reason.contains("handshake failed") && reason.contains("certificate"),
                "{mode}: {reason}"
            ),
            other => panic!("{mode} with a wrong CA: expected Rejected, got {other:?}"),
        }
    }

    // The probe's own connection really used TLS: PostgreSQL saw it in pg_stat_ssl.
    let seen = rt.block_on(async {
        let s = settings(&[("FAILOVER_TUNNEL_SSLMODE", "require")]);
        let (connector, _) = s.tls.as_ref().unwrap().connector();
        let mut pg = tokio_postgres::Config::new();
        let creds = pgdr_patroni_harness::Credentials::shared();
        pg.host(&host)
            .port(port)
            .user(&creds.replication_user)
            .password(&creds.replication_password)
            .dbname("postgres")
            .ssl_mode(tokio_postgres::config::SslMode::Require);
        let (client, connection) = pg.connect(connector).await.expect("TLS connection");
        let driver = tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        driver.abort();
        (row.get::<_, bool>(0), row.get::<_, Option<String>>(1))
    });
    assert!(seen.0, "{seen:?}");
}
