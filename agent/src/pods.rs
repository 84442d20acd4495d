//! The pods bound to this node: one watch (field selector `spec.nodeName=<node>`) feeding one
//! worker task per pod (keyed by uid). The watch resumes across servers inside the client; when
//! it ends anyway (history compacted, no server for a long while) it is opened again with a
//! fresh list, and pods missing from that list are treated as deleted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use rkube_client::{KindRef, ListParams, WatchEvent};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::worker::{self, Context, Desired};

/// Watch and dispatch until `shutdown`, then stop every pod's containers.
pub(crate) async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut pods = Pods {
        ctx: ctx.clone(),
        workers: HashMap::new(),
        tasks: JoinSet::new(),
    };
    let params = ListParams {
        field_selector: format!("spec.nodeName={}", ctx.options.node_name),
        ..Default::default()
    };
    let mut retry = Duration::from_millis(200);
    'watch: loop {
        let mut stream = Box::pin(ctx.client.watch(&KindRef::of::<Pod>(), &params, true));
        // The uids of the initial list, until its end is marked.
        let mut listed: Option<HashSet<String>> = Some(HashSet::new());
        loop {
            let event = tokio::select! {
                _ = &mut shutdown => break 'watch,
                event = stream.next() => event,
            };
            while pods.tasks.try_join_next().is_some() {}
            match event {
                Some(Ok(WatchEvent::Added(obj) | WatchEvent::Modified(obj))) => {
                    retry = Duration::from_millis(200);
                    match serde_json::from_value::<Pod>(obj) {
                        Ok(pod) => {
                            if let (Some(seen), Some(uid)) = (&mut listed, &pod.metadata.uid) {
                                seen.insert(uid.clone());
                            }
                            pods.dispatch(pod);
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot decode a pod from the watch"),
                    }
                }
                Some(Ok(WatchEvent::Deleted(obj))) => {
                    if let Some(uid) = obj["metadata"]["uid"].as_str() {
                        pods.gone(uid);
                    }
                }
                Some(Ok(WatchEvent::Bookmark {
                    initial_events_end: true,
                    ..
                })) => {
                    if let Some(seen) = listed.take() {
                        let missing: Vec<String> = pods
                            .workers
                            .keys()
                            .filter(|uid| !seen.contains(*uid))
                            .cloned()
                            .collect();
                        for uid in missing {
                            pods.gone(&uid);
                        }
                    }
                }
                Some(Ok(WatchEvent::Bookmark { .. })) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "pod watch ended; listing again");
                    break;
                }
                None => break,
            }
        }
        tokio::select! {
            _ = &mut shutdown => break 'watch,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(Duration::from_secs(10));
    }
    for tx in pods.workers.values() {
        tx.send_replace(Desired::AgentStopping);
    }
    pods.workers.clear();
    while pods.tasks.join_next().await.is_some() {}
}

struct Pods {
    ctx: Arc<Context>,
    workers: HashMap<String, watch::Sender<Desired>>,
    tasks: JoinSet<()>,
}

impl Pods {
    fn dispatch(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if let Some(tx) = self.workers.get(&uid) {
            // A worker that already finished (deletion confirmed) ignores late events.
            let _ = tx.send(Desired::Pod(Box::new(pod)));
            return;
        }
        let (tx, rx) = watch::channel(Desired::Pod(Box::new(pod)));
        self.tasks.spawn(worker::run(self.ctx.clone(), rx));
        self.workers.insert(uid, tx);
    }

    fn gone(&mut self, uid: &str) {
        if let Some(tx) = self.workers.remove(uid) {
            let _ = tx.send(Desired::Gone);
        }
    }
}
