//! `rkube cluster-info` and `rkube cluster`: the control plane's servers, their Raft health,
//! membership changes and snapshot backups, through the Cluster service.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use rkube_proto::api::{ClusterMember, MembersResponse};

use crate::cmd::api_resources::table_writer;
use crate::Ctx;

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// List the servers of the control plane.
    Members,
    /// Ask every server for its health, Raft state and applied revision (exit 1 if any is
    /// unhealthy).
    Health,
    /// Back up the store.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Add a server (by its peer address) to the Raft cluster.
    AddMember {
        /// The new member's node id.
        #[arg(long)]
        id: u64,
        /// The new member's peer (store) address, host:port.
        #[arg(long)]
        peer_addr: String,
        /// Add it as a non-voting learner only.
        #[arg(long)]
        learner: bool,
    },
    /// Make a learner (a server started with --learner) a voting member.
    Promote {
        /// The member's node id.
        id: u64,
    },
    /// Remove a server from the Raft cluster.
    RemoveMember {
        /// The member's node id.
        id: u64,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Write a consistent backup of the whole store to FILE.
    Save {
        /// Where to write the snapshot (replaced atomically).
        file: PathBuf,
    },
}

pub async fn run(ctx: &Ctx, a: ClusterCommand, out: &mut (dyn Write + Send)) -> Result<()> {
    match a {
        ClusterCommand::Members => {
            let m = ctx.client.members().await.map_err(|e| anyhow!("{e}"))?;
            print_members(&m, out)
        }
        ClusterCommand::Health => {
            let h = ctx.client.health().await.map_err(|e| anyhow!("{e}"))?;
            print_health(&h.members, out)?;
            let unhealthy: Vec<String> = h
                .members
                .iter()
                .filter(|m| !m.healthy)
                .map(|m| m.id.to_string())
                .collect();
            if !unhealthy.is_empty() {
                bail!("unhealthy cluster members: {}", unhealthy.join(", "));
            }
            Ok(())
        }
        ClusterCommand::Snapshot(SnapshotCommand::Save { file }) => {
            let data = ctx.client.snapshot().await.map_err(|e| anyhow!("{e}"))?;
            write_atomically(&file, &data)?;
            writeln!(
                out,
                "Snapshot saved at {} ({} bytes)",
                file.display(),
                data.len()
            )?;
            Ok(())
        }
        ClusterCommand::AddMember {
            id,
            peer_addr,
            learner,
        } => {
            let m = ctx
                .client
                .add_member(id, &peer_addr, learner)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            writeln!(out, "Member {id} added to the cluster")?;
            print_members(&m, out)
        }
        ClusterCommand::Promote { id } => {
            let m = ctx
                .client
                .promote_member(id)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            writeln!(out, "Member {id} promoted to voter")?;
            print_members(&m, out)
        }
        ClusterCommand::RemoveMember { id } => {
            let m = ctx
                .client
                .remove_member(id)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            writeln!(out, "Member {id} removed from the cluster")?;
            print_members(&m, out)
        }
    }
}

/// `rkube cluster-info`: kubectl's "control plane is running at" line for every server.
pub async fn cluster_info(ctx: &Ctx, out: &mut (dyn Write + Send)) -> Result<()> {
    let m = ctx.client.members().await.map_err(|e| anyhow!("{e}"))?;
    write!(out, "{}", cluster_info_text(&m))?;
    Ok(())
}

pub fn cluster_info_text(m: &MembersResponse) -> String {
    let mut text = String::new();
    for member in &m.members {
        text.push_str(&format!(
            "rkube control plane is running at https://{}\n",
            member.api_addr
        ));
    }
    match m.members.iter().find(|x| x.id == m.leader_id || x.leader) {
        Some(leader) => text.push_str(&format!(
            "Raft leader is member {} at https://{}\n",
            leader.id, leader.api_addr
        )),
        None => text.push_str("Raft leader is unknown (an election may be under way)\n"),
    }
    text.push_str(
        "\nTo further debug and diagnose cluster problems, use 'rkube cluster health'.\n",
    );
    text
}

pub fn print_members(m: &MembersResponse, out: &mut (dyn Write + Send)) -> Result<()> {
    let mut tw = table_writer(Vec::new());
    writeln!(tw, "ID\tPEER ADDRESS\tAPI ADDRESS\tVOTER\tLEADER")?;
    for x in &m.members {
        writeln!(
            tw,
            "{}\t{}\t{}\t{}\t{}",
            x.id,
            x.peer_addr,
            or_none(&x.api_addr),
            x.voter,
            x.leader || x.id == m.leader_id
        )?;
    }
    out.write_all(&tw.into_inner()?)?;
    Ok(())
}

pub fn print_health(members: &[ClusterMember], out: &mut (dyn Write + Send)) -> Result<()> {
    let mut tw = table_writer(Vec::new());
    writeln!(
        tw,
        "ID\tAPI ADDRESS\tHEALTHY\tRAFT STATE\tAPPLIED REVISION\tERROR"
    )?;
    for x in members {
        writeln!(
            tw,
            "{}\t{}\t{}\t{}\t{}\t{}",
            x.id,
            or_none(&x.api_addr),
            x.healthy,
            or_none(&x.raft_state),
            x.applied_revision,
            or_none(&x.error)
        )?;
    }
    out.write_all(&tw.into_inner()?)?;
    Ok(())
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "<none>"
    } else {
        s
    }
}

/// Write `data` to a temporary file beside `path`, sync it, and rename it into place, so a
/// crash never leaves a truncated snapshot under the final name.
fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        bail!("cannot write snapshot {}: {e}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, leader: bool, healthy: bool) -> ClusterMember {
        ClusterMember {
            id,
            peer_addr: format!("10.0.0.{id}:2380"),
            api_addr: format!("10.0.0.{id}:6443"),
            voter: true,
            leader,
            healthy,
            applied_revision: 41 + id as i64,
            raft_state: if leader { "Leader" } else { "Follower" }.into(),
            error: if healthy {
                String::new()
            } else {
                "connection refused".into()
            },
        }
    }

    fn members() -> MembersResponse {
        MembersResponse {
            cluster_id: 7,
            leader_id: 2,
            members: vec![
                member(1, false, true),
                member(2, true, true),
                member(3, false, false),
            ],
            member_id: 1,
            raft_term: 3,
        }
    }

    #[test]
    fn cluster_info_names_every_server_and_the_leader() {
        assert_eq!(
            cluster_info_text(&members()),
            "rkube control plane is running at https://10.0.0.1:6443
rkube control plane is running at https://10.0.0.2:6443
rkube control plane is running at https://10.0.0.3:6443
Raft leader is member 2 at https://10.0.0.2:6443

To further debug and diagnose cluster problems, use 'rkube cluster health'.
"
        );
    }

    #[test]
    fn member_and_health_tables() {
        let mut out = Vec::new();
        print_members(&members(), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID    PEER ADDRESS    API ADDRESS     VOTER   LEADER
1     10.0.0.1:2380   10.0.0.1:6443   true    false
2     10.0.0.2:2380   10.0.0.2:6443   true    true
3     10.0.0.3:2380   10.0.0.3:6443   true    false
"
        );
        let mut out = Vec::new();
        print_health(&members().members, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID    API ADDRESS     HEALTHY   RAFT STATE   APPLIED REVISION   ERROR
1     10.0.0.1:6443   true      Follower     42                 <none>
2     10.0.0.2:6443   true      Leader       43                 <none>
3     10.0.0.3:6443   false     Follower     44                 connection refused
"
        );
    }

    #[test]
    fn snapshots_replace_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.snap");
        std::fs::write(&path, b"old contents that are longer").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        assert!(write_atomically(&dir.path().join("missing-dir/x"), b"x").is_err());
    }
}
