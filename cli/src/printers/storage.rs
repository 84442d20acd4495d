//! The PersistentVolume and PersistentVolumeClaim tables.

use serde_json::Value;

use super::{age, array_at, col, name, str_at, wide, KindPrinter};

/// The annotation that named the storage class before `storageClassName` existed.
const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

pub(crate) const PERSISTENT_VOLUME: KindPrinter = KindPrinter {
    columns: &[
        col("NAME"),
        col("CAPACITY"),
        col("ACCESS MODES"),
        col("RECLAIM POLICY"),
        col("STATUS"),
        col("CLAIM"),
        col("STORAGECLASS"),
        col("VOLUMEATTRIBUTESCLASS"),
        col("REASON"),
        col("AGE"),
        wide("VOLUMEMODE"),
    ],
    row: |o, p| {
        let claim = match o.pointer("/spec/claimRef") {
            Some(r) if r.is_object() => {
                format!("{}/{}", str_at(r, "/namespace"), str_at(r, "/name"))
            }
            _ => String::new(),
        };
        vec![
            name(o),
            str_at(o, "/spec/capacity/storage").to_string(),
            access_modes(array_at(o, "/spec/accessModes")),
            str_at(o, "/spec/persistentVolumeReclaimPolicy").to_string(),
            phase(o),
            claim,
            storage_class(o),
            unset_if_missing(o, "/spec/volumeAttributesClassName"),
            str_at(o, "/status/reason").to_string(),
            age(o, p.now),
            unset_if_missing(o, "/spec/volumeMode"),
        ]
    },
};

pub(crate) const PERSISTENT_VOLUME_CLAIM: KindPrinter = KindPrinter {
    columns: &[
        col("NAME"),
        col("STATUS"),
        col("VOLUME"),
        col("CAPACITY"),
        col("ACCESS MODES"),
        col("STORAGECLASS"),
        col("VOLUMEATTRIBUTESCLASS"),
        col("AGE"),
        wide("VOLUMEMODE"),
    ],
    row: |o, p| {
        let volume = str_at(o, "/spec/volumeName");
        // Capacity and access modes are those of the bound volume, so blank until bound.
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (
                str_at(o, "/status/capacity/storage").to_string(),
                access_modes(array_at(o, "/status/accessModes")),
            )
        };
        vec![
            name(o),
            phase(o),
            volume.to_string(),
            capacity,
            modes,
            storage_class(o),
            unset_if_missing(o, "/spec/volumeAttributesClassName"),
            age(o, p.now),
            unset_if_missing(o, "/spec/volumeMode"),
        ]
    },
};

/// `status.phase`, or `Terminating` while the object is being deleted.
fn phase(o: &Value) -> String {
    if o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        "Terminating".into()
    } else {
        str_at(o, "/status/phase").to_string()
    }
}

/// The storage class: the beta annotation if set, else `spec.storageClassName`.
fn storage_class(o: &Value) -> String {
    match o["metadata"]["annotations"][BETA_STORAGE_CLASS_ANNOTATION].as_str() {
        Some(class) => class.to_string(),
        None => str_at(o, "/spec/storageClassName").to_string(),
    }
}

fn unset_if_missing(o: &Value, pointer: &str) -> String {
    match o.pointer(pointer).and_then(Value::as_str) {
        Some(v) => v.to_string(),
        None => "<unset>".into(),
    }
}

/// Access modes abbreviated, in kubectl's fixed order: `RWO,ROX,RWX,RWOP`.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}
