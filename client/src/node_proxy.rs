//! Pod logs, exec and port forwarding through the API servers (service `Pods` of
//! `rkube/api/v1/node_proxy.proto`), which proxy to the pod's node agent.
//!
//! Streams that carry the caller's input (exec's stdin, a forwarded connection's bytes) read it
//! from a shared receiver, so a call that fails over to another server before anything was
//! sent loses nothing.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use rkube_proto::agent as pb;
use rkube_proto::api::pods_client::PodsClient;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};

use crate::client::Client;
use crate::error::{Error, Result};

/// What `rkube logs` asks for.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Empty: the pod's only container.
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    /// Only the last N lines.
    pub tail_lines: Option<i64>,
    /// Only the lines of the last N seconds.
    pub since_seconds: Option<i64>,
    /// Only the lines written at or after this time (RFC 3339).
    pub since_time: Option<String>,
    /// Prefix each line with the time it was logged.
    pub timestamps: bool,
}

/// What an exec'd command does, in order; `Exit` comes last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i32),
}

pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send>>;

/// A stream over a receiver shared between attempts.
fn shared_stream<T: Send + 'static>(
    rx: Arc<Mutex<mpsc::Receiver<T>>>,
) -> impl Stream<Item = T> + Send {
    futures::stream::unfold(rx, |rx| async move {
        let item = rx.lock().await.recv().await;
        item.map(|i| (i, rx))
    })
}

impl Client {
    /// The log of a container of pod `namespace/name`, as a stream of chunks (which end with
    /// the log, or with the container's instance when following).
    pub async fn pod_logs(
        &self,
        namespace: &str,
        name: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<Vec<u8>>> {
        let me = self.clone();
        let request = pb::LogsRequest {
            pod: Some(pb::PodRef {
                namespace: namespace.to_string(),
                name: name.to_string(),
                uid: String::new(),
            }),
            container: options.container.clone(),
            follow: options.follow,
            previous: options.previous,
            tail_lines: options.tail_lines,
            since_seconds: options.since_seconds,
            since_time: options.since_time.clone().unwrap_or_default(),
            timestamps: options.timestamps,
        };
        let stream = self
            .call(|ch| {
                let req = me.request(request.clone());
                async move { PodsClient::new(ch).logs(req).await }
            })
            .await?
            .into_inner();
        Ok(Box::pin(
            stream.map(|chunk| chunk.map(|c| c.data).map_err(Error::from)),
        ))
    }

    /// Run `command` in a container of pod `namespace/name`. With `stdin`, what it yields is
    /// the command's stdin, closed when it ends; without, the command's stdin is empty. The
    /// answer streams the command's output and ends with [`ExecEvent::Exit`].
    pub async fn pod_exec(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        command: Vec<String>,
        stdin: Option<mpsc::Receiver<Vec<u8>>>,
    ) -> Result<BoxStream<ExecEvent>> {
        let start = pb::ExecInput {
            input: Some(pb::exec_input::Input::Start(pb::ExecStart {
                pod: Some(pb::PodRef {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    uid: String::new(),
                }),
                container: container.to_string(),
                command,
                stdin: stdin.is_some(),
            })),
        };
        let input = Arc::new(Mutex::new(stdin.unwrap_or_else(|| mpsc::channel(1).1)));
        let me = self.clone();
        let stream = self
            .call(|ch| {
                let data = shared_stream(input.clone()).map(|d| pb::ExecInput {
                    input: Some(pb::exec_input::Input::Stdin(d)),
                });
                let close = pb::ExecInput {
                    input: Some(pb::exec_input::Input::CloseStdin(true)),
                };
                let messages = futures::stream::iter([start.clone()])
                    .chain(data)
                    .chain(futures::stream::iter([close]));
                let req = me.request(messages);
                async move { PodsClient::new(ch).exec(req).await }
            })
            .await?
            .into_inner();
        Ok(Box::pin(stream.filter_map(|m| async move {
            match m {
                Err(s) => Some(Err(Error::from(s))),
                Ok(pb::ExecOutput { output: Some(o) }) => Some(Ok(match o {
                    pb::exec_output::Output::Stdout(d) => ExecEvent::Stdout(d),
                    pb::exec_output::Output::Stderr(d) => ExecEvent::Stderr(d),
                    pb::exec_output::Output::ExitCode(c) => ExecEvent::Exit(c),
                })),
                Ok(_) => None,
            }
        })))
    }

    /// Forward one connection, `io`, to `port` of pod `namespace/name` until both sides are
    /// done: what `io` reads goes to the pod, what the pod sends is written to `io`.
    pub async fn pod_port_forward<S>(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
        io: S,
    ) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut read, mut write) = tokio::io::split(io);
        let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = read.read(&mut buf).await {
                if n == 0 || tx.send(buf[..n].to_vec()).await.is_err() {
                    return;
                }
            }
        });
        let start = pb::PortForwardFrame {
            start: Some(pb::PortForwardStart {
                pod: Some(pb::PodRef {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    uid: String::new(),
                }),
                port: u32::from(port),
            }),
            data: Vec::new(),
        };
        let input = Arc::new(Mutex::new(rx));
        let me = self.clone();
        let result = self
            .call(|ch| {
                let data = shared_stream(input.clone())
                    .map(|data| pb::PortForwardFrame { start: None, data });
                let req = me.request(futures::stream::iter([start.clone()]).chain(data));
                async move { PodsClient::new(ch).port_forward(req).await }
            })
            .await;
        let mut stream = match result {
            Ok(r) => r.into_inner(),
            Err(e) => {
                reader.abort();
                return Err(e);
            }
        };
        let outcome = async {
            while let Some(frame) = stream.next().await {
                let frame = frame.map_err(Error::from)?;
                if write.write_all(&frame.data).await.is_err() {
                    break;
                }
            }
            let _ = write.shutdown().await;
            Ok(())
        }
        .await;
        reader.abort();
        outcome
    }
}
