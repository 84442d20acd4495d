//! Tests of env and command line resolution: expansion, every source, prefixes, optional and
//! missing sources, divisor rounding.

use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVarSource, ObjectFieldSelector,
    ResourceFieldSelector, ResourceRequirements, SecretEnvSource, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::ByteString;

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn lookup_in<'a>(env: &'a [(String, String)]) -> impl Fn(&str) -> Option<&'a str> {
    move |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn expansion_follows_kubernetes() {
    let env = vars(&[("A", "one"), ("B", "two")]);
    let cases = [
        ("$(A)", "one"),
        ("x$(A)y$(B)z", "xoneytwoz"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$one"),
        ("$A", "$A"),
        ("cost: 5$", "cost: 5$"),
        ("$(A", "$(A"),
        ("$()", "$()"),
        ("plain", "plain"),
    ];
    for (input, want) in cases {
        assert_eq!(expand(input, lookup_in(&env)), want, "expanding {input:?}");
    }
}

fn var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }
}

fn pod() -> PodFields {
    PodFields {
        name: "web-1".into(),
        namespace: "prod".into(),
        uid: "u-1".into(),
        node_name: "n1".into(),
        pod_ip: "127.1.0.2".into(),
        labels: [("app".to_string(), "web".to_string())].into(),
        ..Default::default()
    }
}

#[test]
fn env_in_order_with_references_and_field_refs() {
    let c = Container {
        name: "main".into(),
        env: Some(vec![
            field("NAME", "metadata.name"),
            field("NS", "metadata.namespace"),
            field("UID", "metadata.uid"),
            field("NODE", "spec.nodeName"),
            field("IP", "status.podIP"),
            field("APP", "metadata.labels['app']"),
            var("URL", "http://$(IP):8080/$(NAME)/$(LATER)"),
            var("LATER", "x"),
            var("PORT", "1"),
            var("PORT", "2"),
        ]),
        command: Some(vec!["echo".into(), "$(URL)".into()]),
        args: Some(vec![
            "$(LATER)".into(),
            "$(POD_IP)".into(),
            "$$(PORT)".into(),
        ]),
        ..Default::default()
    };
    let base = vars(&[("POD_IP", "127.1.0.2")]);
    let env = container_env(&c, &pod(), &base, &Sources::default()).unwrap();
    let want = vars(&[
        ("POD_IP", "127.1.0.2"),
        ("NAME", "web-1"),
        ("NS", "prod"),
        ("UID", "u-1"),
        ("NODE", "n1"),
        ("IP", "127.1.0.2"),
        ("APP", "web"),
        ("URL", "http://127.1.0.2:8080/web-1/$(LATER)"),
        ("LATER", "x"),
        ("PORT", "2"),
    ]);
    assert_eq!(env, want);
    assert_eq!(
        command_line(&c, &env).unwrap(),
        [
            "echo",
            "http://127.1.0.2:8080/web-1/$(LATER)",
            "x",
            "127.1.0.2",
            "$(PORT)"
        ]
    );
}

fn sources() -> Sources {
    let cm = ConfigMap {
        data: Some(
            [
                ("color", "blue"),
                ("size", "3"),
                ("bad-key!", "x"),
                ("1st", "y"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ),
        ..Default::default()
    };
    let secret = Secret {
        data: Some([("password".to_string(), ByteString(b"hunter2".to_vec()))].into()),
        ..Default::default()
    };
    Sources {
        config_maps: [("app".to_string(), Some(cm)), ("gone".to_string(), None)].into(),
        secrets: [("db".to_string(), Some(secret)), ("nope".to_string(), None)].into(),
    }
}

fn cm_key(name: &str, cm: &str, key: &str, optional: Option<bool>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: cm.into(),
                key: key.into(),
                optional,
            }),
            ..Default::default()
        }),
    }
}

fn secret_key(name: &str, secret: &str, key: &str, optional: Option<bool>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional,
            }),
            ..Default::default()
        }),
    }
}

fn resource(name: &str, resource: &str, divisor: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            resource_field_ref: Some(ResourceFieldSelector {
                resource: resource.into(),
                divisor: Some(Quantity(divisor.into())),
                container_name: None,
            }),
            ..Default::default()
        }),
    }
}

fn from_cm(name: &str, prefix: Option<&str>, optional: Option<bool>) -> EnvFromSource {
    EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: name.into(),
            optional,
        }),
        prefix: prefix.map(str::to_string),
        secret_ref: None,
    }
}

fn from_secret(name: &str, prefix: Option<&str>, optional: Option<bool>) -> EnvFromSource {
    EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name: name.into(),
            optional,
        }),
        prefix: prefix.map(str::to_string),
        config_map_ref: None,
    }
}

#[test]
fn every_source_resolves_as_kubernetes_does() {
    type Want = Result<&'static [(&'static str, &'static str)], &'static str>;
    let cases: Vec<(&str, Vec<EnvFromSource>, Vec<EnvVar>, Want)> = vec![
        (
            "configMapKeyRef",
            vec![],
            vec![cm_key("C", "app", "color", None)],
            Ok(&[("C", "blue")]),
        ),
        (
            "secretKeyRef",
            vec![],
            vec![secret_key("P", "db", "password", None)],
            Ok(&[("P", "hunter2")]),
        ),
        (
            "values from sources are not expanded, later values are",
            vec![],
            vec![
                cm_key("C", "app", "color", None),
                var("D", "$(C)-$(P)"),
                secret_key("P", "db", "password", Some(false)),
            ],
            Ok(&[("C", "blue"), ("D", "blue-$(P)"), ("P", "hunter2")]),
        ),
        (
            "missing configmap",
            vec![],
            vec![cm_key("C", "gone", "color", None)],
            Err("container \"main\": env \"C\": configmap \"gone\" not found"),
        ),
        (
            "missing configmap key",
            vec![],
            vec![cm_key("C", "app", "shade", Some(false))],
            Err("couldn't find key shade in ConfigMap prod/app"),
        ),
        (
            "missing secret",
            vec![],
            vec![secret_key("P", "nope", "password", None)],
            Err("secret \"nope\" not found"),
        ),
        (
            "missing secret key",
            vec![],
            vec![secret_key("P", "db", "user", None)],
            Err("couldn't find key user in Secret prod/db"),
        ),
        (
            "optional missing sources and keys leave the variable unset",
            vec![],
            vec![
                cm_key("A", "gone", "color", Some(true)),
                cm_key("B", "app", "shade", Some(true)),
                secret_key("C", "nope", "x", Some(true)),
                secret_key("D", "db", "user", Some(true)),
                var("E", "$(A)"),
            ],
            Ok(&[("E", "$(A)")]),
        ),
        (
            "envFrom with and without prefix, invalid names skipped, env overrides",
            vec![
                from_cm("app", None, None),
                from_secret("db", Some("DB_"), None),
            ],
            vec![var("size", "4")],
            Ok(&[("color", "blue"), ("size", "4"), ("DB_password", "hunter2")]),
        ),
        (
            "a prefix can make a key valid",
            vec![from_cm("app", Some("CONF_"), None)],
            vec![],
            Ok(&[
                ("CONF_1st", "y"),
                ("CONF_color", "blue"),
                ("CONF_size", "3"),
            ]),
        ),
        (
            "optional missing envFrom",
            vec![
                from_cm("gone", None, Some(true)),
                from_secret("nope", None, Some(true)),
            ],
            vec![],
            Ok(&[]),
        ),
        (
            "missing envFrom configmap",
            vec![from_cm("gone", Some("X_"), None)],
            vec![],
            Err("configmap \"gone\" not found"),
        ),
        (
            "missing envFrom secret",
            vec![from_secret("nope", None, Some(false))],
            vec![],
            Err("secret \"nope\" not found"),
        ),
        (
            "resourceFieldRef with divisors, rounded up",
            vec![],
            vec![
                resource("CPU_M", "limits.cpu", "1m"),
                resource("CPU", "limits.cpu", "1"),
                resource("MEM_KI", "requests.memory", "1Ki"),
                resource("NODE_MEM", "limits.memory", "1Mi"),
            ],
            Ok(&[
                ("CPU_M", "250"),
                ("CPU", "1"),
                ("MEM_KI", "98"),
                ("NODE_MEM", "2048"),
            ]),
        ),
        (
            "fieldRef",
            vec![],
            vec![field("X", "status.phase")],
            Err("\"status.phase\" is not supported"),
        ),
    ];
    let mut fields = pod();
    fields.allocatable = NodeAllocatable::from_quantities("2", "2Gi");
    for (what, env_from, env, want) in cases {
        let c = Container {
            name: "main".into(),
            env_from: Some(env_from),
            env: Some(env),
            resources: Some(ResourceRequirements {
                limits: Some([("cpu".to_string(), Quantity("250m".into()))].into()),
                requests: Some([("memory".to_string(), Quantity("100000".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let got = container_env(&c, &fields, &[], &sources());
        match (got, want) {
            (Ok(got), Ok(want)) => {
                let want: Vec<(String, String)> = vars(want);
                assert_eq!(got, want, "{what}");
            }
            (Err(e), Err(want)) => assert!(e.0.contains(want), "{what}: {e}"),
            (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn referenced_objects_are_collected() {
    let c = Container {
        env_from: Some(vec![
            from_cm("a", None, None),
            from_secret("s1", None, None),
        ]),
        env: Some(vec![
            cm_key("X", "b", "k", None),
            secret_key("Y", "s2", "k", None),
            var("Z", "1"),
        ]),
        ..Default::default()
    };
    let (cms, secrets) = referenced(&c);
    assert_eq!(cms.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(secrets.into_iter().collect::<Vec<_>>(), ["s1", "s2"]);
    assert!(is_env_var_name("_a.b-c1") && !is_env_var_name("1a") && !is_env_var_name("a b"));
}

#[test]
fn no_command_is_its_own_error() {
    let c = Container {
        name: "web".into(),
        args: Some(vec!["--port=80".into()]),
        ..Default::default()
    };
    let err = command_line(&c, &[]).unwrap_err();
    assert_eq!(err, NoCommand("web".into()));
    assert!(err.to_string().contains("set `command`"));
}
