//! DaemonSet controller unit tests over the fake API with a fixed clock: the fixtures and harness
//! here; placement rules in `placement`, following nodes and pods in `nodes`, updates and status
//! in `updates`.

mod nodes;
mod placement;
mod updates;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{
    Container, Node, NodeSpec, Pod, PodCondition, PodStatus, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::runtime::fake::FakeApi;
use crate::runtime::{Informers, Recorder};

const NS: &str = "default";
const EXAMPLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/examples/ssd-monitor-daemonset.yaml"
));

fn start() -> jiff::Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

fn at(secs: i64) -> Time {
    Time(start() + jiff::SignedDuration::from_secs(secs))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The shared example DaemonSet (`ssd-monitor`, nodeSelector `disk=ssd`), as the API server
/// would hold it.
fn example() -> DaemonSet {
    let mut ds: DaemonSet = yaml_serde::from_str(EXAMPLE).expect("the example parses");
    ds.metadata.namespace = Some(NS.into());
    ds.metadata.uid = Some("uid-ssd-monitor".into());
    ds.metadata.resource_version = Some("1".into());
    ds.metadata.generation = Some(1);
    ds
}

fn with_strategy(mut ds: DaemonSet, ty: &str, max_unavailable: Option<IntOrString>) -> DaemonSet {
    ds.spec.update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some(ty.into()),
        rolling_update: max_unavailable.map(|m| RollingUpdateDaemonSet {
            max_unavailable: Some(m),
            max_surge: None,
        }),
    });
    ds
}

fn node(name: &str, l: &[(&str, &str)], taints: Vec<Taint>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("1".into()),
            labels: Some(labels(l)),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then_some(taints),
            ..Default::default()
        }),
        status: None,
    }
}

fn taint(key: &str, value: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: (!value.is_empty()).then(|| value.into()),
        effect: effect.into(),
        time_added: None,
    }
}

fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
    Toleration {
        key: (!key.is_empty()).then(|| key.into()),
        operator: Some(op.into()),
        value: (!value.is_empty()).then(|| value.into()),
        effect: (!effect.is_empty()).then(|| effect.into()),
        toleration_seconds: None,
    }
}

struct Fixture {
    informers: Informers,
    fake: Arc<FakeApi>,
    events: Arc<Mutex<Vec<String>>>,
    now: Arc<Mutex<jiff::Timestamp>>,
    ctx: Context,
    controller: Controller,
}

fn fixture() -> Fixture {
    let informers = Informers::new();
    let fake = Arc::new(FakeApi::new(informers.clone()));
    let (recorder, events) = Recorder::memory("daemonset-controller");
    let now = Arc::new(Mutex::new(start()));
    let clock_now = now.clone();
    let ctx = Context {
        informers: informers.clone(),
        api: fake.clone(),
        recorder,
        clock: Arc::new(move || *clock_now.lock().unwrap()),
    };
    let controller = controller(&ctx);
    Fixture {
        informers,
        fake,
        events,
        now,
        ctx,
        controller,
    }
}

impl Fixture {
    fn nodes(&self, nodes: Vec<Node>) {
        for n in nodes {
            self.informers.get::<Node>().upsert(n);
        }
    }

    fn relabel(&self, name: &str, l: &[(&str, &str)]) {
        let mut n = self.node(name);
        n.metadata.labels = Some(labels(l));
        self.informers.get::<Node>().upsert(n);
    }

    fn node(&self, name: &str) -> Node {
        self.informers
            .get::<Node>()
            .get("", name)
            .unwrap()
            .as_ref()
            .clone()
    }

    fn daemon_set(&self, ds: DaemonSet) {
        self.informers.get::<DaemonSet>().upsert(ds);
    }

    fn ds(&self) -> DaemonSet {
        let ds = self.informers.get::<DaemonSet>().get(NS, "ssd-monitor");
        ds.unwrap().as_ref().clone()
    }

    /// Change the DaemonSet's spec as a user would: the generation moves on.
    fn edit(&self, f: impl FnOnce(&mut DaemonSet)) {
        let mut ds = self.ds();
        f(&mut ds);
        ds.metadata.generation = Some(ds.metadata.generation.unwrap_or(1) + 1);
        let rv: u64 = ds
            .metadata
            .resource_version
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        ds.metadata.resource_version = Some((rv + 1).to_string());
        self.daemon_set(ds);
    }

    fn status(&self) -> k8s_openapi::api::apps::v1::DaemonSetStatus {
        self.ds().status.unwrap_or_default()
    }

    fn pod(&self, name: &str) -> Pod {
        self.informers
            .get::<Pod>()
            .get(NS, name)
            .unwrap()
            .as_ref()
            .clone()
    }

    /// Pod names by the node each is meant for.
    fn placement(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in self.informers.get::<Pod>().list() {
            let node = target_node_name(&p).unwrap_or("?").to_string();
            out.entry(node)
                .or_default()
                .push(p.metadata.name.clone().unwrap());
        }
        out
    }

    fn pods_on(&self, node: &str) -> Vec<Pod> {
        self.informers
            .get::<Pod>()
            .list()
            .into_iter()
            .filter(|p| target_node_name(p) == Some(node))
            .map(|p| p.as_ref().clone())
            .collect()
    }

    /// Queue the DaemonSet, reconcile until idle and return the writes made.
    async fn run(&self) -> Vec<String> {
        self.controller.queue.add(ObjectKey::new(NS, "ssd-monitor"));
        self.controller.run_until_idle().await;
        self.fake.take_summaries()
    }

    /// Reconcile whatever the handlers queued until idle and return the writes made.
    async fn settle(&self) -> Vec<String> {
        self.controller.run_until_idle().await;
        self.fake.take_summaries()
    }

    fn take_events(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    /// What the scheduler and the node agent would do: bind every pod to its target node and
    /// report it Running and Ready since now.
    fn run_pods(&self) {
        for p in self.informers.get::<Pod>().list() {
            if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                continue;
            }
            let mut p = p.as_ref().clone();
            let node = target_node_name(&p).unwrap().to_string();
            p.spec.as_mut().unwrap().node_name = Some(node);
            self.informers
                .get::<Pod>()
                .upsert(ready(p, *self.now.lock().unwrap()));
        }
    }

    fn advance(&self, secs: i64) {
        let mut now = self.now.lock().unwrap();
        *now += jiff::SignedDuration::from_secs(secs);
    }

    /// A reconciler whose queue nobody drains, to look at one reconcile's result.
    fn reconciler(&self) -> DaemonSetReconciler {
        let expectations = Arc::new(Expectations::default());
        let pods = self.informers.get::<Pod>();
        let daemonsets = self.informers.get::<DaemonSet>();
        watch_pods(&pods, &daemonsets, &WorkQueue::new(), expectations.clone());
        DaemonSetReconciler {
            ctx: self.ctx.clone(),
            daemonsets,
            pods,
            nodes: self.informers.get::<Node>(),
            expectations,
            backoff: FailedPodBackoff::default(),
            burst: 250,
        }
    }
}

/// `p` Running and Ready since `since`.
fn ready(mut p: Pod, since: jiff::Timestamp) -> Pod {
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time(since)),
            ..Default::default()
        }]),
        ..Default::default()
    });
    p
}

/// A pod of the example DaemonSet on `node` (bound when `bound`), created at `created` seconds
/// after the start, with the current template's hash.
fn daemon_pod(ds: &DaemonSet, name: &str, node: &str, bound: bool, created: i64) -> Pod {
    let mut p = pod_for_node(ds, node, &template_hash(ds));
    p.metadata.name = Some(name.into());
    p.metadata.generate_name = None;
    p.metadata.uid = Some(format!("uid-{name}"));
    p.metadata.resource_version = Some("1".into());
    p.metadata.creation_timestamp = Some(at(created));
    if bound {
        p.spec.as_mut().unwrap().node_name = Some(node.into());
    }
    p.status = Some(PodStatus {
        phase: Some(if bound { "Running" } else { "Pending" }.into()),
        ..Default::default()
    });
    p
}

/// A container image change: a new template.
fn new_image(ds: &mut DaemonSet, image: &str) {
    let spec = ds.spec.template.spec.as_mut().unwrap();
    spec.containers = vec![Container {
        name: "main".into(),
        image: Some(image.into()),
        ..Default::default()
    }];
}
