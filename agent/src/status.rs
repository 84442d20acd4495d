//! Pod status from container states, as the kubelet computes it: the phase (`getPhase`), the
//! conditions Initialized, ContainersReady, Ready and PodScheduled, and merging the agent's view
//! into the status stored in the API without disturbing fields others own.
//!
//! Readiness gates are a later slice: a pod with readiness gates is reported not ready with a
//! message saying why, so nothing claims a readiness the agent has not checked. Container
//! readiness (`ready`, from readiness probes) is decided by the worker.

use k8s_openapi::api::core::v1::{ContainerStatus, HostIP, PodCondition, PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The agent's view of one pod, compared to decide whether to report (no clocks in it beyond
/// times that only change with container states).
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub phase: &'static str,
    pub conditions: Vec<ConditionView>,
    pub host_ip: String,
    pub pod_ip: Option<String>,
    pub start_time: Time,
    pub init_container_statuses: Vec<ContainerStatus>,
    pub container_statuses: Vec<ContainerStatus>,
}

/// A condition without its timestamps (they are added when merging).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionView {
    pub type_: &'static str,
    pub status: bool,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// The pod phase, as the kubelet's `getPhase` computes it from container statuses.
pub fn pod_phase(
    restart_policy: &str,
    init: &[ContainerStatus],
    app: &[ContainerStatus],
) -> &'static str {
    let mut pending_init = false;
    let mut failed_init = false;
    for c in init {
        let state = c.state.clone().unwrap_or_default();
        if let Some(t) = &state.terminated {
            if t.exit_code != 0 {
                failed_init = true;
                pending_init = true;
            }
        } else if state.running.is_some() {
            pending_init = true;
        } else {
            pending_init = true;
            if last_exit(c).is_some_and(|code| code != 0) {
                failed_init = true;
            }
        }
    }
    if failed_init && restart_policy == "Never" {
        return "Failed";
    }
    if pending_init {
        return "Pending";
    }
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in app {
        let state = c.state.clone().unwrap_or_default();
        if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.running.is_some() {
            running += 1;
        } else if last_exit(c).is_some() {
            // Waiting to be restarted after an exit: it counts as stopped.
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    match () {
        _ if waiting > 0 => "Pending",
        _ if running > 0 => "Running",
        _ if stopped > 0 => {
            if restart_policy == "Always" {
                "Running"
            } else if stopped == succeeded {
                "Succeeded"
            } else if restart_policy == "Never" {
                "Failed"
            } else {
                "Running"
            }
        }
        _ => "Pending",
    }
}

fn last_exit(c: &ContainerStatus) -> Option<i32> {
    c.last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code)
}

/// The conditions the agent owns, in Kubernetes' order.
pub fn conditions(
    phase: &str,
    init: &[ContainerStatus],
    app: &[ContainerStatus],
    readiness_gates: bool,
) -> Vec<ConditionView> {
    let incomplete: Vec<&str> = init
        .iter()
        .filter(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_none_or(|t| t.exit_code != 0)
        })
        .map(|c| c.name.as_str())
        .collect();
    let initialized = if incomplete.is_empty() || phase == "Succeeded" {
        cond("Initialized", true, None, None)
    } else {
        cond(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            )),
        )
    };
    let unready: Vec<&str> = app
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let (containers_ready, ready) = if phase == "Succeeded" || phase == "Failed" {
        let c = |t| cond(t, false, Some("PodCompleted"), None);
        (c("ContainersReady"), c("Ready"))
    } else if !unready.is_empty() {
        let message = format!("containers with unready status: [{}]", unready.join(" "));
        let c = |t| cond(t, false, Some("ContainersNotReady"), Some(message.clone()));
        (c("ContainersReady"), c("Ready"))
    } else if readiness_gates {
        (
            cond("ContainersReady", true, None, None),
            cond(
                "Ready",
                false,
                Some("ReadinessGatesNotReady"),
                Some("readiness gates are not supported by this agent yet".into()),
            ),
        )
    } else {
        (
            cond("ContainersReady", true, None, None),
            cond("Ready", true, None, None),
        )
    };
    vec![
        cond("PodScheduled", true, None, None),
        initialized,
        containers_ready,
        ready,
    ]
}

fn cond(
    type_: &'static str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> ConditionView {
    ConditionView {
        type_,
        status,
        reason: reason.map(str::to_string),
        message,
    }
}

/// Write `view` into `status`: the fields the agent owns are replaced, conditions of other types
/// (set by controllers) are kept, and a condition whose status did not change keeps its
/// `lastTransitionTime`.
pub fn merge_into(status: &mut PodStatus, view: &PodView, now: &Time) {
    status.phase = Some(view.phase.to_string());
    status.host_ip = Some(view.host_ip.clone());
    status.host_ips = Some(vec![HostIP {
        ip: view.host_ip.clone(),
    }]);
    status.pod_ip = view.pod_ip.clone();
    status.pod_ips = view
        .pod_ip
        .as_ref()
        .map(|ip| vec![PodIP { ip: ip.clone() }]);
    status.start_time = Some(status.start_time.clone().unwrap_or(view.start_time.clone()));
    status.init_container_statuses =
        (!view.init_container_statuses.is_empty()).then(|| view.init_container_statuses.clone());
    status.container_statuses = Some(view.container_statuses.clone());
    let old = status.conditions.take().unwrap_or_default();
    let mut merged: Vec<PodCondition> = Vec::new();
    for c in &view.conditions {
        let text = if c.status { "True" } else { "False" };
        let previous = old.iter().find(|o| o.type_ == c.type_);
        let transition = match previous {
            Some(p) if p.status == text => p.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
        merged.push(PodCondition {
            type_: c.type_.to_string(),
            status: text.to_string(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: transition,
            last_probe_time: previous.and_then(|p| p.last_probe_time.clone()),
            observed_generation: previous.and_then(|p| p.observed_generation),
        });
    }
    for o in old {
        if !view.conditions.iter().any(|c| c.type_ == o.type_) {
            merged.push(o);
        }
    }
    status.conditions = Some(merged);
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    };

    use super::*;

    fn waiting(reason: &str) -> ContainerStatus {
        status(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: None,
            }),
            ..Default::default()
        })
    }

    fn running() -> ContainerStatus {
        let mut s = status(ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        });
        s.ready = true;
        s
    }

    fn exited(code: i32) -> ContainerStatus {
        status(terminated(code))
    }

    fn terminated(code: i32) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Waiting to restart after exiting with `code`.
    fn crashed(code: i32) -> ContainerStatus {
        let mut s = waiting("CrashLoopBackOff");
        s.last_state = Some(terminated(code));
        s
    }

    fn status(state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            name: "c".into(),
            state: Some(state),
            ..Default::default()
        }
    }

    #[test]
    fn phase_table() {
        let cases: Vec<(&str, Vec<ContainerStatus>, Vec<ContainerStatus>, &str)> = vec![
            (
                "Always",
                vec![],
                vec![waiting("ContainerCreating")],
                "Pending",
            ),
            ("Always", vec![], vec![waiting("NoCommand")], "Pending"),
            ("Always", vec![], vec![running(), running()], "Running"),
            ("Always", vec![], vec![running(), waiting("x")], "Pending"),
            ("Always", vec![], vec![crashed(3)], "Running"),
            ("Always", vec![], vec![exited(0)], "Running"),
            ("OnFailure", vec![], vec![exited(0), exited(0)], "Succeeded"),
            ("OnFailure", vec![], vec![exited(0), crashed(1)], "Running"),
            ("Never", vec![], vec![exited(0)], "Succeeded"),
            ("Never", vec![], vec![exited(0), exited(2)], "Failed"),
            ("Never", vec![], vec![running(), exited(2)], "Running"),
            (
                "Always",
                vec![running()],
                vec![waiting("PodInitializing")],
                "Pending",
            ),
            ("Always", vec![exited(0)], vec![running()], "Running"),
            (
                "Always",
                vec![crashed(1)],
                vec![waiting("PodInitializing")],
                "Pending",
            ),
            (
                "OnFailure",
                vec![exited(1)],
                vec![waiting("PodInitializing")],
                "Pending",
            ),
            (
                "Never",
                vec![exited(1)],
                vec![waiting("PodInitializing")],
                "Failed",
            ),
        ];
        for (policy, init, app, want) in cases {
            assert_eq!(
                pod_phase(policy, &init, &app),
                want,
                "policy {policy}, init {init:?}, app {app:?}"
            );
        }
    }

    fn summary(c: &[ConditionView]) -> Vec<String> {
        c.iter()
            .map(|c| {
                format!(
                    "{}={} {}",
                    c.type_,
                    c.status,
                    c.message.clone().unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn conditions_name_what_is_not_ready() {
        let mut probed = running();
        probed.name = "web".into();
        probed.ready = false;
        let got = conditions("Running", &[exited(0)], &[running(), probed], false);
        assert_eq!(
            summary(&got),
            [
                "PodScheduled=true ",
                "Initialized=true ",
                "ContainersReady=false containers with unready status: [web]",
                "Ready=false containers with unready status: [web]",
            ]
        );
        let mut init = running();
        init.name = "setup".into();
        let got = conditions("Pending", &[init], &[waiting("PodInitializing")], false);
        assert_eq!(
            summary(&got)[1],
            "Initialized=false containers with incomplete status: [setup]"
        );
        let got = conditions("Running", &[], &[running()], true);
        assert_eq!(
            summary(&got)[2..],
            [
                "ContainersReady=true ",
                "Ready=false readiness gates are not supported by this agent yet"
            ]
        );
        let got = conditions("Succeeded", &[], &[exited(0)], false);
        assert_eq!(got[3].reason.as_deref(), Some("PodCompleted"));
    }

    #[test]
    fn merging_keeps_transition_times_and_foreign_conditions() {
        let t0 = Time("2024-01-01T00:00:00Z".parse().unwrap());
        let t1 = Time("2024-01-01T00:01:00Z".parse().unwrap());
        let mut status = PodStatus {
            qos_class: Some("BestEffort".into()),
            conditions: Some(vec![
                PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    last_transition_time: Some(t0.clone()),
                    ..Default::default()
                },
                PodCondition {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let view = PodView {
            phase: "Running",
            conditions: conditions("Running", &[], &[running()], false),
            host_ip: "127.0.0.1".into(),
            pod_ip: Some("127.1.0.1".into()),
            start_time: t1.clone(),
            init_container_statuses: vec![],
            container_statuses: vec![running()],
        };
        merge_into(&mut status, &view, &t1);
        let conds = status.conditions.clone().unwrap();
        let types: Vec<&str> = conds.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                "PodScheduled",
                "Initialized",
                "ContainersReady",
                "Ready",
                "DisruptionTarget"
            ]
        );
        assert_eq!(conds[0].last_transition_time, Some(t0));
        assert_eq!(conds[3].last_transition_time, Some(t1.clone()));
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
        assert_eq!(status.pod_ips.unwrap()[0].ip, "127.1.0.1");
        assert_eq!(status.start_time, Some(t1));
    }
}
