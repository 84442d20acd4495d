//! `resourceFieldRef` values, as the kubelet computes them for env vars and downwardAPI volume
//! files: a container's limits or requests divided by the divisor (default `1`) and rounded up;
//! a limit the container does not set is the node's allocatable amount.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ResourceFieldSelector};

use super::ConfigError;

/// The node's allocatable amounts, in nano-units ([`parse_nanos`]), for limits a container
/// leaves unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAllocatable {
    pub cpu: Option<i128>,
    pub memory: Option<i128>,
}

impl NodeAllocatable {
    /// From the agent's `--cpu` and `--memory` quantities (unparsable ones count as unknown).
    pub fn from_quantities(cpu: &str, memory: &str) -> NodeAllocatable {
        NodeAllocatable {
            cpu: parse_nanos(cpu).ok(),
            memory: parse_nanos(memory).ok(),
        }
    }
}

const NANO: i128 = 1_000_000_000;

/// A Kubernetes quantity (`250m`, `1.5`, `64Mi`, `1e3`) in nano-units, rounded up to the
/// nano-unit as Kubernetes rounds quantities.
pub fn parse_nanos(s: &str) -> Result<i128, String> {
    let bad = || format!("{s:?} is not a quantity such as 250m, 2 or 64Mi");
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let (negative, number) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    // The number as digits / 10^scale.
    let digits: String = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(bad());
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| bad())?
    };
    let mut decimal_exp = -(frac.len() as i32);
    let mut binary_mult: i128 = 1;
    match suffix {
        "" => {}
        "n" => decimal_exp -= 9,
        "u" => decimal_exp -= 6,
        "m" => decimal_exp -= 3,
        "k" => decimal_exp += 3,
        "M" => decimal_exp += 6,
        "G" => decimal_exp += 9,
        "T" => decimal_exp += 12,
        "P" => decimal_exp += 15,
        "E" => decimal_exp += 18,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            let power = "KMGTPE".find(&suffix[..1]).expect("binary suffix") as u32 + 1;
            binary_mult = 1024i128.pow(power);
        }
        e if e.starts_with(['e', 'E']) => {
            decimal_exp += e[1..].parse::<i32>().map_err(|_| bad())?;
        }
        _ => return Err(bad()),
    }
    // nanos = mantissa * binary_mult * 10^(decimal_exp + 9), rounded up.
    let exp = decimal_exp + 9;
    let scaled = mantissa.checked_mul(binary_mult).ok_or_else(bad)?;
    let nanos = if exp >= 0 {
        10i128
            .checked_pow(exp as u32)
            .and_then(|p| scaled.checked_mul(p))
            .ok_or_else(bad)?
    } else {
        let p = 10i128.checked_pow((-exp) as u32).unwrap_or(i128::MAX);
        ceil_div(scaled, p)
    };
    Ok(if negative { -nanos } else { nanos })
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && (a > 0) == (b > 0) {
        q + 1
    } else {
        q
    }
}

/// The value of `selector` for `container`, as the kubelet formats it: cpu in units of the
/// divisor's milli-value, everything else in units of the divisor's value, rounded up.
pub fn resource_value(
    selector: &ResourceFieldSelector,
    container: &Container,
    node: &NodeAllocatable,
) -> Result<String, ConfigError> {
    let divisor = match &selector.divisor {
        Some(q) if !q.0.is_empty() => {
            parse_nanos(&q.0).map_err(|e| ConfigError(format!("resourceFieldRef.divisor: {e}")))?
        }
        _ => NANO,
    };
    if divisor <= 0 {
        return Err(ConfigError(format!(
            "resourceFieldRef.divisor {:?} must be positive",
            selector
                .divisor
                .as_ref()
                .map(|q| q.0.as_str())
                .unwrap_or("")
        )));
    }
    let (kind, resource) = selector.resource.split_once('.').ok_or_else(|| {
        ConfigError(format!(
            "resourceFieldRef.resource {:?} is not supported; supported: limits.cpu, \
             limits.memory, limits.ephemeral-storage, requests.cpu, requests.memory, \
             requests.ephemeral-storage",
            selector.resource
        ))
    })?;
    let resources = container.resources.clone().unwrap_or_default();
    let get = |map: &Option<
        BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| {
        map.as_ref()
            .and_then(|m| m.get(resource))
            .map(|q| parse_nanos(&q.0))
            .transpose()
            .map_err(|e| ConfigError(format!("resources.{kind}.{resource}: {e}")))
    };
    let limit = get(&resources.limits)?;
    let amount = match (kind, resource) {
        ("limits", "cpu" | "memory" | "ephemeral-storage") => {
            let allocatable = match resource {
                "cpu" => node.cpu,
                "memory" => node.memory,
                _ => None,
            };
            limit.or(allocatable).ok_or_else(|| {
                ConfigError(format!(
                    "container {:?} sets no {} and the node reports no allocatable {resource}",
                    container.name, selector.resource
                ))
            })?
        }
        // Requests default to limits (as the API server defaults them), else zero.
        ("requests", "cpu" | "memory" | "ephemeral-storage") => {
            get(&resources.requests)?.or(limit).unwrap_or(0)
        }
        _ => {
            return Err(ConfigError(format!(
                "resourceFieldRef.resource {:?} is not supported; supported: limits.cpu, \
                 limits.memory, limits.ephemeral-storage, requests.cpu, requests.memory, \
                 requests.ephemeral-storage",
                selector.resource
            )));
        }
    };
    let value = if resource == "cpu" {
        // ceil(milliValue / divisor.milliValue), milli-values themselves rounded up.
        let milli = |n: i128| ceil_div(n, 1_000_000);
        let d = milli(divisor);
        if d == 0 {
            return Err(ConfigError(
                "resourceFieldRef.divisor for cpu must be at least 1m".into(),
            ));
        }
        ceil_div(milli(amount), d)
    } else {
        let whole = |n: i128| ceil_div(n, NANO);
        let d = whole(divisor);
        ceil_div(whole(amount), d)
    };
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    #[test]
    fn quantities_parse_to_nanos() {
        let cases = [
            ("1", Ok(NANO)),
            ("250m", Ok(250_000_000)),
            ("1.5", Ok(1_500_000_000)),
            ("100Ki", Ok(102_400 * NANO)),
            ("4Mi", Ok(4 * 1024 * 1024 * NANO)),
            ("1e3", Ok(1000 * NANO)),
            ("2k", Ok(2000 * NANO)),
            ("1n", Ok(1)),
            ("0.1n", Ok(1)),
            ("0", Ok(0)),
            ("", Err(())),
            ("1x", Err(())),
            ("m", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_nanos(input).map_err(|_| ()),
                want,
                "parsing {input:?}"
            );
        }
    }

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let map = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty()).then(|| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        Container {
            name: "main".into(),
            resources: Some(ResourceRequirements {
                requests: map(requests),
                limits: map(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn values_are_divided_and_rounded_up() {
        let node = NodeAllocatable::from_quantities("4", "8Gi");
        let c = container(
            &[("cpu", "15m"), ("memory", "100Ki")],
            &[("cpu", "100m"), ("memory", "4Mi")],
        );
        let bare = container(&[], &[]);
        let limited = container(&[], &[("cpu", "1500m"), ("memory", "1G")]);
        // (container, resource, divisor, value or error fragment)
        type Case<'a> = (
            &'a Container,
            &'a str,
            Option<&'a str>,
            Result<&'a str, &'a str>,
        );
        let cases: [Case; 13] = [
            (&c, "requests.cpu", Some("1m"), Ok("15")),
            (&c, "requests.cpu", None, Ok("1")),
            (&c, "limits.cpu", Some("1m"), Ok("100")),
            (&c, "limits.memory", Some("1Ki"), Ok("4096")),
            (&c, "limits.memory", None, Ok("4194304")),
            (&c, "requests.memory", Some("1Mi"), Ok("1")),
            (&limited, "limits.cpu", None, Ok("2")),
            (&limited, "requests.cpu", Some("1m"), Ok("1500")),
            (&limited, "limits.memory", Some("1Mi"), Ok("954")),
            (&bare, "limits.cpu", None, Ok("4")),
            (&bare, "limits.memory", Some("1Gi"), Ok("8")),
            (&bare, "requests.cpu", None, Ok("0")),
            (&c, "limits.gpu", None, Err("is not supported")),
        ];
        for (c, resource, divisor, want) in cases {
            let selector = ResourceFieldSelector {
                resource: resource.into(),
                divisor: divisor.map(|d| Quantity(d.into())),
                container_name: None,
            };
            let got = resource_value(&selector, c, &node);
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{resource} / {divisor:?}"),
                (Err(e), Err(want)) => assert!(e.0.contains(want), "{e}"),
                (got, want) => panic!("{resource} / {divisor:?}: got {got:?}, want {want:?}"),
            }
        }
        let unknown = NodeAllocatable::default();
        let selector = ResourceFieldSelector {
            resource: "limits.memory".into(),
            ..Default::default()
        };
        let err = resource_value(&selector, &bare, &unknown).unwrap_err();
        assert!(err.0.contains("no allocatable memory"), "{err}");
    }
}
