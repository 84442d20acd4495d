//! Architecture tidy checks: the crate layering and invariants of DESIGN.md, read from the Cargo manifests, and the `//!` line every source file starts with.
//!
//! In the spirit of rust-analyzer's `xtask/src/tidy.rs`: the architecture is only as real as the
//! test that fails when someone breaks it. Each check is its own test and names the crate or file,
//! the rule it breaks, and what would be allowed.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The intended layering: crate directory, package name, and the rkube packages it may depend on
/// (normal, dev and build dependencies alike). Crates not created yet are skipped.
const LAYERS: &[(&str, &str, &[&str])] = &[
    ("proto", "rkube-proto", &[]),
    ("store", "rkube-store", &["rkube-proto"]),
    (
        "apiserver",
        "rkube-apiserver",
        &["rkube-store", "rkube-proto"],
    ),
    ("client", "rkube-client", &["rkube-proto"]),
    (
        "controllers",
        "rkube-controllers",
        &["rkube-client", "rkube-proto"],
    ),
    // The scheduler runs on the controllers' runtime (informers, work queue, leader election
    // with fencing): one runtime for both, as ARCHITECTURE.md records.
    (
        "scheduler",
        "rkube-scheduler",
        &["rkube-controllers", "rkube-client", "rkube-proto"],
    ),
    ("agent", "rkube-agent", &["rkube-client", "rkube-proto"]),
    ("cli", "rkube-cli", &["rkube-client", "rkube-proto"]),
];

/// The `rkube` binary package at the workspace root: it wires every role, so it may depend on all.
const ROOT_PACKAGE: &str = "rkube";

/// The black-box test crate: it may depend on all.
const TESTS_PACKAGE: &str = "rkube-tests";

/// Dependencies whose types must never leak out of `store`.
const STORE_ONLY_DEPENDENCIES: &[&str] = &["rocksdb", "openraft"];

/// Invariant 2: only the API server touches the store (plus the binary that wires it, and tests).
const STORE_DEPENDENTS: &[&str] = &["rkube-apiserver", ROOT_PACKAGE, TESTS_PACKAGE];

const DEPENDENCY_TABLES: &[&str] = &["dependencies", "dev-dependencies", "build-dependencies"];

/// The layering violations of `package` depending on the rkube packages `rkube_deps`, one message
/// each; empty when the package keeps to DESIGN.md's table.
fn layering_violations(package: &str, rkube_deps: &[&str]) -> Vec<String> {
    if package == ROOT_PACKAGE || package == TESTS_PACKAGE {
        return Vec::new();
    }
    let Some((dir, _, allowed)) = LAYERS.iter().find(|(_, name, _)| *name == package) else {
        return vec![format!(
            "package `{package}` is not in the layering table (LAYERS in tests/tests/tidy.rs): \
             add it with the rkube crates it may depend on, following DESIGN.md's workspace layout"
        )];
    };
    let allowed_text = if allowed.is_empty() {
        "no rkube crate".to_string()
    } else {
        allowed.join(", ")
    };
    rkube_deps
        .iter()
        .filter(|dep| **dep != package && !allowed.contains(dep))
        .map(|dep| {
            format!(
                "`{package}` ({dir}/) depends on `{dep}`, but {dir}/ may depend only on \
                 {allowed_text} (DESIGN.md, workspace layout)"
            )
        })
        .collect()
}

#[test]
fn crate_layering_follows_design() {
    let workspace = Workspace::load();
    let mut violations = Vec::new();
    for manifest in &workspace.manifests {
        if let Some((dir, expected, _)) = LAYERS.iter().find(|(dir, _, _)| manifest.dir == *dir) {
            if manifest.package != *expected {
                violations.push(format!(
                    "{dir}/Cargo.toml names its package `{}`, but the layering table says {dir}/ \
                     holds `{expected}`",
                    manifest.package
                ));
            }
        }
        let rkube_deps: Vec<&str> = manifest
            .dependencies
            .iter()
            .map(String::as_str)
            .filter(|dep| is_rkube_package(dep))
            .collect();
        violations.extend(layering_violations(&manifest.package, &rkube_deps));
    }
    assert_no_violations("crate layering", &violations);
}

#[test]
fn rocksdb_and_openraft_only_in_store() {
    let workspace = Workspace::load();
    let mut violations = Vec::new();
    for manifest in &workspace.manifests {
        if manifest.package == "rkube-store" {
            continue;
        }
        for dep in STORE_ONLY_DEPENDENCIES {
            if manifest.dependencies.contains(*dep) {
                violations.push(format!(
                    "`{}` ({}) depends on `{dep}`, but only rkube-store may: RocksDB and openraft \
                     types never leak out of store; go through the store's own API instead",
                    manifest.package,
                    manifest.path.display()
                ));
            }
        }
    }
    assert_no_violations("store-only dependencies", &violations);
}

#[test]
fn only_apiserver_depends_on_store() {
    let workspace = Workspace::load();
    let violations: Vec<String> = workspace
        .manifests
        .iter()
        .filter(|manifest| manifest.dependencies.contains("rkube-store"))
        .filter(|manifest| !STORE_DEPENDENTS.contains(&manifest.package.as_str()))
        .map(|manifest| {
            format!(
                "`{}` ({}) depends on `rkube-store`, but only {} may (invariant 2: only the API \
                 server touches the store; everything else is an API client through rkube-client)",
                manifest.package,
                manifest.path.display(),
                STORE_DEPENDENTS.join(", ")
            )
        })
        .collect();
    assert_no_violations("store dependents", &violations);
}

#[test]
fn every_rust_file_starts_with_module_doc() {
    let root = workspace_root();
    let mut files = Vec::new();
    collect_rust_files(&root, &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "found no .rs files under {}",
        root.display()
    );
    let violations: Vec<String> = files
        .iter()
        .filter(|file| !starts_with_module_doc(&read(file)))
        .map(|file| {
            format!(
                "{}: the first non-empty line must be a `//!` line saying what the file is for",
                file.strip_prefix(&root).unwrap_or(file).display()
            )
        })
        .collect();
    assert_no_violations("module docs", &violations);
}

#[test]
fn openraft_is_pinned_exactly() {
    let workspace = Workspace::load();
    let mut violations = Vec::new();
    match workspace.dependencies.get("openraft") {
        None => violations.push(
            "the root Cargo.toml has no `openraft` in [workspace.dependencies]: declare it there, \
             pinned with an exact `=x.y.z` version"
                .to_string(),
        ),
        Some(spec) => {
            if let Some(message) =
                exact_pin_violation("root Cargo.toml [workspace.dependencies]", spec)
            {
                violations.push(message);
            }
        }
    }
    for manifest in &workspace.manifests {
        for (table_name, table) in dependency_tables(&manifest.toml) {
            let Some(spec) = table.get("openraft") else {
                continue;
            };
            let inherits = spec
                .get("workspace")
                .and_then(toml::Value::as_bool)
                .unwrap_or(false);
            if !inherits {
                let place = format!("{} [{table_name}]", manifest.path.display());
                violations.extend(exact_pin_violation(&place, spec));
            }
        }
    }
    assert_no_violations("openraft pin", &violations);
}

/// Feeds the layering checker forbidden and allowed edges, so a checker that lets everything
/// through fails here rather than silently passing the real manifests.
#[test]
fn layering_checker_flags_forbidden_edges() {
    // (package, its rkube dependencies, the dependencies that must be flagged)
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("rkube-controllers", &["rkube-client", "rkube-proto"], &[]),
        ("rkube-controllers", &["rkube-store"], &["rkube-store"]),
        (
            "rkube-controllers",
            &["rkube-client", "rkube-store"],
            &["rkube-store"],
        ),
        (
            "rkube-scheduler",
            &["rkube-apiserver"],
            &["rkube-apiserver"],
        ),
        ("rkube-agent", &["rkube-client", "rkube"], &["rkube"]),
        (
            "rkube-cli",
            &["rkube-store", "rkube-agent"],
            &["rkube-store", "rkube-agent"],
        ),
        ("rkube-client", &["rkube-proto"], &[]),
        ("rkube-client", &["rkube-apiserver"], &["rkube-apiserver"]),
        ("rkube-apiserver", &["rkube-store", "rkube-proto"], &[]),
        ("rkube-apiserver", &["rkube-client"], &["rkube-client"]),
        ("rkube-store", &["rkube-proto"], &[]),
        ("rkube-store", &["rkube-apiserver"], &["rkube-apiserver"]),
        ("rkube-proto", &[], &[]),
        ("rkube-proto", &["rkube-store"], &["rkube-store"]),
        (
            "rkube",
            &["rkube-store", "rkube-apiserver", "rkube-agent"],
            &[],
        ),
        ("rkube-tests", &["rkube", "rkube-store", "rkube-cli"], &[]),
    ];
    for (package, deps, forbidden) in cases {
        let violations = layering_violations(package, deps);
        assert_eq!(
            violations.len(),
            forbidden.len(),
            "{package} -> {deps:?}: expected exactly {forbidden:?} flagged, got {violations:#?}"
        );
        for dep in *forbidden {
            assert!(
                violations.iter().any(|v| v.contains(&format!("`{dep}`"))),
                "{package} -> {dep} should be flagged, got {violations:#?}"
            );
        }
    }
    let unknown = layering_violations("rkube-mystery", &["rkube-proto"]);
    assert!(
        unknown.len() == 1 && unknown[0].contains("not in the layering table"),
        "a package missing from the table must be flagged, got {unknown:#?}"
    );
}

/// Both ways of writing a dependency, renames, and every dependency table must be seen.
#[test]
fn dependency_parser_reads_every_form() {
    let workspace: toml::Table = r#"
        renamed-store = { path = "store", package = "rkube-store" }
    "#
    .parse()
    .expect("test workspace table parses");
    let manifest: toml::Table = r#"
        [package]
        name = "rkube-example"

        [dependencies]
        rkube-proto.workspace = true
        rkube-client = { path = "../client" }
        serde = "1"
        renamed-store = { workspace = true }

        [dev-dependencies]
        direct = { path = "../apiserver", package = "rkube-apiserver" }

        [build-dependencies]
        rkube-agent = "0.1"

        [target.'cfg(unix)'.dependencies]
        openraft = "=0.9.25"
    "#
    .parse()
    .expect("test manifest parses");
    let found = dependency_names(&manifest, &workspace);
    let expected: BTreeSet<String> = [
        "rkube-proto",
        "rkube-client",
        "serde",
        "rkube-store",
        "rkube-apiserver",
        "rkube-agent",
        "openraft",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(found, expected);
}

#[test]
fn module_doc_detection() {
    assert!(starts_with_module_doc("//! Does a thing.\nfn main() {}\n"));
    assert!(starts_with_module_doc("\n   \n//! Does a thing.\n"));
    assert!(!starts_with_module_doc("// Does a thing.\n"));
    assert!(!starts_with_module_doc("#![allow(dead_code)]\n//! Late.\n"));
    assert!(!starts_with_module_doc("/// Item doc.\nfn f() {}\n"));
    assert!(!starts_with_module_doc(""));
}

/// One crate's manifest, with every dependency it declares resolved to a package name.
struct Manifest {
    /// The crate directory relative to the workspace root, `.` for the root package.
    dir: String,
    path: PathBuf,
    package: String,
    dependencies: BTreeSet<String>,
    toml: toml::Table,
}

struct Workspace {
    manifests: Vec<Manifest>,
    /// The root's `[workspace.dependencies]`.
    dependencies: toml::Table,
}

impl Workspace {
    /// Reads the root manifest, every workspace member and every crate directory of the layering
    /// table that exists (so a crate left out of `members` is still checked).
    fn load() -> Workspace {
        let root = workspace_root();
        let root_toml = parse_manifest(&root.join("Cargo.toml"));
        let workspace_table = root_toml
            .get("workspace")
            .and_then(toml::Value::as_table)
            .expect("the root Cargo.toml has a [workspace] table");
        let dependencies = workspace_table
            .get("dependencies")
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default();

        let mut dirs = BTreeSet::new();
        let members = workspace_table
            .get("members")
            .and_then(toml::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for member in members.iter().filter_map(toml::Value::as_str) {
            dirs.extend(expand_member(&root, member));
        }
        dirs.insert(".".to_string());
        for (dir, _, _) in LAYERS {
            if root.join(dir).join("Cargo.toml").is_file() {
                dirs.insert(dir.to_string());
            }
        }

        let manifests = dirs
            .into_iter()
            .filter_map(|dir| {
                let path = root.join(&dir).join("Cargo.toml");
                let toml = parse_manifest(&path);
                let package = toml
                    .get("package")
                    .and_then(|package| package.get("name"))
                    .and_then(toml::Value::as_str)?
                    .to_string();
                let dependencies = dependency_names(&toml, &dependencies);
                Some(Manifest {
                    dir,
                    path: path.strip_prefix(&root).unwrap_or(&path).to_path_buf(),
                    package,
                    dependencies,
                    toml,
                })
            })
            .collect();
        Workspace {
            manifests,
            dependencies,
        }
    }
}

fn workspace_root() -> PathBuf {
    let tests_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests_dir
        .parent()
        .expect("the tests crate lives one level below the workspace root")
        .to_path_buf()
}

/// Expands one `members` entry: a plain path, or a `dir/*` glob over its subdirectories.
fn expand_member(root: &Path, member: &str) -> Vec<String> {
    let Some(parent) = member.strip_suffix("/*") else {
        let member = member.strip_prefix("./").unwrap_or(member);
        return vec![member.trim_end_matches('/').to_string()];
    };
    let Ok(entries) = fs::read_dir(root.join(parent)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .map(|entry| format!("{parent}/{}", entry.file_name().to_string_lossy()))
        .collect()
}

fn parse_manifest(path: &Path) -> toml::Table {
    read(path)
        .parse::<toml::Table>()
        .unwrap_or_else(|error| panic!("{} is not valid TOML: {error}", path.display()))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// Every dependency table of a manifest: `[dependencies]`, `[dev-dependencies]`,
/// `[build-dependencies]` and their `[target.'cfg(..)'.*]` forms, with a name for messages.
fn dependency_tables(manifest: &toml::Table) -> Vec<(String, &toml::Table)> {
    let mut tables = Vec::new();
    for kind in DEPENDENCY_TABLES {
        if let Some(table) = manifest.get(*kind).and_then(toml::Value::as_table) {
            tables.push((kind.to_string(), table));
        }
    }
    let targets = manifest.get("target").and_then(toml::Value::as_table);
    for (target, spec) in targets.into_iter().flatten() {
        for kind in DEPENDENCY_TABLES {
            if let Some(table) = spec.get(*kind).and_then(toml::Value::as_table) {
                tables.push((format!("target.{target}.{kind}"), table));
            }
        }
    }
    tables
}

/// The package names of every dependency: the key, unless the entry (or the workspace entry it
/// inherits) renames it with `package = "..."`.
fn dependency_names(
    manifest: &toml::Table,
    workspace_dependencies: &toml::Table,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (_, table) in dependency_tables(manifest) {
        for (key, spec) in table {
            let inherited = spec
                .get("workspace")
                .and_then(toml::Value::as_bool)
                .unwrap_or(false)
                .then(|| workspace_dependencies.get(key))
                .flatten();
            let renamed = spec
                .get("package")
                .or_else(|| inherited.and_then(|spec| spec.get("package")))
                .and_then(toml::Value::as_str);
            names.insert(renamed.unwrap_or(key).to_string());
        }
    }
    names
}

fn is_rkube_package(name: &str) -> bool {
    name == ROOT_PACKAGE || name.starts_with("rkube-")
}

/// A message when `spec` (a version string or a table with `version`) is not an exact `=` pin.
fn exact_pin_violation(place: &str, spec: &toml::Value) -> Option<String> {
    let version = spec
        .as_str()
        .or_else(|| spec.get("version").and_then(toml::Value::as_str));
    match version {
        Some(version) if version.trim_start().starts_with('=') => None,
        Some(version) => Some(format!(
            "{place}: openraft is `{version}`, but it must be pinned to one exact version, \
             written `=x.y.z` (DESIGN.md, Store)"
        )),
        None => Some(format!(
            "{place}: openraft has no version, but it must be pinned to one exact version, \
             written `=x.y.z` (DESIGN.md, Store)"
        )),
    }
}

/// Every `.rs` file under `dir`, skipping `.git` and any directory named `target`.
fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()));
        let path = entry.path();
        let file_type = entry
            .file_type()
            .unwrap_or_else(|error| panic!("cannot stat {}: {error}", path.display()));
        let name = entry.file_name();
        if file_type.is_dir() {
            if name != "target" && name != ".git" {
                collect_rust_files(&path, files);
            }
        } else if file_type.is_file() && path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

fn starts_with_module_doc(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .is_some_and(|line| line.starts_with("//!"))
}

fn assert_no_violations(rule: &str, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "{rule}: {} violation(s):\n  {}",
        violations.len(),
        violations.join("\n  ")
    );
}
