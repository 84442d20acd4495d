//! Pod logs, exec and port forwarding, and resource metrics (`rkube.api.v1.Pods` and
//! `Metrics`): the caller is authenticated as for every call, the pod and its node are looked
//! up, and the request is proxied to that node's agent ([`dial`]) with the pod's uid filled in.
//! Users never reach agents themselves.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use rkube_proto::agent::{self as agent_pb, agent_client::AgentClient};
use rkube_proto::api::pods_server::Pods;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Authenticator;
use crate::error::{Error, Result};
use crate::kinds;
use crate::registry::Registry;

pub mod dial;
mod metrics;

pub use dial::AgentDialer;

/// The Node annotations agents publish their service under (see `rkube_agent::serve`).
pub const ADDRESS_ANNOTATION: &str = "rkube.io/agent-address";
pub const CERT_ANNOTATION: &str = "rkube.io/serving-cert-sha256";

/// How long a metrics call waits for each agent.
const STATS_TIMEOUT: Duration = Duration::from_secs(10);

/// The `Pods` and `Metrics` services.
#[derive(Clone)]
pub struct NodeProxy {
    pub registry: Registry,
    pub auth: Authenticator,
    pub dialer: Arc<AgentDialer>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A pod to proxy to: the request's pod reference with its uid, the container, and the agent.
struct Target {
    pod: agent_pb::PodRef,
    container: String,
    agent: AgentClient<Channel>,
    node: String,
}

impl NodeProxy {
    /// Look up the pod (and, unless `any_phase`, check it runs), resolve its container (unless
    /// `None`: the request is about the whole pod) and connect to its node's agent.
    async fn target(
        &self,
        pod: Option<&agent_pb::PodRef>,
        container: Option<&str>,
        verb: &str,
        any_phase: bool,
    ) -> Result<Target> {
        let r = pod.ok_or_else(|| Error::BadRequest("the request names no pod".into()))?;
        let namespace = if r.namespace.is_empty() {
            "default"
        } else {
            r.namespace.as_str()
        };
        let info = kinds::resolve("pods").expect("pods are served");
        let obj = self.registry.get(info, namespace, &r.name, false).await?;
        let pod: Pod = serde_json::from_value(obj)
            .map_err(|e| Error::Internal(format!("stored pod {namespace}/{}: {e}", r.name)))?;
        let spec = pod.spec.clone().unwrap_or_default();
        let node = spec.node_name.clone().unwrap_or_default();
        if node.is_empty() {
            return Err(Error::BadRequest(format!(
                "pod {} is not scheduled to a node yet: cannot {verb} it",
                r.name
            )));
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".into());
        if !any_phase && phase != "Running" {
            return Err(Error::BadRequest(format!(
                "pod {} is not running (phase {phase}): cannot {verb} it",
                r.name
            )));
        }
        let app: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        let all: Vec<&str> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .chain(app.iter().copied())
            .collect();
        let container = match (container.unwrap_or("-"), app.as_slice()) {
            _ if container.is_none() => String::new(),
            ("", [only]) => only.to_string(),
            ("", _) => {
                return Err(Error::BadRequest(format!(
                    "a container name must be specified for pod {}, choose one of: [{}]",
                    r.name,
                    all.join(" ")
                )))
            }
            (c, _) if all.contains(&c) => c.to_string(),
            (c, _) => {
                return Err(Error::BadRequest(format!(
                    "container {c} is not valid for pod {}, choose one of: [{}]",
                    r.name,
                    all.join(" ")
                )))
            }
        };
        let agent = self.agent(&node).await?;
        Ok(Target {
            pod: agent_pb::PodRef {
                namespace: namespace.to_string(),
                name: r.name.clone(),
                uid: pod.metadata.uid.clone().unwrap_or_default(),
            },
            container,
            agent,
            node,
        })
    }

    /// A client of node `node`'s agent, from what the agent published on the Node.
    async fn agent(&self, node: &str) -> Result<AgentClient<Channel>> {
        let info = kinds::resolve("nodes").expect("nodes are served");
        let obj = self.registry.get(info, "", node, false).await?;
        let node_obj: Node = serde_json::from_value(obj)
            .map_err(|e| Error::Internal(format!("stored node {node}: {e}")))?;
        self.agent_of(&node_obj)
    }

    fn agent_of(&self, node: &Node) -> Result<AgentClient<Channel>> {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let annotations = node.metadata.annotations.clone().unwrap_or_default();
        let (Some(address), Some(sha)) = (
            annotations.get(ADDRESS_ANNOTATION),
            annotations.get(CERT_ANNOTATION),
        ) else {
            return Err(Error::Internal(format!(
                "node {name} publishes no agent endpoint (annotations {ADDRESS_ANNOTATION} and {CERT_ANNOTATION}): is its agent running?"
            )));
        };
        Ok(AgentClient::new(self.dialer.channel(address, sha)?))
    }
}

/// An agent's error as the API's: what the agent refused is the caller's bad request (as the
/// kubelet's answers are in Kubernetes); failing to reach the agent at all is the server's.
fn agent_error(node: &str, status: Status) -> Status {
    use tonic::Code;
    let msg = status.message();
    let e = match status.code() {
        Code::NotFound | Code::InvalidArgument | Code::FailedPrecondition => {
            Error::BadRequest(msg.to_string())
        }
        Code::Unauthenticated | Code::PermissionDenied => Error::Internal(format!(
            "the agent of node {node} refused this API server: {msg}"
        )),
        _ => Error::Internal(format!("cannot reach the agent of node {node}: {msg}")),
    };
    e.into()
}

/// An agent's answer stream, with its errors as the API's.
fn relay<T: Send + 'static>(node: String, stream: Streaming<T>) -> BoxStream<T> {
    Box::pin(stream.map(move |item| item.map_err(|s| agent_error(&node, s))))
}

/// The caller's request stream after its first message, to the agent: ends at the first error.
fn forward<T: Send + 'static>(first: T, rest: Streaming<T>) -> impl Stream<Item = T> + Send {
    futures::stream::once(async move { first }).chain(
        rest.take_while(|m| futures::future::ready(m.is_ok()))
            .filter_map(|m| futures::future::ready(m.ok())),
    )
}

#[tonic::async_trait]
impl Pods for NodeProxy {
    type LogsStream = BoxStream<agent_pb::LogChunk>;
    type ExecStream = BoxStream<agent_pb::ExecOutput>;
    type PortForwardStream = BoxStream<agent_pb::PortForwardFrame>;

    async fn logs(
        &self,
        req: Request<agent_pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        self.auth.authenticate(&req).await?;
        let mut r = req.into_inner();
        let mut t = self
            .target(r.pod.as_ref(), Some(&r.container), "get logs of", true)
            .await?;
        r.pod = Some(t.pod);
        r.container = t.container;
        let stream = t
            .agent
            .logs(r)
            .await
            .map_err(|s| agent_error(&t.node, s))?
            .into_inner();
        Ok(Response::new(relay(t.node, stream)))
    }

    async fn exec(
        &self,
        req: Request<Streaming<agent_pb::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        self.auth.authenticate(&req).await?;
        let mut input = req.into_inner();
        let mut start = match input.next().await {
            Some(Ok(agent_pb::ExecInput {
                input: Some(agent_pb::exec_input::Input::Start(start)),
            })) => start,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(
                    Error::BadRequest("an exec stream must start with ExecStart".into()).into(),
                )
            }
        };
        let mut t = self
            .target(
                start.pod.as_ref(),
                Some(&start.container),
                "exec into",
                false,
            )
            .await?;
        start.pod = Some(t.pod);
        start.container = t.container;
        let first = agent_pb::ExecInput {
            input: Some(agent_pb::exec_input::Input::Start(start)),
        };
        let stream = t
            .agent
            .exec(forward(first, input))
            .await
            .map_err(|s| agent_error(&t.node, s))?
            .into_inner();
        Ok(Response::new(relay(t.node, stream)))
    }

    async fn port_forward(
        &self,
        req: Request<Streaming<agent_pb::PortForwardFrame>>,
    ) -> Result<Response<Self::PortForwardStream>, Status> {
        self.auth.authenticate(&req).await?;
        let mut input = req.into_inner();
        let mut first = match input.next().await {
            Some(Ok(f)) if f.start.is_some() => f,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Error::BadRequest(
                    "a port-forward stream must start with PortForwardStart".into(),
                )
                .into())
            }
        };
        let start = first.start.as_mut().expect("checked");
        let mut t = self
            .target(start.pod.as_ref(), None, "forward a port of", false)
            .await?;
        start.pod = Some(t.pod);
        let stream = t
            .agent
            .port_forward(forward(first, input))
            .await
            .map_err(|s| agent_error(&t.node, s))?
            .into_inner();
        Ok(Response::new(relay(t.node, stream)))
    }
}
