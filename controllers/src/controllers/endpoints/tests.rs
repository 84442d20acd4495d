//! Unit tests of the endpoints controller over the fake API.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod,
    PodCondition, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::runtime::fake::{Action as FakeAction, FakeApi};
use crate::runtime::{Informers, Recorder};

struct Harness {
    informers: Informers,
    api: Arc<FakeApi>,
    controller: Controller,
}

impl Harness {
    fn new() -> Harness {
        let informers = Informers::new();
        let api = Arc::new(FakeApi::new(informers.clone()));
        let (recorder, _) = Recorder::memory("endpoints-controller");
        let now: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let ctx = Context {
            informers: informers.clone(),
            api: api.clone(),
            recorder,
            clock: Arc::new(move || now),
        };
        let controller = controller(&ctx);
        Harness {
            informers,
            api,
            controller,
        }
    }

    fn add_service(&self, svc: Service) {
        self.informers.get::<Service>().upsert(svc);
    }

    fn add_pod(&self, pod: Pod) {
        self.informers.get::<Pod>().upsert(pod);
    }

    async fn sync(&self) -> Vec<String> {
        self.controller.run_until_idle().await;
        self.api.take_summaries()
    }

    fn endpoints(&self, name: &str) -> Option<Arc<Endpoints>> {
        self.informers.get::<Endpoints>().get("default", name)
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn meta(name: &str, rv: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        uid: Some(format!("uid-{name}")),
        resource_version: Some(rv.into()),
        ..Default::default()
    }
}

fn service_port(name: &str, port: i32, target: Option<IntOrString>) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: target,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn service(name: &str, selector: &[(&str, &str)], ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: ObjectMeta {
            labels: Some(labels(&[("team", "a")])),
            ..meta(name, "1")
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(selector)),
            ports: Some(ports),
            cluster_ip: Some("10.96.0.10".into()),
            ..Default::default()
        }),
        status: None,
    }
}

/// A running pod labelled app=web on node-1 with `ports` as (name, number).
fn pod(name: &str, ip: &str, ready: bool, ports: &[(&str, i32)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            labels: Some(labels(&[("app", "web")])),
            ..meta(name, "1")
        },
        spec: Some(PodSpec {
            node_name: Some("node-1".into()),
            containers: vec![Container {
                name: "c".into(),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ContainerPort {
                            name: Some(n.to_string()),
                            container_port: *p,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: (!ip.is_empty()).then(|| ip.to_string()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
    list.iter().flatten().map(|a| a.ip.as_str()).collect()
}

fn port(name: &str, port: i32) -> EndpointPort {
    EndpointPort {
        name: Some(name.into()),
        port,
        protocol: Some("TCP".into()),
        app_protocol: None,
    }
}

fn web_service() -> Service {
    service(
        "web",
        &[("app", "web")],
        vec![service_port("http", 80, Some(IntOrString::Int(8080)))],
    )
}

#[tokio::test]
async fn ready_pods_are_addresses_and_others_not_ready_addresses() {
    let h = Harness::new();
    h.add_service(web_service());
    h.add_pod(pod("b", "10.0.0.2", true, &[]));
    h.add_pod(pod("a", "10.0.0.10", true, &[]));
    h.add_pod(pod("c", "10.0.0.3", false, &[]));
    h.add_pod(pod("no-ip", "", true, &[]));
    let mut leaving = pod("leaving", "10.0.0.4", true, &[]);
    leaving.metadata.deletion_timestamp = Some(Time("2024-01-01T00:00:00Z".parse().unwrap()));
    h.add_pod(leaving);
    let mut done = pod("done", "10.0.0.5", false, &[]);
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    h.add_pod(done);
    let mut other = pod("other", "10.0.0.6", true, &[]);
    other.metadata.labels = Some(labels(&[("app", "api")]));
    h.add_pod(other);

    assert_eq!(h.sync().await, ["create Endpoints default/web"]);
    let ep = h.endpoints("web").unwrap();
    assert_eq!(ep.metadata.labels, Some(labels(&[("team", "a")])));
    let subsets = ep.subsets.as_ref().unwrap();
    assert_eq!(subsets.len(), 1);
    // Sorted by IP as strings, like Kubernetes.
    assert_eq!(ips(&subsets[0].addresses), ["10.0.0.10", "10.0.0.2"]);
    assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.3"]);
    assert_eq!(subsets[0].ports.as_deref(), Some(&[port("http", 8080)][..]));
    let a = &subsets[0].addresses.as_ref().unwrap()[0];
    assert_eq!(a.node_name.as_deref(), Some("node-1"));
    let target = a.target_ref.as_ref().unwrap();
    assert_eq!(target.kind.as_deref(), Some("Pod"));
    assert_eq!(target.name.as_deref(), Some("a"));
    assert_eq!(target.namespace.as_deref(), Some("default"));
    assert_eq!(target.uid.as_deref(), Some("uid-a"));
}

#[tokio::test]
async fn publish_not_ready_addresses_lists_every_pod_as_ready() {
    let h = Harness::new();
    let mut svc = web_service();
    svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    h.add_service(svc);
    h.add_pod(pod("a", "10.0.0.1", true, &[]));
    h.add_pod(pod("b", "10.0.0.2", false, &[]));
    let mut leaving = pod("c", "10.0.0.3", true, &[]);
    leaving.metadata.deletion_timestamp = Some(Time("2024-01-01T00:00:00Z".parse().unwrap()));
    h.add_pod(leaving);
    h.sync().await;
    let subsets = h.endpoints("web").unwrap().subsets.clone().unwrap();
    assert_eq!(
        ips(&subsets[0].addresses),
        ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    );
    assert_eq!(subsets[0].not_ready_addresses, None);
}

#[tokio::test]
async fn named_target_ports_resolve_per_pod_and_pods_lacking_them_are_left_out() {
    let h = Harness::new();
    h.add_service(service(
        "web",
        &[("app", "web")],
        vec![
            service_port("http", 80, Some(IntOrString::String("web".into()))),
            service_port("metrics", 9000, Some(IntOrString::Int(9090))),
            service_port("plain", 7000, None),
        ],
    ));
    h.add_pod(pod("a", "10.0.0.1", true, &[("web", 8080)]));
    h.add_pod(pod("b", "10.0.0.2", true, &[("other", 8080)]));
    h.add_pod(pod("c", "10.0.0.3", true, &[("web", 8081)]));
    h.sync().await;
    let subsets = h.endpoints("web").unwrap().subsets.clone().unwrap();
    let got: Vec<(Vec<&str>, Vec<EndpointPort>)> = subsets
        .iter()
        .map(|s| (ips(&s.addresses), s.ports.clone().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (vec!["10.0.0.1"], vec![port("http", 8080)]),
            (
                vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"],
                vec![port("metrics", 9090), port("plain", 7000)]
            ),
            (vec!["10.0.0.3"], vec![port("http", 8081)]),
        ]
    );
}

#[tokio::test]
async fn a_named_port_must_match_the_protocol_too() {
    let h = Harness::new();
    let mut udp = service_port("dns", 53, Some(IntOrString::String("dns".into())));
    udp.protocol = Some("UDP".into());
    h.add_service(service("web", &[("app", "web")], vec![udp]));
    // The container port defaults to TCP, so it does not serve the UDP Service port.
    h.add_pod(pod("a", "10.0.0.1", true, &[("dns", 5353)]));
    let mut b = pod("b", "10.0.0.2", true, &[("dns", 5353)]);
    b.spec.as_mut().unwrap().containers[0]
        .ports
        .as_mut()
        .unwrap()[0]
        .protocol = Some("UDP".into());
    h.add_pod(b);
    h.sync().await;
    let subsets = h.endpoints("web").unwrap().subsets.clone().unwrap();
    assert_eq!(subsets.len(), 1);
    assert_eq!(ips(&subsets[0].addresses), ["10.0.0.2"]);
    assert_eq!(
        subsets[0].ports.as_ref().unwrap()[0].protocol.as_deref(),
        Some("UDP")
    );
}

#[tokio::test]
async fn multi_port_services_share_one_subset() {
    let h = Harness::new();
    h.add_service(service(
        "web",
        &[("app", "web")],
        vec![
            service_port("https", 443, Some(IntOrString::Int(8443))),
            service_port("http", 80, Some(IntOrString::Int(8080))),
        ],
    ));
    h.add_pod(pod("a", "10.0.0.1", true, &[]));
    h.add_pod(pod("b", "10.0.0.2", false, &[]));
    h.sync().await;
    let subsets = h.endpoints("web").unwrap().subsets.clone().unwrap();
    assert_eq!(
        subsets,
        [EndpointSubset {
            addresses: Some(vec![desired_address("a", "10.0.0.1")]),
            not_ready_addresses: Some(vec![desired_address("b", "10.0.0.2")]),
            ports: Some(vec![port("http", 8080), port("https", 8443)]),
        }]
    );
}

fn desired_address(name: &str, ip: &str) -> EndpointAddress {
    EndpointAddress {
        ip: ip.into(),
        hostname: None,
        node_name: Some("node-1".into()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn services_without_a_selector_keep_their_manual_endpoints() {
    let h = Harness::new();
    let mut svc = web_service();
    svc.spec.as_mut().unwrap().selector = None;
    h.add_service(svc);
    let mut empty = web_service();
    empty.metadata.name = Some("empty".into());
    empty.spec.as_mut().unwrap().selector = Some(BTreeMap::new());
    h.add_service(empty);
    h.add_pod(pod("a", "10.0.0.1", true, &[]));
    assert_eq!(h.sync().await, Vec::<String>::new(), "nothing is created");

    let manual = Endpoints {
        metadata: meta("web", "7"),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: "192.168.1.1".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }]),
    };
    h.informers.get::<Endpoints>().upsert(manual.clone());
    h.add_pod(pod("b", "10.0.0.2", true, &[]));
    assert_eq!(h.sync().await, Vec::<String>::new(), "nothing is updated");
    assert_eq!(*h.endpoints("web").unwrap(), manual);

    h.informers
        .get::<Service>()
        .remove(&ObjectKey::new("default", "empty"));
    let mut svc = web_service();
    svc.metadata.resource_version = Some("2".into());
    svc.spec.as_mut().unwrap().selector = None;
    h.add_service(svc);
    assert_eq!(h.sync().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_second_reconcile_writes_nothing() {
    let h = Harness::new();
    h.add_service(web_service());
    h.add_pod(pod("a", "10.0.0.1", true, &[]));
    h.add_pod(pod("b", "10.0.0.2", false, &[]));
    // The create wakes the controller again through the Endpoints handler; that pass is a no-op.
    assert_eq!(h.sync().await, ["create Endpoints default/web"]);
    h.controller.queue.add(ObjectKey::new("default", "web"));
    assert_eq!(h.sync().await, Vec::<String>::new());
    // A pod update that changes nothing the Endpoints show writes nothing either.
    let mut a = pod("a", "10.0.0.1", true, &[]);
    a.metadata.resource_version = Some("2".into());
    h.add_pod(a);
    assert_eq!(h.sync().await, Vec::<String>::new());
}

#[tokio::test]
async fn deleting_the_service_deletes_its_endpoints() {
    let h = Harness::new();
    h.add_service(web_service());
    h.add_pod(pod("a", "10.0.0.1", true, &[]));
    h.sync().await;
    let uid = h.endpoints("web").unwrap().metadata.uid.clone();
    assert!(uid.is_some());
    h.informers
        .get::<Service>()
        .remove(&ObjectKey::new("default", "web"));
    h.controller.run_until_idle().await;
    assert_eq!(
        h.api.take_actions(),
        [FakeAction::Delete {
            kind: "Endpoints".into(),
            key: "default/web".into(),
            opts: DeleteOptions {
                precondition_uid: uid,
                ..Default::default()
            },
        }]
    );
    assert!(h.endpoints("web").is_none());
}

#[tokio::test]
async fn endpoints_without_a_known_service_are_left_alone() {
    let h = Harness::new();
    h.informers.get::<Endpoints>().upsert(Endpoints {
        metadata: meta("external", "3"),
        subsets: None,
    });
    assert_eq!(h.sync().await, Vec::<String>::new());
    assert!(h.endpoints("external").is_some());
}

#[tokio::test]
async fn a_readiness_change_moves_the_address() {
    let h = Harness::new();
    h.add_service(web_service());
    h.add_pod(pod("a", "10.0.0.1", true, &[]));
    h.add_pod(pod("b", "10.0.0.2", true, &[]));
    h.sync().await;
    let mut b = pod("b", "10.0.0.2", false, &[]);
    b.metadata.resource_version = Some("2".into());
    h.add_pod(b);
    assert_eq!(h.sync().await, ["update Endpoints default/web"]);
    let subsets = h.endpoints("web").unwrap().subsets.clone().unwrap();
    assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1"]);
    assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.2"]);

    // Relabelled away from the selector: the old labels still wake the Service.
    let mut a = pod("a", "10.0.0.1", true, &[]);
    a.metadata.resource_version = Some("3".into());
    a.metadata.labels = Some(labels(&[("app", "retired")]));
    h.add_pod(a);
    assert_eq!(h.sync().await, ["update Endpoints default/web"]);
    let subsets = h.endpoints("web").unwrap().subsets.clone().unwrap();
    assert_eq!(subsets[0].addresses, None);
    assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.2"]);

    h.informers
        .get::<Pod>()
        .remove(&ObjectKey::new("default", "b"));
    assert_eq!(h.sync().await, ["update Endpoints default/web"]);
    assert_eq!(h.endpoints("web").unwrap().subsets, None);
}

#[tokio::test]
async fn a_manual_edit_of_managed_endpoints_is_reverted() {
    let h = Harness::new();
    h.add_service(web_service());
    h.add_pod(pod("a", "10.0.0.1", true, &[]));
    h.sync().await;
    let want = h.endpoints("web").unwrap().subsets.clone();
    let mut edited = (*h.endpoints("web").unwrap()).clone();
    edited.subsets.as_mut().unwrap()[0]
        .addresses
        .as_mut()
        .unwrap()[0]
        .ip = "10.9.9.9".into();
    edited.metadata.labels = None;
    h.informers.get::<Endpoints>().upsert(edited);
    assert_eq!(h.sync().await, ["update Endpoints default/web"]);
    let ep = h.endpoints("web").unwrap();
    assert_eq!(ep.subsets, want);
    assert_eq!(ep.metadata.labels, Some(labels(&[("team", "a")])));
}

#[tokio::test]
async fn headless_services_without_ports_list_addresses_only() {
    let h = Harness::new();
    let mut svc = service("db", &[("app", "web")], vec![]);
    svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    h.add_service(svc);
    let mut a = pod("a", "10.0.0.1", true, &[]);
    let spec = a.spec.as_mut().unwrap();
    spec.hostname = Some("db-0".into());
    spec.subdomain = Some("db".into());
    h.add_pod(a);
    h.sync().await;
    let ep = h.endpoints("db").unwrap();
    assert_eq!(
        ep.metadata.labels,
        Some(labels(&[("team", "a"), (HEADLESS_LABEL, "")]))
    );
    let subsets = ep.subsets.clone().unwrap();
    assert_eq!(subsets.len(), 1);
    assert_eq!(subsets[0].ports, None);
    let address = &subsets[0].addresses.as_ref().unwrap()[0];
    assert_eq!(address.hostname.as_deref(), Some("db-0"));
}

#[tokio::test]
async fn failed_writes_are_returned_for_a_retry() {
    let h = Harness::new();
    h.add_service(web_service());
    h.add_pod(pod("a", "10.0.0.1", true, &[]));
    h.api
        .fail_next(crate::Error::Api(rkube_client::Error::Unavailable(
            "down".into(),
        )));
    let reconciler = EndpointsReconciler {
        ctx: Context {
            informers: h.informers.clone(),
            api: h.api.clone(),
            recorder: Recorder::memory("t").0,
            clock: Arc::new(jiff::Timestamp::now),
        },
        services: h.informers.get::<Service>(),
        pods: h.informers.get::<Pod>(),
        endpoints: h.informers.get::<Endpoints>(),
    };
    let key = ObjectKey::new("default", "web");
    assert!(reconciler.reconcile(&key).await.is_err());
    assert_eq!(reconciler.reconcile(&key).await, Ok(Action::Done));
    assert_eq!(h.api.take_summaries(), ["create Endpoints default/web"]);
}
