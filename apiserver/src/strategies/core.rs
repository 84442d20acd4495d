//! Defaulting and validation of the core (`v1`) kinds that are not workloads: Namespace, Node,
//! Endpoints, ConfigMap, Secret and Event here; Service in `service`, PersistentVolume and
//! PersistentVolumeClaim in `storage` (re-exported so the strategy table finds them all here).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    ConfigMap, EndpointAddress, Endpoints, Event, Namespace, NamespaceSpec, NamespaceStatus, Node,
    Secret, Taint,
};
use k8s_openapi::ByteString;

use super::fields::{
    config_key, validate_cidr, validate_enum, validate_immutable, validate_ipv4,
    validate_nonnegative, validate_port_number, MAX_DATA_BYTES,
};
use crate::strategy::KindRules;
use crate::validation::common::{
    dns1123_label, dns1123_subdomain, label_value, push_all, qualified_name, validate_quantity,
};
use crate::validation::{FieldError, FieldErrors, Path};

pub use super::service::ServiceRules;
pub use super::storage::{PersistentVolumeClaimRules, PersistentVolumeRules};

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";

/// Namespaces: the `kubernetes` finalizer and the Active phase by default.
pub struct NamespaceRules;

impl KindRules for NamespaceRules {
    type Object = Namespace;

    fn default(&self, ns: &mut Namespace) {
        let spec = ns.spec.get_or_insert_with(NamespaceSpec::default);
        spec.finalizers
            .get_or_insert_with(|| vec!["kubernetes".to_string()]);
        let status = ns.status.get_or_insert_with(NamespaceStatus::default);
        status.phase.get_or_insert_with(|| "Active".to_string());
    }

    fn validate(&self, ns: &Namespace, errs: &mut FieldErrors) {
        let path = Path::root("spec").child("finalizers");
        for (i, f) in ns
            .spec
            .iter()
            .flat_map(|s| s.finalizers.iter().flatten())
            .enumerate()
        {
            let fp = path.index(i);
            let problems = qualified_name(f);
            if !problems.is_empty() {
                push_all(errs, &fp, f, problems);
            } else if !f.contains('/') && f != "kubernetes" {
                errs.push(FieldError::invalid(
                    &fp,
                    f,
                    "name is neither a standard finalizer name nor is it fully qualified",
                ));
            }
        }
        let phase = ns.status.as_ref().and_then(|s| s.phase.as_deref());
        validate_enum(
            phase,
            &["Active", "Terminating"],
            false,
            &Path::root("status").child("phase"),
            errs,
        );
    }
}

/// Nodes: taints, resource quantities in status, pod CIDRs (which may be set once).
pub struct NodeRules;

impl KindRules for NodeRules {
    type Object = Node;

    fn default(&self, node: &mut Node) {
        // Like Kubernetes, a node that reports only its capacity can allocate all of it.
        if let Some(status) = node.status.as_mut() {
            if status.allocatable.is_none() {
                status.allocatable = status.capacity.clone();
            }
        }
    }

    fn validate(&self, node: &Node, errs: &mut FieldErrors) {
        let spec = Path::root("spec");
        if let Some(s) = &node.spec {
            validate_taints(
                s.taints.as_deref().unwrap_or_default(),
                &spec.child("taints"),
                errs,
            );
            if let Some(cidr) = s.pod_cidr.as_deref().filter(|c| !c.is_empty()) {
                validate_cidr(cidr, &spec.child("podCIDR"), errs);
            }
            let mut seen = BTreeSet::new();
            for (i, cidr) in s.pod_cidrs.iter().flatten().enumerate() {
                let cp = spec.child("podCIDRs").index(i);
                validate_cidr(cidr, &cp, errs);
                if !seen.insert(cidr) {
                    errs.push(FieldError::duplicate(&cp, cidr));
                }
            }
        }
        if let Some(status) = &node.status {
            let sp = Path::root("status");
            for (field, list) in [
                ("capacity", &status.capacity),
                ("allocatable", &status.allocatable),
            ] {
                for (name, q) in list.iter().flatten() {
                    validate_quantity(&q.0, &sp.child(field).key(name), errs);
                }
            }
        }
    }

    fn validate_update(&self, new: &Node, old: &Node, errs: &mut FieldErrors) {
        self.validate(new, errs);
        let (new_spec, old_spec) = (
            new.spec.clone().unwrap_or_default(),
            old.spec.clone().unwrap_or_default(),
        );
        let set_once = "node updates may not change podCIDR except from \"\" to valid";
        if old_spec.pod_cidr.as_deref().is_some_and(|c| !c.is_empty())
            && new_spec.pod_cidr != old_spec.pod_cidr
        {
            errs.push(FieldError::forbidden(
                &Path::root("spec").child("podCIDR"),
                set_once,
            ));
        }
        if old_spec.pod_cidrs.as_ref().is_some_and(|c| !c.is_empty())
            && new_spec.pod_cidrs != old_spec.pod_cidrs
        {
            errs.push(FieldError::forbidden(
                &Path::root("spec").child("podCIDRs"),
                set_once,
            ));
        }
        if old_spec
            .provider_id
            .as_deref()
            .is_some_and(|p| !p.is_empty())
            && new_spec.provider_id != old_spec.provider_id
        {
            errs.push(FieldError::forbidden(
                &Path::root("spec").child("providerID"),
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
    }
}

/// Taints: a label-name key, a label value, a known effect, unique by key and effect.
fn validate_taints(taints: &[Taint], path: &Path, errs: &mut FieldErrors) {
    let mut seen = BTreeSet::new();
    for (i, t) in taints.iter().enumerate() {
        let tp = path.index(i);
        push_all(errs, &tp.child("key"), &t.key, qualified_name(&t.key));
        let value = t.value.as_deref().unwrap_or_default();
        let problems = label_value(value);
        if !problems.is_empty() {
            errs.push(FieldError::invalid(
                &tp.child("value"),
                value,
                &problems.join(";"),
            ));
        }
        validate_enum(
            Some(&t.effect),
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            true,
            &tp.child("effect"),
            errs,
        );
        if !seen.insert((t.key.as_str(), t.effect.as_str())) {
            let shown = if value.is_empty() {
                format!("{}:{}", t.key, t.effect)
            } else {
                format!("{}={value}:{}", t.key, t.effect)
            };
            let mut e = FieldError::duplicate(&tp, shown);
            e.detail = "taints must be unique by key and effect pair".to_string();
            errs.push(e);
        }
    }
}

/// Endpoints: every subset has addresses with IPv4 addresses, ports in range with a protocol,
/// and port names unique when there are several.
pub struct EndpointsRules;

impl KindRules for EndpointsRules {
    type Object = Endpoints;

    fn default(&self, ep: &mut Endpoints) {
        for subset in ep.subsets.iter_mut().flatten() {
            for port in subset.ports.iter_mut().flatten() {
                port.protocol.get_or_insert_with(|| "TCP".to_string());
            }
        }
    }

    fn validate(&self, ep: &Endpoints, errs: &mut FieldErrors) {
        for (i, subset) in ep.subsets.iter().flatten().enumerate() {
            let sp = Path::root("subsets").index(i);
            let addresses = subset.addresses.as_deref().unwrap_or_default();
            let not_ready = subset.not_ready_addresses.as_deref().unwrap_or_default();
            if addresses.is_empty() && not_ready.is_empty() {
                errs.push(FieldError::required(
                    &sp,
                    "must specify `addresses` or `notReadyAddresses`",
                ));
            }
            for (field, list) in [("addresses", addresses), ("notReadyAddresses", not_ready)] {
                for (j, a) in list.iter().enumerate() {
                    validate_endpoint_address(a, &sp.child(field).index(j), errs);
                }
            }
            let ports = subset.ports.as_deref().unwrap_or_default();
            let mut names = BTreeSet::new();
            for (j, port) in ports.iter().enumerate() {
                let pp = sp.child("ports").index(j);
                match port.name.as_deref().unwrap_or_default() {
                    "" if ports.len() > 1 => errs.push(FieldError::required(&pp.child("name"), "")),
                    "" => {}
                    name => {
                        push_all(errs, &pp.child("name"), name, dns1123_label(name));
                        if !names.insert(name) {
                            errs.push(FieldError::duplicate(&pp.child("name"), name));
                        }
                    }
                }
                validate_port_number(port.port, &pp.child("port"), errs);
                validate_enum(
                    port.protocol.as_deref(),
                    PROTOCOLS,
                    true,
                    &pp.child("protocol"),
                    errs,
                );
                if let Some(app) = &port.app_protocol {
                    push_all(errs, &pp.child("appProtocol"), app, qualified_name(app));
                }
            }
        }
    }
}

fn validate_endpoint_address(a: &EndpointAddress, path: &Path, errs: &mut FieldErrors) {
    validate_ipv4(&a.ip, &path.child("ip"), errs);
    if let Some(h) = a.hostname.as_deref().filter(|h| !h.is_empty()) {
        push_all(errs, &path.child("hostname"), h, dns1123_label(h));
    }
    if let Some(n) = &a.node_name {
        push_all(errs, &path.child("nodeName"), n, dns1123_subdomain(n));
    }
}

/// ConfigMaps: valid keys, no key in both `data` and `binaryData`, at most 1 MiB, and no
/// change to the data of an `immutable` one.
pub struct ConfigMapRules;

impl KindRules for ConfigMapRules {
    type Object = ConfigMap;

    fn validate(&self, cm: &ConfigMap, errs: &mut FieldErrors) {
        let mut total = 0;
        let binary = cm.binary_data.clone().unwrap_or_default();
        for (key, value) in cm.data.iter().flatten() {
            let kp = Path::root("data").key(key);
            push_all(errs, &kp, key, config_key(key));
            if binary.contains_key(key) {
                errs.push(FieldError::invalid(
                    &kp,
                    key,
                    "duplicate of key present in binaryData",
                ));
            }
            total += value.len();
        }
        for (key, value) in &binary {
            push_all(
                errs,
                &Path::root("binaryData").key(key),
                key,
                config_key(key),
            );
            total += value.0.len();
        }
        if total > MAX_DATA_BYTES {
            errs.push(FieldError::too_long(&Path::root("data"), MAX_DATA_BYTES));
        }
    }

    fn validate_update(&self, new: &ConfigMap, old: &ConfigMap, errs: &mut FieldErrors) {
        if old.immutable == Some(true) {
            if new.immutable != Some(true) {
                errs.push(FieldError::forbidden(
                    &Path::root("immutable"),
                    IMMUTABLE_WHEN_SET,
                ));
            }
            if new.data != old.data {
                errs.push(FieldError::forbidden(
                    &Path::root("data"),
                    IMMUTABLE_WHEN_SET,
                ));
            }
            if new.binary_data != old.binary_data {
                errs.push(FieldError::forbidden(
                    &Path::root("binaryData"),
                    IMMUTABLE_WHEN_SET,
                ));
            }
        }
        self.validate(new, errs);
    }
}

/// Secrets: type Opaque by default, `stringData` folded into `data`, valid keys, at most 1 MiB,
/// the keys each well-known type needs, and an immutable type (and data, when `immutable`).
pub struct SecretRules;

impl KindRules for SecretRules {
    type Object = Secret;

    fn default(&self, secret: &mut Secret) {
        if secret.type_.as_deref().unwrap_or_default().is_empty() {
            secret.type_ = Some("Opaque".to_string());
        }
        // `stringData` is write-only: its entries win over `data` and it is never stored.
        if let Some(strings) = secret.string_data.take() {
            let data = secret.data.get_or_insert_with(BTreeMap::new);
            for (k, v) in strings {
                data.insert(k, ByteString(v.into_bytes()));
            }
        }
    }

    fn validate(&self, secret: &Secret, errs: &mut FieldErrors) {
        let data_path = Path::root("data");
        let data = secret.data.clone().unwrap_or_default();
        let mut total = 0;
        for (key, value) in &data {
            push_all(errs, &data_path.key(key), key, config_key(key));
            total += value.0.len();
        }
        if total > MAX_DATA_BYTES {
            errs.push(FieldError::too_long(&data_path, MAX_DATA_BYTES));
        }
        let require = |key: &str, errs: &mut FieldErrors| {
            if !data.contains_key(key) {
                errs.push(FieldError::required(&data_path.key(key), ""));
            }
        };
        match secret.type_.as_deref().unwrap_or_default() {
            "kubernetes.io/service-account-token" => {
                let annotations = secret.metadata.annotations.clone().unwrap_or_default();
                let key = "kubernetes.io/service-account.name";
                if annotations.get(key).is_none_or(|v| v.is_empty()) {
                    errs.push(FieldError::required(
                        &Path::root("metadata").child("annotations").key(key),
                        "",
                    ));
                }
            }
            "kubernetes.io/dockercfg" => validate_json_key(&data, ".dockercfg", &data_path, errs),
            "kubernetes.io/dockerconfigjson" => {
                validate_json_key(&data, ".dockerconfigjson", &data_path, errs)
            }
            // Either may be empty, but one of them must be there.
            "kubernetes.io/basic-auth"
                if !data.contains_key("username") && !data.contains_key("password") =>
            {
                require("username", errs);
                require("password", errs);
            }
            "kubernetes.io/ssh-auth"
                if data.get("ssh-privatekey").is_none_or(|v| v.0.is_empty()) =>
            {
                errs.push(FieldError::required(&data_path.key("ssh-privatekey"), ""));
            }
            "kubernetes.io/tls" => {
                require("tls.crt", errs);
                require("tls.key", errs);
            }
            _ => {}
        }
    }

    fn validate_update(&self, new: &Secret, old: &Secret, errs: &mut FieldErrors) {
        validate_immutable(
            new.type_.as_deref(),
            old.type_.as_deref(),
            &Path::root("type"),
            errs,
        );
        if old.immutable == Some(true) {
            if new.immutable != Some(true) {
                errs.push(FieldError::forbidden(
                    &Path::root("immutable"),
                    IMMUTABLE_WHEN_SET,
                ));
            }
            if new.data != old.data {
                errs.push(FieldError::forbidden(
                    &Path::root("data"),
                    IMMUTABLE_WHEN_SET,
                ));
            }
        }
        self.validate(new, errs);
    }
}

/// A docker config key must be present and hold a JSON object.
fn validate_json_key(
    data: &BTreeMap<String, ByteString>,
    key: &str,
    data_path: &Path,
    errs: &mut FieldErrors,
) {
    match data.get(key) {
        None => errs.push(FieldError::required(&data_path.key(key), "")),
        Some(bytes) => {
            if let Err(e) =
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes.0)
            {
                errs.push(FieldError::invalid(
                    &data_path.key(key),
                    "<secret contents redacted>",
                    &e.to_string(),
                ));
            }
        }
    }
}

/// Events (core/v1): they must name what they are about, in their own namespace.
pub struct EventRules;

impl KindRules for EventRules {
    type Object = Event;

    fn validate(&self, ev: &Event, errs: &mut FieldErrors) {
        let io = &ev.involved_object;
        let ip = Path::root("involvedObject");
        if io.kind.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(&ip.child("kind"), ""));
        }
        if io.name.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(&ip.child("name"), ""));
        }
        let event_ns = ev.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(ns) = io.namespace.as_deref().filter(|ns| !ns.is_empty()) {
            if !event_ns.is_empty() && ns != event_ns {
                errs.push(FieldError::invalid(
                    &ip.child("namespace"),
                    ns,
                    "does not match event.namespace",
                ));
            }
        }
        validate_enum(
            ev.type_.as_deref().filter(|t| !t.is_empty()),
            &["Normal", "Warning"],
            false,
            &Path::root("type"),
            errs,
        );
        if let Some(count) = ev.count {
            validate_nonnegative(count.into(), &Path::root("count"), errs);
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
