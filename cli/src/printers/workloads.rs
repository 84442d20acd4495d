//! The tables of the workload controllers (Deployment, ReplicaSet, ReplicationController,
//! DaemonSet, StatefulSet, Job, CronJob) and of the HorizontalPodAutoscaler.

use jiff::Timestamp;
use serde_json::Value;

use super::duration::{self, parse_timestamp};
use super::{
    age, array_at, col, container_cells, format_label_selector, format_labels, int_at, name,
    selector_string, str_at, wide, Column, KindPrinter, PrintOptions,
};

/// `spec.replicas`, which the API server defaults to 1.
fn desired_replicas(o: &Value) -> i64 {
    o.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn template_containers(o: &Value) -> (String, String) {
    container_cells(array_at(o, "/spec/template/spec/containers"))
}

pub(crate) const DEPLOYMENT: KindPrinter = KindPrinter {
    columns: &[
        col("NAME"),
        col("READY"),
        col("UP-TO-DATE"),
        col("AVAILABLE"),
        col("AGE"),
        wide("CONTAINERS"),
        wide("IMAGES"),
        wide("SELECTOR"),
    ],
    row: |o, p| {
        let now = p.now;
        let (containers, images) = template_containers(o);
        vec![
            name(o),
            format!(
                "{}/{}",
                int_at(o, "/status/readyReplicas"),
                desired_replicas(o)
            ),
            int_at(o, "/status/updatedReplicas").to_string(),
            int_at(o, "/status/availableReplicas").to_string(),
            age(o, now),
            containers,
            images,
            selector_string(&o["spec"]["selector"]),
        ]
    },
};

const REPLICA_COLUMNS: &[Column] = &[
    col("NAME"),
    col("DESIRED"),
    col("CURRENT"),
    col("READY"),
    col("AGE"),
    wide("CONTAINERS"),
    wide("IMAGES"),
    wide("SELECTOR"),
];

fn replica_cells(o: &Value, now: Timestamp) -> Vec<String> {
    let (containers, images) = template_containers(o);
    vec![
        name(o),
        desired_replicas(o).to_string(),
        int_at(o, "/status/replicas").to_string(),
        int_at(o, "/status/readyReplicas").to_string(),
        age(o, now),
        containers,
        images,
    ]
}

pub(crate) const REPLICA_SET: KindPrinter = KindPrinter {
    columns: REPLICA_COLUMNS,
    row: |o, p| {
        let now = p.now;
        let mut cells = replica_cells(o, now);
        cells.push(format_label_selector(&o["spec"]["selector"]));
        cells
    },
};

/// A ReplicationController's selector is a plain label map.
pub(crate) const REPLICATION_CONTROLLER: KindPrinter = KindPrinter {
    columns: REPLICA_COLUMNS,
    row: |o, p| {
        let now = p.now;
        let mut cells = replica_cells(o, now);
        cells.push(format_labels(&o["spec"]["selector"]));
        cells
    },
};

pub(crate) const DAEMON_SET: KindPrinter = KindPrinter {
    columns: &[
        col("NAME"),
        col("DESIRED"),
        col("CURRENT"),
        col("READY"),
        col("UP-TO-DATE"),
        col("AVAILABLE"),
        col("NODE SELECTOR"),
        col("AGE"),
        wide("CONTAINERS"),
        wide("IMAGES"),
        wide("SELECTOR"),
    ],
    row: |o, p| {
        let now = p.now;
        let (containers, images) = template_containers(o);
        vec![
            name(o),
            int_at(o, "/status/desiredNumberScheduled").to_string(),
            int_at(o, "/status/currentNumberScheduled").to_string(),
            int_at(o, "/status/numberReady").to_string(),
            int_at(o, "/status/updatedNumberScheduled").to_string(),
            int_at(o, "/status/numberAvailable").to_string(),
            format_labels(&o["spec"]["template"]["spec"]["nodeSelector"]),
            age(o, now),
            containers,
            images,
            format_label_selector(&o["spec"]["selector"]),
        ]
    },
};

pub(crate) const STATEFUL_SET: KindPrinter = KindPrinter {
    columns: &[
        col("NAME"),
        col("READY"),
        col("AGE"),
        wide("CONTAINERS"),
        wide("IMAGES"),
    ],
    row: |o, p| {
        let now = p.now;
        let (containers, images) = template_containers(o);
        vec![
            name(o),
            format!(
                "{}/{}",
                int_at(o, "/status/readyReplicas"),
                desired_replicas(o)
            ),
            age(o, now),
            containers,
            images,
        ]
    },
};

/// Whether the first condition of this type is true (kubectl's `hasJobCondition`).
fn has_condition(o: &Value, ty: &str) -> bool {
    super::condition_status(array_at(o, "/status/conditions"), ty) == Some("True")
}

pub(crate) const JOB: KindPrinter = KindPrinter {
    columns: &[
        col("NAME"),
        col("STATUS"),
        col("COMPLETIONS"),
        col("DURATION"),
        col("AGE"),
        wide("CONTAINERS"),
        wide("IMAGES"),
        wide("SELECTOR"),
    ],
    row: job_row,
};

fn job_row(o: &Value, p: &PrintOptions) -> Vec<String> {
    let now = p.now;
    let succeeded = int_at(o, "/status/succeeded");
    let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int_at(o, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let time = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .and_then(parse_timestamp)
    };
    let job_duration = match (time("/status/startTime"), time("/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => duration::between(start, now),
        (Some(start), Some(end)) => duration::between(start, end),
    };
    let deleting = o
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    let status = if has_condition(o, "Complete") {
        "Complete"
    } else if has_condition(o, "Failed") {
        "Failed"
    } else if deleting {
        "Terminating"
    } else if has_condition(o, "Suspended") {
        "Suspended"
    } else if has_condition(o, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (containers, images) = template_containers(o);
    vec![
        name(o),
        status.to_string(),
        completions,
        job_duration,
        age(o, now),
        containers,
        images,
        format_label_selector(&o["spec"]["selector"]),
    ]
}

pub(crate) const CRON_JOB: KindPrinter = KindPrinter {
    columns: &[
        col("NAME"),
        col("SCHEDULE"),
        col("TIMEZONE"),
        col("SUSPEND"),
        col("ACTIVE"),
        col("LAST SCHEDULE"),
        col("AGE"),
        wide("CONTAINERS"),
        wide("IMAGES"),
        wide("SELECTOR"),
    ],
    row: |o, p| {
        let now = p.now;
        let last_schedule = match o
            .pointer("/status/lastScheduleTime")
            .and_then(Value::as_str)
        {
            Some(t) => duration::since(Some(t), now),
            None => "<none>".into(),
        };
        let suspend = match o.pointer("/spec/suspend").and_then(Value::as_bool) {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let template = &o["spec"]["jobTemplate"]["spec"];
        let (containers, images) = container_cells(array_at(template, "/template/spec/containers"));
        vec![
            name(o),
            str_at(o, "/spec/schedule").to_string(),
            super::or_none(str_at(o, "/spec/timeZone")),
            suspend.to_string(),
            array_at(o, "/status/active").len().to_string(),
            last_schedule,
            age(o, now),
            containers,
            images,
            format_label_selector(&template["selector"]),
        ]
    },
};

pub(crate) const HORIZONTAL_POD_AUTOSCALER: KindPrinter = KindPrinter {
    columns: &[
        col("NAME"),
        col("REFERENCE"),
        col("TARGETS"),
        col("MINPODS"),
        col("MAXPODS"),
        col("REPLICAS"),
        col("AGE"),
    ],
    row: |o, p| {
        let now = p.now;
        let min_pods = match o.pointer("/spec/minReplicas").and_then(Value::as_i64) {
            Some(n) => n.to_string(),
            None => "<unset>".into(),
        };
        vec![
            name(o),
            format!(
                "{}/{}",
                str_at(o, "/spec/scaleTargetRef/kind"),
                str_at(o, "/spec/scaleTargetRef/name")
            ),
            format_hpa_metrics(
                array_at(o, "/spec/metrics"),
                array_at(o, "/status/currentMetrics"),
            ),
            min_pods,
            int_at(o, "/spec/maxReplicas").to_string(),
            int_at(o, "/status/currentReplicas").to_string(),
            age(o, now),
        ]
    },
};

/// A quantity or percentage field as text, if present.
fn quantity(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The TARGETS cell: `cpu: 20%/50%` per metric (current/target, `<unknown>` before the first
/// measurement), at most two, then `+ N more...` (kubectl's `formatHPAMetrics`).
fn format_hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 2;
    let unknown = || "<unknown>".to_string();
    let mut list = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i).unwrap_or(&Value::Null);
        let ty = str_at(spec, "/type");
        let entry = match ty {
            "External" | "Object" => {
                let key = if ty == "External" {
                    "external"
                } else {
                    "object"
                };
                let target = &spec[key]["target"];
                let current = &status[key]["current"];
                if let Some(avg) = quantity(target, "/averageValue") {
                    let cur = quantity(current, "/averageValue").unwrap_or_else(unknown);
                    format!("{cur}/{avg} (avg)")
                } else {
                    let cur = quantity(current, "/value").unwrap_or_else(unknown);
                    format!("{cur}/{}", quantity(target, "/value").unwrap_or_default())
                }
            }
            "Pods" => {
                let cur =
                    quantity(&status["pods"]["current"], "/averageValue").unwrap_or_else(unknown);
                let target = quantity(&spec["pods"]["target"], "/averageValue").unwrap_or_default();
                format!("{cur}/{target}")
            }
            "Resource" | "ContainerResource" => {
                let key = if ty == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let resource = str_at(spec, &format!("/{key}/name"));
                let target = &spec[key]["target"];
                let current = &status[key]["current"];
                if let Some(avg) = quantity(target, "/averageValue") {
                    let cur = quantity(current, "/averageValue").unwrap_or_else(unknown);
                    format!("{resource}: {cur}/{avg}")
                } else {
                    let cur = quantity(current, "/averageUtilization")
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(unknown);
                    let target = quantity(target, "/averageUtilization")
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(|| "<auto>".into());
                    format!("{resource}: {cur}/{target}")
                }
            }
            _ => "<unknown type>".into(),
        };
        list.push(entry);
    }
    let count = list.len();
    if count > MAX {
        list.truncate(MAX);
        return format!("{} + {} more...", list.join(", "), count - MAX);
    }
    list.join(", ")
}
