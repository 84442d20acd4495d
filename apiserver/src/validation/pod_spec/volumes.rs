//! Pod volumes (a unique DNS-1123 name and exactly one source, with the common sources'
//! fields checked) and containers' volume mounts (Kubernetes' `ValidateVolumes` and
//! `ValidateVolumeMounts`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, KeyToPath, Volume};
use serde_json::Value;

use super::checks::{file_mode, local_descending_path, local_non_reserved_path, optional_one_of};
use super::env;
use crate::validation::common::{dns1123_label, push_all, validate_quantity};
use crate::validation::{FieldError, FieldErrors, Path};

const HOST_PATH_TYPES: &[&str] = &[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
];
const MOUNT_PROPAGATIONS: &[&str] = &["Bidirectional", "HostToContainer", "None"];

/// Validate the pod's volumes; returns the names of the valid ones, which containers may mount.
pub(super) fn validate_volumes(
    volumes: &[Volume],
    path: &Path,
    errs: &mut FieldErrors,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, vol) in volumes.iter().enumerate() {
        let vp = path.index(i);
        let np = vp.child("name");
        let mut own = Vec::new();
        validate_source(vol, &vp, &mut own);
        if vol.name.is_empty() {
            own.push(FieldError::required(&np, ""));
        } else {
            push_all(&mut own, &np, &vol.name, dns1123_label(&vol.name));
        }
        if names.contains(&vol.name) {
            own.push(FieldError::duplicate(&np, &vol.name));
        }
        if own.is_empty() {
            names.insert(vol.name.clone());
        } else {
            errs.extend(own);
        }
    }
    names
}

/// Exactly one source, and the fields of the common sources.
fn validate_source(vol: &Volume, path: &Path, errs: &mut FieldErrors) {
    // Every field of a Volume except its name is a source.
    let sources: Vec<String> = match serde_json::to_value(vol) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .filter(|(k, v)| k != "name" && !v.is_null())
            .map(|(k, _)| k)
            .collect(),
        _ => Vec::new(),
    };
    match sources.as_slice() {
        [] => errs.push(FieldError::required(path, "must specify a volume type")),
        [_] => {}
        [_, rest @ ..] => {
            for extra in rest {
                errs.push(FieldError::forbidden(
                    &path.child(extra),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    if let Some(hp) = &vol.host_path {
        let hpp = path.child("hostPath");
        if hp.path.is_empty() {
            errs.push(FieldError::required(&hpp.child("path"), ""));
        }
        if hp.path.split('/').any(|part| part == "..") {
            errs.push(FieldError::invalid(
                &hpp.child("path"),
                &hp.path,
                "must not contain '..'",
            ));
        }
        optional_one_of(
            hp.type_.as_deref(),
            HOST_PATH_TYPES,
            &hpp.child("type"),
            errs,
        );
    }
    if let Some(size) = vol.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) {
        validate_quantity(&size.0, &path.child("emptyDir").child("sizeLimit"), errs);
    }
    if let Some(cm) = &vol.config_map {
        let cp = path.child("configMap");
        if cm.name.is_empty() {
            errs.push(FieldError::required(&cp.child("name"), ""));
        }
        file_mode(cm.default_mode, &cp.child("defaultMode"), errs);
        validate_items(
            cm.items.as_deref().unwrap_or_default(),
            &cp.child("items"),
            errs,
        );
    }
    if let Some(secret) = &vol.secret {
        let sp = path.child("secret");
        if secret.secret_name.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(&sp.child("secretName"), ""));
        }
        file_mode(secret.default_mode, &sp.child("defaultMode"), errs);
        validate_items(
            secret.items.as_deref().unwrap_or_default(),
            &sp.child("items"),
            errs,
        );
    }
    if let Some(pvc) = &vol.persistent_volume_claim {
        if pvc.claim_name.is_empty() {
            errs.push(FieldError::required(
                &path.child("persistentVolumeClaim").child("claimName"),
                "",
            ));
        }
    }
    if let Some(nfs) = &vol.nfs {
        let np = path.child("nfs");
        if nfs.server.is_empty() {
            errs.push(FieldError::required(&np.child("server"), ""));
        }
        if nfs.path.is_empty() {
            errs.push(FieldError::required(&np.child("path"), ""));
        } else if !nfs.path.starts_with('/') {
            errs.push(FieldError::invalid(
                &np.child("path"),
                &nfs.path,
                "must be an absolute path",
            ));
        }
    }
    if let Some(dapi) = &vol.downward_api {
        let dp = path.child("downwardAPI");
        file_mode(dapi.default_mode, &dp.child("defaultMode"), errs);
        for (i, item) in dapi.items.iter().flatten().enumerate() {
            let ip = dp.child("items").index(i);
            if item.path.is_empty() {
                errs.push(FieldError::required(&ip.child("path"), ""));
            }
            local_non_reserved_path(&item.path, &ip.child("path"), errs);
            file_mode(item.mode, &ip.child("mode"), errs);
            match (&item.field_ref, &item.resource_field_ref) {
                (Some(f), None) => env::validate_object_field_selector(
                    f,
                    env::VOLUME_FIELD_PATHS,
                    &ip.child("fieldRef"),
                    errs,
                ),
                (None, Some(r)) => env::validate_resource_field_selector(
                    r,
                    true,
                    &ip.child("resourceFieldRef"),
                    errs,
                ),
                (Some(_), Some(_)) => errs.push(FieldError::invalid(
                    &ip,
                    "resource",
                    "fieldRef and resourceFieldRef can not be specified simultaneously",
                )),
                (None, None) => errs.push(FieldError::required(
                    &ip,
                    "one of fieldRef and resourceFieldRef is required",
                )),
            }
        }
    }
    if let Some(projected) = &vol.projected {
        file_mode(
            projected.default_mode,
            &path.child("projected").child("defaultMode"),
            errs,
        );
    }
}

/// The `items` of a configMap or secret volume: a key, a relative path and a file mode each.
fn validate_items(items: &[KeyToPath], path: &Path, errs: &mut FieldErrors) {
    for (i, item) in items.iter().enumerate() {
        let ip = path.index(i);
        if item.key.is_empty() {
            errs.push(FieldError::required(&ip.child("key"), ""));
        }
        if item.path.is_empty() {
            errs.push(FieldError::required(&ip.child("path"), ""));
        }
        local_non_reserved_path(&item.path, &ip.child("path"), errs);
        file_mode(item.mode, &ip.child("mode"), errs);
    }
}

/// A container's mounts: each names one of the pod's volumes, at a unique mount path.
pub(super) fn validate_volume_mounts(
    c: &Container,
    volumes: &BTreeSet<String>,
    volumes_path: &Path,
    path: &Path,
    errs: &mut FieldErrors,
) {
    let privileged = c.security_context.as_ref().and_then(|s| s.privileged) == Some(true);
    let mut mount_paths = BTreeSet::new();
    for (i, mount) in c.volume_mounts.iter().flatten().enumerate() {
        let mp = path.index(i);
        if mount.name.is_empty() {
            errs.push(FieldError::required(&mp.child("name"), ""));
        }
        if !volumes.contains(&mount.name) {
            // Kubernetes reports `Not found`; the message names where the volumes are listed.
            let msg = format!("must match the name of a volume in {volumes_path}");
            errs.push(FieldError::invalid(&mp.child("name"), &mount.name, &msg));
        }
        if mount.mount_path.is_empty() {
            errs.push(FieldError::required(&mp.child("mountPath"), ""));
        }
        if !mount_paths.insert(mount.mount_path.as_str()) {
            errs.push(FieldError::invalid(
                &mp.child("mountPath"),
                &mount.mount_path,
                "must be unique",
            ));
        }
        let sub_path = mount.sub_path.as_deref().unwrap_or_default();
        if !sub_path.is_empty() {
            local_descending_path(sub_path, &mp.child("subPath"), errs);
        }
        if let Some(expr) = mount.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
            if !sub_path.is_empty() {
                errs.push(FieldError::invalid(
                    &mp.child("subPathExpr"),
                    expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(expr, &mp.child("subPathExpr"), errs);
        }
        if let Some(prop) = mount.mount_propagation.as_deref() {
            let pp = mp.child("mountPropagation");
            if !MOUNT_PROPAGATIONS.contains(&prop) {
                errs.push(FieldError::not_supported(&pp, prop, MOUNT_PROPAGATIONS));
            } else if prop == "Bidirectional" && !privileged {
                errs.push(FieldError::forbidden(
                    &pp,
                    "Bidirectional mount propagation is available only to privileged containers",
                ));
            }
        }
    }
}
