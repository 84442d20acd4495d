//! Container environment: `env` (names, values and the one source of a `valueFrom`) and
//! `envFrom`, and the downward-API selectors (`fieldRef`, `resourceFieldRef`) that environment
//! variables and downwardAPI volumes share.

use k8s_openapi::api::core::v1::{
    EnvFromSource, EnvVar, ObjectFieldSelector, ResourceFieldSelector,
};

use super::checks::{config_key, env_var_name};
use crate::validation::common::{dns1123_subdomain, parse_quantity, push_all, qualified_name};
use crate::validation::{FieldError, FieldErrors, Path};

/// Pod fields an environment variable may expose through `fieldRef` (sorted, as Kubernetes
/// lists them).
pub(super) const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// Pod fields a downwardAPI volume may project.
pub(super) const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

/// Container resources a `resourceFieldRef` may expose.
const RESOURCE_FIELDS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

/// Every field a downward-API field label may name (Kubernetes' `ConvertDownwardAPIFieldLabel`).
const CONVERTIBLE_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

const MEMORY_DIVISORS: &str = "1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei";

pub(super) fn validate_env(vars: &[EnvVar], path: &Path, errs: &mut FieldErrors) {
    for (i, var) in vars.iter().enumerate() {
        let vp = path.index(i);
        if var.name.is_empty() {
            errs.push(FieldError::required(&vp.child("name"), ""));
        } else {
            push_all(errs, &vp.child("name"), &var.name, env_var_name(&var.name));
        }
        let Some(from) = &var.value_from else {
            continue;
        };
        let fp = vp.child("valueFrom");
        let mut sources = 0;
        if let Some(f) = &from.field_ref {
            sources += 1;
            validate_object_field_selector(f, ENV_FIELD_PATHS, &fp.child("fieldRef"), errs);
        }
        if let Some(r) = &from.resource_field_ref {
            sources += 1;
            validate_resource_field_selector(r, false, &fp.child("resourceFieldRef"), errs);
        }
        if let Some(c) = &from.config_map_key_ref {
            sources += 1;
            validate_key_selector(&c.name, &c.key, &fp.child("configMapKeyRef"), errs);
        }
        if let Some(s) = &from.secret_key_ref {
            sources += 1;
            validate_key_selector(&s.name, &s.key, &fp.child("secretKeyRef"), errs);
        }
        if from.file_key_ref.is_some() {
            sources += 1;
        }
        if sources == 0 {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if var.value.as_deref().is_some_and(|v| !v.is_empty()) {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

pub(super) fn validate_env_from(sources: &[EnvFromSource], path: &Path, errs: &mut FieldErrors) {
    for (i, source) in sources.iter().enumerate() {
        let sp = path.index(i);
        if let Some(prefix) = source.prefix.as_deref().filter(|p| !p.is_empty()) {
            push_all(errs, &sp.child("prefix"), prefix, env_var_name(prefix));
        }
        let refs = [
            (
                source.config_map_ref.as_ref().map(|r| &r.name),
                "configMapRef",
            ),
            (source.secret_ref.as_ref().map(|r| &r.name), "secretRef"),
        ];
        let mut count = 0;
        for (name, field) in refs {
            let Some(name) = name else { continue };
            count += 1;
            let np = sp.child(field).child("name");
            if name.is_empty() {
                errs.push(FieldError::required(&np, ""));
            } else {
                push_all(errs, &np, name, dns1123_subdomain(name));
            }
        }
        match count {
            0 => errs.push(FieldError::invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            )),
            1 => {}
            _ => errs.push(FieldError::invalid(
                path,
                "",
                "may not have more than one field specified at a time",
            )),
        }
    }
}

/// A `configMapKeyRef` or `secretKeyRef`: the object's name and a valid key.
fn validate_key_selector(name: &str, key: &str, path: &Path, errs: &mut FieldErrors) {
    push_all(errs, &path.child("name"), name, dns1123_subdomain(name));
    if key.is_empty() {
        errs.push(FieldError::required(&path.child("key"), ""));
    } else {
        push_all(errs, &path.child("key"), key, config_key(key));
    }
}

/// A `fieldRef`: API version `v1` and one of `allowed` pod fields, or a subscripted label or
/// annotation (`metadata.labels['app']`).
pub(super) fn validate_object_field_selector(
    fs: &ObjectFieldSelector,
    allowed: &[&str],
    path: &Path,
    errs: &mut FieldErrors,
) {
    let version = fs.api_version.as_deref().unwrap_or("v1");
    if version.is_empty() {
        errs.push(FieldError::required(&path.child("apiVersion"), ""));
        return;
    }
    if fs.field_path.is_empty() {
        errs.push(FieldError::required(&path.child("fieldPath"), ""));
        return;
    }
    let fp = path.child("fieldPath");
    let converting = |e: String| format!("error converting fieldPath: {e}");
    if version != "v1" {
        errs.push(FieldError::invalid(
            &fp,
            &fs.field_path,
            &converting(format!("unsupported pod version: {version}")),
        ));
        return;
    }
    if let Some((field, subscript)) = split_subscript(&fs.field_path) {
        match field {
            "metadata.annotations" => push_all(
                errs,
                path,
                subscript,
                qualified_name(&subscript.to_lowercase()),
            ),
            "metadata.labels" => push_all(errs, path, subscript, qualified_name(subscript)),
            _ => {
                let msg = converting(format!(
                    "field label does not support subscript: {}",
                    fs.field_path
                ));
                errs.push(FieldError::invalid(&fp, &fs.field_path, &msg));
            }
        }
        return;
    }
    // `spec.host` is an old name of `spec.nodeName`.
    let field = if fs.field_path == "spec.host" {
        "spec.nodeName"
    } else {
        fs.field_path.as_str()
    };
    if !CONVERTIBLE_FIELD_PATHS.contains(&field) {
        let msg = converting(format!("field label not supported: {field}"));
        errs.push(FieldError::invalid(&fp, &fs.field_path, &msg));
    } else if !allowed.contains(&field) {
        errs.push(FieldError::not_supported(&fp, field, allowed));
    }
}

/// `metadata.labels['app']` → (`metadata.labels`, `app`).
fn split_subscript(p: &str) -> Option<(&str, &str)> {
    let inner = p.strip_suffix("']")?;
    let (field, subscript) = inner.split_once("['")?;
    Some((field, subscript))
}

/// A `resourceFieldRef`: a known container resource and a divisor that suits it. Volumes must
/// also name the container.
pub(super) fn validate_resource_field_selector(
    fs: &ResourceFieldSelector,
    volume: bool,
    path: &Path,
    errs: &mut FieldErrors,
) {
    let resource = fs.resource.as_str();
    if volume && fs.container_name.as_deref().unwrap_or_default().is_empty() {
        errs.push(FieldError::required(&path.child("containerName"), ""));
    } else if resource.is_empty() {
        errs.push(FieldError::required(&path.child("resource"), ""));
    } else if !RESOURCE_FIELDS.contains(&resource)
        && !resource.starts_with("limits.hugepages-")
        && !resource.starts_with("requests.hugepages-")
    {
        errs.push(FieldError::not_supported(
            &path.child("resource"),
            resource,
            RESOURCE_FIELDS,
        ));
    }
    let Some(divisor) = &fs.divisor else { return };
    let dp = path.child("divisor");
    let milli = match parse_quantity(&divisor.0) {
        Ok(0) => return,
        Ok(m) => m,
        Err(msg) => {
            errs.push(FieldError::invalid(&dp, &divisor.0, &msg));
            return;
        }
    };
    let memory_like = [
        1,
        1_000,
        1_000_000,
        1_000_000_000,
        1_000_000_000_000,
        1_000_000_000_000_000,
        1_000_000_000_000_000_000,
    ]
    .into_iter()
    .chain((0..=6).map(|p| 1024i128.pow(p)))
    .any(|units| units * 1000 == milli);
    let problem = match resource {
        "limits.cpu" | "requests.cpu" if milli != 1 && milli != 1000 => {
            Some("only divisor's values 1m and 1 are supported with the cpu resource".to_string())
        }
        "limits.memory" | "requests.memory" if !memory_like => {
            Some(format!("only divisor's values {MEMORY_DIVISORS} are supported with the memory resource"))
        }
        "limits.ephemeral-storage" | "requests.ephemeral-storage" if !memory_like => Some(format!(
            "only divisor's values {MEMORY_DIVISORS} are supported with the local ephemeral storage resource"
        )),
        _ => None,
    };
    if let Some(msg) = problem {
        errs.push(FieldError::invalid(&dp, resource, &msg));
    }
}
