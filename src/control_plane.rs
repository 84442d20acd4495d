//! The control loops of a server: the controller manager and the scheduler, run in every server
//! as API clients of that server, acting only while it is the Raft leader (fenced by its term).

use std::time::Duration;

use anyhow::Context as _;
use rkube_client::{Client, ClientConfig};
use rkube_controllers::ControllerOptions;

/// Flags of the control loops (part of `rkube server`).
#[derive(Debug, Clone, clap::Args)]
pub struct ControlPlaneArgs {
    /// Control loops to run, comma-separated: `*` for all, `-name` to disable one (e.g.
    /// `*,-scheduler`); an empty value runs none. Names: scheduler, replicaset,
    /// replicationcontroller, deployment, garbagecollector, namespace, endpoint, nodelifecycle,
    /// podgc, daemonset, job, cronjob, statefulset, volume, horizontalpodautoscaling.
    #[arg(long, default_value = "*", value_delimiter = ',')]
    pub controllers: Vec<String>,
    /// A node whose lease is not renewed for this long is marked NotReady/Unknown and tainted
    /// unreachable.
    #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How long pods without their own toleration stay on a not-ready or unreachable node
    /// before they are evicted.
    #[arg(long, default_value = "300")]
    pub default_toleration_seconds: i64,
    /// Terminated pods kept before the oldest are garbage-collected.
    #[arg(long, default_value = "12500")]
    pub terminated_pod_gc_threshold: usize,
    /// FOR TESTS ONLY: the clock of the cronjob and horizontalpodautoscaling controllers runs
    /// this many times faster than real time from the moment the server starts, so schedules
    /// and stabilization windows of minutes pass in seconds.
    #[arg(long, default_value = "1", hide = true, value_parser = parse_clock_rate)]
    pub clock_rate: f64,
    /// The directory under which the volume controller's local provisioner creates hostPath
    /// volumes (for claims of the `local` storage class).
    #[arg(long, default_value = rkube_controllers::DEFAULT_VOLUME_ROOT)]
    pub volume_root: String,
}

fn parse_clock_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "invalid clock rate {s:?}: expected a positive number such as 60"
        )),
    }
}

impl Default for ControlPlaneArgs {
    fn default() -> Self {
        ControlPlaneArgs {
            controllers: vec!["*".into()],
            node_monitor_grace_period: Duration::from_secs(40),
            default_toleration_seconds: 300,
            terminated_pod_gc_threshold: 12500,
            clock_rate: 1.0,
            volume_root: rkube_controllers::DEFAULT_VOLUME_ROOT.into(),
        }
    }
}

impl ControlPlaneArgs {
    /// Whether the loop `name` is enabled by `--controllers`.
    pub fn enabled(&self, name: &str) -> bool {
        let mut on = false;
        for c in &self.controllers {
            let c = c.trim();
            if c == "*" || c == name {
                on = true;
            } else if c.strip_prefix('-') == Some(name) {
                return false;
            }
        }
        on
    }

    /// Names in `--controllers` that are not control loops.
    pub fn unknown(&self) -> Vec<String> {
        let known: Vec<&str> = std::iter::once(rkube_scheduler::NAME)
            .chain(rkube_controllers::NAMES.iter().copied())
            .collect();
        self.controllers
            .iter()
            .map(|c| c.trim().trim_start_matches('-').to_string())
            .filter(|c| !c.is_empty() && c != "*" && !known.contains(&c.as_str()))
            .collect()
    }
}

/// Run the control loops until `shutdown` completes. They reach this server at `api_addr`
/// with a client certificate issued by the cluster CA.
pub async fn run(
    args: ControlPlaneArgs,
    ca: rkube_store::tls::CaBundle,
    api_addr: String,
    member_id: u64,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let unknown = args.unknown();
    if !unknown.is_empty() {
        anyhow::bail!(
            "--controllers: unknown control loop(s) {}; known: scheduler, {}",
            unknown.join(", "),
            rkube_controllers::NAMES.join(", ")
        );
    }
    let cert = ca
        .issue_client("system:kube-controller-manager", &["system:masters"])
        .context("cannot issue the controllers' client certificate")?;
    let client = Client::new(ClientConfig {
        servers: vec![api_addr],
        ca_pem: ca.cert_pem.clone(),
        tls_server_name: rkube_store::tls::SERVER_NAME.into(),
        token: None,
        client_cert_pem: Some(cert.cert_pem),
        client_key_pem: Some(cert.key_pem),
        namespace: "default".into(),
    })?;
    let opts = ControllerOptions {
        enabled: Box::new({
            let args = args.clone();
            move |name| args.enabled(name)
        }),
        node_monitor_grace_period: args.node_monitor_grace_period,
        default_toleration_seconds: args.default_toleration_seconds,
        terminated_pod_gc_threshold: args.terminated_pod_gc_threshold,
        clock_rate: args.clock_rate,
        volume_root: args.volume_root.clone(),
        metrics: None,
    };
    let mut manager = rkube_controllers::build_manager(client, format!("server-{member_id}"), opts);
    if args.enabled(rkube_scheduler::NAME) {
        rkube_scheduler::register(&mut manager);
    }
    if !rkube_controllers::NAMES
        .iter()
        .chain([&rkube_scheduler::NAME])
        .any(|n| args.enabled(n))
    {
        tracing::info!("no control loops enabled (--controllers)");
        shutdown.await;
        return Ok(());
    }
    manager.run(member_id, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> ControlPlaneArgs {
        ControlPlaneArgs {
            controllers: list.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn controllers_flag_selects_loops_like_kube_controller_manager() {
        let all = args(&["*"]);
        assert!(all.enabled("scheduler") && all.enabled("deployment"));
        let no_sched = args(&["*", "-scheduler"]);
        assert!(!no_sched.enabled("scheduler") && no_sched.enabled("deployment"));
        let only = args(&["deployment", "replicaset"]);
        assert!(only.enabled("replicaset") && !only.enabled("podgc"));
        let none = args(&[""]);
        assert!(!none.enabled("scheduler"));
        assert!(none.unknown().is_empty());
        assert_eq!(
            args(&["*", "-sheduler"]).unknown(),
            vec!["sheduler".to_string()]
        );
    }
}
