//! One module per family of kinds with its defaulting and validation rules, and the table that
//! gives the registry every kind's strategy.

use crate::kinds::{KindInfo, KINDS};
use crate::strategy::{Strategy, Typed};

pub mod core;
pub mod fields;
pub mod hpa;
pub mod other;
pub mod pod;
pub mod service;
pub mod storage;
pub mod workloads;

/// The strategy of every served kind, in the order of `KINDS`.
pub fn all() -> Vec<Box<dyn Strategy>> {
    KINDS.iter().map(strategy_for).collect()
}

fn strategy_for(info: &'static KindInfo) -> Box<dyn Strategy> {
    macro_rules! typed {
        ($rules:expr) => {
            Box::new(Typed {
                info,
                rules: $rules,
            })
        };
    }
    match info.kind {
        "Namespace" => typed!(core::NamespaceRules),
        "Node" => typed!(core::NodeRules),
        "Pod" => typed!(pod::PodRules),
        "Service" => typed!(core::ServiceRules),
        "Endpoints" => typed!(core::EndpointsRules),
        "ConfigMap" => typed!(core::ConfigMapRules),
        "Secret" => typed!(core::SecretRules),
        "ReplicationController" => typed!(workloads::ReplicationControllerRules),
        "PersistentVolume" => typed!(core::PersistentVolumeRules),
        "PersistentVolumeClaim" => typed!(core::PersistentVolumeClaimRules),
        "Event" => typed!(core::EventRules),
        "ReplicaSet" => typed!(workloads::ReplicaSetRules),
        "Deployment" => typed!(workloads::DeploymentRules),
        "DaemonSet" => typed!(workloads::DaemonSetRules),
        "StatefulSet" => typed!(workloads::StatefulSetRules),
        "Job" => typed!(workloads::JobRules),
        "CronJob" => typed!(workloads::CronJobRules),
        "HorizontalPodAutoscaler" => typed!(other::HorizontalPodAutoscalerRules),
        "Lease" => typed!(other::LeaseRules),
        "PriorityClass" => typed!(other::PriorityClassRules),
        other => unreachable!("kind {other} is in KINDS but has no strategy"),
    }
}
