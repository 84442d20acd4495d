//! Cluster IP and node port allocation for Services. Allocations are keys in the store, claimed
//! in the same transaction that writes the Service (a compare on their absence), so two Services
//! can never get the same IP or port, on any replica.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use rkube_proto::store as pb;
use rkube_store::encoding::prefix_end;
use rkube_store::Store;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::validation::{FieldError, Path};

const IP_PREFIX: &str = "/registry/core/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/core/ranges/servicenodeports/";

/// The service IP range and node port range of the cluster.
#[derive(Debug, Clone)]
pub struct ServiceAllocator {
    network: u32,
    prefix_len: u8,
    node_ports: RangeInclusive<u16>,
}

impl Default for ServiceAllocator {
    fn default() -> Self {
        ServiceAllocator::new("10.96.0.0/16", 30000..=32767).expect("the default range is valid")
    }
}

fn ip_type(svc: &Value) -> &str {
    svc["spec"]["type"].as_str().unwrap_or("ClusterIP")
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(ip_type(svc), "NodePort" | "LoadBalancer")
}

fn wants_ip(svc: &Value) -> bool {
    ip_type(svc) != "ExternalName" && svc["spec"]["clusterIP"].as_str() != Some("None")
}

impl ServiceAllocator {
    /// `cidr` like `10.96.0.0/16`; `node_ports` like 30000..=32767.
    pub fn new(cidr: &str, node_ports: RangeInclusive<u16>) -> Result<ServiceAllocator> {
        let bad = || {
            Error::BadRequest(format!(
                "invalid service CIDR {cidr:?}: expected an IPv4 network like 10.96.0.0/16"
            ))
        };
        let (ip, len) = cidr.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix_len: u8 = len.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix_len) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix_len);
        Ok(ServiceAllocator {
            network: u32::from(ip) & mask,
            prefix_len,
            node_ports,
        })
    }

    fn size(&self) -> u32 {
        1 << (32 - self.prefix_len)
    }

    fn in_range(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        let mask = u32::MAX << (32 - self.prefix_len);
        v & mask == self.network && v != self.network && v != self.network + self.size() - 1
    }

    /// The allocation keys a Service holds.
    pub fn claims_of(&self, svc: &Value) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(ip) = svc["spec"]["clusterIP"]
            .as_str()
            .filter(|ip| *ip != "None" && !ip.is_empty())
        {
            out.push(format!("{IP_PREFIX}{ip}"));
        }
        for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(n) = p["nodePort"].as_i64().filter(|n| *n > 0) {
                out.push(format!("{PORT_PREFIX}{n}"));
            }
        }
        out
    }

    async fn taken(&self, store: &Store, prefix: &str) -> Result<HashSet<String>> {
        let resp = store
            .range(pb::RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                keys_only: true,
                ..Default::default()
            })
            .await?;
        Ok(resp
            .kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key[prefix.len()..]).into_owned())
            .collect())
    }

    fn invalid(svc: &Value, path: Path, value: impl std::fmt::Debug, detail: &str) -> Error {
        Error::Invalid {
            kind: "Service".into(),
            name: svc["metadata"]["name"].as_str().unwrap_or("").into(),
            errors: vec![FieldError::invalid(&path, value, detail)],
        }
    }

    /// Fill in the cluster IP and node ports a new Service (or, with `old`, an updated one)
    /// needs, and return the allocation keys it newly claims. Values the user chose are checked.
    pub async fn allocate(
        &self,
        store: &Store,
        svc: &mut Value,
        old: Option<&Value>,
    ) -> Result<Vec<String>> {
        let held: HashSet<String> = old
            .map(|o| self.claims_of(o))
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut claims = Vec::new();
        if wants_ip(svc) {
            match svc["spec"]["clusterIP"].as_str().filter(|s| !s.is_empty()) {
                Some(ip) => {
                    let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                        Self::invalid(
                            svc,
                            Path::root("spec").child("clusterIP"),
                            ip,
                            "must be a valid IP address",
                        )
                    })?;
                    let key = format!("{IP_PREFIX}{ip}");
                    if !held.contains(&key) {
                        if !self.in_range(parsed) {
                            return Err(Self::invalid(svc, Path::root("spec").child("clusterIP"), ip, &format!(
                                "provided IP is not in the valid range. The range of valid IPs is {}/{}",
                                Ipv4Addr::from(self.network),
                                self.prefix_len
                            )));
                        }
                        if self.taken(store, IP_PREFIX).await?.contains(ip) {
                            return Err(Self::invalid(
                                svc,
                                Path::root("spec").child("clusterIP"),
                                ip,
                                "provided IP is already allocated",
                            ));
                        }
                        claims.push(key);
                    }
                }
                None => {
                    let taken = self.taken(store, IP_PREFIX).await?;
                    let free = (1..self.size() - 1)
                        .map(|off| Ipv4Addr::from(self.network + off))
                        .filter(|ip| !taken.contains(&ip.to_string()));
                    let candidates: Vec<Ipv4Addr> = free.take(64).collect();
                    let ip = candidates
                        .get(rand::random_range(0..candidates.len().max(1)))
                        .copied()
                        .ok_or_else(|| {
                            Error::Unavailable("no cluster IPs left in the service range".into())
                        })?;
                    svc["spec"]["clusterIP"] = json!(ip.to_string());
                    svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
                    claims.push(format!("{IP_PREFIX}{ip}"));
                }
            }
        }
        let node_ports = wants_node_ports(svc);
        let mut taken_ports: Option<HashSet<String>> = None;
        let ports_len = svc["spec"]["ports"].as_array().map_or(0, Vec::len);
        for i in 0..ports_len {
            let path = Path::root("spec").child("ports").index(i).child("nodePort");
            let port = &mut svc["spec"]["ports"][i];
            if !node_ports {
                if let Some(m) = port.as_object_mut() {
                    m.remove("nodePort");
                }
                continue;
            }
            if taken_ports.is_none() {
                taken_ports = Some(self.taken(store, PORT_PREFIX).await?);
            }
            let taken = taken_ports.as_mut().expect("loaded");
            match port["nodePort"].as_i64().filter(|n| *n > 0) {
                Some(n) => {
                    let key = format!("{PORT_PREFIX}{n}");
                    if held.contains(&key) {
                        continue;
                    }
                    if !(i64::from(*self.node_ports.start())..=i64::from(*self.node_ports.end()))
                        .contains(&n)
                    {
                        return Err(Self::invalid(svc, path, n, &format!(
                            "provided port is not in the valid range. The range of valid ports is {}-{}",
                            self.node_ports.start(),
                            self.node_ports.end()
                        )));
                    }
                    if taken.contains(&n.to_string()) {
                        return Err(Self::invalid(
                            svc,
                            path,
                            n,
                            "provided port is already allocated",
                        ));
                    }
                    taken.insert(n.to_string());
                    claims.push(key);
                }
                None => {
                    let free: Vec<u16> = self
                        .node_ports
                        .clone()
                        .filter(|p| !taken.contains(&p.to_string()))
                        .take(64)
                        .collect();
                    let p = free
                        .get(rand::random_range(0..free.len().max(1)))
                        .copied()
                        .ok_or_else(|| {
                            Error::Unavailable("no node ports left in the node port range".into())
                        })?;
                    taken.insert(p.to_string());
                    svc["spec"]["ports"][i]["nodePort"] = json!(p);
                    claims.push(format!("{PORT_PREFIX}{p}"));
                }
            }
        }
        Ok(claims)
    }

    /// For an update: what the new Service claims beyond the old, and what the old held that the
    /// new no longer does.
    pub async fn reallocate(
        &self,
        store: &Store,
        new: &mut Value,
        old: &Value,
    ) -> Result<(Vec<String>, Vec<String>)> {
        if wants_ip(new) && new["spec"]["clusterIP"].as_str().is_none_or(str::is_empty) {
            // An update that omits the cluster IP keeps the allocated one (as kubectl apply expects).
            if let Some(ip) = old["spec"]["clusterIP"].as_str().filter(|ip| *ip != "None") {
                new["spec"]["clusterIP"] = json!(ip);
                new["spec"]["clusterIPs"] = json!([ip]);
            }
        }
        if wants_node_ports(new) {
            // Ports the update leaves unassigned keep the node port they had (matched by port).
            let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
            for p in new["spec"]["ports"].as_array_mut().into_iter().flatten() {
                if p["nodePort"].as_i64().is_none_or(|n| n == 0) {
                    if let Some(prev) = old_ports
                        .iter()
                        .find(|o| o["port"] == p["port"])
                        .and_then(|o| o["nodePort"].as_i64())
                    {
                        p["nodePort"] = json!(prev);
                    }
                }
            }
        }
        let claims = self.allocate(store, new, Some(old)).await?;
        let keep: HashSet<String> = self.claims_of(new).into_iter().collect();
        let releases = self
            .claims_of(old)
            .into_iter()
            .filter(|k| !keep.contains(k))
            .collect();
        Ok((claims, releases))
    }
}
