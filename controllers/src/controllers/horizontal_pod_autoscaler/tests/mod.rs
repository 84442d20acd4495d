//! Unit tests of the HorizontalPodAutoscaler controller over the fake API, fake metrics and a
//! settable clock: the harness, and one module per concern (the calculator's arithmetic,
//! scaling with bounds, stabilization and policies, conditions and events).

mod calculator;
mod conditions;
mod scaling;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DeploymentSpec, StatefulSetSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, HorizontalPodAutoscalerStatus,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Container, PodCondition, PodSpec, PodStatus, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

use super::*;
use crate::runtime::fake::FakeApi;
use crate::runtime::{Informers, Recorder};

const NS: &str = "default";

pub(super) fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

pub(super) const T0: &str = "2025-01-01T00:00:00Z";

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), "web".to_string())])
}

fn selector() -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels()),
        ..Default::default()
    }
}

/// A running, ready pod started long ago, requesting `cpu` and `memory` in its one container.
pub(super) fn pod(name: &str, cpu: &str, memory: &str) -> Pod {
    let started = Time(ts("2024-12-01T00:00:00Z"));
    Pod {
        metadata: ObjectMeta {
            namespace: Some(NS.into()),
            name: Some(name.into()),
            labels: Some(labels()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".to_string(), Quantity(cpu.into())),
                        ("memory".to_string(), Quantity(memory.into())),
                    ])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            start_time: Some(started.clone()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(started),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

pub(super) fn usage(name: &str, cpu_millis: u64, memory_bytes: u64, at: &str) -> PodMetrics {
    PodMetrics {
        namespace: NS.into(),
        name: name.into(),
        timestamp: ts(at),
        window: Duration::from_secs(30),
        containers: vec![ContainerMetrics {
            name: "app".into(),
            cpu_millicores: cpu_millis,
            memory_bytes,
        }],
    }
}

fn cpu_utilization(percent: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: "cpu".into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(percent),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

fn hpa(kind: &str, min: i32, max: i32, metrics: Vec<MetricSpec>) -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        metadata: ObjectMeta {
            namespace: Some(NS.into()),
            name: Some("web".into()),
            uid: Some("uid-hpa".into()),
            resource_version: Some("1".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: kind.into(),
                name: "web".into(),
            },
            min_replicas: Some(min),
            max_replicas: max,
            metrics: Some(metrics),
            behavior: None,
        },
        status: None,
    }
}

fn rules(window: Option<i32>, select: &str, policies: &[(&str, i32, i32)]) -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: window,
        select_policy: Some(select.into()),
        policies: Some(
            policies
                .iter()
                .map(|&(t, value, period)| HPAScalingPolicy {
                    type_: t.into(),
                    value,
                    period_seconds: period,
                })
                .collect(),
        ),
        tolerance: None,
    }
}

#[derive(Default)]
struct FakeMetrics {
    pods: Mutex<Vec<PodMetrics>>,
    error: Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl MetricsSource for FakeMetrics {
    async fn pod_metrics(
        &self,
        namespace: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<PodMetrics>, MetricsError> {
        assert_eq!(namespace, NS);
        assert_eq!(selector_string(selector), "app=web");
        if let Some(e) = self.error.lock().unwrap().clone() {
            return Err(MetricsError(e));
        }
        Ok(self.pods.lock().unwrap().clone())
    }
}

struct Harness {
    informers: Informers,
    api: Arc<FakeApi>,
    events: Arc<Mutex<Vec<String>>>,
    clock: Arc<Mutex<jiff::Timestamp>>,
    metrics: Arc<FakeMetrics>,
    reconciler: HpaReconciler,
}

impl Harness {
    fn new() -> Harness {
        let informers = Informers::new();
        let api = Arc::new(FakeApi::new(informers.clone()));
        let (recorder, events) = Recorder::memory("test");
        let clock = Arc::new(Mutex::new(ts(T0)));
        let c = clock.clone();
        let ctx = Context {
            informers: informers.clone(),
            api: api.clone(),
            recorder,
            clock: Arc::new(move || *c.lock().unwrap()),
        };
        let metrics = Arc::new(FakeMetrics::default());
        let reconciler = HpaReconciler::new(&ctx, metrics.clone(), HpaOptions::default());
        Harness {
            informers,
            api,
            events,
            clock,
            metrics,
            reconciler,
        }
    }

    fn advance(&self, secs: i64) {
        let mut c = self.clock.lock().unwrap();
        *c += jiff::SignedDuration::from_secs(secs);
    }

    fn now(&self) -> String {
        self.clock.lock().unwrap().to_string()
    }

    fn deployment(&self, replicas: i32) {
        self.informers.get::<Deployment>().upsert(Deployment {
            metadata: ObjectMeta {
                namespace: Some(NS.into()),
                name: Some("web".into()),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            spec: DeploymentSpec {
                replicas: Some(replicas),
                selector: selector(),
                ..Default::default()
            },
            status: None,
        });
    }

    fn target_replicas(&self) -> i32 {
        let d = self.informers.get::<Deployment>().get(NS, "web").unwrap();
        d.spec.replicas.unwrap()
    }

    /// `n` pods requesting 100m cpu, each using `cpu_millis` now.
    fn pods(&self, n: usize, cpu_millis: u64) {
        let pods = self.informers.get::<Pod>();
        pods.replace(Vec::new());
        let mut usages = Vec::new();
        for i in 0..n {
            let name = format!("web-{i}");
            pods.upsert(pod(&name, "100m", "100Mi"));
            usages.push(usage(&name, cpu_millis, 50 << 20, &self.now()));
        }
        *self.metrics.pods.lock().unwrap() = usages;
    }

    fn add(&self, h: HorizontalPodAutoscaler) {
        self.informers.get::<HorizontalPodAutoscaler>().upsert(h);
    }

    async fn sync(&self) -> Result<Action> {
        self.reconciler.reconcile(&ObjectKey::new(NS, "web")).await
    }

    fn status(&self) -> HorizontalPodAutoscalerStatus {
        let h = self
            .informers
            .get::<HorizontalPodAutoscaler>()
            .get(NS, "web");
        h.unwrap().status.clone().unwrap_or_default()
    }

    /// `"Type=Status/Reason"` of each condition.
    fn conditions(&self) -> Vec<String> {
        self.status()
            .conditions
            .unwrap_or_default()
            .iter()
            .map(|c| {
                format!(
                    "{}={}/{}",
                    c.type_,
                    c.status,
                    c.reason.clone().unwrap_or_default()
                )
            })
            .collect()
    }

    fn condition_message(&self, type_: &str) -> String {
        let conditions = self.status().conditions.unwrap_or_default();
        let c = conditions.iter().find(|c| c.type_ == type_).unwrap();
        c.message.clone().unwrap_or_default()
    }

    fn take_events(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    /// The replica counts written to the target since the last call.
    fn scale_writes(&self) -> Vec<i64> {
        self.api
            .take_actions()
            .into_iter()
            .filter_map(|a| match a {
                crate::runtime::fake::Action::Patch { patch, .. } => {
                    patch["spec"]["replicas"].as_i64()
                }
                _ => None,
            })
            .collect()
    }
}
