//! The plugin's one configuration: two sites, each reached through its own kubeconfig context,
//! and the object names the chart derives for them. Built once from `--config` (YAML) and the
//! command-line flags (flags win), then validated.

use std::path::{Path, PathBuf};

use pgdr_contract::slot::SlotName;
use serde::Deserialize;

/// How `standby_cluster.host` names the tunnel Service (the chart's `portPatch.hostMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum HostMode {
    /// `<service>.<namespace>.svc`, as the port-patch Job writes it by default.
    #[default]
    #[serde(rename = "dns")]
    Dns,
    /// The Service's ClusterIP (clusters without Service DNS, e.g. the local drill).
    #[serde(rename = "clusterIP")]
    ClusterIp,
}

impl std::str::FromStr for HostMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dns" => Ok(HostMode::Dns),
            "clusterIP" | "clusterip" => Ok(HostMode::ClusterIp),
            other => Err(format!("'{other}' is not a host mode (dns or clusterIP)")),
        }
    }
}

/// The `--config` file. Top-level keys are defaults for every site.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub sites: Vec<FileSite>,
    pub namespace: Option<String>,
    pub fullname: Option<String>,
    pub scope: Option<String>,
    pub scope_label: Option<String>,
    /// The replication slot between the sites (the chart's `replication.slotName`); found on
    /// the sites when absent.
    pub slot_name: Option<String>,
    pub tunnel_host_mode: Option<HostMode>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSite {
    pub name: String,
    pub context: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub namespace: Option<String>,
    pub fullname: Option<String>,
    pub scope: Option<String>,
    pub tunnel_service: Option<String>,
    pub tunnel_host_mode: Option<HostMode>,
}

/// Flags that apply to every site (from the command line).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `NAME=CONTEXT` pairs.
    pub sites: Vec<(String, String)>,
    pub namespace: Option<String>,
    pub fullname: Option<String>,
    pub scope: Option<String>,
    pub slot_name: Option<String>,
    pub tunnel_host_mode: Option<HostMode>,
}

/// One site, with every object name resolved.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Site {
    pub name: String,
    /// The other site of the pair.
    pub peer: String,
    /// kubeconfig context; `None` uses the current context.
    pub context: Option<String>,
    /// kubeconfig file; `None` uses KUBECONFIG / ~/.kube/config.
    pub kubeconfig: Option<PathBuf>,
    /// `None`: the context's namespace.
    pub namespace: Option<String>,
    /// The chart's fullname (release name, or fullnameOverride).
    pub fullname: String,
    /// Patroni scope (`patroni.scope`, default the fullname).
    pub scope: String,
    /// Label on member Pods carrying the scope (`patroni.kubernetes.scopeLabel`).
    pub scope_label: String,
    /// Service the platform created on this site for the tunnel towards the peer.
    pub tunnel_service: String,
    pub tunnel_host_mode: HostMode,
}

impl Site {
    pub fn config_map(&self) -> String {
        format!("{}-config", self.scope)
    }
    pub fn leader_map(&self) -> String {
        format!("{}-leader", self.scope)
    }
    pub fn state_map(&self) -> String {
        format!("{}-failover-state", self.fullname)
    }
    pub fn agent_cronjob(&self) -> String {
        format!("{}-failover", self.fullname)
    }
    pub fn switchover_map(&self) -> String {
        format!("{}-switchover", self.fullname)
    }
    pub fn statefulset(&self) -> String {
        format!("{}-{}", self.fullname, self.name)
    }
    /// Label selector of this site's Patroni member Pods.
    pub fn pod_selector(&self) -> String {
        format!("{}={}", self.scope_label, self.scope)
    }
}

/// The pair of sites, in the order they were configured.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Settings {
    pub sites: [Site; 2],
    /// `--slot-name` / `slotName`: the one replication slot between the sites. `None`: read it
    /// from the sites (`plan::slot_name`).
    pub slot_name: Option<SlotName>,
}

impl Settings {
    pub fn site(&self, name: &str) -> Result<&Site, ConfigError> {
        self.sites
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| ConfigError::UnknownSite {
                name: name.to_string(),
                known: self.names(),
            })
    }
    pub fn peer_of(&self, name: &str) -> Result<&Site, ConfigError> {
        let site = self.site(name)?;
        self.site(&site.peer)
    }
    pub fn names(&self) -> String {
        format!("{}, {}", self.sites[0].name, self.sites[1].name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error(
        "exactly two sites are needed, {found} configured: pass --site gold=CONTEXT --site golddr=CONTEXT or a --config file with two sites"
    )]
    SiteCount { found: usize },
    #[error("--site {0}: expected NAME=CONTEXT, e.g. --site gold=gold-cluster")]
    BadSiteFlag(String),
    #[error("site '{0}' is configured twice")]
    Duplicate(String),
    #[error("site '{name}' is not configured (sites: {known})")]
    UnknownSite { name: String, known: String },
    #[error("site name '{0}' is not valid: use lower-case letters, digits and '-'")]
    BadName(String),
    #[error("--slot-name / slotName: {0}")]
    BadSlot(#[from] pgdr_contract::slot::InvalidSlotName),
}

/// Parses a `--site` value.
pub fn parse_site_flag(value: &str) -> Result<(String, String), ConfigError> {
    match value.split_once('=') {
        Some((name, ctx)) if !name.is_empty() && !ctx.is_empty() => {
            Ok((name.to_string(), ctx.to_string()))
        }
        _ => Err(ConfigError::BadSiteFlag(value.to_string())),
    }
}

pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_saphyr::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Merges the file (if any) and the flags into the pair of sites.
pub fn resolve(file: Option<FileConfig>, flags: &Overrides) -> Result<Settings, ConfigError> {
    let file = file.unwrap_or_default();
    let mut sites: Vec<FileSite> = file.sites.clone();
    for (name, ctx) in &flags.sites {
        match sites.iter_mut().find(|s| &s.name == name) {
            Some(s) => s.context = Some(ctx.clone()),
            None => sites.push(FileSite {
                name: name.clone(),
                context: Some(ctx.clone()),
                ..FileSite::default()
            }),
        }
    }
    if sites.len() != 2 {
        return Err(ConfigError::SiteCount { found: sites.len() });
    }
    if sites[0].name == sites[1].name {
        return Err(ConfigError::Duplicate(sites[0].name.clone()));
    }
    for s in &sites {
        let ok = !s.name.is_empty()
            && s.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(ConfigError::BadName(s.name.clone()));
        }
    }
    let build = |s: &FileSite, peer: &str| -> Site {
        let fullname = flags
            .fullname
            .clone()
            .or_else(|| s.fullname.clone())
            .or_else(|| file.fullname.clone())
            .unwrap_or_else(|| "patroni".to_string());
        let scope = flags
            .scope
            .clone()
            .or_else(|| s.scope.clone())
            .or_else(|| file.scope.clone())
            .unwrap_or_else(|| fullname.clone());
        Site {
            name: s.name.clone(),
            peer: peer.to_string(),
            context: s.context.clone(),
            kubeconfig: s.kubeconfig.clone(),
            namespace: flags
                .namespace
                .clone()
                .or_else(|| s.namespace.clone())
                .or_else(|| file.namespace.clone()),
            tunnel_service: s
                .tunnel_service
                .clone()
                // The platform's name for the peer's tunnel target Service (the chart's
                // `<fullname>-tunnel`, the TSC's target).
                .unwrap_or_else(|| format!("{fullname}-tunnel-{peer}")),
            tunnel_host_mode: flags
                .tunnel_host_mode
                .or(s.tunnel_host_mode)
                .or(file.tunnel_host_mode)
                .unwrap_or_default(),
            scope_label: file
                .scope_label
                .clone()
                .unwrap_or_else(|| "cluster-name".to_string()),
            fullname,
            scope,
        }
    };
    let a = build(&sites[0], &sites[1].name);
    let b = build(&sites[1], &sites[0].name);
    let slot_name = flags
        .slot_name
        .as_deref()
        .or(file.slot_name.as_deref())
        .map(SlotName::parse)
        .transpose()?;
    Ok(Settings {
        sites: [a, b],
        slot_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(sites: &[(&str, &str)]) -> Overrides {
        Overrides {
            sites: sites
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..Overrides::default()
        }
    }

    #[test]
    fn chart_names_from_two_site_flags() {
        let s = resolve(None, &flags(&[("gold", "ctx-a"), ("golddr", "ctx-b")])).unwrap();
        let gold = s.site("gold").unwrap();
        assert_eq!(gold.peer, "golddr");
        assert_eq!(gold.context.as_deref(), Some("ctx-a"));
        assert_eq!(gold.config_map(), "patroni-config");
        assert_eq!(gold.leader_map(), "patroni-leader");
        assert_eq!(gold.state_map(), "patroni-failover-state");
        assert_eq!(gold.tunnel_service, "patroni-tunnel-golddr");
        assert_eq!(gold.statefulset(), "patroni-gold");
        assert_eq!(s.slot_name, None, "read from the sites unless given");
        assert_eq!(s.peer_of("golddr").unwrap().name, "gold");
        assert_eq!(gold.pod_selector(), "cluster-name=patroni");
    }

    #[test]
    fn file_then_flags() {
        let file: FileConfig = serde_saphyr::from_str(
            "namespace: abc123-prod\nfullname: db\ntunnelHostMode: clusterIP\nsites:\n  - name: gold\n    context: a\n  - name: golddr\n    context: b\n    namespace: other\n    kubeconfig: /tmp/kc\n",
        )
        .unwrap();
        let s = resolve(Some(file.clone()), &flags(&[("golddr", "b2")])).unwrap();
        let dr = s.site("golddr").unwrap();
        assert_eq!(dr.context.as_deref(), Some("b2"));
        assert_eq!(dr.namespace.as_deref(), Some("other"));
        assert_eq!(dr.kubeconfig.as_deref(), Some(Path::new("/tmp/kc")));
        assert_eq!(dr.scope, "db");
        assert_eq!(dr.tunnel_service, "db-tunnel-gold");
        assert_eq!(dr.tunnel_host_mode, HostMode::ClusterIp);
        assert_eq!(
            s.site("gold").unwrap().namespace.as_deref(),
            Some("abc123-prod")
        );
        let over = Overrides {
            namespace: Some("x".into()),
            ..Overrides::default()
        };
        let s = resolve(Some(file), &over).unwrap();
        assert_eq!(s.site("golddr").unwrap().namespace.as_deref(), Some("x"));
    }

    #[test]
    fn bad_input_is_named() {
        assert!(matches!(
            resolve(None, &flags(&[("gold", "a")])),
            Err(ConfigError::SiteCount { found: 1 })
        ));
        assert!(matches!(
            resolve(None, &flags(&[("Gold", "a"), ("x", "b")])),
            Err(ConfigError::BadName(_))
        ));
        assert!(matches!(
            parse_site_flag("gold"),
            Err(ConfigError::BadSiteFlag(_))
        ));
        assert!(matches!(
            parse_site_flag("=a"),
            Err(ConfigError::BadSiteFlag(_))
        ));
        assert_eq!(
            parse_site_flag("gold=a=b").unwrap(),
            ("gold".to_string(), "a=b".to_string())
        );
        let s = resolve(None, &flags(&[("gold", "a"), ("golddr", "b")])).unwrap();
        assert!(matches!(
            s.site("nope"),
            Err(ConfigError::UnknownSite { .. })
        ));
        assert!(serde_saphyr::from_str::<FileConfig>("sitez: []\n").is_err());
    }
}
