//! `psql SITE` and `logs SITE`: the kubectl commands that reach into a site's pods. Exec and log
//! streaming are kubectl's job (this plugin runs beside it); what the plugin adds is the right
//! context, namespace, pod and container for each site. Pure: the commands are built here from
//! the site and what was observed; `run` prints or runs them.

use crate::cli::Component;
use crate::config::Site;
use crate::model::SiteObs;

/// Container names in the chart's member Pods and agent Jobs (statefulset.yaml,
/// cronjob-failover.yaml).
pub const PATRONI_CONTAINER: &str = "patroni";
pub const READINESS_CONTAINER: &str = "readiness";
pub const AGENT_CONTAINER: &str = "failover";

/// Run by `sh` inside the Patroni container: the superuser's name and password come from the
/// container's own environment (the chart's Secret), so no secret is in this command's
/// arguments or output. PostgreSQL's socket directory is fixed by the chart; the port is the
/// one Patroni listens on. `$0` is the database, `$@` psql's extra arguments.
const PSQL_SCRIPT: &str = r#"PGPASSWORD="$PATRONI_SUPERUSER_PASSWORD" exec psql -h /var/run/postgresql -p "${PATRONI_POSTGRESQL_LISTEN##*:}" -U "$PATRONI_SUPERUSER_USERNAME" -d "$0" "$@""#;

/// What one `kubectl logs` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogSource {
    /// A container of a member Pod.
    Member {
        pod: String,
        container: &'static str,
    },
    /// The failover agent's latest Job.
    AgentJob { job: String },
}

impl LogSource {
    /// How the output names it.
    pub fn title(&self, site: &str) -> String {
        match self {
            LogSource::Member { pod, container } => format!("{site} {pod} ({container})"),
            LogSource::AgentJob { job } => format!("{site} job/{job} (failover agent)"),
        }
    }
}

/// The member a command reaches: `--member` when given (it must be one of the site's members),
/// else the site's leader. `Err`: why there is none, and what to do.
pub fn pick_member(obs: &SiteObs, member: Option<&str>) -> Result<String, String> {
    let names = || {
        let n: Vec<_> = obs.members.iter().map(|m| m.name.as_str()).collect();
        if n.is_empty() {
            "none found".to_string()
        } else {
            n.join(", ")
        }
    };
    if let Some(e) = &obs.error {
        return Err(format!("cannot be read ({e})"));
    }
    match member {
        Some(m) if obs.members.iter().any(|x| x.name == m) => Ok(m.to_string()),
        Some(m) => Err(format!("has no member {m} (members: {})", names())),
        None => obs
            .leader
            .as_ref()
            .and_then(|l| l.member.clone())
            .filter(|l| !l.is_empty())
            .ok_or_else(|| {
                format!(
                    "has no leader right now; pick a member with --member (members: {})",
                    names()
                )
            }),
    }
}

/// The sources `logs --component` names, in the order shown.
pub fn log_sources(component: Component, pod: &str, agent_job: Option<&str>) -> Vec<LogSource> {
    let member = |container| LogSource::Member {
        pod: pod.to_string(),
        container,
    };
    let agent = || agent_job.map(|j| LogSource::AgentJob { job: j.to_string() });
    match component {
        Component::Patroni => vec![member(PATRONI_CONTAINER)],
        Component::Readiness => vec![member(READINESS_CONTAINER)],
        Component::Agent => agent().into_iter().collect(),
        Component::All => [
            Some(member(PATRONI_CONTAINER)),
            Some(member(READINESS_CONTAINER)),
            agent(),
        ]
        .into_iter()
        .flatten()
        .collect(),
    }
}

/// `kubectl` arguments that select the site: its kubeconfig, context and namespace.
fn site_args(site: &Site, namespace: &str) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(k) = &site.kubeconfig {
        a.extend(["--kubeconfig".to_string(), k.display().to_string()]);
    }
    if let Some(c) = &site.context {
        a.extend(["--context".to_string(), c.clone()]);
    }
    a.extend(["--namespace".to_string(), namespace.to_string()]);
    a
}

/// `kubectl` arguments for psql on `pod`; `tty` when the terminal is interactive.
pub fn psql_args(
    site: &Site,
    namespace: &str,
    pod: &str,
    dbname: &str,
    tty: bool,
    extra: &[String],
) -> Vec<String> {
    let mut a = site_args(site, namespace);
    a.extend(
        [
            "exec",
            if tty { "-it" } else { "-i" },
            pod,
            "-c",
            PATRONI_CONTAINER,
            "--",
            "sh",
            "-c",
            PSQL_SCRIPT,
            dbname,
        ]
        .map(String::from),
    );
    a.extend(extra.iter().cloned());
    a
}

/// `kubectl` arguments for one log source.
pub fn logs_args(
    site: &Site,
    namespace: &str,
    source: &LogSource,
    tail: u64,
    follow: bool,
) -> Vec<String> {
    let mut a = site_args(site, namespace);
    a.push("logs".into());
    match source {
        LogSource::Member { pod, container } => {
            a.extend([pod.clone(), "-c".into(), (*container).to_string()])
        }
        LogSource::AgentJob { job } => {
            a.extend([format!("job/{job}"), "-c".into(), AGENT_CONTAINER.into()])
        }
    }
    a.extend(["--tail".into(), tail.to_string()]);
    if follow {
        a.push("--follow".into());
    }
    a
}

/// A command line a person can paste into a POSIX shell.
pub fn render(args: &[String]) -> String {
    std::iter::once("kubectl".to_string())
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, resolve};
    use crate::model::{Leader, tests as testing};

    fn site() -> Site {
        let flags = Overrides {
            sites: vec![
                ("gold".into(), "gold-ctx".into()),
                ("golddr".into(), "dr-ctx".into()),
            ],
            ..Overrides::default()
        };
        resolve(None, &flags).unwrap().sites[0].clone()
    }

    fn obs(leader: Option<&str>) -> SiteObs {
        let mut o = testing::site(
            "gold",
            false,
            testing::member("patroni-gold-0", "primary", 1, 0),
        );
        o.members
            .push(testing::member("patroni-gold-1", "replica", 1, 0));
        o.leader = Some(Leader {
            member: leader.map(String::from),
            ..Leader::default()
        });
        o
    }

    #[test]
    fn the_member_is_the_leader_unless_one_is_named() {
        assert_eq!(
            pick_member(&obs(Some("patroni-gold-0")), None).unwrap(),
            "patroni-gold-0"
        );
        assert_eq!(
            pick_member(&obs(Some("patroni-gold-0")), Some("patroni-gold-1")).unwrap(),
            "patroni-gold-1"
        );
        let none = pick_member(&obs(None), None).unwrap_err();
        assert!(
            none.contains("no leader") && none.contains("patroni-gold-1"),
            "{none}"
        );
        let wrong = pick_member(&obs(None), Some("patroni-gold-7")).unwrap_err();
        assert!(wrong.contains("no member patroni-gold-7"), "{wrong}");
        let mut down = obs(Some("patroni-gold-0"));
        down.error = Some("503".into());
        assert!(
            pick_member(&down, None)
                .unwrap_err()
                .contains("cannot be read")
        );
    }

    #[test]
    fn psql_runs_in_the_patroni_container_with_the_password_read_there() {
        let a = psql_args(
            &site(),
            "ns1",
            "patroni-gold-0",
            "app",
            false,
            &["-c".into(), "select 1".into()],
        );
        let line = render(&a);
        assert!(
            line.starts_with("kubectl --context gold-ctx --namespace ns1 exec -i patroni-gold-0 -c patroni -- sh -c "),
            "{line}"
        );
        assert!(line.ends_with(" app -c 'select 1'"), "{line}");
        // The password is named, never carried.
        assert!(
            line.contains(r#"PGPASSWORD="$PATRONI_SUPERUSER_PASSWORD""#),
            "{line}"
        );
        assert!(psql_args(&site(), "ns1", "p", "d", true, &[]).contains(&"-it".to_string()));
    }

    #[test]
    fn logs_name_each_piece_of_the_site() {
        let all = log_sources(
            Component::All,
            "patroni-gold-0",
            Some("patroni-failover-29000001"),
        );
        let lines: Vec<_> = all
            .iter()
            .map(|s| render(&logs_args(&site(), "ns1", s, 50, false)))
            .collect();
        assert_eq!(
            lines,
            [
                "kubectl --context gold-ctx --namespace ns1 logs patroni-gold-0 -c patroni --tail 50",
                "kubectl --context gold-ctx --namespace ns1 logs patroni-gold-0 -c readiness --tail 50",
                "kubectl --context gold-ctx --namespace ns1 logs job/patroni-failover-29000001 -c failover --tail 50",
            ]
        );
        // No agent run yet: the member's logs only; asked for the agent alone: nothing.
        assert_eq!(log_sources(Component::All, "p", None).len(), 2);
        assert!(log_sources(Component::Agent, "p", None).is_empty());
        let f = logs_args(&site(), "n", &all[0], 10, true);
        assert_eq!(f.last().map(String::as_str), Some("--follow"));
    }

    #[test]
    fn quoting_survives_a_shell() {
        assert_eq!(quote("plain-arg_1.2"), "plain-arg_1.2");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
    }
}
