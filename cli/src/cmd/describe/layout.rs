//! The layout primitives of kubectl's describers (`k8s.io/kubectl/pkg/describe`): a writer
//! that indents by level and aligns tab-separated cells like Go's tabwriter (minwidth 0,
//! padding 2), the multi-line label, annotation, taint and toleration blocks, the Events
//! table, and ages and times measured against an injectable clock.

use std::io::Write;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::Value;

use super::fields::{arr, int, map_pairs, s, time};

/// Write one formatted chunk at an indentation level: `w!(out, 1, "Name:\t{}\n", name)`.
macro_rules! w {
    ($out:expr, $level:expr, $($arg:tt)*) => {
        $out.write($level, &format!($($arg)*))
    };
}
pub(crate) use w;

/// The clock and time zone ages and timestamps are shown against.
#[derive(Debug, Clone)]
pub struct Clock {
    pub now: Timestamp,
    pub tz: TimeZone,
}

impl Clock {
    /// The real clock in the system time zone (kubectl shows local times).
    pub fn system() -> Clock {
        Clock {
            now: Timestamp::now(),
            tz: TimeZone::system(),
        }
    }

    /// A fixed clock in UTC (tests).
    pub fn fixed(now: Timestamp) -> Clock {
        Clock {
            now,
            tz: TimeZone::UTC,
        }
    }

    /// kubectl's age of a timestamp (`5m`, `3h12m`, `<unknown>` when absent).
    pub fn age(&self, t: Option<Timestamp>) -> String {
        match t {
            Some(t) => human_duration(self.now.as_second() - t.as_second()),
            None => "<unknown>".into(),
        }
    }

    /// Go's `time.RFC1123Z` in the clock's time zone: `Mon, 02 Jan 2006 15:04:05 -0700`.
    pub fn rfc1123z(&self, t: Option<Timestamp>) -> String {
        // Go formats the zero time when a timestamp is absent.
        let t = t.unwrap_or_else(|| Timestamp::from_second(-62135596800).expect("year 1"));
        t.to_zoned(self.tz.clone())
            .strftime("%a, %d %b %Y %H:%M:%S %z")
            .to_string()
    }
}

/// kubectl's `HumanDuration`: one implementation, shared with `get`'s AGE column.
pub use crate::printers::duration::human_duration;

/// kubectl's PrefixWriter over a tabwriter. `flush` ends an alignment block early, as
/// kubectl does before the Events table.
#[derive(Debug, Default)]
pub struct Out {
    blocks: Vec<String>,
    current: String,
}

impl Out {
    pub fn new() -> Out {
        Out::default()
    }

    /// Write `text` indented by two spaces per level.
    pub fn write(&mut self, level: usize, text: &str) {
        for _ in 0..level {
            self.current.push_str("  ");
        }
        self.current.push_str(text);
    }

    pub fn flush(&mut self) {
        self.blocks.push(std::mem::take(&mut self.current));
    }

    /// The text with its cells aligned.
    pub fn finish(mut self) -> String {
        self.flush();
        let mut result = String::new();
        for block in &self.blocks {
            let mut tw = tabwriter::TabWriter::new(Vec::new()).minwidth(0).padding(2);
            // Writing to a Vec cannot fail.
            let _ = tw.write_all(block.as_bytes());
            let _ = tw.flush();
            let bytes = tw.into_inner().unwrap_or_default();
            result.push_str(&String::from_utf8_lossy(&bytes));
        }
        result
    }

    /// The text as written, tabs and all (kubectl's `rollout history --revision` prints a pod
    /// template through a bare PrefixWriter).
    pub fn finish_raw(mut self) -> String {
        self.flush();
        self.blocks.concat()
    }
}

/// Annotations kubectl never shows.
const SKIP_ANNOTATIONS: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration"];
const MAX_ANNOTATION_LEN: usize = 140;

/// `Labels:  a=b` with each further label on its own aligned line; `<none>` when empty.
pub fn labels_multiline(w: &mut Out, title: &str, labels: &[(String, String)]) {
    w!(w, 0, "{title}:\t");
    if labels.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    for (i, (k, v)) in labels.iter().enumerate() {
        if i != 0 {
            w.write(0, "\t");
        }
        w!(w, 0, "{k}={v}\n");
    }
}

/// Annotations, long or multi-line values broken onto their own indented lines.
pub fn annotations_multiline(w: &mut Out, title: &str, annotations: &[(String, String)]) {
    w!(w, 0, "{title}:\t");
    let shown: Vec<_> = annotations
        .iter()
        .filter(|(k, _)| !SKIP_ANNOTATIONS.contains(&k.as_str()))
        .collect();
    if shown.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    for (i, (k, v)) in shown.into_iter().enumerate() {
        if i != 0 {
            w.write(0, "\t");
        }
        let value = v.strip_suffix('\n').unwrap_or(v);
        if value.len() + k.len() + 2 > MAX_ANNOTATION_LEN || value.contains('\n') {
            w!(w, 0, "{k}:\n");
            for line in value.split('\n') {
                w!(w, 0, "\t  {}\n", shorten(line, MAX_ANNOTATION_LEN - 2));
            }
        } else {
            w!(w, 0, "{k}: {value}\n");
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}

/// A node's taints (`key=value:Effect`), sorted by effect then key.
pub fn taints_multiline(w: &mut Out, title: &str, taints: &[Value]) {
    w!(w, 0, "{title}:\t");
    if taints.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    let mut sorted: Vec<&Value> = taints.iter().collect();
    sorted.sort_by_key(|t| format!("{},{}", s(t, "/effect"), s(t, "/key")));
    for (i, t) in sorted.into_iter().enumerate() {
        if i != 0 {
            w.write(0, "\t");
        }
        let value = s(t, "/value");
        let kv = if value.is_empty() {
            s(t, "/key").to_string()
        } else {
            format!("{}={value}", s(t, "/key"))
        };
        w!(w, 0, "{kv}:{}\n", s(t, "/effect"));
    }
}

/// A pod's tolerations (`key=value:Effect op=Exists for 300s`), sorted by key.
pub fn tolerations_multiline(w: &mut Out, title: &str, tolerations: &[Value]) {
    w!(w, 0, "{title}:\t");
    if tolerations.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    let mut sorted: Vec<&Value> = tolerations.iter().collect();
    sorted.sort_by_key(|t| s(t, "/key").to_string());
    for (i, t) in sorted.into_iter().enumerate() {
        if i != 0 {
            w.write(0, "\t");
        }
        let (key, value, effect) = (s(t, "/key"), s(t, "/value"), s(t, "/effect"));
        let mut line = key.to_string();
        if !value.is_empty() {
            line.push('=');
            line.push_str(value);
        }
        if !effect.is_empty() {
            line.push(':');
            line.push_str(effect);
        }
        // An `Exists` toleration without a value tolerates everything its key and effect allow.
        if s(t, "/operator") == "Exists" && value.is_empty() {
            line.push_str(if key.is_empty() && effect.is_empty() {
                "op=Exists"
            } else {
                " op=Exists"
            });
        }
        if let Some(secs) = t.pointer("/tolerationSeconds").and_then(Value::as_i64) {
            line.push_str(&format!(" for {secs}s"));
        }
        w!(w, 0, "{line}\n");
    }
}

/// The sort key kubectl orders events by: their last time.
fn event_last_time(e: &Value) -> Option<Timestamp> {
    time(e, "/lastTimestamp")
        .or_else(|| time(e, "/eventTime"))
        .or_else(|| time(e, "/series/lastObservedTime"))
        .or_else(|| time(e, "/firstTimestamp"))
        .or_else(|| time(e, "/metadata/creationTimestamp"))
}

/// The Events table (`Events:  <none>` when there are none). `None` (events not requested)
/// prints nothing.
pub fn events(w: &mut Out, events: Option<&[Value]>, clock: &Clock) {
    let Some(events) = events else { return };
    if events.is_empty() {
        w.write(0, "Events:\t<none>\n");
        return;
    }
    w.flush();
    let mut sorted: Vec<&Value> = events.iter().collect();
    sorted.sort_by_key(|e| event_last_time(e));
    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n");
    w.write(1, "----\t------\t----\t----\t-------\n");
    for e in sorted {
        let first = match time(e, "/eventTime") {
            Some(t) => clock.age(Some(t)),
            None => clock
                .age(time(e, "/firstTimestamp").or_else(|| time(e, "/metadata/creationTimestamp"))),
        };
        let interval = if e.pointer("/series").is_some_and(|v| !v.is_null()) {
            format!(
                "{} (x{} over {first})",
                clock.age(time(e, "/series/lastObservedTime")),
                int(e, "/series/count")
            )
        } else if int(e, "/count") > 1 {
            format!(
                "{} (x{} over {first})",
                clock.age(time(e, "/lastTimestamp")),
                int(e, "/count")
            )
        } else {
            first
        };
        let mut source = s(e, "/source/component");
        if source.is_empty() {
            source = s(e, "/reportingComponent");
        }
        let mut message = s(e, "/message").trim().to_string();
        let field_path = s(e, "/involvedObject/fieldPath");
        if !field_path.is_empty() {
            message = format!("{field_path}: {message}");
        }
        w!(
            w,
            1,
            "{}\t{}\t{interval}\t{source}\t{message}\n",
            s(e, "/type"),
            s(e, "/reason")
        );
    }
}

/// `Controlled By:  ReplicaSet/kubia-5d8f` from the controller owner reference, if any.
pub fn controlled_by(obj: &Value) -> Option<String> {
    arr(obj, "/metadata/ownerReferences")
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| format!("{}/{}", s(r, "/kind"), s(r, "/name")))
}

/// The common header lines: labels and annotations of `obj`.
pub fn labels_and_annotations(w: &mut Out, obj: &Value) {
    labels_multiline(w, "Labels", &map_pairs(obj, "/metadata/labels"));
    annotations_multiline(w, "Annotations", &map_pairs(obj, "/metadata/annotations"));
}
