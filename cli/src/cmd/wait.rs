//! `rkube wait`: block until objects are created, deleted, report a status condition, or have a
//! JSONPath value, following each object through a watch; kubectl's messages and exit codes.

mod jsonpath;

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use futures::StreamExt;
use rkube_client::{Error as ClientError, ListParams, WatchEvent};
use rkube_proto::api::ApiResource;
use serde_json::Value;
use tokio::time::Instant;

use crate::cmd::describe::fields::{arr, s};
use crate::cmd::describe::{targets, Target};
use crate::context::{display_name, kind_ref};
use crate::Ctx;
pub use jsonpath::JsonPath;

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// `TYPE/NAME ...`, `TYPE NAME ...`, or `TYPE` with `-l` or `--all`.
    #[arg(value_name = "TYPE[/NAME]")]
    pub args: Vec<String>,
    /// The condition to wait on: `create`, `delete`, `condition=NAME[=VALUE]` or
    /// `jsonpath={EXPR}[=VALUE]`. Several are AND'ed, in order.
    #[arg(long = "for", required = true, value_name = "CONDITION")]
    pub conditions: Vec<String>,
    /// How long to wait before giving up (`60s`, `2m`); 0 checks once, negative waits a week.
    #[arg(long, default_value = "30s")]
    pub timeout: String,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Wait on every object of the type.
    #[arg(long)]
    pub all: bool,
    /// Wait on objects in every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// One `--for` condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Create,
    Delete,
    /// `condition=Ready[=false]`: the status condition of that type has that status
    /// (case-insensitively; default "true").
    Status {
        name: String,
        value: String,
    },
    /// `jsonpath={.status.phase}[=Running]`: the path selects one value equal to `value`, or
    /// anything when no value is given.
    JsonPath {
        path: JsonPath,
        value: Option<String>,
    },
}

/// Parse a `--for` value as kubectl does.
pub fn parse_condition(cond: &str) -> Result<Condition> {
    let lower = cond.to_ascii_lowercase();
    if lower == "create" {
        return Ok(Condition::Create);
    }
    if lower == "delete" {
        return Ok(Condition::Delete);
    }
    if let Some(rest) = cond.strip_prefix("condition=") {
        let (name, value) = rest.split_once('=').unwrap_or((rest, "true"));
        if name.is_empty() {
            bail!("condition name must not be empty: {cond:?}");
        }
        return Ok(Condition::Status {
            name: name.to_string(),
            value: value.to_string(),
        });
    }
    if let Some(rest) = cond.strip_prefix("jsonpath=") {
        let parts = split_jsonpath_input(rest);
        if parts.is_empty() || parts.len() > 2 {
            bail!("jsonpath wait format must be --for=jsonpath='{{.status.readyReplicas}}'=3 or --for=jsonpath='{{.status.readyReplicas}}'");
        }
        let path = JsonPath::parse(&parts[0])?;
        let value = match parts.get(1) {
            None => None,
            Some(v) => {
                let v = v.trim_matches(['\'', '"']);
                if v.is_empty() {
                    bail!("jsonpath wait has to have a value after equal sign, like --for=jsonpath='{{.status.readyReplicas}}'=3");
                }
                Some(v.to_string())
            }
        };
        return Ok(Condition::JsonPath { path, value });
    }
    bail!("unrecognized condition: {cond:?}")
}

/// Split at `=` signs that are not part of `==`.
fn split_jsonpath_input(input: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut element = String::new();
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '=' {
            if chars.peek() == Some(&'=') {
                chars.next();
                element.push_str("==");
                continue;
            }
            out.push(std::mem::take(&mut element));
            continue;
        }
        element.push(c);
    }
    out.push(element);
    out
}

impl Condition {
    /// Whether `obj` (as last seen; None once deleted) satisfies the condition.
    pub fn check(&self, obj: Option<&Value>) -> Result<bool> {
        let Some(obj) = obj else {
            return Ok(matches!(self, Condition::Delete));
        };
        match self {
            Condition::Create => Ok(true),
            Condition::Delete => Ok(false),
            Condition::Status { name, value } => {
                let Some(c) = arr(obj, "/status/conditions")
                    .iter()
                    .find(|c| s(c, "/type").eq_ignore_ascii_case(name))
                else {
                    return Ok(false);
                };
                // A condition about an older generation of the object does not count yet.
                if let Some(generation) =
                    obj.pointer("/metadata/generation").and_then(Value::as_i64)
                {
                    let observed = c
                        .get("observedGeneration")
                        .or_else(|| obj.pointer("/status/observedGeneration"))
                        .and_then(Value::as_i64);
                    if observed.is_some_and(|o| o < generation) {
                        return Ok(false);
                    }
                }
                Ok(s(c, "/status").eq_ignore_ascii_case(value))
            }
            Condition::JsonPath { path, value } => {
                let found = path.find(obj);
                match found.as_slice() {
                    [] => Ok(false),
                    [one] => {
                        let Some(want) = value else { return Ok(true) };
                        let got = match one {
                            Value::Object(_) | Value::Array(_) => {
                                bail!("jsonpath leads to a nested object or list which is not supported")
                            }
                            Value::String(s) => s.clone(),
                            Value::Null => "<nil>".into(),
                            other => other.to_string(),
                        };
                        Ok(got.trim() == want.trim())
                    }
                    _ => bail!("given jsonpath expression matches more than one value"),
                }
            }
        }
    }
}

/// A Go duration (`300ms`, `1m30s`, `-1s`, `0`). None for a negative duration.
pub fn parse_duration(text: &str) -> Result<Option<Duration>> {
    let bad =
        || anyhow!("invalid duration {text:?}: use a number with a unit, like 30s, 5m or 1h30m");
    let (negative, mut rest) = match text.trim() {
        t if t.starts_with('-') => (true, &t[1..]),
        t => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if rest == "0" {
        return Ok(Some(Duration::ZERO));
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let unit_end = rest[num_end..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .map_or(rest.len(), |i| num_end + i);
        let number: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        let unit = match &rest[num_end..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * unit;
        rest = &rest[unit_end..];
    }
    Ok(if negative && total > 0.0 {
        None
    } else {
        Some(Duration::from_secs_f64(total))
    })
}

pub async fn run(ctx: &Ctx, a: WaitArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let conditions = a
        .conditions
        .iter()
        .map(|c| parse_condition(c))
        .collect::<Result<Vec<_>>>()?;
    // kubectl: zero checks once, negative means a week.
    let timeout = parse_duration(&a.timeout)?.unwrap_or(Duration::from_secs(7 * 24 * 3600));
    let once = timeout.is_zero();
    // Checking once still needs the object's current state.
    let deadline = Instant::now()
        + if once {
            Duration::from_secs(30)
        } else {
            timeout
        };
    let for_delete = conditions.contains(&Condition::Delete);
    if a.args.is_empty() {
        bail!("resource(s) were provided, but no name was specified");
    }
    let mut objects: Vec<(ApiResource, String, String)> = Vec::new();
    for Target { resource, name } in targets(ctx, &a.args).await? {
        let ns = if a.all_namespaces {
            ""
        } else {
            ctx.namespace_for(&resource)
        }
        .to_string();
        match name {
            Some(name) => objects.push((resource, ns, name)),
            None => {
                if a.selector.is_none() && !a.all {
                    bail!("resource(s) were provided, but no name was specified");
                }
                let p = ListParams {
                    namespace: ns,
                    label_selector: a.selector.clone().unwrap_or_default(),
                    ..Default::default()
                };
                let list = ctx
                    .client
                    .list_all(&kind_ref(&resource), &p)
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
                for o in list.items {
                    let ns = s(&o, "/metadata/namespace").to_string();
                    objects.push((resource.clone(), ns, s(&o, "/metadata/name").to_string()));
                }
            }
        }
    }
    if objects.is_empty() && !for_delete {
        bail!("no matching resources found");
    }
    for (r, ns, name) in &objects {
        for cond in &conditions {
            if wait_for(ctx, r, ns, name, cond, deadline, once).await? {
                writeln!(out, "{} condition met", display_name(r, name))?;
                out.flush()?;
            }
        }
    }
    Ok(())
}

/// Wait until one object meets one condition. Ok(false): `--for=delete` on an object that was
/// already gone (kubectl prints nothing for it).
async fn wait_for(
    ctx: &Ctx,
    r: &ApiResource,
    ns: &str,
    name: &str,
    cond: &Condition,
    deadline: Instant,
    once: bool,
) -> Result<bool> {
    let p = ListParams {
        namespace: ns.to_string(),
        field_selector: format!("metadata.name={name}"),
        ..Default::default()
    };
    let mut events = Box::pin(ctx.client.watch(&kind_ref(r), &p, true));
    let mut current: Option<Value> = None;
    let mut synced = false;
    let timed_out = || anyhow!("timed out waiting for the condition on {}/{name}", r.name);
    loop {
        let next = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| timed_out())?;
        match next {
            None => bail!("the watch on {}/{name} ended unexpectedly", r.name),
            Some(Err(e)) => bail!("{e}"),
            Some(Ok(WatchEvent::Added(o) | WatchEvent::Modified(o))) => current = Some(o),
            Some(Ok(WatchEvent::Deleted(_))) => current = None,
            Some(Ok(WatchEvent::Bookmark {
                initial_events_end, ..
            })) => {
                if !initial_events_end || synced {
                    continue;
                }
                synced = true;
                if current.is_none() {
                    match cond {
                        Condition::Delete => return Ok(false),
                        Condition::Create => {}
                        _ => {
                            let qualified = if r.group.is_empty() {
                                r.name.clone()
                            } else {
                                format!("{}.{}", r.name, r.group)
                            };
                            bail!(
                                "{}",
                                ClientError::NotFound(format!("{qualified} {name:?} not found"))
                            );
                        }
                    }
                }
            }
        }
        if synced {
            if cond.check(current.as_ref())? {
                return Ok(true);
            }
            if once {
                bail!("condition not met for {}/{name}", r.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_for_conditions_like_kubectl() {
        assert_eq!(parse_condition("delete").unwrap(), Condition::Delete);
        assert_eq!(parse_condition("Create").unwrap(), Condition::Create);
        assert_eq!(
            parse_condition("condition=Ready").unwrap(),
            Condition::Status {
                name: "Ready".into(),
                value: "true".into()
            }
        );
        assert_eq!(
            parse_condition("condition=Available=False").unwrap(),
            Condition::Status {
                name: "Available".into(),
                value: "False".into()
            }
        );
        match parse_condition("jsonpath='{.status.phase}'=Running").unwrap() {
            Condition::JsonPath { value, .. } => assert_eq!(value.as_deref(), Some("Running")),
            other => panic!("{other:?}"),
        }
        match parse_condition("jsonpath={.status.conditions[?(@.type==\"Ready\")].status}=True")
            .unwrap()
        {
            Condition::JsonPath { value, .. } => assert_eq!(value.as_deref(), Some("True")),
            other => panic!("{other:?}"),
        }
        match parse_condition("jsonpath={.status.loadBalancer.ingress}").unwrap() {
            Condition::JsonPath { value, .. } => assert_eq!(value, None),
            other => panic!("{other:?}"),
        }
        let err = |c: &str| parse_condition(c).unwrap_err().to_string();
        assert_eq!(err("ready"), "unrecognized condition: \"ready\"");
        assert!(
            err("jsonpath={.a}=").contains("has to have a value after equal sign"),
            "{}",
            err("jsonpath={.a}=")
        );
        assert!(err("jsonpath={.a}=1=2").contains("jsonpath wait format must be"));
        assert!(err("jsonpath=").contains("cannot be empty"));
    }

    #[test]
    fn checks_conditions_on_objects() {
        let pod = json!({
            "metadata": {"generation": 2},
            "status": {
                "phase": "Running",
                "observedGeneration": 2,
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "Stale", "status": "True", "observedGeneration": 1}],
                "containerStatuses": [{"name": "a"}, {"name": "b"}],
            },
        });
        let check = |c: &str, obj: Option<&Value>| parse_condition(c).unwrap().check(obj);
        assert!(check("condition=Ready", Some(&pod)).unwrap());
        assert!(check("condition=ready=true", Some(&pod)).unwrap());
        assert!(!check("condition=Ready=False", Some(&pod)).unwrap());
        assert!(
            !check("condition=Stale", Some(&pod)).unwrap(),
            "a condition about an older generation"
        );
        assert!(!check("condition=Missing", Some(&pod)).unwrap());
        assert!(check("jsonpath={.status.phase}=Running", Some(&pod)).unwrap());
        assert!(!check("jsonpath={.status.phase}=Pending", Some(&pod)).unwrap());
        assert!(check("jsonpath={.status.phase}", Some(&pod)).unwrap());
        assert!(check("jsonpath={.metadata.generation}=2", Some(&pod)).unwrap());
        assert!(!check("jsonpath={.status.podIP}", Some(&pod)).unwrap());
        assert!(check("jsonpath={.status.containerStatuses[*].name}=a", Some(&pod)).is_err());
        assert!(check("jsonpath={.status}=x", Some(&pod)).is_err());
        assert!(check("delete", None).unwrap());
        assert!(!check("delete", Some(&pod)).unwrap());
        assert!(check("create", Some(&pod)).unwrap());
        assert!(!check("create", None).unwrap());
        assert!(!check("condition=Ready", None).unwrap());
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(
            parse_duration("60s").unwrap(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_duration("1m30s").unwrap(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("1.5h").unwrap(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("250ms").unwrap(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("0").unwrap(), Some(Duration::ZERO));
        assert_eq!(parse_duration("-1s").unwrap(), None);
        assert!(parse_duration("60").is_err());
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
    }
}
