//! Building the controller manager with every enabled controller and its settings.

use std::sync::Arc;
use std::time::Duration;

use rkube_client::Client;

use crate::controllers::horizontal_pod_autoscaler::{ClientMetrics, MetricsSource};
use crate::runtime::{fast_clock, Context, Manager};

/// The controllers' names in `rkube server --controllers`.
pub const NAMES: &[&str] = &[
    "replicaset",
    "replicationcontroller",
    "deployment",
    "garbagecollector",
    "namespace",
    "endpoint",
    "nodelifecycle",
    "podgc",
    "daemonset",
    "job",
    "cronjob",
    "statefulset",
    "volume",
    "horizontalpodautoscaling",
];

/// Which controllers run, and their settings.
pub struct ControllerOptions {
    /// Whether the controller of this name (one of [`NAMES`]) runs.
    pub enabled: Box<dyn Fn(&str) -> bool + Send + Sync>,
    pub node_monitor_grace_period: Duration,
    pub default_toleration_seconds: i64,
    pub terminated_pod_gc_threshold: usize,
    /// FOR TESTS ONLY: the clock of the schedule- and window-driven controllers (cronjob,
    /// horizontalpodautoscaling) runs this many times faster than real time from the moment
    /// the manager is built; 1 is real time. The other controllers compare times written by
    /// agents and the API server and keep the real clock.
    pub clock_rate: f64,
    /// The directory under which the local provisioner creates hostPath volumes
    /// ([`DEFAULT_VOLUME_ROOT`] by default).
    pub volume_root: String,
    /// Where the autoscaler reads pod metrics; the API server's metrics through the
    /// manager's client when `None`.
    pub metrics: Option<Arc<dyn MetricsSource>>,
}

/// Where the local provisioner creates hostPath volumes unless told otherwise.
pub const DEFAULT_VOLUME_ROOT: &str = "/var/lib/rkube/volumes";

/// A manager with every enabled controller, writing through `client` (which should reach this
/// server first). Add the scheduler with `rkube_scheduler::register` before running it.
pub fn build_manager(client: Client, identity: String, opts: ControllerOptions) -> Manager {
    use crate::controllers::*;
    let metrics = opts
        .metrics
        .clone()
        .unwrap_or_else(|| Arc::new(ClientMetrics::new(client.clone())));
    let mut m = Manager::new(client, identity);
    let ctx = m.context().clone();
    let rate = opts.clock_rate;
    let timed = if rate != 1.0 {
        tracing::warn!(
            rate,
            "the cronjob and autoscaler clocks run faster than real time (a test setting)"
        );
        Context {
            clock: fast_clock(rate),
            ..ctx.clone()
        }
    } else {
        ctx.clone()
    };
    let on = |name: &str| (opts.enabled)(name);
    if on("replicaset") {
        m.add(replicaset::replica_set_controller(&ctx));
    }
    if on("replicationcontroller") {
        m.add(replicaset::replication_controller_controller(&ctx));
    }
    if on("deployment") {
        m.add(deployment::controller(&ctx));
    }
    if on("daemonset") {
        m.add(daemonset::controller(&ctx));
    }
    if on("job") {
        m.add(job::controller(&ctx, Default::default()));
    }
    if on("cronjob") {
        m.add(cronjob::controller(&timed, Default::default()).with_time_scale(rate));
    }
    if on("statefulset") {
        m.add(statefulset::controller(&ctx, Default::default()));
    }
    if on("volume") {
        let volume_opts = volume::VolumeOptions {
            volume_root: opts.volume_root.clone(),
            ..Default::default()
        };
        m.add(volume::controller(&ctx, volume_opts));
    }
    if on("horizontalpodautoscaling") {
        m.add(
            horizontal_pod_autoscaler::controller(&timed, metrics, Default::default())
                .with_time_scale(rate),
        );
    }
    if on("garbagecollector") {
        m.add(garbage_collector::controller(&ctx, Default::default()));
    }
    if on("namespace") {
        m.add(namespace::controller(&ctx, Default::default()));
    }
    if on("endpoint") {
        m.add(endpoints::controller(&ctx));
    }
    if on("nodelifecycle") {
        m.add(node_lifecycle::controller(
            &ctx,
            node_lifecycle::NodeLifecycleOptions {
                node_monitor_grace_period: opts.node_monitor_grace_period,
                startup_grace: opts.node_monitor_grace_period,
                node_monitor_period: opts.node_monitor_grace_period.min(Duration::from_secs(5)),
                default_toleration_seconds: opts.default_toleration_seconds,
            },
        ));
    }
    if on("podgc") {
        m.add(pod_gc::controller(
            &ctx,
            pod_gc::PodGcOptions {
                terminated_pod_gc_threshold: opts.terminated_pod_gc_threshold,
                ..Default::default()
            },
        ));
    }
    m
}
