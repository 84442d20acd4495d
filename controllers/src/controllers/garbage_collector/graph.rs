//! The garbage collector's dependency graph (uid → object identity, owner uid → dependents), kept
//! current by the tracked kinds' informer handlers, and the work-queue keys that name an object
//! of any tracked kind.
//!
//! The graph is an index only: every decision re-reads the objects from the informers, so a
//! graph entry that lags the caches for an instant never causes a write on its own.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::runtime::ObjectKey;

/// The work-queue key of an object of any kind.
///
/// The runtime's [`ObjectKey`] has a namespace and a name only, so the kind is encoded into the
/// namespace field as `"<apiVersion>/<kind>|<namespace>"`, e.g. `"apps/v1/ReplicaSet|default"`
/// (neither an apiVersion, a kind nor a namespace can contain `|`).
pub fn object_key(api_version: &str, kind: &str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey::new(&format!("{api_version}/{kind}|{namespace}"), name)
}

/// The apiVersion and kind a key encodes (`None` for a plain `namespace/name` key, such as the
/// runtime's resync queues for the controller's primary kind), and the object's namespace.
pub fn parse_key(key: &ObjectKey) -> (Option<(&str, &str)>, &str) {
    match key.namespace.split_once('|') {
        Some((kind, ns)) => (kind.rsplit_once('/'), ns),
        None => (None, key.namespace.as_str()),
    }
}

/// One object's identity: its kind (an index into the collector's kinds), namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ident {
    pub kind: usize,
    pub namespace: String,
    pub name: String,
}

/// Who owns whom, by uid.
#[derive(Default)]
pub struct Graph {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    nodes: HashMap<String, Node>,
    /// Owner uid → the uids of the objects that name it in an owner reference. An entry
    /// outlives its owner: the dependents of a deleted owner are exactly what must be collected.
    dependents: HashMap<String, BTreeSet<String>>,
}

struct Node {
    ident: Ident,
    owners: Vec<String>,
}

impl Graph {
    /// Record an object as added or modified (objects without a uid are not tracked).
    pub fn upsert(&self, kind: usize, meta: &ObjectMeta) {
        let Some(uid) = meta.uid.clone() else {
            return;
        };
        let owners: Vec<String> = meta
            .owner_references
            .iter()
            .flatten()
            .map(|r| r.uid.clone())
            .collect();
        let ident = Ident {
            kind,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        };
        let mut st = self.state.lock().expect("graph lock");
        if let Some(old) = st.nodes.remove(&uid) {
            st.unlink(&uid, &old.owners);
        }
        for o in &owners {
            st.dependents
                .entry(o.clone())
                .or_default()
                .insert(uid.clone());
        }
        st.nodes.insert(uid, Node { ident, owners });
    }

    /// Forget a deleted object; returns its dependents (which may now have to be collected).
    pub fn remove(&self, meta: &ObjectMeta) -> Vec<Ident> {
        let Some(uid) = meta.uid.as_deref() else {
            return Vec::new();
        };
        let mut st = self.state.lock().expect("graph lock");
        if let Some(old) = st.nodes.remove(uid) {
            st.unlink(uid, &old.owners);
        }
        st.dependents_of(uid)
    }

    /// Whether an object with this uid is known.
    pub fn contains(&self, uid: &str) -> bool {
        self.state
            .lock()
            .expect("graph lock")
            .nodes
            .contains_key(uid)
    }

    /// The objects that name `owner_uid` in an owner reference, in identity order.
    pub fn dependents(&self, owner_uid: &str) -> Vec<Ident> {
        self.state
            .lock()
            .expect("graph lock")
            .dependents_of(owner_uid)
    }
}

impl State {
    fn unlink(&mut self, uid: &str, owners: &[String]) {
        for o in owners {
            if let Some(set) = self.dependents.get_mut(o) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(o);
                }
            }
        }
    }

    fn dependents_of(&self, owner_uid: &str) -> Vec<Ident> {
        let mut out: Vec<Ident> = self
            .dependents
            .get(owner_uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d).map(|n| n.ident.clone()))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn meta(name: &str, uid: &str, owners: &[&str]) -> ObjectMeta {
        ObjectMeta {
            namespace: Some("default".into()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            owner_references: Some(
                owners
                    .iter()
                    .map(|o| OwnerReference {
                        uid: o.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn names(idents: Vec<Ident>) -> Vec<String> {
        idents.into_iter().map(|i| i.name).collect()
    }

    #[test]
    fn keys_round_trip_kind_namespace_and_name() {
        let k = object_key("apps/v1", "ReplicaSet", "default", "web");
        assert_eq!(k.to_string(), "apps/v1/ReplicaSet|default/web");
        assert_eq!(parse_key(&k), (Some(("apps/v1", "ReplicaSet")), "default"));
        let core = object_key("v1", "Pod", "kube-system", "dns");
        assert_eq!(parse_key(&core), (Some(("v1", "Pod")), "kube-system"));
        assert_eq!(
            parse_key(&ObjectKey::new("default", "web")),
            (None, "default")
        );
    }

    #[test]
    fn dependents_follow_owner_reference_changes_and_outlive_their_owner() {
        let g = Graph::default();
        g.upsert(1, &meta("rs", "rs-1", &[]));
        g.upsert(0, &meta("b", "p-2", &["rs-1"]));
        g.upsert(0, &meta("a", "p-1", &["rs-1"]));
        assert_eq!(names(g.dependents("rs-1")), ["a", "b"]);

        // An orphaned dependent leaves its former owner's list.
        g.upsert(0, &meta("b", "p-2", &[]));
        assert_eq!(names(g.dependents("rs-1")), ["a"]);

        // The owner's deletion reports its remaining dependents, which stay listed under its uid.
        assert_eq!(names(g.remove(&meta("rs", "rs-1", &[]))), ["a"]);
        assert!(!g.contains("rs-1"));
        assert_eq!(names(g.dependents("rs-1")), ["a"]);

        g.remove(&meta("a", "p-1", &["rs-1"]));
        assert!(g.dependents("rs-1").is_empty());
        assert!(g.contains("p-2"));
    }
}
