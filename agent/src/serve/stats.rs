//! Resource usage read from `/proc`: the node's CPU time (`/proc/stat`) and memory in use
//! (`/proc/meminfo`: MemTotal − MemAvailable), and each process-runtime container's CPU time and
//! resident memory summed over its processes: its process group and every descendant of its
//! main process (a child that left the group is still counted). CPU time of children that
//! already ended counts too (through their parents' `cutime`/`cstime`). Resident memory is
//! summed per process, so pages shared between a container's processes count more than once.
//!
//! Rates need two measurements: [`Sampler`] keeps the last one and answers with the usage over
//! the window since then (at least [`MIN_WINDOW`], waiting for it when asked twice in a row).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

/// The shortest window a CPU rate is computed over.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
/// A previous measurement older than this is not used: a fresh window is measured instead.
const MAX_WINDOW: Duration = Duration::from_secs(60);

/// One process, from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    pub pgrp: u32,
    /// utime + stime + cutime + cstime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set, in pages.
    pub rss_pages: u64,
}

/// Parse `/proc/<pid>/stat` (see proc(5)); the command name may hold spaces and parentheses.
pub fn parse_pid_stat(content: &str) -> Option<ProcStat> {
    let open = content.find('(')?;
    let close = content.rfind(')')?;
    let pid = content[..open].trim().parse().ok()?;
    let f: Vec<&str> = content.get(close + 2..)?.split_whitespace().collect();
    // After the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12) cutime(13) cstime(14)
    // ... rss(21).
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
    let cpu = (11..=14).map(num).sum::<Option<i64>>()?;
    Some(ProcStat {
        pid,
        ppid: num(1)? as u32,
        pgrp: num(2)? as u32,
        cpu_ticks: cpu.max(0) as u64,
        rss_pages: num(21)?.max(0) as u64,
    })
}

/// The node's busy CPU time in clock ticks from `/proc/stat`'s `cpu` line: user, nice, system,
/// irq, softirq and steal (idle and iowait are not busy).
pub fn parse_node_cpu(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// MemTotal − MemAvailable from `/proc/meminfo`, in bytes.
pub fn parse_node_memory(meminfo: &str) -> Option<u64> {
    let kib = |key: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(kib("MemTotal:")?.saturating_sub(kib("MemAvailable:")?) * 1024)
}

/// The processes of a container whose main process is `main`: its process group and every
/// descendant of `main`.
pub fn container_processes(procs: &[ProcStat], main: u32) -> Vec<ProcStat> {
    let parent: HashMap<u32, u32> = procs.iter().map(|p| (p.pid, p.ppid)).collect();
    let descends = |mut pid: u32| {
        // Bounded: a parent chain cannot be longer than the process table.
        for _ in 0..procs.len() + 1 {
            if pid == main {
                return true;
            }
            match parent.get(&pid) {
                Some(&pp) if pp != 0 && pp != pid => pid = pp,
                _ => return false,
            }
        }
        false
    };
    procs
        .iter()
        .filter(|p| p.pgrp == main || descends(p.pid))
        .copied()
        .collect()
}

/// Every process under `proc_root` (normally `/proc`); processes that end while being read are
/// skipped.
pub fn read_processes(proc_root: &Path) -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| parse_pid_stat(&s))
        .collect()
}

/// A container to measure: an opaque key and its main process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target<K> {
    pub key: K,
    pub pid: u32,
}

/// Cumulative usage at one instant.
#[derive(Debug, Clone)]
struct Sample<K> {
    at: Instant,
    node_cpu_ns: u64,
    node_memory: u64,
    /// Per container: cumulative CPU ns and resident bytes.
    containers: HashMap<K, (u64, u64)>,
}

/// Usage over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub cpu_ns: u64,
    pub nano_cores: u64,
    pub memory_bytes: u64,
}

/// A measurement: the node's usage and each measured container's.
#[derive(Debug, Clone)]
pub struct Measurement<K> {
    pub timestamp: jiff::Timestamp,
    pub window: Duration,
    pub node: Usage,
    pub containers: Vec<(K, Usage)>,
}

/// Measures usage over windows, keeping the last measurement.
pub struct Sampler<K> {
    proc_root: PathBuf,
    last: tokio::sync::Mutex<Option<Sample<K>>>,
}

impl<K: Clone + Eq + std::hash::Hash + Send + 'static> Sampler<K> {
    pub fn new(proc_root: impl Into<PathBuf>) -> Sampler<K> {
        Sampler {
            proc_root: proc_root.into(),
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Usage of the node and of `targets` over the window since the previous measurement (or a
    /// fresh one of [`MIN_WINDOW`]). A container that started within the window has rate 0.
    pub async fn measure(&self, targets: Vec<Target<K>>) -> std::io::Result<Measurement<K>> {
        let mut last = self.last.lock().await;
        let previous = match last.take() {
            Some(p) if p.at.elapsed() <= MAX_WINDOW => p,
            _ => self.sample(targets.clone()).await?,
        };
        let elapsed = previous.at.elapsed();
        if elapsed < MIN_WINDOW {
            tokio::time::sleep(MIN_WINDOW - elapsed).await;
        }
        let current = self.sample(targets.clone()).await?;
        let window = current.at - previous.at;
        let rate = |now: u64, before: u64| {
            let ns = now.saturating_sub(before) as u128 * 1_000_000_000;
            (ns / window.as_nanos().max(1)) as u64
        };
        let node = Usage {
            cpu_ns: current.node_cpu_ns,
            nano_cores: rate(current.node_cpu_ns, previous.node_cpu_ns),
            memory_bytes: current.node_memory,
        };
        let containers = targets
            .into_iter()
            .filter_map(|t| {
                let &(cpu, mem) = current.containers.get(&t.key)?;
                let before = previous.containers.get(&t.key).map_or(cpu, |p| p.0);
                Some((
                    t.key,
                    Usage {
                        cpu_ns: cpu,
                        nano_cores: rate(cpu, before),
                        memory_bytes: mem,
                    },
                ))
            })
            .collect();
        *last = Some(current);
        Ok(Measurement {
            timestamp: jiff::Timestamp::now(),
            window,
            node,
            containers,
        })
    }

    async fn sample(&self, targets: Vec<Target<K>>) -> std::io::Result<Sample<K>> {
        let root = self.proc_root.clone();
        tokio::task::spawn_blocking(move || {
            let tick_ns = 1_000_000_000 / rustix::param::clock_ticks_per_second().max(1);
            let page = rustix::param::page_size() as u64;
            let node_cpu = std::fs::read_to_string(root.join("stat"))?;
            let meminfo = std::fs::read_to_string(root.join("meminfo"))?;
            let bad = |what: &str| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("cannot parse {}", root.join(what).display()),
                )
            };
            let node_cpu_ns = parse_node_cpu(&node_cpu).ok_or_else(|| bad("stat"))? * tick_ns;
            let node_memory = parse_node_memory(&meminfo).ok_or_else(|| bad("meminfo"))?;
            let procs = if targets.is_empty() {
                Vec::new()
            } else {
                read_processes(&root)
            };
            let containers = targets
                .into_iter()
                .map(|t| {
                    let ps = container_processes(&procs, t.pid);
                    let cpu: u64 = ps.iter().map(|p| p.cpu_ticks).sum();
                    let rss: u64 = ps.iter().map(|p| p.rss_pages).sum();
                    (t.key, (cpu * tick_ns, rss * page))
                })
                .collect();
            Ok(Sample {
                at: Instant::now(),
                node_cpu_ns,
                node_memory,
                containers,
            })
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, name: &str, ppid: u32, pgrp: u32, cpu: [u64; 4], rss: u64) -> String {
        format!(
            "{pid} ({name}) S {ppid} {pgrp} {pgrp} 0 -1 4194560 100 0 0 0 {} {} {} {} 20 0 1 0 100 1000000 {rss} 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0",
            cpu[0], cpu[1], cpu[2], cpu[3]
        )
    }

    #[test]
    fn pid_stat_parses_names_with_spaces_and_parens() {
        let s = stat(42, "my (odd) name", 1, 42, [10, 5, 3, 2], 250);
        assert_eq!(
            parse_pid_stat(&s),
            Some(ProcStat {
                pid: 42,
                ppid: 1,
                pgrp: 42,
                cpu_ticks: 20,
                rss_pages: 250
            })
        );
        assert_eq!(parse_pid_stat("garbage"), None);
        assert_eq!(parse_pid_stat("1 (x) S 0"), None);
    }

    #[test]
    fn node_cpu_and_memory() {
        let proc_stat = "cpu  100 20 30 1000 50 5 6 7 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 1\n";
        assert_eq!(parse_node_cpu(proc_stat), Some(100 + 20 + 30 + 5 + 6 + 7));
        assert_eq!(parse_node_cpu("intr 1\n"), None);
        let meminfo =
            "MemTotal:       16000 kB\nMemFree:         1000 kB\nMemAvailable:    6000 kB\n";
        assert_eq!(parse_node_memory(meminfo), Some(10000 * 1024));
        assert_eq!(parse_node_memory("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn a_container_is_its_group_and_the_descendants_of_its_main_process() {
        let p = |pid, ppid, pgrp| ProcStat {
            pid,
            ppid,
            pgrp,
            cpu_ticks: 1,
            rss_pages: 1,
        };
        let procs = [
            p(1, 0, 1),
            p(100, 1, 100),   // the main process
            p(101, 100, 100), // a child in its group
            p(102, 100, 102), // a child in a group of its own
            p(103, 102, 102), // its grandchild
            p(104, 1, 100),   // re-parented to init but still in the group
            p(200, 1, 200),   // someone else
        ];
        let mut pids: Vec<u32> = container_processes(&procs, 100)
            .iter()
            .map(|p| p.pid)
            .collect();
        pids.sort();
        assert_eq!(pids, [100, 101, 102, 103, 104]);
    }

    #[tokio::test]
    async fn sampler_measures_rates_from_a_synthetic_proc() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let ticks = rustix::param::clock_ticks_per_second();
        let write = |node_ticks: u64, container_ticks: u64| {
            std::fs::write(
                root.join("stat"),
                format!("cpu  {node_ticks} 0 0 100 0 0 0 0 0 0\n"),
            )
            .unwrap();
            std::fs::write(
                root.join("meminfo"),
                "MemTotal: 2048 kB\nMemAvailable: 1024 kB\n",
            )
            .unwrap();
            std::fs::create_dir_all(root.join("7")).unwrap();
            std::fs::write(
                root.join("7/stat"),
                stat(7, "busy", 1, 7, [container_ticks, 0, 0, 0], 10),
            )
            .unwrap();
        };
        write(0, 0);
        let sampler = Sampler::new(root);
        let target = || vec![Target { key: "c", pid: 7 }];
        // The first measurement waits for a window of its own.
        let m = sampler.measure(target()).await.unwrap();
        assert!(m.window >= MIN_WINDOW, "{:?}", m.window);
        assert_eq!(m.containers[0].1.nano_cores, 0);
        // Half a core for the container, two cores for the node, over the next window.
        write(2 * ticks, ticks / 2);
        let m = sampler.measure(target()).await.unwrap();
        let secs = m.window.as_secs_f64();
        let c = &m.containers[0].1;
        assert_eq!(c.cpu_ns, (ticks / 2) * (1_000_000_000 / ticks));
        let expect = |cores: f64| (cores * 1e9 / secs) as i64;
        assert!(
            (c.nano_cores as i64 - expect(0.5)).abs() < 10_000_000,
            "{c:?}"
        );
        assert!(
            (m.node.nano_cores as i64 - expect(2.0)).abs() < 20_000_000,
            "{m:?}"
        );
        assert_eq!(m.node.memory_bytes, 1024 * 1024);
        assert_eq!(c.memory_bytes, 10 * rustix::param::page_size() as u64);
    }
}
