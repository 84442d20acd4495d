//! Kubernetes resource quantities (`100m`, `128Mi`, `1e3`) and the resource requests of a pod,
//! computed the way kube-scheduler's NodeResourcesFit plugin does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Kubernetes' default cpu request (millicores) for scoring a container that requests none.
pub(crate) const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Kubernetes' default memory request (bytes) for scoring a container that requests none.
pub(crate) const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A quantity that is not in Kubernetes' quantity syntax or does not fit in an `i64`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {reason}; expected a number with an optional suffix such as 100m, 0.5, 128Mi, 1G or 1e3")]
pub struct QuantityError {
    input: String,
    reason: &'static str,
}

/// Parses a Kubernetes quantity into thousandths of its unit, rounded up: cpu millicores
/// (`"100m"` → 100, `"0.5"` → 500, `"2"` → 2000).
pub fn parse_milli(input: &str) -> Result<i64, QuantityError> {
    parse_scaled(input, 3)
}

/// Parses a Kubernetes quantity into whole units, rounded up: bytes for memory
/// (`"128Mi"` → 134217728, `"1G"` → 10^9, `"1e3"` → 1000) and plain counts for `pods`.
pub fn parse_value(input: &str) -> Result<i64, QuantityError> {
    parse_scaled(input, 0)
}

/// cpu, memory and ephemeral storage, as millicores and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
}

impl Resources {
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
    }

    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
    }

    /// Reads a resource list; absent or unparsable entries count as zero (the API server has
    /// validated them). With `defaults`, an absent cpu or memory entry takes that default
    /// instead, as Kubernetes' "non-zero" requests do for scoring.
    fn from_list(list: Option<&BTreeMap<String, Quantity>>, defaults: Option<(i64, i64)>) -> Self {
        let get = |name: &str, parse: fn(&str) -> Result<i64, QuantityError>| {
            list.and_then(|l| l.get(name))
                .map(|q| parse(&q.0).unwrap_or(0))
        };
        let (default_cpu, default_memory) = defaults.unwrap_or((0, 0));
        Resources {
            milli_cpu: get("cpu", parse_milli).unwrap_or(default_cpu),
            memory: get("memory", parse_value).unwrap_or(default_memory),
            ephemeral_storage: get("ephemeral-storage", parse_value).unwrap_or(0),
        }
    }
}

/// What a node offers: its allocatable resources (capacity when allocatable is absent, as the
/// API server defaults it) and how many pods it accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Allocatable {
    pub resources: Resources,
    pub pods: i64,
}

impl Allocatable {
    pub fn from_status(
        allocatable: Option<&BTreeMap<String, Quantity>>,
        capacity: Option<&BTreeMap<String, Quantity>>,
    ) -> Self {
        let list = allocatable.or(capacity);
        Allocatable {
            resources: Resources::from_list(list, None),
            pods: list
                .and_then(|l| l.get("pods"))
                .map(|q| parse_value(&q.0).unwrap_or(0))
                .unwrap_or(0),
        }
    }
}

/// A pod's requests: what NodeResourcesFit filters on, and the "non-zero" variant (100m cpu and
/// 200Mi memory for containers that request none) that the resource scores use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PodRequests {
    pub requests: Resources,
    pub non_zero: Resources,
}

impl PodRequests {
    pub fn of(spec: Option<&PodSpec>) -> Self {
        let Some(spec) = spec else {
            return PodRequests::default();
        };
        PodRequests {
            requests: pod_requests(spec, None),
            non_zero: pod_requests(
                spec,
                Some((DEFAULT_MILLI_CPU_REQUEST, DEFAULT_MEMORY_REQUEST)),
            ),
        }
    }
}

/// Kubernetes' `resourcehelper.PodRequests`: the sum of the app containers and of the sidecars
/// (init containers with `restartPolicy: Always`), or the largest one-shot init container plus
/// the sidecars started before it if that is more, per resource; plus `spec.overhead`.
fn pod_requests(spec: &PodSpec, defaults: Option<(i64, i64)>) -> Resources {
    let requests = |c: &Container| {
        Resources::from_list(
            c.resources.as_ref().and_then(|r| r.requests.as_ref()),
            defaults,
        )
    };
    let mut total = Resources::default();
    for container in &spec.containers {
        total.add(&requests(container));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for container in spec.init_containers.iter().flatten() {
        let own = requests(container);
        let during = if container.restart_policy.as_deref() == Some("Always") {
            total.add(&own);
            sidecars.add(&own);
            sidecars
        } else {
            let mut during = own;
            during.add(&sidecars);
            during
        };
        init_peak.max_with(&during);
    }
    total.max_with(&init_peak);
    total.add(&Resources::from_list(spec.overhead.as_ref(), None));
    total
}

/// The value of `input` multiplied by 10^`scale`, rounded up to an integer (Kubernetes'
/// `Quantity.Value()` for scale 0 and `MilliValue()` for scale 3).
fn parse_scaled(input: &str, scale: i32) -> Result<i64, QuantityError> {
    let error = |reason| QuantityError {
        input: input.to_string(),
        reason,
    };
    let (negative, rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        Some(_) => (false, input),
        None => return Err(error("it is empty")),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);

    let mut mantissa: i128 = 0;
    let mut fraction_digits: i32 = 0;
    let mut digits = 0;
    let mut seen_point = false;
    for byte in number.bytes() {
        if byte == b'.' {
            if seen_point {
                return Err(error("it has more than one decimal point"));
            }
            seen_point = true;
            continue;
        }
        digits += 1;
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(byte - b'0')))
            .ok_or_else(|| error("it has too many digits"))?;
        if seen_point {
            fraction_digits += 1;
        }
    }
    if digits == 0 {
        return Err(error("it has no digits"));
    }

    let (binary_exponent, decimal_exponent) = suffix_exponents(suffix).ok_or_else(|| {
        error("the suffix is not one of Ki Mi Gi Ti Pi Ei n u m k M G T P E or e<N>")
    })?;
    let too_large = || error("it does not fit in a 64-bit integer");
    let mut numerator = mantissa
        .checked_mul(1i128 << binary_exponent)
        .ok_or_else(too_large)?;
    let exponent = decimal_exponent - fraction_digits + scale;
    let magnitude = if exponent >= 0 {
        numerator = numerator
            .checked_mul(pow10(exponent).ok_or_else(too_large)?)
            .ok_or_else(too_large)?;
        numerator
    } else {
        // Rounding up applies to the signed value: 0.5 → 1 but -0.5 → 0.
        match pow10(-exponent) {
            Some(denominator) if negative => numerator / denominator,
            Some(denominator) => (numerator + denominator - 1) / denominator,
            None => i128::from(!negative && numerator > 0),
        }
    };
    let signed = if negative { -magnitude } else { magnitude };
    i64::try_from(signed).map_err(|_| too_large())
}

/// The powers of two and of ten a quantity suffix stands for, `None` for an unknown suffix.
fn suffix_exponents(suffix: &str) -> Option<(u32, i32)> {
    let exponents = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (0, exponent.parse::<i32>().ok()?.clamp(-1000, 1000))
        }
    };
    Some(exponents)
}

/// 10^exponent when it fits in an `i128`.
fn pow10(exponent: i32) -> Option<i128> {
    u32::try_from(exponent)
        .ok()
        .and_then(|e| 10i128.checked_pow(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    #[test]
    fn quantities_parse_like_kubernetes() {
        let cases: &[(&str, Option<i64>, Option<i64>)] = &[
            // (input, milli value, value)
            ("100m", Some(100), Some(1)),
            ("0.5", Some(500), Some(1)),
            ("1", Some(1000), Some(1)),
            (".25", Some(250), Some(1)),
            ("5.", Some(5000), Some(5)),
            ("+2", Some(2000), Some(2)),
            ("-1.5", Some(-1500), Some(-1)),
            ("128Mi", Some(134_217_728_000), Some(134_217_728)),
            ("2Ki", Some(2_048_000), Some(2048)),
            ("1.5Gi", Some(1_610_612_736_000), Some(1_610_612_736)),
            ("1G", Some(1_000_000_000_000), Some(1_000_000_000)),
            ("1k", Some(1_000_000), Some(1000)),
            ("1e3", Some(1_000_000), Some(1000)),
            ("1E3", Some(1_000_000), Some(1000)),
            ("12e-3", Some(12), Some(1)),
            ("1E", None, Some(1_000_000_000_000_000_000)),
            ("1Ei", None, Some(1 << 60)),
            ("250u", Some(1), Some(1)),
            ("1n", Some(1), Some(1)),
            ("0", Some(0), Some(0)),
            ("0.0001", Some(1), Some(1)),
            ("1e-100", Some(1), Some(1)),
            ("", None, None),
            ("m", None, None),
            ("1.2.3", None, None),
            ("1x", None, None),
            ("1e", None, None),
            ("1e+", None, None),
            ("1 Mi", None, None),
            ("10Ei", None, None),
            ("99999999999999999999999999999999999999999", None, None),
        ];
        for (input, milli, value) in cases {
            assert_eq!(parse_milli(input).ok(), *milli, "milli value of {input:?}");
            assert_eq!(parse_value(input).ok(), *value, "value of {input:?}");
        }
    }

    #[test]
    fn quantity_error_names_the_input() {
        let error = parse_value("12q").unwrap_err().to_string();
        assert!(
            error.starts_with("invalid quantity \"12q\": the suffix"),
            "{error}"
        );
    }

    fn container(cpu: Option<&str>, memory: Option<&str>, restart: Option<&str>) -> Container {
        let mut requests = BTreeMap::new();
        if let Some(cpu) = cpu {
            requests.insert("cpu".to_string(), Quantity(cpu.to_string()));
        }
        if let Some(memory) = memory {
            requests.insert("memory".to_string(), Quantity(memory.to_string()));
        }
        Container {
            name: "c".to_string(),
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..Default::default()
            }),
            restart_policy: restart.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn pod_requests_follow_kubernetes_rules() {
        const MI: i64 = 1024 * 1024;
        struct Case {
            name: &'static str,
            containers: Vec<Container>,
            init: Vec<Container>,
            overhead: Option<(&'static str, &'static str)>,
            cpu: i64,
            memory: i64,
            non_zero_cpu: i64,
            non_zero_memory: i64,
        }
        let cases = vec![
            Case {
                name: "sum of containers",
                containers: vec![
                    container(Some("100m"), Some("64Mi"), None),
                    container(Some("250m"), Some("64Mi"), None),
                ],
                init: vec![],
                overhead: None,
                cpu: 350,
                memory: 128 * MI,
                non_zero_cpu: 350,
                non_zero_memory: 128 * MI,
            },
            Case {
                name: "no requests: zero for filtering, defaults for scoring",
                containers: vec![
                    container(None, None, None),
                    container(Some("0"), None, None),
                ],
                init: vec![],
                overhead: None,
                cpu: 0,
                memory: 0,
                non_zero_cpu: 100,
                non_zero_memory: 400 * MI,
            },
            Case {
                name: "a larger init container wins per resource",
                containers: vec![container(Some("500m"), Some("64Mi"), None)],
                init: vec![
                    container(Some("1"), Some("32Mi"), None),
                    container(Some("200m"), Some("16Mi"), None),
                ],
                overhead: None,
                cpu: 1000,
                memory: 64 * MI,
                non_zero_cpu: 1000,
                non_zero_memory: 64 * MI,
            },
            Case {
                name: "sidecars add up and run beside later init containers",
                containers: vec![container(Some("100m"), Some("10Mi"), None)],
                init: vec![
                    container(Some("300m"), Some("10Mi"), Some("Always")),
                    container(Some("500m"), Some("10Mi"), None),
                ],
                overhead: None,
                cpu: 800,
                memory: 20 * MI,
                non_zero_cpu: 800,
                non_zero_memory: 20 * MI,
            },
            Case {
                name: "overhead is added",
                containers: vec![container(Some("1"), Some("1Gi"), None)],
                init: vec![],
                overhead: Some(("250m", "120Mi")),
                cpu: 1250,
                memory: 1144 * MI,
                non_zero_cpu: 1250,
                non_zero_memory: 1144 * MI,
            },
        ];
        for case in cases {
            let spec = PodSpec {
                containers: case.containers,
                init_containers: Some(case.init),
                overhead: case.overhead.map(|(cpu, memory)| {
                    BTreeMap::from([
                        ("cpu".to_string(), Quantity(cpu.to_string())),
                        ("memory".to_string(), Quantity(memory.to_string())),
                    ])
                }),
                ..Default::default()
            };
            let got = PodRequests::of(Some(&spec));
            assert_eq!(
                (got.requests.milli_cpu, got.requests.memory),
                (case.cpu, case.memory),
                "{}: requests",
                case.name
            );
            assert_eq!(
                (got.non_zero.milli_cpu, got.non_zero.memory),
                (case.non_zero_cpu, case.non_zero_memory),
                "{}: non-zero requests",
                case.name
            );
        }
    }

    #[test]
    fn allocatable_falls_back_to_capacity() {
        let list = |cpu: &str| {
            BTreeMap::from([
                ("cpu".to_string(), Quantity(cpu.to_string())),
                ("pods".to_string(), Quantity("110".to_string())),
            ])
        };
        let capacity = list("4");
        let allocatable = list("3500m");
        let from_allocatable = Allocatable::from_status(Some(&allocatable), Some(&capacity));
        assert_eq!(from_allocatable.resources.milli_cpu, 3500);
        assert_eq!(from_allocatable.pods, 110);
        let from_capacity = Allocatable::from_status(None, Some(&capacity));
        assert_eq!(from_capacity.resources.milli_cpu, 4000);
        assert_eq!(Allocatable::from_status(None, None), Allocatable::default());
    }
}
