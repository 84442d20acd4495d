//! Kubernetes' replica calculator (`pkg/controller/podautoscaler/replica_calculator.go`) for
//! resource metrics: the usage ratio against the target (utilization of requests or an
//! average value), the tolerance band, and the treatment of pods that are pending, unready,
//! missing metrics, being deleted or failed. Pure functions of the pods, their metrics and
//! the time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::metrics::{MetricsError, PodMetric, PodMetricsInfo, Resource};
use crate::controllers::volume::parse_scaled;
use crate::util;

/// The default tolerance both ways (`--horizontal-pod-autoscaler-tolerance`).
pub const DEFAULT_TOLERANCE: f64 = 0.1;
/// A pod's cpu samples are distrusted this long after it starts
/// (`--horizontal-pod-autoscaler-cpu-initialization-period`).
pub const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
/// A pod that turned unready this soon after starting never was ready
/// (`--horizontal-pod-autoscaler-initial-readiness-delay`).
pub const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);

/// The band around a ratio of 1 in which no scaling happens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    pub scale_down: f64,
    pub scale_up: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            scale_down: DEFAULT_TOLERANCE,
            scale_up: DEFAULT_TOLERANCE,
        }
    }
}

impl Tolerances {
    fn within(&self, ratio: f64) -> bool {
        (1.0 - self.scale_down) <= ratio && ratio <= (1.0 + self.scale_up)
    }
}

/// What a metric's target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Percent of the pods' requests.
    Utilization(i32),
    /// Average usage per pod, in milli-units.
    AverageValue(i64),
}

/// The calculator's settings and the time it runs at.
#[derive(Debug, Clone, Copy)]
pub struct Calculator {
    pub tolerances: Tolerances,
    pub cpu_initialization_period: Duration,
    pub initial_readiness_delay: Duration,
    pub now: jiff::Timestamp,
}

/// A replica proposal for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    pub replicas: i32,
    /// Current utilization in percent of requests (Utilization targets only).
    pub utilization: Option<i32>,
    /// Average usage per pod with metrics, in milli-units.
    pub average: i64,
    pub timestamp: Option<jiff::Timestamp>,
}

impl Calculator {
    /// The replicas one resource metric asks for (Kubernetes' `GetResourceReplicas` and
    /// `GetRawResourceReplicas`).
    pub fn resource_replicas(
        &self,
        current_replicas: i32,
        target: Target,
        resource: Resource,
        pods: &[Arc<Pod>],
        mut metrics: PodMetricsInfo,
    ) -> Result<Proposal, MetricsError> {
        if pods.is_empty() {
            return Err(MetricsError(
                "no pods returned by selector while calculating replica count".into(),
            ));
        }
        let timestamp = metrics.values().map(|m| m.timestamp).max();
        let groups = self.group_pods(pods, &metrics, resource);
        for name in groups.ignored.iter().chain(&groups.unready) {
            metrics.remove(name);
        }
        if metrics.is_empty() {
            return Err(MetricsError(
                "did not receive metrics for targeted pods (pods might be unready)".into(),
            ));
        }
        match target {
            Target::Utilization(target) => {
                let requests = pod_requests(pods, resource)?;
                let (ratio, utilization, average) = utilization_ratio(&metrics, &requests, target)?;
                let replicas = self.adjust(
                    current_replicas,
                    ratio,
                    &groups,
                    &mut metrics,
                    |m, missing_fill| {
                        match missing_fill {
                            Fill::Full => {
                                // On a scale-down a pod without metrics counts as using its whole
                                // request (or the target, when the target is above 100%).
                                let fallback = i64::from(target.max(100));
                                for name in &groups.missing {
                                    let req = requests.get(name).copied().unwrap_or(0);
                                    m.insert(name.clone(), zero_metric(req * fallback / 100));
                                }
                            }
                            Fill::Zero(names) => {
                                for name in names {
                                    m.insert(name.clone(), zero_metric(0));
                                }
                            }
                        }
                        utilization_ratio(m, &requests, target).map(|(r, _, _)| r)
                    },
                )?;
                Ok(Proposal {
                    replicas,
                    utilization: Some(utilization),
                    average,
                    timestamp,
                })
            }
            Target::AverageValue(target) => {
                let (ratio, average) = usage_ratio(&metrics, target);
                let replicas =
                    self.adjust(current_replicas, ratio, &groups, &mut metrics, |m, fill| {
                        match fill {
                            Fill::Full => {
                                for name in &groups.missing {
                                    m.insert(name.clone(), zero_metric(target));
                                }
                            }
                            Fill::Zero(names) => {
                                for name in names {
                                    m.insert(name.clone(), zero_metric(0));
                                }
                            }
                        }
                        Ok(usage_ratio(m, target).0)
                    })?;
                Ok(Proposal {
                    replicas,
                    utilization: None,
                    average,
                    timestamp,
                })
            }
        }
    }

    /// From the first usage ratio to a replica count: within tolerance nothing changes; with
    /// missing or unready pods the ratio is recomputed with conservative fill-ins, and a
    /// recomputed ratio that flips direction or falls within tolerance changes nothing.
    fn adjust(
        &self,
        current_replicas: i32,
        ratio: f64,
        groups: &Groups,
        metrics: &mut PodMetricsInfo,
        recompute: impl Fn(&mut PodMetricsInfo, Fill<'_>) -> Result<f64, MetricsError>,
    ) -> Result<i32, MetricsError> {
        let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
        if !scale_up_with_unready && groups.missing.is_empty() {
            if self.tolerances.within(ratio) {
                return Ok(current_replicas);
            }
            return Ok(ceil(ratio * groups.ready as f64));
        }
        let mut new_ratio = ratio;
        if !groups.missing.is_empty() {
            if ratio < 1.0 {
                new_ratio = recompute(metrics, Fill::Full)?;
            } else if ratio > 1.0 {
                new_ratio = recompute(metrics, Fill::Zero(&groups.missing))?;
            }
        }
        if scale_up_with_unready {
            new_ratio = recompute(metrics, Fill::Zero(&groups.unready))?;
        }
        if self.tolerances.within(new_ratio)
            || (ratio < 1.0 && new_ratio > 1.0)
            || (ratio > 1.0 && new_ratio < 1.0)
        {
            return Ok(current_replicas);
        }
        let replicas = ceil(new_ratio * metrics.len() as f64);
        if (new_ratio < 1.0 && replicas > current_replicas)
            || (new_ratio > 1.0 && replicas < current_replicas)
        {
            return Ok(current_replicas);
        }
        Ok(replicas)
    }

    /// Kubernetes' `groupPods`.
    fn group_pods(
        &self,
        pods: &[Arc<Pod>],
        metrics: &PodMetricsInfo,
        resource: Resource,
    ) -> Groups {
        let mut g = Groups::default();
        for pod in pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let status = pod.status.clone().unwrap_or_default();
            let phase = status.phase.as_deref().unwrap_or("Pending");
            if util::is_terminating(pod.as_ref()) || phase == "Failed" {
                g.ignored.insert(name);
                continue;
            }
            if phase == "Pending" {
                g.unready.insert(name);
                continue;
            }
            let Some(metric) = metrics.get(&name) else {
                g.missing.insert(name);
                continue;
            };
            if resource == Resource::Cpu && self.cpu_unready(pod, metric) {
                g.unready.insert(name);
                continue;
            }
            g.ready += 1;
        }
        g
    }

    /// Whether a running pod's cpu sample is not to be trusted: unready within the cpu
    /// initialization period (or sampled before a full window since it became ready), or
    /// unready and never ready since it started.
    fn cpu_unready(&self, pod: &Pod, metric: &PodMetric) -> bool {
        let condition = util::pod_condition(pod, "Ready");
        let start = pod.status.as_ref().and_then(|s| s.start_time.as_ref());
        let (Some(condition), Some(start)) = (condition, start) else {
            return true;
        };
        let transition = condition
            .last_transition_time
            .as_ref()
            .map_or(start.0, |t| t.0);
        if start.0 + self.cpu_initialization_period > self.now {
            condition.status == "False" || metric.timestamp < transition + metric.window
        } else {
            condition.status == "False" && start.0 + self.initial_readiness_delay > transition
        }
    }
}

/// How to fill in pods before recomputing the ratio.
enum Fill<'a> {
    /// Missing pods use all of their request (utilization) or the target (average value).
    Full,
    /// These pods use nothing.
    Zero(&'a BTreeSet<String>),
}

#[derive(Debug, Default)]
struct Groups {
    ready: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

fn zero_metric(value: i64) -> PodMetric {
    PodMetric {
        value,
        timestamp: jiff::Timestamp::UNIX_EPOCH,
        window: Duration::ZERO,
    }
}

fn ceil(x: f64) -> i32 {
    x.ceil().clamp(0.0, f64::from(i32::MAX)) as i32
}

/// Each pod's request of `resource` (milli-units), summed over its containers and sidecar
/// (restartable init) containers; a container without a request is an error.
pub fn pod_requests(
    pods: &[Arc<Pod>],
    resource: Resource,
) -> Result<BTreeMap<String, i64>, MetricsError> {
    let mut out = BTreeMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(spec) = &pod.spec else { continue };
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let mut sum = 0i64;
        for c in spec.containers.iter().chain(sidecars) {
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource.name()));
            let Some(q) = request else {
                return Err(MetricsError(format!(
                    "missing request for {} in container {} of Pod {name}",
                    resource.name(),
                    c.name
                )));
            };
            sum += milli_value(&q.0).ok_or_else(|| {
                MetricsError(format!(
                    "invalid request {:?} for {} in container {} of Pod {name}",
                    q.0,
                    resource.name(),
                    c.name
                ))
            })?;
        }
        out.insert(name, sum);
    }
    Ok(out)
}

/// A quantity in thousandths of its unit (Kubernetes' `MilliValue`), rounded up.
pub fn milli_value(q: &str) -> Option<i64> {
    parse_scaled(q, 3).and_then(|v| i64::try_from(v).ok())
}

/// Kubernetes' `GetResourceUtilizationRatio`: (ratio to the target, utilization in percent,
/// average usage per pod).
fn utilization_ratio(
    metrics: &PodMetricsInfo,
    requests: &BTreeMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), MetricsError> {
    let (mut total, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (name, m) in metrics {
        let Some(r) = requests.get(name) else {
            continue;
        };
        total += m.value;
        requested += r;
        n += 1;
    }
    if requested == 0 {
        return Err(MetricsError(
            "no metrics returned matched known pods".into(),
        ));
    }
    let utilization = i32::try_from(total * 100 / requested).unwrap_or(i32::MAX);
    Ok((
        f64::from(utilization) / f64::from(target),
        utilization,
        total / n,
    ))
}

/// Kubernetes' `GetMetricUsageRatio`: (ratio to the target, average usage per pod).
fn usage_ratio(metrics: &PodMetricsInfo, target: i64) -> (f64, i64) {
    let total: i64 = metrics.values().map(|m| m.value).sum();
    let average = total / i64::try_from(metrics.len().max(1)).unwrap_or(1);
    (average as f64 / target as f64, average)
}
