//! What `kubectl get` adds around a kind's columns: NAMESPACE (-A), label columns (-L), LABELS
//! (--show-labels), `kind/name` names, and tables without headers.

use serde_json::{json, Value};

use super::{ago, assert_table, opts, render};
use crate::printers::{table, PrintOptions};

fn config_maps() -> Vec<Value> {
    vec![
        json!({"metadata": {"name": "a", "namespace": "default", "creationTimestamp": ago(300),
            "labels": {"tier": "web", "app": "kubia"}}, "data": {"k": "v"}}),
        json!({"metadata": {"name": "b", "namespace": "kube-system", "creationTimestamp": ago(20 * 86400),
            "labels": {"app.kubernetes.io/name": "dns"}}}),
        json!({"metadata": {"name": "c", "namespace": "default", "creationTimestamp": ago(10)}}),
    ]
}

#[test]
fn all_namespaces_puts_a_namespace_column_first() {
    let opts = PrintOptions {
        with_namespace: true,
        ..opts()
    };
    assert_table(
        &render("ConfigMap", &config_maps(), &opts),
        r"
NAMESPACE     NAME   DATA   AGE
default       a      1      5m
kube-system   b      0      20d
default       c      0      10s
",
    );
}

#[test]
fn label_columns_and_show_labels_come_last() {
    let opts = PrintOptions {
        with_namespace: true,
        label_columns: vec!["app".into(), "tier".into()],
        show_labels: true,
        ..opts()
    };
    assert_table(
        &render("ConfigMap", &config_maps(), &opts),
        r"
NAMESPACE     NAME   DATA   AGE   APP     TIER   LABELS
default       a      1      5m    kubia   web    app=kubia,tier=web
kube-system   b      0      20d                  app.kubernetes.io/name=dns
default       c      0      10s                  <none>
",
    );
}

#[test]
fn label_columns_are_headed_by_the_last_segment_of_the_key() {
    let opts = PrintOptions {
        label_columns: vec!["app.kubernetes.io/name".into()],
        ..opts()
    };
    let t = table("ConfigMap", &config_maps(), &opts);
    assert_eq!(t.header, ["NAME", "DATA", "AGE", "NAME"]);
    assert_eq!(t.rows[1], ["b", "0", "20d", "dns"]);
    assert_eq!(t.rows[0][3], "");
}

#[test]
fn kind_prefixes_name_the_kind_and_group() {
    let deployment =
        json!({"metadata": {"name": "kubia", "creationTimestamp": ago(300)}, "spec": {}});
    let opts = PrintOptions {
        kind_prefix: Some("deployment.apps".into()),
        ..opts()
    };
    assert_table(
        &render("Deployment", &[deployment], &opts),
        r"
NAME                    READY   UP-TO-DATE   AVAILABLE   AGE
deployment.apps/kubia   0/1     0            0           5m
",
    );
}

#[test]
fn no_headers_lays_out_the_rows_alone() {
    assert_table(
        &table("ConfigMap", &config_maps(), &opts()).render(true),
        r"
a     1     5m
b     0     20d
c     0     10s
",
    );
}

#[test]
fn kinds_without_a_printer_get_name_and_age() {
    let widget =
        json!({"kind": "Widget", "metadata": {"name": "w", "creationTimestamp": ago(300)}});
    assert_table(
        &render("Widget", &[widget], &opts()),
        r"
NAME   AGE
w      5m
",
    );
}

#[test]
fn keep_order_leaves_events_as_sorted_by_the_caller() {
    let event = |name: &str, last: i64| json!({"metadata": {"name": name}, "lastTimestamp": ago(last), "involvedObject": {"kind": "Pod", "name": name}});
    let events = [event("newer", 10), event("older", 100)];
    let names = |opts: &PrintOptions| {
        table("Event", &events, opts)
            .rows
            .iter()
            .map(|r| r[3].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&opts()), ["pod/older", "pod/newer"]);
    let keep = PrintOptions {
        keep_order: true,
        ..opts()
    };
    assert_eq!(names(&keep), ["pod/newer", "pod/older"]);
}
