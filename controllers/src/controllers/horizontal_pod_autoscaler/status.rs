//! The status an autoscaler sync computes: replicas, metrics, and the conditions with
//! Kubernetes' `setCondition` (the transition time moves only when the status flips).

use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus, MetricStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The status being computed, with Kubernetes' `setCondition`.
pub(super) struct Status {
    pub inner: HorizontalPodAutoscalerStatus,
    pub now: jiff::Timestamp,
}

impl Status {
    pub fn condition(
        &mut self,
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) {
        let status = if status { "True" } else { "False" }.to_string();
        let conditions = self.inner.conditions.get_or_insert_with(Vec::new);
        let message = Some(message.into());
        let reason = Some(reason.to_string());
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = Some(Time(self.now));
                }
                c.status = status;
                c.reason = reason;
                c.message = message;
            }
            None => conditions.push(HorizontalPodAutoscalerCondition {
                type_: type_.to_string(),
                status,
                reason,
                message,
                last_transition_time: Some(Time(self.now)),
                ..Default::default()
            }),
        }
    }

    pub fn set(&mut self, current: i32, desired: i32, metrics: Option<Vec<MetricStatus>>) {
        self.inner.current_replicas = Some(current);
        self.inner.desired_replicas = desired;
        self.inner.current_metrics = metrics.filter(|m| !m.is_empty());
    }
}

/// A milli-unit amount as a quantity in canonical form (`250m`, `2`).
pub(super) fn milli_quantity(milli: i64) -> Quantity {
    if milli % 1000 == 0 {
        Quantity((milli / 1000).to_string())
    } else {
        Quantity(format!("{milli}m"))
    }
}
