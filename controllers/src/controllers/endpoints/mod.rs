//! The endpoints controller (Kubernetes' `pkg/controller/endpoint`): keeps an Endpoints object
//! beside every Service with a selector, listing the IPs of the pods the selector matches and the
//! ports those pods serve the Service's ports on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::error::Result;
use crate::runtime::{
    Action, ApiExt, Change, Context, Controller, DeleteOptions, Informer, ObjectKey, Reconciler,
};
use crate::util;

/// The label Kubernetes puts on the Endpoints of a headless Service (`clusterIP: None`).
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Kubernetes runs 5 endpoint workers; two are plenty on the small machines rkube targets.
const WORKERS: usize = 2;

/// How long a reconcile waits for the cache to show its own create or delete.
const CACHE_WAIT: Duration = Duration::from_secs(5);

/// The endpoints controller. Its keys are Services; it is woken by changes to the Service, to
/// any pod in the Service's namespace whose labels match its selector (before or after the
/// change), and to the Endpoints of the same name, so a manual edit of a managed Endpoints is
/// reverted.
///
/// Services without a selector have manually managed Endpoints: they are never created, updated
/// or deleted. When a Service is deleted its Endpoints are deleted, as in Kubernetes. An
/// Endpoints object whose Service has never been seen is left alone: it may be a manual one
/// created just before its Service (Kubernetes removes such leftovers only when its controller
/// starts).
pub fn controller(ctx: &Context) -> Controller {
    let reconciler = EndpointsReconciler {
        ctx: ctx.clone(),
        services: ctx.informers.get::<Service>(),
        pods: ctx.informers.get::<Pod>(),
        endpoints: ctx.informers.get::<Endpoints>(),
    };
    let services = reconciler.services.clone();
    let pods = reconciler.pods.clone();
    let endpoints = reconciler.endpoints.clone();
    let c = Controller::new::<Service>("endpoints", ctx, reconciler, WORKERS);
    util::enqueue_self(&services, &c.queue);
    {
        let queue = c.queue.clone();
        let services = services.clone();
        pods.on_change(move |change: &Change<Pod>| {
            let pod = change.object();
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            for svc in services.list_namespace(ns) {
                let Some(selector) = selector(&svc) else {
                    continue;
                };
                let matches = std::iter::once(pod)
                    .chain(change.old())
                    .any(|p| util::map_selector_matches(selector, p.metadata.labels.as_ref()));
                if matches {
                    queue.add(ObjectKey::of(svc.as_ref()));
                }
            }
        });
    }
    {
        let queue = c.queue.clone();
        endpoints.on_change(move |change: &Change<Endpoints>| {
            // Only Endpoints of a known Service: reacting to one whose Service is not cached
            // (yet) would delete a manual Endpoints created before its Service.
            let key = ObjectKey::of(change.object().as_ref());
            if services.get(&key.namespace, &key.name).is_some() {
                queue.add(key);
            }
        });
    }
    c
}

struct EndpointsReconciler {
    ctx: Context,
    services: Informer<Service>,
    pods: Informer<Pod>,
    endpoints: Informer<Endpoints>,
}

#[async_trait::async_trait]
impl Reconciler for EndpointsReconciler {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let (ns, name) = (key.namespace.as_str(), key.name.as_str());
        let Some(svc) = self.services.get(ns, name) else {
            return self.delete_endpoints(key).await;
        };
        let Some(selector) = selector(&svc) else {
            return Ok(Action::Done);
        };
        let spec = svc.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            return Ok(Action::Done);
        }
        let pods = util::list_matching(&self.pods, ns, |p| {
            util::map_selector_matches(selector, p.metadata.labels.as_ref())
        });
        let subsets = desired_subsets(&svc, &pods);
        let labels = desired_labels(&svc);
        let current = self.endpoints.get(ns, name);
        if let Some(cur) = &current {
            let cur_labels = cur.metadata.labels.clone().unwrap_or_default();
            if cur.subsets.clone().unwrap_or_default() == subsets && cur_labels == labels {
                return Ok(Action::Done);
            }
        }
        let subsets = (!subsets.is_empty()).then_some(subsets);
        let labels = (!labels.is_empty()).then_some(labels);
        match current {
            Some(cur) => {
                let mut ep = (*cur).clone();
                ep.subsets = subsets;
                ep.metadata.labels = labels;
                self.ctx.api.update_object(&ep).await?;
                tracing::debug!(endpoints = %key, "updated endpoints");
            }
            None => {
                let ep = Endpoints {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(ns.to_string()),
                        labels,
                        ..Default::default()
                    },
                    subsets,
                };
                self.ctx.api.create_object(&ep).await?;
                tracing::debug!(endpoints = %key, "created endpoints");
                self.endpoints
                    .wait_until(CACHE_WAIT, |c| c.get(ns, name).is_some())
                    .await;
            }
        }
        Ok(Action::Done)
    }
}

impl EndpointsReconciler {
    /// The Service is gone: so goes its Endpoints.
    async fn delete_endpoints(&self, key: &ObjectKey) -> Result<Action> {
        let (ns, name) = (key.namespace.as_str(), key.name.as_str());
        let Some(ep) = self.endpoints.get(ns, name) else {
            return Ok(Action::Done);
        };
        let uid = ep.metadata.uid.clone();
        let opts = DeleteOptions {
            precondition_uid: uid.clone(),
            ..Default::default()
        };
        self.ctx
            .api
            .delete_object::<Endpoints>(ns, name, opts)
            .await?;
        tracing::debug!(endpoints = %key, "deleted the endpoints of a deleted service");
        self.endpoints
            .wait_until(CACHE_WAIT, |c| {
                c.get(ns, name).is_none_or(|e| e.metadata.uid != uid)
            })
            .await;
        Ok(Action::Done)
    }
}

/// The Service's selector, if it has a non-empty one (an empty selector means the Endpoints are
/// managed by hand).
fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The Service's labels, plus the headless label for a headless Service.
fn desired_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.to_string(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// The subsets the Endpoints of `svc` should have, given the pods its selector matches:
/// every pod with an IP contributes its address once per Service port it serves, and the
/// addresses are then grouped by identical port sets (Kubernetes' `RepackSubsets`), so the result
/// depends only on the pods, never on their order.
fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let service_ports = spec.ports.unwrap_or_default();
    let mut repack = Repack::default();
    for pod in pods {
        let Some((address, ready)) = pod_address(svc, pod, publish_not_ready) else {
            continue;
        };
        if service_ports.is_empty() {
            // A headless Service may have no ports: its Endpoints list addresses only.
            if is_headless(svc) {
                repack.add(&address, ready, None);
            }
            continue;
        }
        for sp in &service_ports {
            let Some(port) = find_port(pod, sp) else {
                tracing::trace!(pod = ?pod.metadata.name, port = ?sp.name, "pod lacks the service's target port");
                continue;
            };
            let ep = EndpointPort {
                name: sp.name.clone().filter(|n| !n.is_empty()),
                port,
                protocol: Some(protocol(sp.protocol.as_deref()).to_string()),
                app_protocol: sp.app_protocol.clone(),
            };
            repack.add(&address, ready, Some(ep));
        }
    }
    repack.subsets()
}

/// The pod's address for the Service and whether it is ready; `None` when the pod is not an
/// endpoint (no IP yet, finished, or being deleted unless the Service publishes not-ready
/// addresses).
fn pod_address(
    svc: &Service,
    pod: &Pod,
    publish_not_ready: bool,
) -> Option<(EndpointAddress, bool)> {
    let status = pod.status.as_ref()?;
    let ip = status
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
        .or_else(|| {
            let first = status.pod_ips.as_ref()?.first()?;
            Some(first.ip.clone()).filter(|ip| !ip.is_empty())
        })?;
    if util::is_pod_terminated(pod) || (!publish_not_ready && util::is_terminating(pod)) {
        return None;
    }
    let spec = pod.spec.as_ref();
    let meta = &pod.metadata;
    // Like Kubernetes, a pod names itself in the Service's DNS domain only through a matching
    // subdomain.
    let hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .filter(|_| spec.and_then(|s| s.subdomain.as_deref()) == svc.metadata.name.as_deref());
    let address = EndpointAddress {
        ip,
        hostname,
        node_name: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_string()),
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            ..Default::default()
        }),
    };
    Some((address, publish_not_ready || util::is_pod_ready(pod)))
}

/// The pod port a Service port sends traffic to (Kubernetes' `FindPort`): a number as is, a
/// name looked up among the pod's container ports of the same protocol, nothing given means the
/// Service port itself.
fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    match &sp.target_port {
        None | Some(IntOrString::Int(0)) => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) if name.is_empty() => Some(sp.port),
        Some(IntOrString::String(name)) => {
            let proto = protocol(sp.protocol.as_deref());
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && protocol(p.protocol.as_deref()) == proto
                })
                .map(|p| p.container_port)
        }
    }
}

fn protocol(p: Option<&str>) -> &str {
    p.filter(|p| !p.is_empty()).unwrap_or("TCP")
}

/// An address's identity: its IP and the uid of the pod behind it (two host-network pods may
/// share an IP).
type AddressKey = (String, String);

/// A port's identity, ordered by name, then number, protocol and application protocol.
type PortKey = (String, i32, String, Option<String>);

/// Kubernetes' `RepackSubsets`: collect (address, port) pairs, then make one subset per set of
/// addresses that share exactly the same ports, sorted so the result is deterministic.
#[derive(Default)]
struct Repack {
    addresses: BTreeMap<AddressKey, EndpointAddress>,
    ports: BTreeMap<PortKey, EndpointPort>,
    /// For each port (`None`: the "no ports" sentinel of a headless Service), its addresses and
    /// whether each is ready.
    by_port: BTreeMap<Option<PortKey>, BTreeMap<AddressKey, bool>>,
}

impl Repack {
    fn add(&mut self, address: &EndpointAddress, ready: bool, port: Option<EndpointPort>) {
        let uid = address
            .target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default();
        let akey = (address.ip.clone(), uid);
        self.addresses
            .entry(akey.clone())
            .or_insert_with(|| address.clone());
        let pkey = port.map(|p| {
            let key = (
                p.name.clone().unwrap_or_default(),
                p.port,
                p.protocol.clone().unwrap_or_default(),
                p.app_protocol.clone(),
            );
            self.ports.insert(key.clone(), p);
            key
        });
        // An address ready for a port once stays ready for it.
        let was_ready = self
            .by_port
            .entry(pkey)
            .or_default()
            .entry(akey)
            .or_insert(ready);
        *was_ready |= ready;
    }

    fn subsets(self) -> Vec<EndpointSubset> {
        let mut groups: BTreeMap<Vec<(AddressKey, bool)>, Vec<Option<PortKey>>> = BTreeMap::new();
        for (port, addrs) in self.by_port {
            groups
                .entry(addrs.into_iter().collect())
                .or_default()
                .push(port);
        }
        groups
            .into_iter()
            .map(|(addrs, ports)| {
                let pick = |want: bool| {
                    let list: Vec<EndpointAddress> = addrs
                        .iter()
                        .filter(|(_, ready)| *ready == want)
                        .map(|(k, _)| self.addresses[k].clone())
                        .collect();
                    (!list.is_empty()).then_some(list)
                };
                let ports: Vec<EndpointPort> = ports
                    .iter()
                    .flatten()
                    .map(|k| self.ports[k].clone())
                    .collect();
                EndpointSubset {
                    addresses: pick(true),
                    not_ready_addresses: pick(false),
                    ports: (!ports.is_empty()).then_some(ports),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
