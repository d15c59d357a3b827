//! The BC Gov platform's TransportServerClaim (TSC) behaviour between two sites.
//!
//! For a TSC created on the primary site for Service `S` port `P`, the platform creates a
//! selector-less Service + Endpoints `S-<peer>` on the primary site and `S-<primary>` on the peer
//! site, each on a random high port (`port == targetPort`, or `port == servicePort` with
//! `overrideServicePort: true`), and writes the TSC status (`address`, `port`). Each generated
//! Service's Endpoints point at a "TransportServer" — here a [`pgdr_tunnel::Tunnel`] on its own
//! loopback address — that forwards to the other site's NodePort of `S`. The tunnels can be cut,
//! blackholed, slowed and healed, and the platform can move them to a new random port.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgdr_tunnel::{Mode, Tunnel};
use serde_json::{Value, json};
use tokio::sync::watch;

use pgdr_minicluster::Site;
use pgdr_minicluster::api::{self, Api, obj};

use crate::error::{DrillError, Result};

/// The TransportServerClaim CRD (porter.devops.gov.bc.ca/v1alpha1), as registered on both sites.
pub fn tsc_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "transportserverclaims.porter.devops.gov.bc.ca"},
        "spec": {
            "group": "porter.devops.gov.bc.ca",
            "scope": "Namespaced",
            "names": {"plural": "transportserverclaims", "singular": "transportserverclaim",
                      "kind": "TransportServerClaim", "shortNames": ["tscs"]},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    })
}

/// One direction of the tunnel: a generated Service on `site` routing to the other site.
struct Leg {
    /// Name of the generated Service (`S-<other site>`).
    service: String,
    /// Tunnel port (the Service's targetPort).
    port: u16,
    address: Ipv4Addr,
    upstream: Option<SocketAddr>,
    tunnel: Option<Tunnel>,
}

struct Claim {
    ns: String,
    service: String,
    service_port: u16,
    override_port: bool,
    /// [0]: on the primary site (towards the peer); [1]: on the peer site (towards the primary).
    legs: [Leg; 2],
}

#[derive(Default)]
struct State {
    claims: HashMap<String, Claim>,
    mode: Option<Mode>,
    /// Bumped by `change_port` so the loop re-publishes.
    dirty: bool,
}

/// The platform between a primary and a peer site. Dropping it stops its loop and tunnels.
pub struct Platform {
    state: Arc<Mutex<State>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn random_port() -> u16 {
    rand::random_range(40000..60000)
}

fn free_port(ip: Ipv4Addr, avoid: u16) -> u16 {
    loop {
        let p = random_port();
        if p != avoid && std::net::TcpListener::bind((ip, p)).is_ok() {
            return p;
        }
    }
}

struct Sides {
    primary: (Api, String, Ipv4Addr),
    peer: (Api, String, Ipv4Addr),
}

impl Platform {
    /// Registers the TSC CRD on both sites and starts watching the primary site's TSCs.
    pub async fn start(primary: &Site, peer: &Site) -> Result<Platform> {
        primary.api().ensure_crd(&tsc_crd())?;
        peer.api().ensure_crd(&tsc_crd())?;
        let sides = Arc::new(Sides {
            primary: (
                primary.api().clone(),
                primary.name().into(),
                primary.node_ip(),
            ),
            peer: (peer.api().clone(), peer.name().into(), peer.node_ip()),
        });
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, mut rx) = watch::channel(false);
        let st = state.clone();
        let task = tokio::spawn(async move {
            let mut last = (0, 0);
            loop {
                let rv = (
                    sides.primary.0.resource_version(),
                    sides.peer.0.resource_version(),
                );
                let dirty = std::mem::take(&mut st.lock().unwrap_or_else(|p| p.into_inner()).dirty);
                if rv != last || dirty {
                    last = rv;
                    let s2 = sides.clone();
                    let st2 = st.clone();
                    // Tunnels start threads and bind sockets: keep that off the async workers.
                    match tokio::task::spawn_blocking(move || reconcile(&s2, &st2)).await {
                        Ok(Err(e)) => tracing::warn!(error = %e, "platform"),
                        Err(e) => tracing::warn!(error = %e, "platform task"),
                        Ok(Ok(())) => {}
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = wait_stop(&mut rx) => break,
                }
            }
        });
        Ok(Platform { state, stop, task })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_mode(&self, mode: Mode) {
        let mut st = self.lock();
        st.mode = Some(mode);
        for c in st.claims.values() {
            for leg in &c.legs {
                if let Some(t) = &leg.tunnel {
                    t.set_mode(mode);
                }
            }
        }
    }

    /// The link is down: connections refused, open ones closed (both directions).
    pub fn cut(&self) {
        self.set_mode(Mode::Cut)
    }
    /// Packets vanish: connections accepted, nothing forwarded or answered.
    pub fn blackhole(&self) {
        self.set_mode(Mode::Blackhole)
    }
    /// Adds latency to every chunk each way.
    pub fn slow(&self, ms: u64) {
        self.set_mode(Mode::Slow(Duration::from_millis(ms)))
    }
    pub fn heal(&self) {
        self.set_mode(Mode::Pass)
    }

    /// The platform moves every tunnel to a new random port (Services, Endpoints and TSC status
    /// follow), as happened to the prototype's port.
    pub fn change_port(&self) {
        let mut st = self.lock();
        for c in st.claims.values_mut() {
            for leg in &mut c.legs {
                leg.port = free_port(leg.address, leg.port);
                leg.tunnel = None;
            }
        }
        st.dirty = true;
    }

    /// Tunnel port on the peer site for the TSC's Service (what the standby must use), if set up.
    pub fn peer_port(&self, service: &str) -> Option<u16> {
        self.lock()
            .claims
            .values()
            .find(|c| c.service == service)
            .map(|c| c.legs[1].port)
    }

    /// Counters of the peer → primary tunnel of a Service's TSC.
    pub fn stats(&self, service: &str) -> Option<pgdr_tunnel::Stats> {
        self.lock()
            .claims
            .values()
            .find(|c| c.service == service)
            .and_then(|c| c.legs[1].tunnel.as_ref().map(Tunnel::stats))
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// NodePort of `svc` port `port` on a site, as the address the TransportServer targets.
fn node_port(api: &Api, node: Ipv4Addr, ns: &str, svc: &str, port: u16) -> Option<SocketAddr> {
    let s = api.get(api::SERVICES, ns, svc).ok()??;
    let np = s
        .pointer("/spec/ports")?
        .as_array()?
        .iter()
        .find(|p| p.get("port").and_then(Value::as_u64) == Some(port as u64))?
        .get("nodePort")?
        .as_u64()?;
    Some(SocketAddr::from((node, np as u16)))
}

fn reconcile(sides: &Sides, state: &Mutex<State>) -> Result<()> {
    let (papi, pname, pnode) = &sides.primary;
    let (qapi, qname, qnode) = &sides.peer;
    let tscs = papi.list(api::TSCS, None)?;
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    let mode = st.mode;
    // Deleted claims take their Services along.
    let live: Vec<String> = tscs.iter().map(|t| obj::uid(t).to_string()).collect();
    let gone: Vec<String> = st
        .claims
        .keys()
        .filter(|k| !live.contains(k))
        .cloned()
        .collect();
    for uid in gone {
        if let Some(c) = st.claims.remove(&uid) {
            for (api, leg) in [(papi, &c.legs[0]), (qapi, &c.legs[1])] {
                api.delete(api::SERVICES, &c.ns, &leg.service)?;
                api.delete(api::ENDPOINTS, &c.ns, &leg.service)?;
            }
        }
    }
    for (index, tsc) in tscs.iter().enumerate() {
        let uid = obj::uid(tsc).to_string();
        let ns = obj::namespace(tsc).to_string();
        let service = obj::str_at(tsc, "/spec/service").unwrap_or("").to_string();
        let service_port = obj::i64_at(tsc, "/spec/servicePort").unwrap_or(0) as u16;
        if service.is_empty() || service_port == 0 {
            continue;
        }
        let override_port = tsc
            .pointer("/spec/overrideServicePort")
            .and_then(Value::as_bool)
            == Some(true);
        let claim = st.claims.entry(uid).or_insert_with(|| {
            let leg = |other: &str| {
                let address = pgdr_patroni_harness::allocate_loopback(&[])
                    .unwrap_or(Ipv4Addr::new(127, 0, 0, 1));
                Leg {
                    service: format!("{service}-{other}"),
                    port: free_port(address, 0),
                    address,
                    upstream: None,
                    tunnel: None,
                }
            };
            Claim {
                ns: ns.clone(),
                service: service.clone(),
                service_port,
                override_port,
                legs: [leg(qname), leg(pname)],
            }
        });
        claim.service_port = service_port;
        claim.override_port = override_port;
        // Leg 0 lives on the primary and reaches the peer's S; leg 1 the reverse.
        for (i, (api, own_node, other_api, other_node)) in
            [(papi, *pnode, qapi, *qnode), (qapi, *qnode, papi, *pnode)]
                .into_iter()
                .enumerate()
        {
            let leg = &mut claim.legs[i];
            let upstream = node_port(other_api, other_node, &ns, &service, service_port);
            if upstream != leg.upstream || (leg.tunnel.is_none() && upstream.is_some()) {
                leg.tunnel = None;
                leg.upstream = upstream;
                if let Some(up) = upstream {
                    let t = Tunnel::spawn(SocketAddr::from((leg.address, leg.port)), up).map_err(
                        |source| DrillError::Tunnel {
                            service: leg.service.clone(),
                            source,
                        },
                    )?;
                    if let Some(m) = mode {
                        t.set_mode(m);
                    }
                    leg.tunnel = Some(t);
                }
            }
            let port = if claim.override_port {
                claim.service_port
            } else {
                leg.port
            };
            let svc = json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": leg.service, "namespace": ns,
                             "labels": {"app.kubernetes.io/managed-by": "porter"}},
                "spec": {"type": "ClusterIP", "clusterIP": tunnel_service_ip(own_node, index).to_string(),
                         "ports": [{"name": format!("{service_port}"),
                         "port": port, "targetPort": leg.port, "protocol": "TCP"}]}
            });
            let ep = json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": leg.service, "namespace": ns},
                "subsets": [{"addresses": [{"ip": leg.address.to_string()}],
                             "ports": [{"name": format!("{service_port}"), "port": leg.port, "protocol": "TCP"}]}]
            });
            upsert(api, api::SERVICES, &ns, &leg.service, svc, "/spec/ports")?;
            upsert(api, api::ENDPOINTS, &ns, &leg.service, ep, "/subsets")?;
        }
        // The status names the primary-side TransportServer, as the operator reports it.
        let status = json!({"address": claim.legs[0].address.to_string(),
                            "port": claim.legs[0].port.to_string()});
        if tsc.get("status") != Some(&status) {
            papi.patch_status(api::TSCS, &ns, obj::name(tsc), &status)?;
        }
    }
    Ok(())
}

/// The ClusterIP of a site's tunnel Service for the `index`-th claim: fixed, so that the drill
/// can hand it to the readiness sidecar's peer check (`readiness.peerCheck.host`) at install
/// time. Production uses the Service's DNS name; the drill has no cluster DNS. Far above the
/// addresses kubesim allocates in order (`127.P.0.1`, `127.P.0.2`, …).
pub fn tunnel_service_ip(node: Ipv4Addr, index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, node.octets()[1], 200, (1 + index.min(250)) as u8)
}

/// Creates `want`, or updates the object when the part at `ptr` differs.
fn upsert(api: &Api, kind: api::Kind, ns: &str, name: &str, want: Value, ptr: &str) -> Result<()> {
    match api.get(kind, ns, name)? {
        None => {
            api.create(kind, ns, &want)?;
        }
        Some(cur) if cur.pointer(ptr) != want.pointer(ptr) => {
            let mut w = want;
            if ptr == "/spec/ports" {
                // Keep the allocated ClusterIP; only the ports move.
                w["spec"]["clusterIP"] = cur
                    .pointer("/spec/clusterIP")
                    .cloned()
                    .unwrap_or(Value::Null);
            }
            w["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
            api.replace(kind, ns, name, &w)?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// Resolves once `stop` is true (or its sender is gone).
async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
