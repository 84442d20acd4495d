//! The tables of cluster and configuration kinds: Node, Namespace, ConfigMap, Secret, Event,
//! Lease and PriorityClass.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::duration::{self, parse_timestamp};
use super::{
    age, array_at, col, condition_status, int_at, map_len, name, or_none, str_at, wide,
    KindPrinter, PrintOptions,
};

/// The label prefix naming a node's roles (`node-role.kubernetes.io/control-plane`).
const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
/// The older label whose value is the node's role.
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";

pub(crate) const NODE: KindPrinter = KindPrinter {
    columns: &[
        col("NAME"),
        col("STATUS"),
        col("ROLES"),
        col("AGE"),
        col("VERSION"),
        wide("INTERNAL-IP"),
        wide("EXTERNAL-IP"),
        wide("OS-IMAGE"),
        wide("KERNEL-VERSION"),
        wide("CONTAINER-RUNTIME"),
    ],
    row: node_row,
};

fn node_row(o: &Value, p: &PrintOptions) -> Vec<String> {
    let mut status = vec![
        match condition_status(array_at(o, "/status/conditions"), "Ready") {
            Some("True") => "Ready",
            Some(_) => "NotReady",
            None => "Unknown",
        },
    ];
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    for (key, value) in o["metadata"]["labels"].as_object().into_iter().flatten() {
        match key.strip_prefix(NODE_ROLE_PREFIX) {
            Some(role) if !role.is_empty() => {
                roles.insert(role);
            }
            _ => {
                if key == NODE_ROLE_LABEL {
                    if let Some(role) = value.as_str().filter(|r| !r.is_empty()) {
                        roles.insert(role);
                    }
                }
            }
        }
    }
    let address = |ty: &str| {
        or_none(
            array_at(o, "/status/addresses")
                .iter()
                .find(|a| str_at(a, "/type") == ty)
                .map_or("", |a| str_at(a, "/address")),
        )
    };
    let info = |field: &str| match str_at(o, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        name(o),
        status.join(","),
        or_none(&roles.into_iter().collect::<Vec<_>>().join(",")),
        age(o, p.now),
        str_at(o, "/status/nodeInfo/kubeletVersion").to_string(),
        address("InternalIP"),
        address("ExternalIP"),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

pub(crate) const NAMESPACE: KindPrinter = KindPrinter {
    columns: &[col("NAME"), col("STATUS"), col("AGE")],
    row: |o, p| {
        vec![
            name(o),
            str_at(o, "/status/phase").to_string(),
            age(o, p.now),
        ]
    },
};

pub(crate) const CONFIG_MAP: KindPrinter = KindPrinter {
    columns: &[col("NAME"), col("DATA"), col("AGE")],
    row: |o, p| {
        let data = map_len(o, "/data") + map_len(o, "/binaryData");
        vec![name(o), data.to_string(), age(o, p.now)]
    },
};

pub(crate) const SECRET: KindPrinter = KindPrinter {
    columns: &[col("NAME"), col("TYPE"), col("DATA"), col("AGE")],
    row: |o, p| {
        vec![
            name(o),
            str_at(o, "/type").to_string(),
            map_len(o, "/data").to_string(),
            age(o, p.now),
        ]
    },
};

pub(crate) const LEASE: KindPrinter = KindPrinter {
    columns: &[col("NAME"), col("HOLDER"), col("AGE")],
    row: |o, p| {
        vec![
            name(o),
            str_at(o, "/spec/holderIdentity").to_string(),
            age(o, p.now),
        ]
    },
};

pub(crate) const PRIORITY_CLASS: KindPrinter = KindPrinter {
    columns: &[
        col("NAME"),
        col("VALUE"),
        col("GLOBAL-DEFAULT"),
        col("AGE"),
        col("PREEMPTIONPOLICY"),
    ],
    row: |o, p| {
        let global_default = o["globalDefault"].as_bool().unwrap_or(false);
        vec![
            name(o),
            int_at(o, "/value").to_string(),
            global_default.to_string(),
            age(o, p.now),
            str_at(o, "/preemptionPolicy").to_string(),
        ]
    },
};

pub(crate) const EVENT: KindPrinter = KindPrinter {
    columns: &[
        col("LAST SEEN"),
        col("TYPE"),
        col("REASON"),
        col("OBJECT"),
        wide("SUBOBJECT"),
        wide("SOURCE"),
        col("MESSAGE"),
        wide("FIRST SEEN"),
        wide("COUNT"),
        wide("NAME"),
    ],
    row: event_row,
};

fn time_at(o: &Value, pointer: &str) -> Option<Timestamp> {
    o.pointer(pointer)
        .and_then(Value::as_str)
        .and_then(parse_timestamp)
}

/// When the event was first seen: `firstTimestamp`, else (events.k8s.io style) `eventTime`.
fn event_first_seen(e: &Value) -> Option<Timestamp> {
    time_at(e, "/firstTimestamp").or_else(|| time_at(e, "/eventTime"))
}

/// When the event was last seen, as the LAST SEEN column shows it (and events sort by).
pub(crate) fn event_last_seen(e: &Value) -> Option<Timestamp> {
    if e.pointer("/series").is_some_and(Value::is_object) {
        return time_at(e, "/series/lastObservedTime");
    }
    time_at(e, "/lastTimestamp").or_else(|| event_first_seen(e))
}

fn event_row(e: &Value, p: &PrintOptions) -> Vec<String> {
    let seen = |t: Option<Timestamp>| match t {
        Some(t) => duration::between(t, p.now),
        None => "<unknown>".to_string(),
    };
    let count = if e.pointer("/series").is_some_and(Value::is_object) {
        int_at(e, "/series/count")
    } else {
        // Singleton events of the newer API have no count.
        match int_at(e, "/count") {
            0 => 1,
            n => n,
        }
    };
    let kind = str_at(e, "/involvedObject/kind").to_lowercase();
    let target = match str_at(e, "/involvedObject/name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let first_non_empty = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let component = first_non_empty(
        str_at(e, "/source/component"),
        str_at(e, "/reportingController"),
    );
    let host = first_non_empty(str_at(e, "/source/host"), str_at(e, "/reportingInstance"));
    let source = if host.is_empty() {
        component
    } else {
        format!("{component}, {host}")
    };
    vec![
        seen(event_last_seen(e)),
        str_at(e, "/type").to_string(),
        str_at(e, "/reason").to_string(),
        target,
        str_at(e, "/involvedObject/fieldPath").to_string(),
        source,
        str_at(e, "/message").trim().to_string(),
        seen(event_first_seen(e)),
        count.to_string(),
        name(e),
    ]
}
