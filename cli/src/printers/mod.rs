//! Output printers: kubectl's column tables per kind (`pkg/printers/internalversion/printers.go`),
//! decorated as `kubectl get` decorates them (NAMESPACE first with -A, `kind/name` names when
//! several kinds are printed, -L label columns and LABELS last), laid out by kubectl's tabwriter;
//! plus the JSON, YAML, name, JSONPath and custom-columns formats.
//!
//! Printers read objects as JSON (`serde_json::Value`): a field the object lacks prints as
//! kubectl prints the zero value (`0`, `<none>`, an empty cell), never as an error. The time
//! "now" that ages are measured against is a parameter, so output is deterministic in tests.

mod cluster;
pub mod duration;
pub mod jsonpath;
mod network;
pub mod output;
mod pods;
mod storage;
pub mod tabwriter;
pub mod watch;
mod workloads;

#[cfg(test)]
mod tests;

use jiff::Timestamp;
use serde_json::Value;

pub use output::OutputFormat;
pub use tabwriter::TabWriter;
pub use watch::WatchPrinter;

/// How to print a table.
#[derive(Debug, Clone)]
pub struct PrintOptions {
    /// `-o wide`: add the kind's extra columns.
    pub wide: bool,
    /// `-A`: a NAMESPACE column first (only for namespaced kinds; the caller decides).
    pub with_namespace: bool,
    /// Prefix names with this (`pod`, `deployment.apps`) and a slash, as when several kinds print.
    pub kind_prefix: Option<String>,
    /// `-L`: a column per label key, headed by the key's last path segment upper-cased.
    pub label_columns: Vec<String>,
    /// `--show-labels`: a LABELS column last.
    pub show_labels: bool,
    /// Keep the objects in the order given (`--sort-by`) instead of a kind's own order.
    pub keep_order: bool,
    /// The time ages are measured at.
    pub now: Timestamp,
}

impl PrintOptions {
    /// Plain options: no extra columns, ages measured at `now`.
    pub fn new(now: Timestamp) -> PrintOptions {
        PrintOptions {
            wide: false,
            with_namespace: false,
            kind_prefix: None,
            label_columns: Vec::new(),
            show_labels: false,
            keep_order: false,
            now,
        }
    }
}

/// A table of cells: the header, then a row per object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// The header (unless `no_headers`) and rows laid out by a fresh tabwriter.
    pub fn render(&self, no_headers: bool) -> String {
        TabWriter::new().format(&self.lines(no_headers))
    }

    /// The lines to lay out: the header (unless `no_headers`) and the rows.
    pub fn lines(&self, no_headers: bool) -> Vec<Vec<String>> {
        let header = (!no_headers).then(|| self.header.clone());
        header
            .into_iter()
            .chain(self.rows.iter().cloned())
            .collect()
    }
}

/// The table kubectl prints for `objects`, all of kind `kind` (`Pod`, `Deployment`). Kinds
/// without a printer of their own get NAME and AGE. Events are sorted by when they were last
/// seen, oldest first.
pub fn table(kind: &str, objects: &[Value], opts: &PrintOptions) -> Table {
    let printer = printer_for(kind);
    let mut objects: Vec<&Value> = objects.iter().collect();
    if kind == "Event" && !opts.keep_order {
        objects.sort_by_key(|e| cluster::event_last_seen(e));
    }
    let visible: Vec<usize> = (0..printer.columns.len())
        .filter(|i| opts.wide || !printer.columns[*i].wide)
        .collect();
    let name_column = printer.columns.iter().position(|c| c.name == "NAME");

    let mut header = Vec::new();
    if opts.with_namespace {
        header.push("NAMESPACE".to_string());
    }
    header.extend(visible.iter().map(|i| printer.columns[*i].name.to_string()));
    header.extend(opts.label_columns.iter().map(|l| label_header(l)));
    if opts.show_labels {
        header.push("LABELS".to_string());
    }

    let rows = objects
        .into_iter()
        .map(|obj| {
            let mut cells = (printer.row)(obj, opts);
            if let (Some(prefix), Some(i)) = (&opts.kind_prefix, name_column) {
                cells[i] = format!("{prefix}/{}", cells[i]);
            }
            let mut row = Vec::with_capacity(header.len());
            if opts.with_namespace {
                row.push(str_at(obj, "/metadata/namespace").to_string());
            }
            row.extend(visible.iter().map(|i| std::mem::take(&mut cells[*i])));
            let labels = &obj["metadata"]["labels"];
            row.extend(
                opts.label_columns
                    .iter()
                    .map(|key| labels[key.as_str()].as_str().unwrap_or("").to_string()),
            );
            if opts.show_labels {
                row.push(format_labels(labels));
            }
            row
        })
        .collect();
    Table { header, rows }
}

/// `-L app.kubernetes.io/name` is headed NAME, as kubectl heads it.
fn label_header(key: &str) -> String {
    key.rsplit('/').next().unwrap_or(key).to_uppercase()
}

/// One column of a kind's table; `wide` columns show only with `-o wide`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    pub name: &'static str,
    pub wide: bool,
}

/// A column shown always.
pub(crate) const fn col(name: &'static str) -> Column {
    Column { name, wide: false }
}

/// A column shown with `-o wide`.
pub(crate) const fn wide(name: &'static str) -> Column {
    Column { name, wide: true }
}

/// A kind's columns and the function computing a row's cells (one per column, wide included).
pub(crate) struct KindPrinter {
    pub columns: &'static [Column],
    pub row: fn(&Value, &PrintOptions) -> Vec<String>,
}

fn printer_for(kind: &str) -> KindPrinter {
    match kind {
        "Pod" => pods::PRINTER,
        "Deployment" => workloads::DEPLOYMENT,
        "ReplicaSet" => workloads::REPLICA_SET,
        "ReplicationController" => workloads::REPLICATION_CONTROLLER,
        "DaemonSet" => workloads::DAEMON_SET,
        "StatefulSet" => workloads::STATEFUL_SET,
        "Job" => workloads::JOB,
        "CronJob" => workloads::CRON_JOB,
        "HorizontalPodAutoscaler" => workloads::HORIZONTAL_POD_AUTOSCALER,
        "Service" => network::SERVICE,
        "Endpoints" => network::ENDPOINTS,
        "Node" => cluster::NODE,
        "Namespace" => cluster::NAMESPACE,
        "ConfigMap" => cluster::CONFIG_MAP,
        "Secret" => cluster::SECRET,
        "Event" => cluster::EVENT,
        "Lease" => cluster::LEASE,
        "PriorityClass" => cluster::PRIORITY_CLASS,
        "PersistentVolume" => storage::PERSISTENT_VOLUME,
        "PersistentVolumeClaim" => storage::PERSISTENT_VOLUME_CLAIM,
        _ => DEFAULT,
    }
}

/// kubectl's fallback for kinds it has no printer for.
const DEFAULT: KindPrinter = KindPrinter {
    columns: &[col("NAME"), col("AGE")],
    row: |o, p| vec![name(o), age(o, p.now)],
};

// ---- cell helpers shared by the kinds' printers -------------------------------------------------

/// The string at a JSON pointer, or "" when it is missing or not a string.
pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The integer at a JSON pointer, or 0.
pub(crate) fn int_at(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The array at a JSON pointer, or an empty slice.
pub(crate) fn array_at<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The number of entries of the object (map) at a JSON pointer.
pub(crate) fn map_len(v: &Value, pointer: &str) -> usize {
    v.pointer(pointer)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

/// `s`, or `<none>` when it is empty.
pub(crate) fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

pub(crate) fn name(o: &Value) -> String {
    str_at(o, "/metadata/name").to_string()
}

/// The object's age (from `metadata.creationTimestamp`).
pub(crate) fn age(o: &Value, now: Timestamp) -> String {
    duration::since(
        o.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
        now,
    )
}

/// A label map as `a=b,c=d` sorted by key (kubectl's `labels.FormatLabels`), `<none>` if empty.
pub(crate) fn format_labels(labels: &Value) -> String {
    let Some(map) = labels.as_object().filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// A `LabelSelector` in selector syntax (`app=kubia,tier in (a,b)`), requirements sorted by key;
/// "" for an empty selector.
pub(crate) fn selector_string(selector: &Value) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = selector["matchLabels"].as_object() {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or("");
        let mut values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let text = match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({})", values.join(",")),
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort();
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// A `LabelSelector` as kubectl's `FormatLabelSelector` prints it: `<none>` when empty.
pub(crate) fn format_label_selector(selector: &Value) -> String {
    or_none(&selector_string(selector))
}

/// The CONTAINERS and IMAGES cells of a pod spec's containers.
pub(crate) fn container_cells(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "/image")).collect();
    (names.join(","), images.join(","))
}

/// The status of the condition of this type in `conditions`, if present.
pub(crate) fn condition_status<'a>(conditions: &'a [Value], ty: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c["type"].as_str() == Some(ty))
        .map(|c| c["status"].as_str().unwrap_or(""))
}
