//! JSONPath templates in kubectl's dialect, on the example of kubectl's JSONPath documentation.

use serde_json::{json, Value};

use crate::printers::jsonpath::{compare_values, Template};

fn data() -> Value {
    json!({
        "kind": "List",
        "items": [
            {"kind": "None",
             "metadata": {"name": "127.0.0.1", "labels": {"kubernetes.io/hostname": "127.0.0.1"}},
             "status": {"capacity": {"cpu": "4"}, "addresses": [{"type": "LegacyHostIP", "address": "127.0.0.1"}]}},
            {"kind": "None",
             "metadata": {"name": "127.0.0.2"},
             "status": {"capacity": {"cpu": "8"}, "addresses": [
                 {"type": "LegacyHostIP", "address": "127.0.0.2"}, {"type": "another", "address": "127.0.0.3"}]}},
        ],
        "users": [
            {"name": "myself", "user": {}},
            {"name": "e2e", "user": {"username": "admin", "password": "secret"}},
        ],
    })
}

fn render(template: &str) -> String {
    Template::parse(template)
        .unwrap_or_else(|e| panic!("{template}: {e}"))
        .render(&data())
        .unwrap_or_else(|e| panic!("{template}: {e}"))
}

#[test]
fn the_documented_examples() {
    let table: &[(&str, &str)] = &[
        ("kind is {.kind}", "kind is List"),
        ("{.kind}", "List"),
        ("{$.kind}", "List"),
        ("{['kind']}", "List"),
        ("{..name}", "127.0.0.1 127.0.0.2 myself e2e"),
        ("{.items[*].metadata.name}", "127.0.0.1 127.0.0.2"),
        ("{.users[0].name}", "myself"),
        ("{.users[-1].name}", "e2e"),
        ("{.users[0:1].name}", "myself"),
        ("{.users[::1].name}", "myself e2e"),
        ("{.users[0,1].name}", "myself e2e"),
        (
            "{.items[*]['metadata.name', 'status.capacity']}",
            r#"127.0.0.1 127.0.0.2 {"cpu":"4"} {"cpu":"8"}"#,
        ),
        (r#"{.users[?(@.name=="e2e")].user.password}"#, "secret"),
        (r#"{.users[?(@.name!="e2e")].name}"#, "myself"),
        (
            r#"{.items[*].status.addresses[?(@.type=="another")].address}"#,
            "127.0.0.3",
        ),
        ("{.users[?(@.user.password)].name}", "e2e"),
        (
            "{range .items[*]}[{.metadata.name}, {.status.capacity}] {end}",
            r#"[127.0.0.1, {"cpu":"4"}] [127.0.0.2, {"cpu":"8"}] "#,
        ),
        (
            r#"{range .items[*]}{.metadata.name}{"\t"}{.status.capacity.cpu}{"\n"}{end}"#,
            "127.0.0.1\t4\n127.0.0.2\t8\n",
        ),
        (
            r#"{range .items[*]}{.metadata.name}:{range .status.addresses[*]} {.type}{end};{end}"#,
            "127.0.0.1: LegacyHostIP;127.0.0.2: LegacyHostIP another;",
        ),
        (
            r"{.items[0].metadata.labels.kubernetes\.io/hostname}",
            "127.0.0.1",
        ),
        (
            "{.users[1].user}",
            r#"{"password":"secret","username":"admin"}"#,
        ),
        ("{.items[*].metadata.missing}", ""),
        ("{.nothing.here}", ""),
        ("plain text", "plain text"),
    ];
    for (template, want) in table {
        assert_eq!(render(template), *want, "{template}");
    }
}

#[test]
fn filters_compare_numbers_and_booleans() {
    let pod = json!({"spec": {"containers": [
        {"name": "web", "port": 8080, "privileged": false},
        {"name": "metrics", "port": 9090, "privileged": true},
        {"name": "dns", "port": 53},
    ]}});
    let names = |t: &str| Template::parse(t).unwrap().render(&pod).unwrap();
    assert_eq!(
        names("{.spec.containers[?(@.port>8000)].name}"),
        "web metrics"
    );
    assert_eq!(names("{.spec.containers[?(@.port<=8080)].name}"), "web dns");
    assert_eq!(names("{.spec.containers[?(@.port==53)].name}"), "dns");
    assert_eq!(
        names("{.spec.containers[?(@.privileged==true)].name}"),
        "metrics"
    );
    assert_eq!(names("{.spec.containers[?(@.name=='web')].port}"), "8080");
}

#[test]
fn errors_name_the_template_and_the_problem() {
    let err = Template::parse("{.items[").unwrap_err();
    assert!(
        err.contains("error parsing jsonpath {.items[") && err.contains("unclosed"),
        "{err}"
    );
    let err = Template::parse("{range .items[*]}{.metadata.name}").unwrap_err();
    assert!(err.contains("missing {end}"), "{err}");
    let err = Template::parse("{.a}{end}").unwrap_err();
    assert!(err.contains("not in range"), "{err}");
    let err = Template::parse("{.users[5].name}")
        .unwrap()
        .render(&data())
        .unwrap_err();
    assert_eq!(
        err,
        "error executing jsonpath \"{.users[5].name}\": Error executing template: \
         array index out of bounds: index 5, length 2"
    );
}

#[test]
fn relaxed_expressions_accept_braces_and_dots_optionally() {
    let item = &data()["items"][1];
    for expr in [
        ".metadata.name",
        "metadata.name",
        "{.metadata.name}",
        "{metadata.name}",
    ] {
        let t = Template::parse_relaxed(expr).unwrap();
        assert_eq!(t.values(item).unwrap(), [json!("127.0.0.2")], "{expr}");
    }
    assert!(Template::parse_relaxed("{.a}{.b}").is_err());
    assert!(Template::parse_relaxed("").is_err());
}

#[test]
fn sort_order_is_numeric_for_numbers() {
    use std::cmp::Ordering;
    assert_eq!(compare_values(&json!(9), &json!(10)), Ordering::Less);
    assert_eq!(compare_values(&json!("9"), &json!("10")), Ordering::Greater);
    assert_eq!(
        compare_values(
            &json!("2024-01-02T00:00:00Z"),
            &json!("2024-01-10T00:00:00Z")
        ),
        Ordering::Less
    );
}
