//! Services: an Endpoints controller for Services with a selector, and a kube-proxy that serves
//! every Service port on its ClusterIP (and NodePorts on the site's node address), forwarding each
//! connection to one of the Service's Endpoints addresses (round robin). Selector-less Services
//! (the TransportServerClaim ones) route to whatever Endpoints their owner writes.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use crate::api::{self, Api, obj};
use crate::error::Result;
use crate::objects::resolve_port;

fn pod_ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// (ready, not ready) addresses of one Endpoints subset.
type ReadyAndNot = (Vec<Value>, Vec<Value>);

/// The Endpoints object a selector Service should have, from the current Pods.
pub(crate) fn endpoints_for(svc: &Value, pods: &[Value]) -> Option<Value> {
    let selector = svc.pointer("/spec/selector").and_then(Value::as_object)?;
    if selector.is_empty() {
        return None;
    }
    let ns = obj::namespace(svc);
    let ports: Vec<&Value> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    // Pods grouped by their resolved target ports (named ports may differ per pod).
    let mut subsets: BTreeMap<Vec<(String, u16)>, ReadyAndNot> = BTreeMap::new();
    for p in pods {
        if obj::namespace(p) != ns || obj::terminating(p) || !obj::labels_match(p, selector) {
            continue;
        }
        let Some(ip) = obj::str_at(p, "/status/podIP") else {
            continue;
        };
        let containers: Vec<Value> = p
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let resolved: Option<Vec<(String, u16)>> = ports
            .iter()
            .map(|sp| {
                let target = sp.get("targetPort").or(sp.get("port"))?;
                let name = sp
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                Some((name, resolve_port(target, &containers)?))
            })
            .collect();
        let Some(resolved) = resolved else { continue };
        let addr = json!({"ip": ip, "targetRef": {"kind": "Pod", "name": obj::name(p),
            "namespace": ns, "uid": obj::uid(p)}});
        let entry = subsets.entry(resolved).or_default();
        if pod_ready(p) {
            entry.0.push(addr);
        } else {
            entry.1.push(addr);
        }
    }
    let subsets: Vec<Value> = subsets
        .into_iter()
        .map(|(ports, (ready, not_ready))| {
            let mut s = json!({"ports": ports.iter().map(|(n, p)| {
                let mut v = json!({"port": p, "protocol": "TCP"});
                if !n.is_empty() { v["name"] = json!(n); }
                v
            }).collect::<Vec<_>>()});
            if !ready.is_empty() {
                s["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = json!(not_ready);
            }
            s
        })
        .collect();
    Some(json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": obj::name(svc), "namespace": ns,
                     "labels": svc.pointer("/metadata/labels").cloned().unwrap_or(json!({}))},
        "subsets": subsets,
    }))
}

/// Ready addresses for one Service port in an Endpoints object.
fn backends(ep: &Value, port_name: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for s in ep
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ports: Vec<&Value> = s
            .get("ports")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .or_else(|| (ports.len() == 1).then(|| &ports[0]))
            .and_then(|p| p.get("port")?.as_u64());
        let Some(port) = port else { continue };
        for a in s
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(ip) = a
                .get("ip")
                .and_then(Value::as_str)
                .and_then(|i| i.parse::<IpAddr>().ok())
            {
                out.push(SocketAddr::new(ip, port as u16));
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
        let pods = self.api.list(api::PODS, None)?;
        let services = self.api.list(api::SERVICES, None)?;
        let mut eps: HashMap<(String, String), Value> = self
            .api
            .list(api::ENDPOINTS, None)?
            .into_iter()
            .map(|e| {
                (
                    (obj::namespace(&e).to_string(), obj::name(&e).to_string()),
                    e,
                )
            })
            .collect();
        for svc in &services {
            let key = (obj::namespace(svc).to_string(), obj::name(svc).to_string());
            if let Some(want) = endpoints_for(svc, &pods) {
                let current = eps.get(&key);
                if current.map(|c| (c.get("subsets"), c.pointer("/metadata/labels")))
                    != Some((want.get("subsets"), want.pointer("/metadata/labels")))
                {
                    let stored = match current {
                        Some(c) => {
                            let mut w = want.clone();
                            w["metadata"]["resourceVersion"] =
                                c["metadata"]["resourceVersion"].clone();
                            self.api.replace(api::ENDPOINTS, &key.0, &key.1, &w)?
                        }
                        None => self.api.create(api::ENDPOINTS, &key.0, &want)?,
                    };
                    if let Some(s) = stored {
                        eps.insert(key.clone(), s);
                    }
                }
            }
        }
        // Listeners: one per (ClusterIP, port) and (node, nodePort).
        let mut wanted: HashMap<SocketAddr, Vec<SocketAddr>> = HashMap::new();
        for svc in &services {
            let key = (obj::namespace(svc).to_string(), obj::name(svc).to_string());
            let ep = eps.get(&key).cloned().unwrap_or_default();
            let cluster_ip =
                obj::str_at(svc, "/spec/clusterIP").and_then(|i| i.parse::<IpAddr>().ok());
            for p in svc
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                let b = backends(&ep, name);
                if let (Some(ip), Some(port)) = (cluster_ip, p.get("port").and_then(Value::as_u64))
                {
                    wanted.insert(SocketAddr::new(ip, port as u16), b.clone());
                }
                if let Some(np) = p.get("nodePort").and_then(Value::as_u64) {
                    wanted.insert(SocketAddr::new(self.node_ip, np as u16), b);
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
