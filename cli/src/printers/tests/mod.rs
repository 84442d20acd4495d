//! Snapshot tests of the printers: each kind's table (plain and wide) for synthetic objects at a
//! fixed "now", the decorations `kubectl get` adds (-A, -L, --show-labels, kind prefixes), and
//! the JSONPath and structured formats.

mod cluster;
mod decorations;
mod formats;
mod jsonpath;
mod network;
mod pods;
mod storage;
mod watch;
mod workloads;

use jiff::Timestamp;
use serde_json::Value;

use super::{table, PrintOptions};

/// The time every test's ages are measured at.
pub(super) fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().expect("a timestamp")
}

/// `seconds` before [`now`], as an RFC 3339 timestamp.
pub(super) fn ago(seconds: i64) -> String {
    let t = Timestamp::from_second(now().as_second() - seconds).expect("a timestamp");
    t.to_string()
}

pub(super) fn opts() -> PrintOptions {
    PrintOptions::new(now())
}

pub(super) fn wide() -> PrintOptions {
    PrintOptions {
        wide: true,
        ..opts()
    }
}

/// The rendered table, with its header.
pub(super) fn render(kind: &str, objects: &[Value], opts: &PrintOptions) -> String {
    table(kind, objects, opts).render(false)
}

/// Compare line by line so a failure shows the differing line.
#[track_caller]
pub(super) fn assert_table(got: &str, want: &str) {
    let want = want.strip_prefix('\n').unwrap_or(want);
    if got != want {
        panic!("table differs\n--- got ---\n{got}--- want ---\n{want}");
    }
}
