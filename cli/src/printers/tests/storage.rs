//! The PersistentVolume and PersistentVolumeClaim tables.

use serde_json::{json, Value};

use super::{ago, assert_table, opts, render, wide};

fn volumes() -> Vec<Value> {
    vec![
        json!({"metadata": {"name": "pv0001", "creationTimestamp": ago(20 * 86400)},
            "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "standard", "volumeMode": "Filesystem",
                "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "claim1"}},
            "status": {"phase": "Bound"}}),
        json!({"metadata": {"name": "pv0002", "creationTimestamp": ago(600),
                "annotations": {"volume.beta.kubernetes.io/storage-class": "slow"}},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadOnlyMany", "ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "fast", "volumeAttributesClassName": "gold"},
            "status": {"phase": "Available"}}),
        json!({"metadata": {"name": "pv0003", "creationTimestamp": ago(30), "deletionTimestamp": ago(1)},
            "spec": {"accessModes": ["ReadWriteOncePod"], "persistentVolumeReclaimPolicy": "Delete", "volumeMode": "Block"},
            "status": {"phase": "Released", "reason": "VolumeFailedDelete"}}),
    ]
}

#[test]
fn persistent_volumes_abbreviate_access_modes() {
    assert_table(
        &render("PersistentVolume", &volumes(), &opts()),
        r"
NAME     CAPACITY   ACCESS MODES   RECLAIM POLICY   STATUS        CLAIM            STORAGECLASS   VOLUMEATTRIBUTESCLASS   REASON               AGE
pv0001   5Gi        RWO            Retain           Bound         default/claim1   standard       <unset>                                      20d
pv0002   10Gi       RWO,ROX,RWX    Delete           Available                      slow           gold                                         10m
pv0003              RWOP           Delete           Terminating                                   <unset>                 VolumeFailedDelete   30s
",
    );
    assert_table(
        &render("PersistentVolume", &volumes(), &wide()),
        r"
NAME     CAPACITY   ACCESS MODES   RECLAIM POLICY   STATUS        CLAIM            STORAGECLASS   VOLUMEATTRIBUTESCLASS   REASON               AGE   VOLUMEMODE
pv0001   5Gi        RWO            Retain           Bound         default/claim1   standard       <unset>                                      20d   Filesystem
pv0002   10Gi       RWO,ROX,RWX    Delete           Available                      slow           gold                                         10m   <unset>
pv0003              RWOP           Delete           Terminating                                   <unset>                 VolumeFailedDelete   30s   Block
",
    );
}

#[test]
fn persistent_volume_claims_show_capacity_once_bound() {
    let claims = [
        json!({"metadata": {"name": "claim1", "namespace": "default", "creationTimestamp": ago(20 * 86400)},
            "spec": {"volumeName": "pv0001", "storageClassName": "standard", "volumeMode": "Filesystem",
                "resources": {"requests": {"storage": "5Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"]}}),
        json!({"metadata": {"name": "pending", "namespace": "default", "creationTimestamp": ago(5)},
            "spec": {"storageClassName": "fast", "volumeAttributesClassName": "gold",
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"}}),
    ];
    assert_table(
        &render("PersistentVolumeClaim", &claims, &opts()),
        r"
NAME      STATUS    VOLUME   CAPACITY   ACCESS MODES   STORAGECLASS   VOLUMEATTRIBUTESCLASS   AGE
claim1    Bound     pv0001   5Gi        RWO            standard       <unset>                 20d
pending   Pending                                      fast           gold                    5s
",
    );
    assert_table(
        &render("PersistentVolumeClaim", &claims, &wide()),
        r"
NAME      STATUS    VOLUME   CAPACITY   ACCESS MODES   STORAGECLASS   VOLUMEATTRIBUTESCLASS   AGE   VOLUMEMODE
claim1    Bound     pv0001   5Gi        RWO            standard       <unset>                 20d   Filesystem
pending   Pending                                      fast           gold                    5s    <unset>
",
    );
}
