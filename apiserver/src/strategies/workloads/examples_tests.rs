//! Every pod-bearing manifest among the shared examples (`../shared/examples/*.yaml`) is valid
//! after defaulting, through the same `Strategy` interface the registry uses.

use serde_json::Value;

/// The kinds whose rules live in the pod and workload strategies.
const POD_BEARING_KINDS: &[&str] = &[
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "DaemonSet",
    "StatefulSet",
    "Job",
    "CronJob",
];

#[test]
fn shared_example_manifests_validate() {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/examples"
    ));
    let Ok(entries) = std::fs::read_dir(dir) else {
        println!("skipping: no example manifests at {}", dir.display());
        return;
    };
    let strategies = crate::strategies::all();
    let mut files: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut checked = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in yaml_serde::Deserializer::from_str(&text) {
            let mut value: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let kind = value["kind"].as_str().unwrap_or_default().to_string();
            if !POD_BEARING_KINDS.contains(&kind.as_str()) {
                continue;
            }
            yaml11_octal_modes(&mut value);
            let strategy = strategies
                .iter()
                .find(|s| s.info().kind == kind)
                .expect("served kind");
            let defaulted = strategy
                .decode_and_default(&value)
                .unwrap_or_else(|e| panic!("{} {kind}: {e:?}", file.display()));
            let errs: Vec<String> = strategy
                .validate(&defaulted)
                .iter()
                .map(|e| e.to_string())
                .collect();
            assert!(errs.is_empty(), "{} {kind}: {errs:#?}", file.display());
            checked.push(kind);
        }
    }
    for kind in [
        "Pod",
        "ReplicationController",
        "ReplicaSet",
        "Deployment",
        "DaemonSet",
        "Job",
        "CronJob",
    ] {
        assert!(
            checked.iter().any(|k| k == kind),
            "no example {kind} was checked (checked: {checked:?})"
        );
    }
}

/// kubectl reads YAML 1.1, where `defaultMode: 0666` is an octal number; yaml_serde reads
/// YAML 1.2 and yields the string "0666". Convert file modes the way kubectl would.
fn yaml11_octal_modes(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "defaultMode" || k == "mode" {
                    if let Some(n) = child
                        .as_str()
                        .and_then(|s| s.strip_prefix('0'))
                        .and_then(|s| i64::from_str_radix(s, 8).ok())
                    {
                        *child = Value::from(n);
                    }
                }
                yaml11_octal_modes(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(yaml11_octal_modes),
        _ => {}
    }
}
