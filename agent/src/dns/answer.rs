//! The cluster DNS zone's answers, a pure function from a query and the agent's view of
//! Services and Endpoints to a response (Kubernetes' DNS specification for Services):
//!
//! - `<svc>.<ns>.svc.<domain>`: A with the cluster IP; for a headless Service one A per ready
//!   endpoint address; for an ExternalName Service a CNAME to `externalName` (whatever the
//!   query type).
//! - `<hostname>.<svc>.<ns>.svc.<domain>`: the ready endpoint of a headless Service whose
//!   `hostname` (a pod's `spec.hostname` under a matching `spec.subdomain`, as StatefulSet pods
//!   have) or dashed address (`127-1-0-5`) matches: stable network identities.
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>`: SRV for the named port: one record pointing
//!   at the Service name (with a cluster IP), or one per ready endpoint, pointing at its
//!   hostname or dashed address (headless); the targets' A records ride along as additionals.
//!
//! Other names in the domain get NXDOMAIN (NOERROR without records when the name exists with
//! another type), with the zone's SOA; names outside it are REFUSED: the responder is
//! authoritative for the cluster domain only and does not forward.

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{EndpointAddress, Service};

use crate::services::ServiceSnapshot;

/// How long resolvers may cache answers (CoreDNS' kubernetes plugin uses 5 s too).
pub const TTL: u32 = 5;

/// The response to `request` for cluster domain `domain` (like `cluster.local.`).
pub fn respond(request: &Message, snapshot: &ServiceSnapshot, domain: &Name) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.add_queries(request.queries.iter().cloned());
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return response;
    }
    let [query] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    let name = query.name.to_lowercase();
    if !domain.zone_of(&name) || !matches!(query.query_class, DNSClass::IN | DNSClass::ANY) {
        response.metadata.response_code = ResponseCode::Refused;
        return response;
    }
    if !snapshot.synced {
        // Not listed yet: say nothing rather than deny names that may exist.
        response.metadata.response_code = ResponseCode::ServFail;
        return response;
    }
    response.metadata.authoritative = true;
    let relative: Vec<String> = name
        .iter()
        .take(usize::from(name.num_labels() - domain.num_labels()))
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let labels: Vec<&str> = relative.iter().map(String::as_str).collect();
    match lookup(&labels, query.query_type, &query.name, snapshot, domain) {
        Lookup::Found {
            answers,
            additionals,
        } => {
            if answers.is_empty() {
                response.add_authority(soa(domain));
            }
            response.add_answers(answers);
            response.add_additionals(additionals);
        }
        Lookup::NxDomain => {
            response.metadata.response_code = ResponseCode::NXDomain;
            response.add_authority(soa(domain));
        }
        Lookup::Failed => response.metadata.response_code = ResponseCode::ServFail,
    }
    response
}

enum Lookup {
    /// The name exists; no answers means none of the asked type.
    Found {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    NxDomain,
    /// The data cannot be expressed (an ExternalName that is not a domain name).
    Failed,
}

impl Lookup {
    fn answers(answers: Vec<Record>) -> Lookup {
        Lookup::Found {
            answers,
            additionals: Vec::new(),
        }
    }
}

/// Answer `labels` (the query name without the domain, leftmost first).
fn lookup(
    labels: &[&str],
    qtype: RecordType,
    qname: &Name,
    snapshot: &ServiceSnapshot,
    domain: &Name,
) -> Lookup {
    let wants = |t: RecordType| qtype == t || qtype == RecordType::ANY;
    match labels {
        // The apex, `svc` and `<ns>.svc` exist as parents of service names.
        [] | ["svc"] => Lookup::answers(Vec::new()),
        [ns, "svc"] => {
            let prefix = format!("{ns}/");
            if snapshot.services.keys().any(|k| k.starts_with(&prefix)) {
                Lookup::answers(Vec::new())
            } else {
                Lookup::NxDomain
            }
        }
        [svc, ns, "svc"] => {
            let Some(service) = snapshot.service(ns, svc) else {
                return Lookup::NxDomain;
            };
            let spec = service.spec.clone().unwrap_or_default();
            if spec.type_.as_deref() == Some("ExternalName") {
                let target = spec.external_name.unwrap_or_default();
                return match Name::from_ascii(format!("{}.", target.trim_end_matches('.'))) {
                    Ok(target) => Lookup::answers(vec![Record::from_rdata(
                        qname.clone(),
                        TTL,
                        RData::CNAME(CNAME(target)),
                    )]),
                    Err(e) => {
                        tracing::debug!(service = %svc, namespace = %ns, error = %e, "externalName is not a domain name");
                        Lookup::Failed
                    }
                };
            }
            if !wants(RecordType::A) {
                return Lookup::answers(Vec::new());
            }
            let ips: Vec<Ipv4Addr> = match cluster_ip(service) {
                Some(ip) => vec![ip],
                None => ready_addresses(snapshot, ns, svc)
                    .into_iter()
                    .map(|(ip, _)| ip)
                    .collect(),
            };
            Lookup::answers(ips.into_iter().map(|ip| a(qname, ip)).collect())
        }
        [host, svc, ns, "svc"] if !host.starts_with('_') => {
            let Some(service) = snapshot.service(ns, svc) else {
                return Lookup::NxDomain;
            };
            if cluster_ip(service).is_some() {
                return Lookup::NxDomain;
            }
            let ips: Vec<Ipv4Addr> = ready_addresses(snapshot, ns, svc)
                .into_iter()
                .filter(|(ip, addr)| {
                    addr.hostname.as_deref() == Some(*host) || dashed(*ip) == *host
                })
                .map(|(ip, _)| ip)
                .collect();
            if ips.is_empty() {
                return Lookup::NxDomain;
            }
            if !wants(RecordType::A) {
                return Lookup::answers(Vec::new());
            }
            Lookup::answers(ips.into_iter().map(|ip| a(qname, ip)).collect())
        }
        [port, proto, svc, ns, "svc"] => {
            let (Some(port), Some(proto)) = (port.strip_prefix('_'), proto.strip_prefix('_'))
            else {
                return Lookup::NxDomain;
            };
            srv(
                port,
                proto,
                svc,
                ns,
                wants(RecordType::SRV),
                snapshot,
                domain,
            )
        }
        _ => Lookup::NxDomain,
    }
}

/// SRV records for port `port` (a name) and protocol `proto` of Service `ns/svc`.
fn srv(
    port: &str,
    proto: &str,
    svc: &str,
    ns: &str,
    wanted: bool,
    snapshot: &ServiceSnapshot,
    domain: &Name,
) -> Lookup {
    let Some(service) = snapshot.service(ns, svc) else {
        return Lookup::NxDomain;
    };
    let spec = service.spec.clone().unwrap_or_default();
    let matches = |name: Option<&str>, protocol: Option<&str>| {
        name.is_some_and(|n| n.eq_ignore_ascii_case(port))
            && protocol.unwrap_or("TCP").eq_ignore_ascii_case(proto)
    };
    let Some(service_port) = spec
        .ports
        .iter()
        .flatten()
        .find(|p| matches(p.name.as_deref(), p.protocol.as_deref()))
    else {
        return Lookup::NxDomain;
    };
    if !wanted {
        return Lookup::answers(Vec::new());
    }
    let service_name = |prefix: Option<String>| {
        let mut name = format!("{svc}.{ns}.svc.{}", domain.to_ascii());
        if let Some(prefix) = prefix {
            name = format!("{prefix}.{name}");
        }
        Name::from_ascii(name)
    };
    let Ok(qname) = Name::from_ascii(format!(
        "_{port}._{proto}.{svc}.{ns}.svc.{}",
        domain.to_ascii()
    )) else {
        return Lookup::Failed;
    };
    let (mut answers, mut additionals) = (Vec::new(), Vec::new());
    if let Some(ip) = cluster_ip(service) {
        let Ok(target) = service_name(None) else {
            return Lookup::Failed;
        };
        let Ok(number) = u16::try_from(service_port.port) else {
            return Lookup::Failed;
        };
        answers.push(Record::from_rdata(
            qname,
            TTL,
            RData::SRV(SRV::new(0, 100, number, target.clone())),
        ));
        additionals.push(a(&target, ip));
    } else {
        let mut targets = Vec::new();
        let endpoints = snapshot.endpoints_of(ns, svc);
        for subset in endpoints.iter().flat_map(|e| e.subsets.iter().flatten()) {
            let Some(number) = subset
                .ports
                .iter()
                .flatten()
                .find(|p| matches(p.name.as_deref(), p.protocol.as_deref()))
                .and_then(|p| u16::try_from(p.port).ok())
            else {
                continue;
            };
            for addr in subset.addresses.iter().flatten() {
                let Ok(ip) = addr.ip.parse::<Ipv4Addr>() else {
                    continue;
                };
                let label = addr.hostname.clone().unwrap_or_else(|| dashed(ip));
                if let Ok(target) = service_name(Some(label)) {
                    targets.push((target, number, ip));
                }
            }
        }
        targets.sort();
        targets.dedup();
        let weight = u16::try_from(100 / targets.len().max(1)).unwrap_or(100);
        for (target, number, ip) in targets {
            answers.push(Record::from_rdata(
                qname.clone(),
                TTL,
                RData::SRV(SRV::new(0, weight, number, target.clone())),
            ));
            additionals.push(a(&target, ip));
        }
    }
    Lookup::Found {
        answers,
        additionals,
    }
}

/// The IPv4 cluster IP of `service`; `None` when headless (or without one).
fn cluster_ip(service: &Service) -> Option<Ipv4Addr> {
    let spec = service.spec.as_ref()?;
    match spec.cluster_ip.as_deref()?.parse::<IpAddr>().ok()? {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}

/// The ready IPv4 endpoint addresses of `ns/svc`, sorted, with their Endpoints entries.
fn ready_addresses<'a>(
    snapshot: &'a ServiceSnapshot,
    ns: &str,
    svc: &str,
) -> Vec<(Ipv4Addr, &'a EndpointAddress)> {
    let mut out: Vec<(Ipv4Addr, &EndpointAddress)> = snapshot
        .endpoints_of(ns, svc)
        .iter()
        .flat_map(|e| e.subsets.iter().flatten())
        .flat_map(|s| s.addresses.iter().flatten())
        .filter_map(|addr| Some((addr.ip.parse::<Ipv4Addr>().ok()?, addr)))
        .collect();
    out.sort_by_key(|(ip, _)| *ip);
    out.dedup_by_key(|(ip, _)| *ip);
    out
}

/// `127.1.0.5` → `127-1-0-5`.
fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

fn a(name: &Name, ip: Ipv4Addr) -> Record {
    Record::from_rdata(name.clone(), TTL, RData::A(A(ip)))
}

/// The zone's SOA, for negative answers (its minimum is the negative-caching TTL).
fn soa(domain: &Name) -> Record {
    let host = |label: &str| {
        Name::from_ascii(format!("{label}.{}", domain.to_ascii()))
            .unwrap_or_else(|_| domain.clone())
    };
    Record::from_rdata(
        domain.clone(),
        TTL,
        RData::SOA(SOA::new(
            host("ns.dns"),
            host("hostmaster"),
            1,
            7200,
            1800,
            86400,
            TTL,
        )),
    )
}
