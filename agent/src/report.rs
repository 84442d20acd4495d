//! Reporting a pod's status: the worker publishes its view whenever it changes; this task writes
//! the newest view into the pod's status (read, merge, `update_status`), skipping the write when
//! the stored status already says the same, and retries with back-off while the API is
//! unreachable or the pod changed underneath (Conflict). Intermediate views may be skipped: only
//! the latest matters.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rkube_client::{Client, Error as ApiError};
use tokio::sync::watch;

use crate::status::{merge_into, PodView};

/// The pod a reporter writes to.
pub(crate) struct Target {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// Report views from `views` until the sender is dropped.
pub(crate) async fn run(
    client: Client,
    target: Target,
    mut views: watch::Receiver<Option<PodView>>,
) {
    while views.changed().await.is_ok() {
        let mut delay = Duration::from_millis(100);
        loop {
            let Some(view) = views.borrow_and_update().clone() else {
                break;
            };
            match write(&client, &target, &view).await {
                Ok(()) => break,
                Err(ApiError::NotFound(_)) => break,
                Err(e) => {
                    tracing::debug!(pod = %target.name, namespace = %target.namespace, error = %e, "pod status not written yet");
                    // Wait, but no longer than until a newer view arrives.
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        changed = views.changed() => if changed.is_err() { return },
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

async fn write(client: &Client, target: &Target, view: &PodView) -> Result<(), ApiError> {
    let mut pod: Pod = client.get_typed(&target.namespace, &target.name).await?;
    if pod.metadata.uid.as_deref() != Some(target.uid.as_str()) {
        // A new pod with the same name: not ours to report on.
        return Ok(());
    }
    let mut status = pod.status.clone().unwrap_or_default();
    merge_into(&mut status, view, &Time(jiff::Timestamp::now()));
    if pod.status.as_ref() == Some(&status) {
        return Ok(());
    }
    pod.status = Some(status);
    client.update_status_typed(&pod).await?;
    Ok(())
}
