//! `rkube port-forward`: listen on local ports and forward each connection, over a stream of
//! its own through the API server and the pod's node agent, to a port of the pod.

use std::io::Write;

use anyhow::{anyhow, bail, Result};

use crate::Ctx;

#[derive(Debug, clap::Args)]
pub struct PortForwardArgs {
    /// The pod: `NAME` or `pod/NAME`.
    pub pod: String,
    /// `LOCAL:REMOTE`, `PORT` (the same port on both sides) or `:REMOTE` (any free local port).
    #[arg(required = true)]
    pub ports: Vec<String>,
    /// The local address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
}

/// `LOCAL:REMOTE`, `PORT` or `:REMOTE` as (local, remote); local 0 is any free port.
fn parse_ports(s: &str) -> Result<(u16, u16)> {
    let port = |p: &str| -> Result<u16> {
        p.parse()
            .map_err(|_| anyhow!("error: invalid port {p:?} in {s:?}: expected 1-65535"))
    };
    let (local, remote) = match s.split_once(':') {
        Some(("", remote)) => (0, port(remote)?),
        Some((local, remote)) => (port(local)?, port(remote)?),
        None => (port(s)?, port(s)?),
    };
    if remote == 0 {
        bail!("error: invalid port 0 in {s:?}: expected 1-65535");
    }
    Ok((local, remote))
}

pub async fn run(ctx: &Ctx, a: PortForwardArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let name = super::logs::pod_name(&a.pod)?.to_string();
    let ports = a
        .ports
        .iter()
        .map(|p| parse_ports(p))
        .collect::<Result<Vec<_>>>()?;
    // kubectl refuses pods that do not run before listening.
    let pod: k8s_openapi::api::core::v1::Pod = ctx
        .client
        .get_typed(&ctx.namespace, &name)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
    if phase != "Running" {
        bail!("error: unable to forward port because pod is not running. Current status={phase}");
    }
    let mut tasks = Vec::new();
    for (local, remote) in ports {
        let listener = tokio::net::TcpListener::bind((a.address.as_str(), local))
            .await
            .map_err(|e| anyhow!("error: unable to listen on {}:{local}: {e}", a.address))?;
        let bound = listener.local_addr()?;
        writeln!(out, "Forwarding from {bound} -> {remote}")?;
        out.flush()?;
        let (client, namespace, name) = (ctx.client.clone(), ctx.namespace.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let (conn, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: cannot accept connections on {bound}: {e}");
                        return;
                    }
                };
                let (client, namespace, name) = (client.clone(), namespace.clone(), name.clone());
                tokio::spawn(async move {
                    let _ = conn.set_nodelay(true);
                    if let Err(e) = client
                        .pod_port_forward(&namespace, &name, remote, conn)
                        .await
                    {
                        eprintln!("error forwarding port {remote} for {peer}: {e}");
                    }
                });
            }
        }));
    }
    // Until interrupted.
    futures::future::join_all(tasks).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_pairs() {
        assert_eq!(parse_ports("8080:80").unwrap(), (8080, 80));
        assert_eq!(parse_ports("80").unwrap(), (80, 80));
        assert_eq!(parse_ports(":80").unwrap(), (0, 80));
        assert!(parse_ports("x:80").is_err());
        assert!(parse_ports("80:0").is_err());
        assert!(parse_ports("70000").is_err());
    }
}
