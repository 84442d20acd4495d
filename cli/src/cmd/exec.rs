//! `rkube exec`: run a command in a container through the API server (which proxies to the
//! pod's node agent); the command's exit code becomes rkube's ([`RemoteExit`]).

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use futures::StreamExt;
use rkube_client::ExecEvent;
use tokio::io::AsyncReadExt;

use crate::Ctx;

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The pod: `NAME` or `pod/NAME`.
    pub pod: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    /// The container (default: the pod's only container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Allocate a terminal: not supported (commands run without one).
    #[arg(short = 't', long)]
    pub tty: bool,
}

/// The remote command ended with a non-zero exit code: the caller exits with it (kubectl does
/// the same), printing nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteExit(pub i32);

impl std::fmt::Display for RemoteExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "command terminated with exit code {}", self.0)
    }
}

impl std::error::Error for RemoteExit {}

pub async fn run(ctx: &Ctx, a: ExecArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    if a.tty {
        bail!("error: --tty is not supported: rkube exec runs commands without a terminal");
    }
    let name = super::logs::pod_name(&a.pod)?;
    let stdin = a.stdin.then(|| {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            let mut input = tokio::io::stdin();
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = input.read(&mut buf).await {
                if n == 0 || tx.send(buf[..n].to_vec()).await.is_err() {
                    return;
                }
            }
        });
        rx
    });
    let mut events = ctx
        .client
        .pod_exec(
            &ctx.namespace,
            name,
            a.container.as_deref().unwrap_or_default(),
            a.command,
            stdin,
        )
        .await
        .map_err(|e| anyhow!("{e}"))?;
    while let Some(event) = events.next().await {
        match event.map_err(|e| anyhow!("{e}"))? {
            ExecEvent::Stdout(d) => {
                out.write_all(&d)?;
                out.flush()?;
            }
            ExecEvent::Stderr(d) => {
                let mut err = std::io::stderr();
                err.write_all(&d)?;
                err.flush()?;
            }
            ExecEvent::Exit(0) => return Ok(()),
            ExecEvent::Exit(code) => return Err(RemoteExit(code).into()),
        }
    }
    bail!("error: the exec stream ended without the command's exit code")
}
