//! Projected volume files: the payload of a configMap, secret or downwardAPI volume (file
//! paths, contents and modes, as the kubelet computes them) and its atomic writer.
//!
//! The writer keeps the kubelet's layout so readers never see half an update: the files live in
//! a timestamped directory `..<timestamp>`, `..data` is a symlink to it, and each user-visible
//! top-level name is a symlink through `..data`. An update writes a new timestamped directory,
//! points a fresh `..data_tmp` symlink at it and renames that over `..data` (one atomic step),
//! then fixes the top-level symlinks and removes the old directory.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeSource, KeyToPath, Pod, Secret,
};

use crate::env::{self, PodFields};

/// The mode of projected files when neither the item nor the volume sets one (0644).
pub const DEFAULT_MODE: i32 = 0o644;

/// One projected file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative file path → file.
pub type Payload = BTreeMap<String, File>;

fn mode_of(item_mode: Option<i32>, default_mode: Option<i32>) -> Result<u32, String> {
    let mode = item_mode.or(default_mode).unwrap_or(DEFAULT_MODE);
    if !(0..=0o777).contains(&mode) {
        return Err(format!(
            "mode {mode} is out of range: expected 0 to 0777 (511)"
        ));
    }
    Ok(mode as u32)
}

/// The files of a configMap or secret volume from the object's `data`: every key, or only the
/// `items` (a missing item key is an error unless `optional`).
fn keyed_payload(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
    missing_key: impl Fn(&str) -> String,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, value) in data {
                payload.insert(
                    key.clone(),
                    File {
                        data: value.clone(),
                        mode: mode_of(None, default_mode)?,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(value) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(missing_key(&item.key));
                };
                payload.insert(
                    item.path.clone(),
                    File {
                        data: value.clone(),
                        mode: mode_of(item.mode, default_mode)?,
                    },
                );
            }
        }
    }
    Ok(payload)
}

/// A configMap volume's files (`data` and `binaryData`); `None` for a missing optional map.
pub fn config_map_payload(
    config_map: Option<&ConfigMap>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, String> {
    let Some(cm) = config_map else {
        return Ok(Payload::new());
    };
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    keyed_payload(&data, items, default_mode, optional, |key| {
        format!("configmap references non-existent config key: {key}")
    })
}

/// A secret volume's files; an empty payload for a missing optional secret.
pub fn secret_payload(
    secret: Option<&Secret>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, String> {
    let Some(secret) = secret else {
        return Ok(Payload::new());
    };
    keyed_payload(
        &env::secret_bytes(secret),
        items,
        default_mode,
        optional,
        |key| format!("references non-existent secret key: {key}"),
    )
}

/// Labels or annotations as the kubelet writes them: `key="value"` lines sorted by key, values
/// quoted as Go's `%q` does.
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}\n", go_quote(v)))
        .collect()
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A downwardAPI volume's files from the pod's current metadata and resources.
pub fn downward_payload(
    source: &DownwardAPIVolumeSource,
    pod: &Pod,
    fields: &PodFields,
) -> Result<Payload, String> {
    let containers: Vec<&Container> = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .collect();
    let mut payload = Payload::new();
    for item in source.items.iter().flatten() {
        let data = if let Some(field) = &item.field_ref {
            match field.field_path.as_str() {
                "metadata.labels" => format_map(&fields.labels),
                "metadata.annotations" => format_map(&fields.annotations),
                path => env::field_value(path, fields).map_err(|e| e.0)?,
            }
        } else if let Some(selector) = &item.resource_field_ref {
            let name = selector.container_name.as_deref().unwrap_or_default();
            let container = containers.iter().find(|c| c.name == name).ok_or_else(|| {
                format!(
                    "resourceFieldRef of {:?}: no container named {name:?} in the pod",
                    item.path
                )
            })?;
            env::resources::resource_value(selector, container, &fields.allocatable)
                .map_err(|e| e.0)?
        } else {
            return Err(format!(
                "item {:?} names neither fieldRef nor resourceFieldRef",
                item.path
            ));
        };
        payload.insert(
            item.path.clone(),
            File {
                data: data.into_bytes(),
                mode: mode_of(item.mode, source.default_mode)?,
            },
        );
    }
    Ok(payload)
}

/// A payload path must be relative, without `..` elements, and not start with `..`.
fn check_path(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if path.is_empty()
        || p.is_absolute()
        || path.starts_with("..")
        || p.components().any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "invalid file path {path:?}: it must be relative, must not contain \"..\" and must \
             not start with \"..\""
        ));
    }
    Ok(())
}

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// The files currently published in `dir` (through `..data`), with their modes.
fn current(dir: &Path) -> Option<(String, Payload)> {
    let target = std::fs::read_link(dir.join(DATA)).ok()?;
    let name = target.to_str()?.to_string();
    let mut payload = Payload::new();
    let mut stack = vec![(dir.join(&name), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()?.flatten() {
            let file_name = entry.file_name().to_str()?.to_string();
            let rel = if prefix.is_empty() {
                file_name
            } else {
                format!("{prefix}/{file_name}")
            };
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                stack.push((entry.path(), rel));
            } else {
                let data = std::fs::read(entry.path()).ok()?;
                let mode = meta.permissions().mode() & 0o777;
                payload.insert(rel, File { data, mode });
            }
        }
    }
    Some((name, payload))
}

fn io_err(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

/// Publish `payload` in `dir` atomically (see the module docs). Returns whether anything
/// changed (an identical payload is not rewritten).
pub fn write_atomic(dir: &Path, payload: &Payload) -> Result<bool, String> {
    for path in payload.keys() {
        check_path(path)?;
    }
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let old = current(dir);
    if old.as_ref().is_some_and(|(_, p)| p == payload) {
        return Ok(false);
    }
    // A fresh timestamped directory.
    let stamp = jiff::Timestamp::now()
        .strftime("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let (mut name, mut n) = (stamp.clone(), 0);
    while dir.join(&name).exists() {
        n += 1;
        name = format!("{stamp}{n}");
    }
    let new_dir = dir.join(&name);
    std::fs::create_dir(&new_dir).map_err(|e| io_err(&new_dir, e))?;
    for (path, file) in payload {
        let full = new_dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        }
        std::fs::write(&full, &file.data).map_err(|e| io_err(&full, e))?;
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(file.mode))
            .map_err(|e| io_err(&full, e))?;
    }
    // Swap `..data` over in one rename.
    let tmp = dir.join(DATA_TMP);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(io_err(&tmp, e)),
        _ => {}
    }
    std::os::unix::fs::symlink(&name, &tmp).map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, dir.join(DATA)).map_err(|e| io_err(&tmp, e))?;
    // User-visible names: one symlink per top-level element through `..data`.
    let top: std::collections::BTreeSet<&str> = payload
        .keys()
        .map(|p| p.split('/').next().unwrap_or(p))
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA).join(name), &link)
                .map_err(|e| io_err(&link, e))?;
        }
    }
    for entry in std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .flatten()
    {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if !file_name.starts_with("..") && is_link && !top.contains(file_name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some((old_name, _)) = old.filter(|(n, _)| *n != name) {
        let _ = std::fs::remove_dir_all(dir.join(old_name));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, ObjectFieldSelector, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::ByteString;

    use super::*;

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
            ..Default::default()
        }
    }

    fn files(payload: &Payload) -> Vec<(&str, &[u8], u32)> {
        payload
            .iter()
            .map(|(p, f)| (p.as_str(), f.data.as_slice(), f.mode))
            .collect()
    }

    #[test]
    fn config_map_and_secret_payloads_follow_items_and_modes() {
        let cm = ConfigMap {
            data: Some([("a".to_string(), "1".to_string()), ("b".into(), "2".into())].into()),
            binary_data: Some([("bin".to_string(), ByteString(vec![0, 1]))].into()),
            ..Default::default()
        };
        let all = config_map_payload(Some(&cm), None, None, false).unwrap();
        assert_eq!(
            files(&all),
            [
                ("a", &b"1"[..], 0o644),
                ("b", b"2", 0o644),
                ("bin", &[0, 1], 0o644)
            ]
        );
        let items = [item("a", "conf/a.txt", Some(0o600)), item("b", "b", None)];
        let some = config_map_payload(Some(&cm), Some(&items), Some(0o666), false).unwrap();
        assert_eq!(
            files(&some),
            [("b", &b"2"[..], 0o666), ("conf/a.txt", b"1", 0o600)]
        );
        let missing = [item("zzz", "z", None)];
        let err = config_map_payload(Some(&cm), Some(&missing), None, false).unwrap_err();
        assert_eq!(err, "configmap references non-existent config key: zzz");
        assert!(config_map_payload(Some(&cm), Some(&missing), None, true)
            .unwrap()
            .is_empty());
        assert!(config_map_payload(None, None, None, true)
            .unwrap()
            .is_empty());
        let err = config_map_payload(Some(&cm), None, Some(0o1000), false).unwrap_err();
        assert!(err.contains("out of range"), "{err}");

        let secret = Secret {
            data: Some([("token".to_string(), ByteString(b"s3cr3t".to_vec()))].into()),
            ..Default::default()
        };
        let p = secret_payload(Some(&secret), None, Some(0o400), false).unwrap();
        assert_eq!(files(&p), [("token", &b"s3cr3t"[..], 0o400)]);
        let err = secret_payload(Some(&secret), Some(&missing), None, false).unwrap_err();
        assert_eq!(err, "references non-existent secret key: zzz");
    }

    #[test]
    fn downward_payload_formats_labels_and_resources() {
        let pod = Pod {
            metadata: ObjectMeta::default(),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        };
        let fields = PodFields {
            name: "p".into(),
            namespace: "ns".into(),
            labels: [
                ("b".to_string(), "x\"y".to_string()),
                ("a".into(), "1".into()),
            ]
            .into(),
            allocatable: env::NodeAllocatable::from_quantities("2", "1Gi"),
            ..Default::default()
        };
        let field = |path: &str, file: &str| DownwardAPIVolumeFile {
            path: file.into(),
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..Default::default()
        };
        let source = DownwardAPIVolumeSource {
            items: Some(vec![
                field("metadata.labels", "labels"),
                field("metadata.name", "name"),
                field("metadata.labels['a']", "a"),
                DownwardAPIVolumeFile {
                    path: "mem".into(),
                    mode: Some(0o600),
                    resource_field_ref: Some(k8s_openapi::api::core::v1::ResourceFieldSelector {
                        container_name: Some("main".into()),
                        resource: "limits.memory".into(),
                        divisor: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                            "1Mi".into(),
                        )),
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let p = downward_payload(&source, &pod, &fields).unwrap();
        assert_eq!(
            files(&p),
            [
                ("a", &b"1"[..], 0o644),
                ("labels", b"a=\"1\"\nb=\"x\\\"y\"\n", 0o644),
                ("mem", b"1024", 0o600),
                ("name", b"p", 0o644),
            ]
        );
        assert_eq!(go_quote("tab\there\u{1}é"), "\"tab\\there\\x01é\"");
    }

    fn payload(pairs: &[(&str, &str)]) -> Payload {
        pairs
            .iter()
            .map(|(p, d)| {
                (
                    p.to_string(),
                    File {
                        data: d.as_bytes().to_vec(),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn atomic_writes_swap_data_and_prune_old_names() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        assert!(write_atomic(&vol, &payload(&[("a", "1"), ("sub/b", "2")])).unwrap());
        assert_eq!(std::fs::read_to_string(vol.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(vol.join("sub/b")).unwrap(), "2");
        assert!(std::fs::symlink_metadata(vol.join("a"))
            .unwrap()
            .file_type()
            .is_symlink());
        let first = std::fs::read_link(vol.join(DATA)).unwrap();
        // An identical payload is not rewritten.
        assert!(!write_atomic(&vol, &payload(&[("a", "1"), ("sub/b", "2")])).unwrap());
        assert_eq!(std::fs::read_link(vol.join(DATA)).unwrap(), first);
        // A reader holding the old file keeps reading the old content; new opens see the new.
        let old_file = std::fs::File::open(vol.join("a")).unwrap();
        assert!(write_atomic(&vol, &payload(&[("a", "one"), ("c", "3")])).unwrap());
        assert_eq!(std::io::read_to_string(old_file).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(vol.join("a")).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(vol.join("c")).unwrap(), "3");
        assert!(!vol.join("sub").exists() && !vol.join(&first).exists());
        let mut names: Vec<String> = std::fs::read_dir(&vol)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with("..2"))
            .collect();
        names.sort();
        assert_eq!(names, ["..data", "a", "c"]);
        // Modes are applied; a mode change alone is an update.
        let mut p = payload(&[("a", "one"), ("c", "3")]);
        p.get_mut("c").unwrap().mode = 0o600;
        assert!(write_atomic(&vol, &p).unwrap());
        let mode = std::fs::metadata(vol.join("c"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        for bad in ["../x", "/etc/passwd", "..hidden", "a/../b"] {
            let err = write_atomic(&vol, &payload(&[(bad, "x")])).unwrap_err();
            assert!(err.contains("invalid file path"), "{bad}: {err}");
        }
    }
}
