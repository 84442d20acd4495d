//! PersistentVolume and PersistentVolumeClaim defaulting and validation: capacity and requests,
//! access modes, exactly one volume source (rkube mounts hostPath and local volumes; the other
//! sources are accepted as data), node affinity, and what may change after creation.

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimStatus, PersistentVolumeSpec, PersistentVolumeStatus,
};

use super::fields::{
    validate_enum, validate_immutable, validate_label_selector, validate_node_selector,
    validate_path_no_backsteps, validate_positive_quantity, IMMUTABLE_MSG,
};
use crate::strategy::KindRules;
use crate::validation::common::{dns1123_subdomain, parse_quantity, push_all};
use crate::validation::{FieldError, FieldErrors, Path};

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

/// PersistentVolumes (cluster-scoped).
pub struct PersistentVolumeRules;

impl KindRules for PersistentVolumeRules {
    type Object = PersistentVolume;

    fn default(&self, pv: &mut PersistentVolume) {
        let spec = pv.spec.get_or_insert_with(PersistentVolumeSpec::default);
        spec.persistent_volume_reclaim_policy
            .get_or_insert_with(|| "Retain".to_string());
        spec.volume_mode
            .get_or_insert_with(|| "Filesystem".to_string());
        if let Some(hp) = spec.host_path.as_mut() {
            hp.type_.get_or_insert_with(String::new);
        }
        let status = pv
            .status
            .get_or_insert_with(PersistentVolumeStatus::default);
        status.phase.get_or_insert_with(|| "Pending".to_string());
    }

    fn validate(&self, pv: &PersistentVolume, errs: &mut FieldErrors) {
        let spec = pv.spec.clone().unwrap_or_default();
        let sp = Path::root("spec");
        validate_access_modes(
            spec.access_modes.as_deref().unwrap_or_default(),
            &sp.child("accessModes"),
            errs,
        );

        let capacity = spec.capacity.clone().unwrap_or_default();
        let cp = sp.child("capacity");
        if capacity.is_empty() {
            errs.push(FieldError::required(&cp, ""));
        } else if !capacity.contains_key("storage") {
            errs.push(FieldError::required(&cp.key("storage"), ""));
        }
        for (name, q) in &capacity {
            if name != "storage" {
                errs.push(FieldError::not_supported(&cp, name, &["storage"]));
            }
            validate_positive_quantity(&q.0, &cp.key(name), errs);
        }

        let policy = spec.persistent_volume_reclaim_policy.as_deref();
        validate_enum(
            policy,
            &["Delete", "Recycle", "Retain"],
            false,
            &sp.child("persistentVolumeReclaimPolicy"),
            errs,
        );
        validate_volume_source(&spec, &sp, errs);
        if let Some(hp) = &spec.host_path {
            let cleaned = hp.path.trim_end_matches('/');
            if cleaned.is_empty() && !hp.path.is_empty() && policy == Some("Recycle") {
                errs.push(FieldError::forbidden(
                    &sp.child("persistentVolumeReclaimPolicy"),
                    "may not be 'recycle' for a hostPath mount of '/'",
                ));
            }
        }
        if let Some(class) = spec.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
            push_all(
                errs,
                &sp.child("storageClassName"),
                class,
                dns1123_subdomain(class),
            );
        }
        validate_enum(
            spec.volume_mode.as_deref(),
            VOLUME_MODES,
            false,
            &sp.child("volumeMode"),
            errs,
        );
    }

    fn validate_update(
        &self,
        new: &PersistentVolume,
        old: &PersistentVolume,
        errs: &mut FieldErrors,
    ) {
        self.validate(new, errs);
        let (new_spec, old_spec) = (
            new.spec.clone().unwrap_or_default(),
            old.spec.clone().unwrap_or_default(),
        );
        let sp = Path::root("spec");
        if volume_source(&new_spec) != volume_source(&old_spec) {
            errs.push(FieldError::forbidden(
                &sp.child("persistentvolumesource"),
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        validate_immutable(
            new_spec.volume_mode.as_deref(),
            old_spec.volume_mode.as_deref(),
            &sp.child("volumeMode"),
            errs,
        );
        // Node affinity may be added to a volume that had none, never changed afterwards.
        if old_spec.node_affinity.is_some() && new_spec.node_affinity != old_spec.node_affinity {
            errs.push(FieldError::forbidden(
                &sp.child("nodeAffinity"),
                IMMUTABLE_MSG,
            ));
        }
    }
}

/// The spec with everything but the volume source cleared: what may not change once created.
fn volume_source(spec: &PersistentVolumeSpec) -> PersistentVolumeSpec {
    PersistentVolumeSpec {
        access_modes: None,
        capacity: None,
        claim_ref: None,
        mount_options: None,
        node_affinity: None,
        persistent_volume_reclaim_policy: None,
        storage_class_name: None,
        volume_attributes_class_name: None,
        volume_mode: None,
        ..spec.clone()
    }
}

/// Exactly one volume source. hostPath, local and nfs are checked in depth; the others are
/// accepted as written (rkube's agent does not mount them).
fn validate_volume_source(spec: &PersistentVolumeSpec, sp: &Path, errs: &mut FieldErrors) {
    let present = [
        ("hostPath", spec.host_path.is_some()),
        ("gcePersistentDisk", spec.gce_persistent_disk.is_some()),
        (
            "awsElasticBlockStore",
            spec.aws_elastic_block_store.is_some(),
        ),
        ("glusterfs", spec.glusterfs.is_some()),
        ("flocker", spec.flocker.is_some()),
        ("nfs", spec.nfs.is_some()),
        ("rbd", spec.rbd.is_some()),
        ("quobyte", spec.quobyte.is_some()),
        ("cephfs", spec.cephfs.is_some()),
        ("iscsi", spec.iscsi.is_some()),
        ("cinder", spec.cinder.is_some()),
        ("fc", spec.fc.is_some()),
        ("flexVolume", spec.flex_volume.is_some()),
        ("azureFile", spec.azure_file.is_some()),
        ("vsphereVolume", spec.vsphere_volume.is_some()),
        (
            "photonPersistentDisk",
            spec.photon_persistent_disk.is_some(),
        ),
        ("portworxVolume", spec.portworx_volume.is_some()),
        ("azureDisk", spec.azure_disk.is_some()),
        ("scaleIO", spec.scale_io.is_some()),
        ("local", spec.local.is_some()),
        ("storageos", spec.storageos.is_some()),
        ("csi", spec.csi.is_some()),
    ];
    let mut count = 0;
    for (name, is_set) in present {
        if !is_set {
            continue;
        }
        count += 1;
        if count > 1 {
            errs.push(FieldError::forbidden(
                &sp.child(name),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        match name {
            "hostPath" => {
                let hp = spec.host_path.as_ref().expect("present");
                let hpp = sp.child("hostPath");
                if hp.path.is_empty() {
                    errs.push(FieldError::required(&hpp.child("path"), ""));
                } else {
                    validate_path_no_backsteps(&hp.path, &hpp.child("path"), errs);
                }
                if let Some(t) = &hp.type_ {
                    if !HOST_PATH_TYPES.contains(&t.as_str()) {
                        errs.push(FieldError::not_supported(
                            &hpp.child("type"),
                            t,
                            HOST_PATH_TYPES,
                        ));
                    }
                }
            }
            "local" => {
                let local = spec.local.as_ref().expect("present");
                let lp = sp.child("local").child("path");
                if local.path.is_empty() {
                    errs.push(FieldError::required(&lp, ""));
                } else {
                    validate_path_no_backsteps(&local.path, &lp, errs);
                }
                if spec.node_affinity.is_none() {
                    errs.push(FieldError::required(
                        &sp.child("nodeAffinity"),
                        "Local volume requires node affinity",
                    ));
                }
            }
            "nfs" => {
                let nfs = spec.nfs.as_ref().expect("present");
                let np = sp.child("nfs");
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
            _ => {}
        }
    }
    if count == 0 {
        errs.push(FieldError::required(sp, "must specify a volume type"));
    }
    if let Some(affinity) = &spec.node_affinity {
        let ap = sp.child("nodeAffinity");
        match &affinity.required {
            Some(required) => validate_node_selector(required, &ap.child("required"), errs),
            None => errs.push(FieldError::required(
                &ap.child("required"),
                "must specify required node constraints",
            )),
        }
    }
}

/// Access modes: known ones, and ReadWriteOncePod alone.
fn validate_access_modes(modes: &[String], path: &Path, errs: &mut FieldErrors) {
    if modes.is_empty() {
        errs.push(FieldError::required(
            path,
            "at least 1 access mode is required",
        ));
    }
    let (mut once_pod, mut others) = (false, false);
    for mode in modes {
        if !ACCESS_MODES.contains(&mode.as_str()) {
            errs.push(FieldError::not_supported(path, mode, ACCESS_MODES));
        } else if mode == "ReadWriteOncePod" {
            once_pod = true;
        } else {
            others = true;
        }
    }
    if once_pod && others {
        errs.push(FieldError::forbidden(
            path,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

/// PersistentVolumeClaims.
pub struct PersistentVolumeClaimRules;

impl KindRules for PersistentVolumeClaimRules {
    type Object = PersistentVolumeClaim;

    fn default(&self, pvc: &mut PersistentVolumeClaim) {
        let spec = pvc
            .spec
            .get_or_insert_with(PersistentVolumeClaimSpec::default);
        spec.volume_mode
            .get_or_insert_with(|| "Filesystem".to_string());
        let status = pvc
            .status
            .get_or_insert_with(PersistentVolumeClaimStatus::default);
        status.phase.get_or_insert_with(|| "Pending".to_string());
    }

    fn validate(&self, pvc: &PersistentVolumeClaim, errs: &mut FieldErrors) {
        let spec = pvc.spec.clone().unwrap_or_default();
        let sp = Path::root("spec");
        validate_access_modes(
            spec.access_modes.as_deref().unwrap_or_default(),
            &sp.child("accessModes"),
            errs,
        );
        if let Some(sel) = &spec.selector {
            validate_label_selector(sel, &sp.child("selector"), errs);
        }
        let storage_path = sp.child("resources").child("requests").key("storage");
        match storage_request(&spec) {
            None => errs.push(FieldError::required(&storage_path, "")),
            Some(q) => validate_positive_quantity(&q, &storage_path, errs),
        }
        if let Some(class) = spec.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
            push_all(
                errs,
                &sp.child("storageClassName"),
                class,
                dns1123_subdomain(class),
            );
        }
        validate_enum(
            spec.volume_mode.as_deref(),
            VOLUME_MODES,
            false,
            &sp.child("volumeMode"),
            errs,
        );
        if let Some(ds) = &spec.data_source {
            let dp = sp.child("dataSource");
            if ds.name.is_empty() {
                errs.push(FieldError::required(&dp.child("name"), ""));
            }
            if ds.kind.is_empty() {
                errs.push(FieldError::required(&dp.child("kind"), ""));
            }
            if ds.api_group.as_deref().unwrap_or_default().is_empty()
                && ds.kind != "PersistentVolumeClaim"
            {
                errs.push(FieldError::invalid(
                    &dp,
                    &ds.kind,
                    "must be 'PersistentVolumeClaim' when referencing the default apiGroup",
                ));
            }
        }
    }

    fn validate_update(
        &self,
        new: &PersistentVolumeClaim,
        old: &PersistentVolumeClaim,
        errs: &mut FieldErrors,
    ) {
        self.validate(new, errs);
        let (new_spec, old_spec) = (
            new.spec.clone().unwrap_or_default(),
            old.spec.clone().unwrap_or_default(),
        );
        let mut old_cmp = old_spec.clone();
        let mut new_cmp = new_spec.clone();
        // The binder sets volumeName once; a claim without a class may get one (the default).
        if old_spec
            .volume_name
            .as_deref()
            .unwrap_or_default()
            .is_empty()
        {
            old_cmp.volume_name = new_spec.volume_name.clone();
        }
        if old_spec.storage_class_name.is_none() {
            old_cmp.storage_class_name = new_spec.storage_class_name.clone();
        }
        // A bound claim may be resized: its storage request may change (grow, below).
        let bound = new.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if bound {
            let old_storage = old_spec
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"));
            if let Some(requests) = new_cmp.resources.as_mut().and_then(|r| r.requests.as_mut()) {
                match old_storage {
                    Some(q) => requests.insert("storage".to_string(), q.clone()),
                    None => requests.remove("storage"),
                };
            }
        }
        if new_cmp != old_cmp {
            errs.push(FieldError::forbidden(
                &Path::root("spec"),
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        if let (Some(new_q), Some(old_q)) = (storage_request(&new_spec), storage_request(&old_spec))
        {
            if let (Ok(n), Ok(o)) = (parse_quantity(&new_q), parse_quantity(&old_q)) {
                if n < o {
                    errs.push(FieldError::forbidden(
                        &Path::root("spec")
                            .child("resources")
                            .child("requests")
                            .child("storage"),
                        "field can not be less than previous value",
                    ));
                }
            }
        }
    }
}

fn storage_request(spec: &PersistentVolumeClaimSpec) -> Option<String> {
    spec.resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
