//! The Volumes section of pods and pod templates, with the common volume sources spelled out
//! as kubectl's `describeVolumes` prints them.

use serde_json::Value;

use super::fields::{arr, flag, int, s};
use super::layout::{w, Out};

/// The Volumes section, with the common volume sources spelled out.
pub fn volumes(w: &mut Out, volumes: &[Value], space: &str) {
    if volumes.is_empty() {
        w!(w, 0, "{space}Volumes:\t<none>\n");
        return;
    }
    w!(w, 0, "{space}Volumes:\n");
    let name_indent = if space.is_empty() { "" } else { " " };
    for v in volumes {
        w!(w, 1, "{name_indent}{}:\n", s(v, "/name"));
        if let Some(h) = v.get("hostPath") {
            let ty = match s(h, "/type") {
                "" => "<none>",
                t => t,
            };
            w!(w, 2, "Type:\tHostPath (bare host directory volume)\n    Path:\t{}\n    HostPathType:\t{ty}\n", s(h, "/path"));
        } else if let Some(e) = v.get("emptyDir") {
            let limit = match s(e, "/sizeLimit") {
                "" | "0" => "<unset>",
                l => l,
            };
            w!(
                w,
                2,
                "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n    Medium:\t{}\n    SizeLimit:\t{limit}\n",
                s(e, "/medium")
            );
        } else if let Some(sec) = v.get("secret") {
            w!(
                w,
                2,
                "Type:\tSecret (a volume populated by a Secret)\n    SecretName:\t{}\n    Optional:\t{}\n",
                s(sec, "/secretName"),
                flag(sec, "/optional")
            );
        } else if let Some(cm) = v.get("configMap") {
            w!(
                w,
                2,
                "Type:\tConfigMap (a volume populated by a ConfigMap)\n    Name:\t{}\n    Optional:\t{}\n",
                s(cm, "/name"),
                flag(cm, "/optional")
            );
        } else if let Some(pvc) = v.get("persistentVolumeClaim") {
            w!(
                w,
                2,
                "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)\n    ClaimName:\t{}\n    ReadOnly:\t{}\n",
                s(pvc, "/claimName"),
                flag(pvc, "/readOnly")
            );
        } else if let Some(nfs) = v.get("nfs") {
            w!(
                w,
                2,
                "Type:\tNFS (an NFS mount that lasts the lifetime of a pod)\n    Server:\t{}\n    Path:\t{}\n    ReadOnly:\t{}\n",
                s(nfs, "/server"),
                s(nfs, "/path"),
                flag(nfs, "/readOnly")
            );
        } else if let Some(g) = v.get("gitRepo") {
            w!(
                w,
                2,
                "Type:\tGitRepo (a volume that is pulled from git when the pod is created)\n    Repository:\t{}\n    Revision:\t{}\n",
                s(g, "/repository"),
                s(g, "/revision")
            );
        } else if let Some(d) = v.get("downwardAPI") {
            w.write(2, "Type:\tDownwardAPI (a volume populated by information about the pod)\n    Items:\n");
            for item in arr(d, "/items") {
                if let Some(f) = item.get("fieldRef") {
                    w!(w, 3, "{} -> {}\n", s(f, "/fieldPath"), s(item, "/path"));
                }
                if let Some(r) = item.get("resourceFieldRef") {
                    w!(w, 3, "{} -> {}\n", s(r, "/resource"), s(item, "/path"));
                }
            }
        } else if let Some(p) = v.get("projected") {
            w.write(
                2,
                "Type:\tProjected (a volume that contains injected data from multiple sources)\n",
            );
            for source in arr(p, "/sources") {
                if let Some(sec) = source.get("secret") {
                    w!(
                        w,
                        2,
                        "SecretName:\t{}\n    Optional:\t{}\n",
                        s(sec, "/name"),
                        flag(sec, "/optional")
                    );
                } else if source.get("downwardAPI").is_some() {
                    w.write(2, "DownwardAPI:\ttrue\n");
                } else if let Some(cm) = source.get("configMap") {
                    w!(
                        w,
                        2,
                        "ConfigMapName:\t{}\n    Optional:\t{}\n",
                        s(cm, "/name"),
                        flag(cm, "/optional")
                    );
                } else if let Some(t) = source.get("serviceAccountToken") {
                    w!(
                        w,
                        2,
                        "TokenExpirationSeconds:\t{}\n",
                        int(t, "/expirationSeconds")
                    );
                }
            }
        } else {
            w.write(1, "<unknown>\n");
        }
    }
}
