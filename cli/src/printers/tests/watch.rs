//! Printing a watch: the header once, remembered column widths, the EVENT column, YAML
//! separators and names.

use serde_json::{json, Value};

use super::{ago, now, opts};
use crate::printers::{OutputFormat, WatchPrinter};

fn cm(name: &str) -> Value {
    json!({"kind": "ConfigMap", "metadata": {"name": name, "creationTimestamp": ago(5)}, "data": {"k": "v"}})
}

fn printer(format: OutputFormat, no_headers: bool, events: bool) -> WatchPrinter {
    WatchPrinter::new(format, "ConfigMap", "configmap", opts(), no_headers, events)
}

const TABLE: OutputFormat = OutputFormat::Table { wide: false };

#[test]
fn the_header_prints_once_and_later_rows_keep_the_widths() {
    let mut p = printer(TABLE, false, false);
    assert_eq!(p.print("ADDED", &[], now()).unwrap(), "");
    assert_eq!(
        p.print("ADDED", &[cm("first-configmap")], now()).unwrap(),
        "NAME              DATA   AGE\nfirst-configmap   1      5s\n"
    );
    assert_eq!(
        p.print("MODIFIED", &[cm("b")], now()).unwrap(),
        "b                 1      5s\n"
    );
}

#[test]
fn output_watch_events_adds_an_event_column() {
    let mut p = printer(TABLE, false, true);
    assert_eq!(
        p.print("ADDED", &[cm("a")], now()).unwrap(),
        "EVENT      NAME   DATA   AGE\nADDED      a      1      5s\n"
    );
    assert_eq!(
        p.print("DELETED", &[cm("a")], now()).unwrap(),
        "DELETED    a      1      5s\n"
    );
    let mut quiet = printer(TABLE, true, false);
    assert_eq!(
        quiet.print("ADDED", &[cm("a")], now()).unwrap(),
        "a     1     5s\n"
    );
}

#[test]
fn yaml_documents_are_separated_and_names_are_qualified() {
    let mut p = printer(OutputFormat::Yaml, false, false);
    let first = p.print("ADDED", &[cm("a"), cm("b")], now()).unwrap();
    assert_eq!(first.matches("---\n").count(), 1, "{first}");
    assert!(p
        .print("MODIFIED", &[cm("a")], now())
        .unwrap()
        .starts_with("---\ndata:\n"));

    let mut names = printer(OutputFormat::Name, false, false);
    assert_eq!(
        names.print("DELETED", &[cm("a")], now()).unwrap(),
        "configmap/a\n"
    );

    let mut events = printer(OutputFormat::Json, false, true);
    let text = events.print("MODIFIED", &[cm("a")], now()).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["object"]["metadata"]["name"].as_str()),
        (Some("MODIFIED"), Some("a"))
    );
}
