//! The structured formats: JSON indented as kubectl indents it, Lists, YAML, custom columns.

use serde_json::json;

use crate::printers::output::{
    custom_columns_table, list, parse_custom_columns, to_json, to_yaml, OutputFormat,
};

#[test]
fn json_is_indented_by_four_spaces() {
    assert_eq!(
        to_json(&json!({"kind": "ConfigMap", "data": {"a": "1"}, "items": [1]})),
        "{\n    \"data\": {\n        \"a\": \"1\"\n    },\n    \"items\": [\n        1\n    ],\n    \"kind\": \"ConfigMap\"\n}\n"
    );
}

#[test]
fn several_objects_print_as_a_list() {
    let yaml = to_yaml(&list(vec![
        json!({"kind": "Pod", "metadata": {"name": "a"}}),
    ]))
    .unwrap();
    assert_eq!(
        yaml,
        "apiVersion: v1\nitems:\n- kind: Pod\n  metadata:\n    name: a\nkind: List\nmetadata:\n  resourceVersion: ''\n"
    );
}

#[test]
fn custom_columns_print_each_path_or_none() {
    let columns =
        parse_custom_columns("NAME:.metadata.name,PORTS:.spec.ports[*].port,NODE:{.spec.nodeName}")
            .unwrap();
    let objects = [
        json!({"metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}, {"port": 443}], "nodeName": "n1"}}),
        json!({"metadata": {"name": "b"}, "spec": {}}),
    ];
    let table = custom_columns_table(&columns, &objects).unwrap();
    assert_eq!(
        table.render(false),
        "NAME   PORTS    NODE\na      80,443   n1\nb      <none>   <none>\n"
    );
    let err = parse_custom_columns("NAME").unwrap_err();
    assert!(err.contains("expected <header>:<json-path-expr>"), "{err}");
}

#[test]
fn output_formats_parse_like_kubectl_and_name_what_is_allowed() {
    assert!(matches!(
        OutputFormat::parse(""),
        Ok(OutputFormat::Table { wide: false })
    ));
    assert!(matches!(
        OutputFormat::parse("wide"),
        Ok(OutputFormat::Table { wide: true })
    ));
    assert!(matches!(
        OutputFormat::parse("name"),
        Ok(OutputFormat::Name)
    ));
    assert!(matches!(
        OutputFormat::parse("jsonpath={.kind}"),
        Ok(OutputFormat::JsonPath(_))
    ));
    assert!(matches!(
        OutputFormat::parse("custom-columns=NAME:.metadata.name"),
        Ok(OutputFormat::CustomColumns(_))
    ));
    let err = |spec: &str| OutputFormat::parse(spec).unwrap_err();
    assert_eq!(
        err("jsonpath"),
        "template format specified but no template given"
    );
    assert_eq!(
        err("jsonpath="),
        "template format specified but no template given"
    );
    assert_eq!(
        err("xml"),
        "unable to match a printer suitable for the output format \"xml\", allowed formats are: \
         custom-columns,json,jsonpath,name,wide,yaml"
    );
    assert!(err("jsonpath={.a[}").starts_with("error parsing jsonpath {.a[}"));
}
