//! The pod table, with kubectl's STATUS summary (`printPod`): the phase or the pod's reason,
//! overridden by init container progress (`Init:1/2`, `Init:CrashLoopBackOff`), then by the
//! containers' waiting or terminated reasons (`ContainerCreating`, `CrashLoopBackOff`,
//! `Completed`, `ExitCode:1`), and by `Terminating` while the pod is being deleted.

use jiff::Timestamp;
use serde_json::Value;

use super::duration::{self, parse_timestamp};
use super::{
    age, array_at, col, condition_status, int_at, name, or_none, str_at, wide, Column, KindPrinter,
    PrintOptions,
};

pub(crate) const PRINTER: KindPrinter = KindPrinter {
    columns: COLUMNS,
    row: pod_row,
};

const COLUMNS: &[Column] = &[
    col("NAME"),
    col("READY"),
    col("STATUS"),
    col("RESTARTS"),
    col("AGE"),
    wide("IP"),
    wide("NODE"),
    wide("NOMINATED NODE"),
    wide("READINESS GATES"),
];

/// The reason the node controller gives pods of a node that stopped reporting.
const NODE_UNREACHABLE_POD_REASON: &str = "NodeLost";

fn pod_row(pod: &Value, opts: &PrintOptions) -> Vec<String> {
    let now = opts.now;
    let s = summarize(pod);
    let restarts = match s.last_restart {
        Some(t) if s.restarts != 0 => format!("{} ({} ago)", s.restarts, duration::between(t, now)),
        _ => s.restarts.to_string(),
    };
    let ip = array_at(pod, "/status/podIPs")
        .first()
        .map(|p| str_at(p, "/ip"))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| str_at(pod, "/status/podIP"));
    let gates = array_at(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = array_at(pod, "/status/conditions");
        let ready = gates
            .iter()
            .filter(|g| condition_status(conditions, str_at(g, "/conditionType")) == Some("True"))
            .count();
        format!("{ready}/{}", gates.len())
    };
    vec![
        name(pod),
        format!("{}/{}", s.ready, s.total),
        s.reason,
        restarts,
        age(pod, now),
        or_none(ip),
        or_none(str_at(pod, "/spec/nodeName")),
        or_none(str_at(pod, "/status/nominatedNodeName")),
        readiness_gates,
    ]
}

/// What the READY, STATUS and RESTARTS columns summarize.
struct Summary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<Timestamp>,
}

/// A sidecar: an init container that keeps running beside the app containers.
fn is_restartable_init_container(c: Option<&Value>) -> bool {
    c.is_some_and(|c| str_at(c, "/restartPolicy") == "Always")
}

/// When the container last terminated, if it has restarted.
fn last_termination(status: &Value) -> Option<Timestamp> {
    status
        .pointer("/lastState/terminated/finishedAt")
        .and_then(Value::as_str)
        .and_then(parse_timestamp)
}

fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    a.max(b)
}

/// `Signal:9` or `ExitCode:1` for a container terminated without a reason.
fn exit_reason(terminated: &Value) -> String {
    match int_at(terminated, "/signal") {
        0 => format!("ExitCode:{}", int_at(terminated, "/exitCode")),
        signal => format!("Signal:{signal}"),
    }
}

fn summarize(pod: &Value) -> Summary {
    let phase = str_at(pod, "/status/phase");
    let mut reason = match str_at(pod, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    let conditions = array_at(pod, "/status/conditions");
    if conditions
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    let init_specs = array_at(pod, "/spec/initContainers");
    let init_spec = |name: &str| init_specs.iter().find(|c| str_at(c, "/name") == name);
    let total = array_at(pod, "/spec/containers").len()
        + init_specs
            .iter()
            .filter(|c| is_restartable_init_container(Some(c)))
            .count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart = None;
    let mut last_sidecar_restart = None;

    let mut initializing = false;
    for (i, c) in array_at(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let count = int_at(c, "/restartCount");
        restarts += count;
        last_restart = later(last_restart, last_termination(c));
        let sidecar = is_restartable_init_container(init_spec(str_at(c, "/name")));
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = later(last_sidecar_restart, last_termination(c));
        }
        let terminated = c.pointer("/state/terminated");
        let waiting_reason = str_at(c, "/state/waiting/reason");
        if terminated.is_some_and(|t| int_at(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && c["started"].as_bool() == Some(true) {
            if c["ready"].as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = match str_at(t, "/reason") {
                "" => format!("Init:{}", exit_reason(t)),
                r => format!("Init:{r}"),
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_status(conditions, "Initialized") == Some("True") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in array_at(pod, "/status/containerStatuses").iter().rev() {
            restarts += int_at(c, "/restartCount");
            last_restart = later(last_restart, last_termination(c));
            let waiting_reason = str_at(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match str_at(t, "/reason") {
                    "" => exit_reason(t),
                    r => r.to_string(),
                };
            } else if c["ready"].as_bool() == Some(true) && c.pointer("/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed but another still runs is still running.
        if reason == "Completed" && has_running {
            reason = if condition_status(conditions, "Ready") == Some("True") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    if deleting && str_at(pod, "/status/reason") == NODE_UNREACHABLE_POD_REASON {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }
    Summary {
        ready,
        total,
        reason,
        restarts,
        last_restart,
    }
}
