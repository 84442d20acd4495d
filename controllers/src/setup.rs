//! Building the controller manager with every enabled controller and its settings.

use std::time::Duration;

use rkube_client::Client;

use crate::runtime::Manager;

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
];

/// Which controllers run, and their settings.
pub struct ControllerOptions {
    /// Whether the controller of this name (one of [`NAMES`]) runs.
    pub enabled: Box<dyn Fn(&str) -> bool + Send + Sync>,
    pub node_monitor_grace_period: Duration,
    pub default_toleration_seconds: i64,
    pub terminated_pod_gc_threshold: usize,
}

/// A manager with every enabled controller, writing through `client` (which should reach this
/// server first). Add the scheduler with `rkube_scheduler::register` before running it.
pub fn build_manager(client: Client, identity: String, opts: ControllerOptions) -> Manager {
    use crate::controllers::*;
    let mut m = Manager::new(client, identity);
    let ctx = m.context().clone();
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
        m.add(cronjob::controller(&ctx, Default::default()));
    }
    if on("statefulset") {
        m.add(statefulset::controller(&ctx, Default::default()));
    }
    if on("volume") {
        m.add(volume::controller(&ctx, Default::default()));
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
