//! The Service and Endpoints tables.

use serde_json::Value;

use super::{
    age, array_at, col, format_labels, name, or_none, str_at, wide, KindPrinter, PrintOptions,
};

/// How much of a load balancer's addresses show without `-o wide`.
const LOAD_BALANCER_WIDTH: usize = 16;

pub(crate) const SERVICE: KindPrinter = KindPrinter {
    columns: &[
        col("NAME"),
        col("TYPE"),
        col("CLUSTER-IP"),
        col("EXTERNAL-IP"),
        col("PORT(S)"),
        col("AGE"),
        wide("SELECTOR"),
    ],
    row: service_row,
};

fn service_row(o: &Value, p: &PrintOptions) -> Vec<String> {
    let cluster_ip = array_at(o, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(o, "/spec/clusterIP"));
    let ports: Vec<String> = array_at(o, "/spec/ports")
        .iter()
        .map(|port| {
            let protocol = match str_at(port, "/protocol") {
                "" => "TCP",
                p => p,
            };
            let number = super::int_at(port, "/port");
            match super::int_at(port, "/nodePort") {
                n if n > 0 => format!("{number}:{n}/{protocol}"),
                _ => format!("{number}/{protocol}"),
            }
        })
        .collect();
    vec![
        name(o),
        str_at(o, "/spec/type").to_string(),
        or_none(cluster_ip),
        external_ip(o, p.wide),
        or_none(&ports.join(",")),
        age(o, p.now),
        format_labels(&o["spec"]["selector"]),
    ]
}

/// The EXTERNAL-IP cell (kubectl's `getServiceExternalIP`).
fn external_ip(o: &Value, wide: bool) -> String {
    let external_ips: Vec<&str> = array_at(o, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match str_at(o, "/spec/type") {
        "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
        "LoadBalancer" => {
            let mut ingress: Vec<&str> = array_at(o, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| match str_at(i, "/ip") {
                    "" => str_at(i, "/hostname"),
                    ip => ip,
                })
                .filter(|a| !a.is_empty())
                .collect();
            ingress.sort_unstable();
            ingress.dedup();
            let mut lb = ingress.join(",");
            if !wide && lb.len() > LOAD_BALANCER_WIDTH {
                lb = format!("{}...", &lb[..LOAD_BALANCER_WIDTH - 3]);
            }
            if !external_ips.is_empty() {
                let mut all: Vec<&str> = lb.split(',').filter(|s| !s.is_empty()).collect();
                all.extend(external_ips);
                return all.join(",");
            }
            if lb.is_empty() {
                "<pending>".into()
            } else {
                lb
            }
        }
        "ExternalName" => str_at(o, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    }
}

pub(crate) const ENDPOINTS: KindPrinter = KindPrinter {
    columns: &[col("NAME"), col("ENDPOINTS"), col("AGE")],
    row: |o, p| vec![name(o), format_endpoints(o), age(o, p.now)],
};

/// `ip:port` of the first three ready endpoints, then `+ N more...` (kubectl's
/// `formatEndpoints`); `<none>` without subsets.
fn format_endpoints(o: &Value) -> String {
    const MAX: usize = 3;
    let subsets = array_at(o, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = array_at(subset, "/addresses");
        let ips = addresses.iter().map(|a| str_at(a, "/ip"));
        let ports = array_at(subset, "/ports");
        if ports.is_empty() {
            // A headless service may have no ports.
            count += addresses.len();
            list.extend(ips.take(MAX.saturating_sub(list.len())).map(str::to_string));
            continue;
        }
        for port in ports {
            count += addresses.len();
            let number = super::int_at(port, "/port");
            for ip in ips.clone().take(MAX.saturating_sub(list.len())) {
                list.push(if ip.contains(':') {
                    format!("[{ip}]:{number}")
                } else {
                    format!("{ip}:{number}")
                });
            }
        }
    }
    let text = list.join(",");
    if count > MAX {
        format!("{text} + {} more...", count - MAX)
    } else {
        text
    }
}
