//! Events about pods, as the kubelet reports them (`Unhealthy`, `Killing`,
//! `ResourceLimitsUnenforced`): core/v1 Events created in the background, best effort, so a
//! worker never waits on the API for them.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use rkube_client::Client;

pub(crate) const NORMAL: &str = "Normal";
pub(crate) const WARNING: &str = "Warning";

/// Keeps event names unique within this process.
static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The component events are reported as.
const COMPONENT: &str = "kubelet";

/// Record an event about container `container` of `pod` (written in the background; a failure
/// is only logged).
pub(crate) fn record(
    client: &Client,
    node: &str,
    pod: &Pod,
    container: &str,
    type_: &str,
    reason: &str,
    message: String,
) {
    let ev = event(node, pod, container, type_, reason, message);
    let client = client.clone();
    tokio::spawn(async move {
        let ns = ev.metadata.namespace.clone().unwrap_or_default();
        let outcome = match serde_json::to_value(&ev) {
            Ok(mut v) => {
                v["apiVersion"] = "v1".into();
                v["kind"] = "Event".into();
                client.create(&v, &ns).await.map(|_| ())
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot encode an event");
                Ok(())
            }
        };
        if let Err(e) = outcome {
            tracing::debug!(error = %e, reason = ?ev.reason, "event not recorded");
        }
    });
}

fn event(
    node: &str,
    pod: &Pod,
    container: &str,
    type_: &str,
    reason: &str,
    message: String,
) -> Event {
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let unique = (now.as_nanosecond() as u64)
        .wrapping_add(SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{unique:016x}")),
            namespace: Some(
                meta.namespace
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "default".into()),
            ),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            field_path: Some(format!("spec.containers{{{container}}}")),
        },
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(type_.into()),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: Some(node.into()),
        }),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: Some(node.into()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Default::default()
    }
}
