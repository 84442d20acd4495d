//! The HorizontalPodAutoscaler controller (autoscaling/v2, Kubernetes'
//! `pkg/controller/podautoscaler`): every sync period it reads the scale target's replicas and
//! selector, the selected pods and their resource usage from a [`MetricsSource`], computes the
//! replicas each Resource metric (cpu or memory; Utilization of requests or AverageValue) asks
//! for with Kubernetes' replica calculator, takes the largest, stabilizes and bounds it
//! (`normalize`), writes it to the target and records `status` (currentReplicas,
//! desiredReplicas, currentMetrics, lastScaleTime) and the conditions AbleToScale,
//! ScalingActive and ScalingLimited with Kubernetes' reasons.
//!
//! Scale targets are apps/v1 Deployments, ReplicaSets and StatefulSets. The API server has no
//! `scale` subresource, so the target is read from the informers' caches (`spec.replicas` and
//! `spec.selector`, what Kubernetes' scale subresource exposes) and written with a JSON merge
//! patch of `spec.replicas` carrying the `resourceVersion` read as a precondition: a target
//! changed in between gives Conflict and the sync is retried, as a scale update would.
//! Metric sources other than Resource (Pods, Object, External, ContainerResource) are reported
//! as invalid metrics in the ScalingActive condition.
//!
//! The recommendations and scale events the stabilization windows and policies look back on
//! are kept in memory per autoscaler, as Kubernetes' controller keeps them: a new leader starts
//! with the target's current size as the only recommendation.

mod metrics;
mod normalize;
mod replicas;
mod scale;
mod status;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, MetricSpec, MetricStatus, MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::error::{Error, Result};
use crate::runtime::events::{NORMAL, WARNING};
use crate::runtime::{
    Action, ApiExt, Change, Context, Controller, Informer, ObjectKey, Reconciler,
};
use crate::util;
use scale::ScaleTarget;
use status::{milli_quantity, Status};

pub use metrics::{
    resource_metrics, selector_string, ClientMetrics, ContainerMetrics, MetricsError,
    MetricsSource, PodMetric, PodMetrics, Resource,
};
pub use normalize::{Behavior, DEFAULT_SCALE_DOWN_WINDOW_SECONDS};
pub use replicas::{
    Calculator, Proposal, Target, Tolerances, CPU_INITIALIZATION_PERIOD, DEFAULT_TOLERANCE,
    INITIAL_READINESS_DELAY,
};

/// Tuning of the autoscaler, with Kubernetes' defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaOptions {
    /// How often every autoscaler is re-evaluated
    /// (`--horizontal-pod-autoscaler-sync-period`, 15 s).
    pub sync_period: Duration,
    /// Autoscalers synced concurrently (`--concurrent-horizontal-pod-autoscaler-syncs`, 5).
    pub workers: usize,
    /// `--horizontal-pod-autoscaler-tolerance` (0.1), unless the behavior sets one.
    pub tolerance: f64,
    pub cpu_initialization_period: Duration,
    pub initial_readiness_delay: Duration,
}

impl Default for HpaOptions {
    fn default() -> Self {
        HpaOptions {
            sync_period: Duration::from_secs(15),
            workers: 5,
            tolerance: DEFAULT_TOLERANCE,
            cpu_initialization_period: CPU_INITIALIZATION_PERIOD,
            initial_readiness_delay: INITIAL_READINESS_DELAY,
        }
    }
}

/// The autoscaler controller: reconciles each HorizontalPodAutoscaler when it is created or
/// its spec changes, then every `sync_period` (its own status writes do not wake it, so
/// recommendations are taken once per period, as in Kubernetes).
pub fn controller(ctx: &Context, metrics: Arc<dyn MetricsSource>, opts: HpaOptions) -> Controller {
    let hpas = ctx.informers.get::<HorizontalPodAutoscaler>();
    let workers = opts.workers;
    let reconciler = HpaReconciler::new(ctx, metrics, opts);
    let c = Controller::new::<HorizontalPodAutoscaler>(
        "horizontalpodautoscaling",
        ctx,
        reconciler,
        workers,
    );
    let queue = c.queue.clone();
    hpas.on_change(move |change: &Change<HorizontalPodAutoscaler>| {
        let spec_changed = match change {
            Change::Modified { old, new } => old.metadata.generation != new.metadata.generation,
            Change::Added(_) | Change::Deleted(_) => true,
        };
        if spec_changed {
            queue.add(ObjectKey::of(change.object().as_ref()));
        }
    });
    // The caches of the scale targets and their pods.
    ctx.informers.get::<Pod>();
    ctx.informers.get::<Deployment>();
    ctx.informers.get::<ReplicaSet>();
    ctx.informers.get::<StatefulSet>();
    c
}

struct HpaReconciler {
    ctx: Context,
    hpas: Informer<HorizontalPodAutoscaler>,
    pods: Informer<Pod>,
    deployments: Informer<Deployment>,
    replica_sets: Informer<ReplicaSet>,
    stateful_sets: Informer<StatefulSet>,
    metrics: Arc<dyn MetricsSource>,
    opts: HpaOptions,
    histories: Mutex<HashMap<ObjectKey, normalize::History>>,
}

#[async_trait::async_trait]
impl Reconciler for HpaReconciler {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let Some(hpa) = self.hpas.get(&key.namespace, &key.name) else {
            self.histories.lock().expect("histories lock").remove(key);
            return Ok(Action::Done);
        };
        if util::is_terminating(hpa.as_ref()) {
            return Ok(Action::Done);
        }
        let original = hpa.status.clone().unwrap_or_default();
        let mut status = Status {
            inner: original.clone(),
            now: self.ctx.now(),
        };
        let outcome = self.sync(key, &hpa, &mut status).await;
        let mut new = status.inner;
        new.observed_generation = hpa.metadata.generation;
        if new != original {
            let mut updated = (*hpa).clone();
            updated.status = Some(new);
            self.ctx.api.update_object_status(&updated).await?;
        }
        outcome?;
        Ok(Action::RequeueAfter(self.opts.sync_period))
    }
}

/// The replicas the metrics ask for, or the first metric's error when none can be used.
struct Computed {
    replicas: i32,
    metric: String,
    statuses: Vec<MetricStatus>,
}

impl HpaReconciler {
    fn new(ctx: &Context, metrics: Arc<dyn MetricsSource>, opts: HpaOptions) -> HpaReconciler {
        HpaReconciler {
            ctx: ctx.clone(),
            hpas: ctx.informers.get(),
            pods: ctx.informers.get(),
            deployments: ctx.informers.get(),
            replica_sets: ctx.informers.get(),
            stateful_sets: ctx.informers.get(),
            metrics,
            opts,
            histories: Mutex::new(HashMap::new()),
        }
    }

    /// Kubernetes' `reconcileAutoscaler`.
    async fn sync(
        &self,
        key: &ObjectKey,
        hpa: &HorizontalPodAutoscaler,
        status: &mut Status,
    ) -> Result<()> {
        let now = status.now;
        let target = match self.scale_of(hpa) {
            Ok(t) => t,
            Err(msg) => {
                self.ctx
                    .recorder
                    .event(hpa, WARNING, "FailedGetScale", msg.clone());
                status.condition(
                    "AbleToScale",
                    false,
                    "FailedGetScale",
                    format!(
                        "the HPA controller was unable to get the target's current scale: {msg}"
                    ),
                );
                return Ok(());
            }
        };
        status.condition(
            "AbleToScale",
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        );
        let behavior = match Behavior::resolve(hpa.spec.behavior.as_ref()) {
            Ok(b) => b,
            Err(msg) => {
                self.ctx
                    .recorder
                    .event(hpa, WARNING, "InvalidBehavior", msg.clone());
                return Err(Error::Invalid(msg));
            }
        };
        let current = target.replicas;
        self.histories
            .lock()
            .expect("histories lock")
            .entry(key.clone())
            .or_default()
            .record_initial(current, now);
        let min = hpa.spec.min_replicas.unwrap_or(1);
        let max = hpa.spec.max_replicas;
        let mut statuses = None;
        let (desired, reason, rescale) = if current == 0 && min != 0 {
            status.condition(
                "ScalingActive",
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            );
            (0, String::new(), false)
        } else if current > max {
            (
                max,
                "Current number of replicas above Spec.MaxReplicas".to_string(),
                true,
            )
        } else if current < min {
            (
                min,
                "Current number of replicas below Spec.MinReplicas".to_string(),
                true,
            )
        } else {
            let tolerances = behavior.as_ref().map_or(
                Tolerances {
                    scale_down: self.opts.tolerance,
                    scale_up: self.opts.tolerance,
                },
                Behavior::tolerances,
            );
            let computed = match self.compute(hpa, &target, tolerances, status).await {
                Ok(c) => c,
                Err((msg, metric_statuses)) => {
                    status.set(
                        current,
                        status.inner.desired_replicas,
                        Some(metric_statuses),
                    );
                    self.ctx
                        .recorder
                        .event(hpa, WARNING, "FailedComputeMetricsReplicas", msg);
                    return Ok(());
                }
            };
            statuses = Some(computed.statuses);
            let proposed = computed.replicas.max(0);
            let reason = if proposed > current {
                format!("{} above target", computed.metric)
            } else if proposed < current {
                "All metrics below target".to_string()
            } else {
                String::new()
            };
            let normalized = self
                .histories
                .lock()
                .expect("histories lock")
                .entry(key.clone())
                .or_default()
                .normalize(normalize::Args {
                    behavior: behavior.as_ref(),
                    min_replicas: min,
                    max_replicas: max,
                    current,
                    desired: proposed,
                    now,
                });
            let (s, r, m) = normalized.able_to_scale;
            status.condition("AbleToScale", s, r, m);
            let (s, r, m) = normalized.scaling_limited;
            status.condition("ScalingLimited", s, r, m);
            (normalized.replicas, reason, normalized.replicas != current)
        };
        if !rescale {
            status.set(current, current, statuses);
            return Ok(());
        }
        if let Err(e) = self.write_scale(hpa, &target, desired).await {
            self.ctx.recorder.event(
                hpa,
                WARNING,
                "FailedRescale",
                format!("New size: {desired}; reason: {reason}; error: {e}"),
            );
            status.condition(
                "AbleToScale",
                false,
                "FailedUpdateScale",
                format!("the HPA controller was unable to update the target scale: {e}"),
            );
            status.set(current, status.inner.desired_replicas, statuses);
            return Err(e);
        }
        status.condition(
            "AbleToScale",
            true,
            "SucceededRescale",
            format!("the HPA controller was able to update the target scale to {desired}"),
        );
        self.ctx.recorder.event(
            hpa,
            NORMAL,
            "SuccessfulRescale",
            format!("New size: {desired}; reason: {reason}"),
        );
        self.histories
            .lock()
            .expect("histories lock")
            .entry(key.clone())
            .or_default()
            .record_scale(behavior.as_ref(), current, desired, now);
        status.set(current, desired, statuses);
        status.inner.last_scale_time = Some(Time(now));
        Ok(())
    }

    /// Kubernetes' `computeReplicasForMetrics`: the largest proposal over the metrics; an
    /// error when every metric failed, or some failed and the rest would scale down.
    async fn compute(
        &self,
        hpa: &HorizontalPodAutoscaler,
        target: &ScaleTarget,
        tolerances: Tolerances,
        status: &mut Status,
    ) -> Result<Computed, (String, Vec<MetricStatus>)> {
        let ns = hpa.metadata.namespace.as_deref().unwrap_or_default();
        let pods = util::list_matching(&self.pods, ns, |p| {
            util::selector_matches(&target.selector, p.metadata.labels.as_ref())
        });
        let calculator = Calculator {
            tolerances,
            cpu_initialization_period: self.opts.cpu_initialization_period,
            initial_readiness_delay: self.opts.initial_readiness_delay,
            now: status.now,
        };
        let specs = hpa.spec.metrics.clone().unwrap_or_default();
        let mut best: Option<(i32, String)> = None;
        let mut statuses = Vec::new();
        let mut first_invalid: Option<(&'static str, String)> = None;
        let mut invalid = 0;
        for spec in &specs {
            match self
                .resource_metric(spec, ns, target, &pods, &calculator)
                .await
            {
                Ok((replicas, name, metric_status)) => {
                    statuses.push(metric_status);
                    if best.as_ref().is_none_or(|(r, _)| replicas > *r) {
                        best = Some((replicas, name));
                    }
                }
                Err((reason, msg)) => {
                    let event_reason = if reason == "InvalidMetricSourceType" {
                        "InvalidMetricSourceType"
                    } else {
                        "FailedGetResourceMetric"
                    };
                    self.ctx
                        .recorder
                        .event(hpa, WARNING, event_reason, msg.clone());
                    invalid += 1;
                    first_invalid.get_or_insert((reason, msg));
                }
            }
        }
        let replicas = best.as_ref().map_or(-1, |(r, _)| *r);
        if let Some((reason, msg)) = first_invalid {
            if invalid >= specs.len() || replicas < target.replicas {
                status.condition(
                    "ScalingActive",
                    false,
                    reason,
                    format!("the HPA was unable to compute the replica count: {msg}"),
                );
                return Err((
                    format!(
                        "invalid metrics ({invalid} invalid out of {}), first error is: {msg}",
                        specs.len()
                    ),
                    statuses,
                ));
            }
        }
        let Some((replicas, metric)) = best else {
            let msg = "the HPA has no metrics to scale on".to_string();
            status.condition(
                "ScalingActive",
                false,
                "InvalidMetricSourceType",
                format!("the HPA was unable to compute the replica count: {msg}"),
            );
            return Err((msg, statuses));
        };
        status.condition(
            "ScalingActive",
            true,
            "ValidMetricFound",
            format!("the HPA was able to successfully calculate a replica count from {metric}"),
        );
        Ok(Computed {
            replicas,
            metric,
            statuses,
        })
    }

    /// One Resource metric: (replicas, the metric's name in messages, its status), or the
    /// condition reason and message of its failure.
    async fn resource_metric(
        &self,
        spec: &MetricSpec,
        ns: &str,
        target: &ScaleTarget,
        pods: &[Arc<Pod>],
        calculator: &Calculator,
    ) -> Result<(i32, String, MetricStatus), (&'static str, String)> {
        let failed = |msg: String| ("FailedGetResourceMetric", msg);
        let source = match (spec.type_.as_str(), spec.resource.as_ref()) {
            ("Resource", Some(source)) => source,
            ("Resource", None) => {
                return Err(failed(
                    "a Resource metric needs spec.metrics[].resource".to_string(),
                ))
            }
            (other, _) => {
                return Err((
                    "InvalidMetricSourceType",
                    format!(
                        "metric source type {other:?} is not supported by this autoscaler: only \"Resource\" metrics (cpu, memory) are"
                    ),
                ))
            }
        };
        let resource = Resource::parse(&source.name).map_err(|e| failed(e.0))?;
        let goal = match source.target.type_.as_str() {
            "Utilization" => source.target.average_utilization.map(Target::Utilization),
            "AverageValue" => source
                .target
                .average_value
                .as_ref()
                .and_then(|q| replicas::milli_value(&q.0))
                .map(Target::AverageValue),
            _ => None,
        }
        .ok_or_else(|| {
            failed(format!(
                "invalid resource metric source for {}: the target must be a Utilization with averageUtilization or an AverageValue with averageValue",
                resource.name()
            ))
        })?;
        let usage = self
            .metrics
            .pod_metrics(ns, &target.selector)
            .await
            .map_err(|e| {
                failed(format!(
                    "unable to get metrics for resource {}: {e}",
                    resource.name()
                ))
            })?;
        let info = resource_metrics(&usage, resource);
        let proposal = calculator
            .resource_replicas(target.replicas, goal, resource, pods, info)
            .map_err(|e| {
                failed(format!(
                    "failed to get {} utilization: {e}",
                    resource.name()
                ))
            })?;
        let name = match goal {
            Target::Utilization(_) => {
                format!(
                    "{} resource utilization (percentage of request)",
                    resource.name()
                )
            }
            Target::AverageValue(_) => format!("{} resource", resource.name()),
        };
        let metric_status = MetricStatus {
            type_: "Resource".into(),
            resource: Some(ResourceMetricStatus {
                name: resource.name().into(),
                current: MetricValueStatus {
                    average_utilization: proposal.utilization,
                    average_value: Some(milli_quantity(proposal.average)),
                    value: None,
                },
            }),
            ..Default::default()
        };
        Ok((proposal.replicas, name, metric_status))
    }
}
