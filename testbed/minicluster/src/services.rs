//! Services: an Endpoints controller for Services with a selector, and a kube-proxy that serves
//! every Service port on its ClusterIP (and NodePorts on the site's node address), forwarding each
//! connection to one of the Service's Endpoints addresses (round robin). Selector-less Services
//! (the TransportServerClaim ones) route to whatever Endpoints their owner writes.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::{self, Api};
use crate::error::Result;
use crate::objects::{self as o, pod_ready};

/// (ready, not ready) addresses of one Endpoints subset.
type ReadyAndNot = (Vec<EndpointAddress>, Vec<EndpointAddress>);

/// A Service's target port on one pod: a number, or the name of one of its container ports.
fn target_port(port: &IntOrString, pod: &Pod) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => name.parse().ok().or_else(|| {
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name))
                .and_then(|p| u16::try_from(p.container_port).ok())
        }),
    }
}

/// The Endpoints object a selector Service should have, from the current Pods.
pub(crate) fn endpoints_for(svc: &Service, pods: &[Pod]) -> Option<Endpoints> {
    let spec = svc.spec.as_ref()?;
    let selector = spec.selector.as_ref().filter(|s| !s.is_empty())?;
    let ns = o::namespace(&svc.metadata);
    let ports = spec.ports.as_deref().unwrap_or_default();
    // Pods grouped by their resolved target ports (named ports may differ per pod).
    let mut subsets: BTreeMap<Vec<(String, u16)>, ReadyAndNot> = BTreeMap::new();
    for p in pods {
        let labels = p.metadata.labels.as_ref();
        let selected = selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        if o::namespace(&p.metadata) != ns || o::terminating(&p.metadata) || !selected {
            continue;
        }
        let Some(ip) = p.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        let resolved: Option<Vec<(String, u16)>> = ports
            .iter()
            .map(|sp| {
                let target = sp.target_port.clone().unwrap_or(IntOrString::Int(sp.port));
                Some((
                    sp.name.clone().unwrap_or_default(),
                    target_port(&target, p)?,
                ))
            })
            .collect();
        let Some(resolved) = resolved else { continue };
        let addr = EndpointAddress {
            ip,
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                name: p.metadata.name.clone(),
                namespace: Some(ns.into()),
                uid: p.metadata.uid.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let entry = subsets.entry(resolved).or_default();
        if pod_ready(p) {
            entry.0.push(addr);
        } else {
            entry.1.push(addr);
        }
    }
    let subsets = subsets
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            ports: Some(
                ports
                    .into_iter()
                    .map(|(name, port)| EndpointPort {
                        name: (!name.is_empty()).then_some(name),
                        port: i32::from(port),
                        protocol: Some("TCP".into()),
                        app_protocol: None,
                    })
                    .collect(),
            ),
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
        })
        .collect();
    Some(Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: Some(ns.into()),
            labels: Some(svc.metadata.labels.clone().unwrap_or_default()),
            ..Default::default()
        },
        subsets: Some(subsets),
    })
}

/// Ready addresses for one Service port in an Endpoints object.
fn backends(ep: Option<&Endpoints>, port_name: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for s in ep.and_then(|e| e.subsets.as_ref()).into_iter().flatten() {
        let ports = s.ports.as_deref().unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .or_else(|| (ports.len() == 1).then(|| &ports[0]))
            .and_then(|p| u16::try_from(p.port).ok());
        let Some(port) = port else { continue };
        for a in s.addresses.iter().flatten() {
            if let Ok(ip) = a.ip.parse::<IpAddr>() {
                out.push(SocketAddr::new(ip, port));
            }
        }
    }
    out
}

struct Listener {
    backends: Arc<RwLock<Vec<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Endpoints controller and kube-proxy of a site.
pub(crate) struct Proxy {
    api: Api,
    node_ip: IpAddr,
    site: String,
    listeners: HashMap<SocketAddr, Listener>,
}

impl Proxy {
    pub fn new(api: Api, node_ip: IpAddr, site: String) -> Self {
        Proxy {
            api,
            node_ip,
            site,
            listeners: HashMap::new(),
        }
    }

    pub fn pass(&mut self) -> Result<()> {
        let pods: Vec<Pod> = self.api.list_as(api::PODS, None)?;
        let services: Vec<Service> = self.api.list_as(api::SERVICES, None)?;
        let key = |m: &ObjectMeta| (o::namespace(m).to_string(), o::name(m).to_string());
        let mut eps: HashMap<(String, String), Endpoints> = self
            .api
            .list_as::<Endpoints>(api::ENDPOINTS, None)?
            .into_iter()
            .map(|e| (key(&e.metadata), e))
            .collect();
        for svc in &services {
            let k = key(&svc.metadata);
            let Some(mut want) = endpoints_for(svc, &pods) else {
                continue;
            };
            let current = eps.get(&k);
            if current.map(|c| (&c.subsets, &c.metadata.labels))
                == Some((&want.subsets, &want.metadata.labels))
            {
                continue;
            }
            let stored = match current {
                Some(c) => {
                    want.metadata.resource_version = c.metadata.resource_version.clone();
                    self.api
                        .replace(api::ENDPOINTS, &k.0, &k.1, &to_json(&want))?
                }
                None => self.api.create(api::ENDPOINTS, &k.0, &to_json(&want))?,
            };
            if stored.is_some() {
                eps.insert(k, want);
            }
        }
        // Listeners: one per (ClusterIP, port) and (node, nodePort).
        let mut wanted: HashMap<SocketAddr, Vec<SocketAddr>> = HashMap::new();
        for svc in &services {
            let ep = eps.get(&key(&svc.metadata));
            let Some(spec) = &svc.spec else { continue };
            let cluster_ip = spec
                .cluster_ip
                .as_deref()
                .and_then(|i| i.parse::<IpAddr>().ok());
            for p in spec.ports.iter().flatten() {
                let b = backends(ep, p.name.as_deref().unwrap_or(""));
                if let (Some(ip), Ok(port)) = (cluster_ip, u16::try_from(p.port)) {
                    wanted.insert(SocketAddr::new(ip, port), b.clone());
                }
                if let Some(np) = p.node_port.and_then(|n| u16::try_from(n).ok()) {
                    wanted.insert(SocketAddr::new(self.node_ip, np), b);
                }
            }
        }
        self.listeners.retain(|addr, _| wanted.contains_key(addr));
        for (addr, b) in wanted {
            match self.listeners.get(&addr) {
                Some(l) => {
                    let mut cur = l.backends.write().unwrap_or_else(|p| p.into_inner());
                    if *cur != b {
                        *cur = b;
                    }
                }
                None => match std::net::TcpListener::bind(addr).and_then(|l| {
                    l.set_nonblocking(true)?;
                    tokio::net::TcpListener::from_std(l)
                }) {
                    Ok(l) => {
                        let backends = Arc::new(RwLock::new(b));
                        let task = tokio::spawn(serve(l, backends.clone()));
                        self.listeners.insert(addr, Listener { backends, task });
                    }
                    Err(e) => {
                        tracing::warn!(site = %self.site, %addr, error = %e, "cannot serve Service address");
                    }
                },
            }
        }
        Ok(())
    }
}

/// Accepts on one Service address and forwards each connection to a backend. The forwarded
/// connections belong to this task: when the Service goes, or the whole site is killed, they are
/// cut too instead of outliving the proxy (a client must not keep talking to a lost site).
async fn serve(listener: tokio::net::TcpListener, backends: Arc<RwLock<Vec<SocketAddr>>>) {
    let next = AtomicUsize::new(0);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            // Reap finished connections so the set does not grow without bound.
            Some(_) = conns.join_next() => continue,
        };
        let Ok((mut client, _)) = accepted else {
            continue;
        };
        let list = backends.read().unwrap_or_else(|p| p.into_inner()).clone();
        if list.is_empty() {
            // No endpoints: the connection is refused, as kube-proxy's REJECT rule does.
            drop(client);
            continue;
        }
        let target = list[next.fetch_add(1, Ordering::Relaxed) % list.len()];
        conns.spawn(async move {
            let _ = client.set_nodelay(true);
            let connect = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                tokio::net::TcpStream::connect(target),
            );
            if let Ok(Ok(mut upstream)) = connect.await {
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}

/// An Endpoints object as the API takes it (k8s-openapi writes apiVersion and kind).
fn to_json(ep: &Endpoints) -> serde_json::Value {
    serde_json::to_value(ep).unwrap_or_default()
}
