//! Client configuration from a kubeconfig file: the servers (with rkube's `rkube.io/servers`
//! extension listing every API server), the CA, and a bearer token or client certificate.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Everything needed to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `host:port` of every API server, in preference order.
    pub servers: Vec<String>,
    pub ca_pem: String,
    /// The name the servers' certificates are verified against.
    pub tls_server_name: String,
    pub token: Option<String>,
    pub client_cert_pem: Option<String>,
    pub client_key_pem: Option<String>,
    /// The context's default namespace.
    pub namespace: String,
}

/// The subset of the kubeconfig format rkube reads.
#[derive(Debug, Deserialize)]
pub struct Kubeconfig {
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    #[serde(default)]
    pub users: Vec<NamedUser>,
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
    #[serde(rename = "current-context", default)]
    pub current_context: String,
}

#[derive(Debug, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: ClusterEntry,
}

#[derive(Debug, Deserialize)]
pub struct ClusterEntry {
    pub server: String,
    #[serde(rename = "certificate-authority-data", default)]
    pub certificate_authority_data: Option<String>,
    #[serde(rename = "certificate-authority", default)]
    pub certificate_authority: Option<PathBuf>,
    #[serde(rename = "tls-server-name", default)]
    pub tls_server_name: Option<String>,
    #[serde(default)]
    pub extensions: Vec<NamedExtension>,
}

#[derive(Debug, Deserialize)]
pub struct NamedExtension {
    pub name: String,
    pub extension: serde_json::Value,
}

#[derive(Debug, Deserialize)]
pub struct NamedUser {
    pub name: String,
    pub user: UserEntry,
}

#[derive(Debug, Default, Deserialize)]
pub struct UserEntry {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(rename = "client-certificate-data", default)]
    pub client_certificate_data: Option<String>,
    #[serde(rename = "client-key-data", default)]
    pub client_key_data: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NamedContext {
    pub name: String,
    pub context: ContextEntry,
}

#[derive(Debug, Deserialize)]
pub struct ContextEntry {
    pub cluster: String,
    pub user: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

fn strip_scheme(s: &str) -> String {
    s.trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string()
}

fn b64(field: &str, s: &str) -> Result<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| Error::Config(format!("kubeconfig {field} is not valid base64: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|_| Error::Config(format!("kubeconfig {field} is not PEM text")))
}

impl Kubeconfig {
    pub fn parse(text: &str) -> Result<Kubeconfig> {
        yaml_serde::from_str(text).map_err(|e| Error::Config(format!("invalid kubeconfig: {e}")))
    }

    pub fn load(path: &Path) -> Result<Kubeconfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("cannot read kubeconfig {}: {e}", path.display()))
        })?;
        Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// The configuration of the current context.
    pub fn client_config(&self) -> Result<ClientConfig> {
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .or_else(|| self.contexts.first())
            .ok_or_else(|| Error::Config("kubeconfig has no context".into()))?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| {
                Error::Config(format!(
                    "kubeconfig context {:?} names cluster {:?}, which is not defined",
                    ctx.name, ctx.context.cluster
                ))
            })?;
        let user = self.users.iter().find(|u| u.name == ctx.context.user);
        let ca_pem = match (
            &cluster.cluster.certificate_authority_data,
            &cluster.cluster.certificate_authority,
        ) {
            (Some(d), _) => b64("certificate-authority-data", d)?,
            (None, Some(p)) => std::fs::read_to_string(p)
                .map_err(|e| Error::Config(format!("cannot read {}: {e}", p.display())))?,
            (None, None) => {
                return Err(Error::Config(format!(
                    "kubeconfig cluster {:?} has no certificate-authority",
                    cluster.name
                )))
            }
        };
        let mut servers = vec![strip_scheme(&cluster.cluster.server)];
        for ext in cluster
            .cluster
            .extensions
            .iter()
            .filter(|e| e.name == "rkube.io/servers")
        {
            for s in ext.extension["servers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
            {
                let s = strip_scheme(s);
                if !servers.contains(&s) {
                    servers.push(s);
                }
            }
        }
        let u = user.map(|u| &u.user);
        Ok(ClientConfig {
            servers,
            ca_pem,
            tls_server_name: cluster
                .cluster
                .tls_server_name
                .clone()
                .unwrap_or_else(|| "rkube-server".into()),
            token: u.and_then(|u| u.token.clone()),
            client_cert_pem: u
                .and_then(|u| u.client_certificate_data.as_deref())
                .map(|d| b64("client-certificate-data", d))
                .transpose()?,
            client_key_pem: u
                .and_then(|u| u.client_key_data.as_deref())
                .map(|d| b64("client-key-data", d))
                .transpose()?,
            namespace: ctx
                .context
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
        })
    }
}

impl ClientConfig {
    /// `explicit` if given, else `$RKUBECONFIG`, else `~/.rkube/config`.
    pub fn locate(explicit: Option<&Path>) -> Result<ClientConfig> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os("RKUBECONFIG") {
                Some(p) if !p.is_empty() => PathBuf::from(p),
                _ => {
                    let home = std::env::var_os("HOME").ok_or_else(|| {
                        Error::Config("HOME is not set; pass --kubeconfig".into())
                    })?;
                    PathBuf::from(home).join(".rkube").join("config")
                }
            },
        };
        Kubeconfig::load(&path)?.client_config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: rkube
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
    tls-server-name: rkube-server
    extensions:
    - name: rkube.io/servers
      extension:
        servers: [https://127.0.0.1:6443, https://127.0.0.2:6443]
users:
- name: admin
  user:
    token: abc
contexts:
- name: rkube
  context: {cluster: rkube, user: admin, namespace: team-a}
current-context: rkube
"#;

    #[test]
    fn reads_servers_token_and_namespace() {
        let c = Kubeconfig::parse(CONFIG).unwrap().client_config().unwrap();
        assert_eq!(c.servers, vec!["127.0.0.1:6443", "127.0.0.2:6443"]);
        assert_eq!(c.token.as_deref(), Some("abc"));
        assert_eq!(c.namespace, "team-a");
        assert_eq!(c.ca_pem, "-----BEGIN CERTIFICATE-----\n");
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let e = Kubeconfig::parse("clusters: 5").unwrap_err();
        assert!(e.to_string().contains("invalid kubeconfig"), "{e}");
        let e = Kubeconfig::parse("contexts: []")
            .unwrap()
            .client_config()
            .unwrap_err();
        assert!(e.to_string().contains("no context"), "{e}");
    }
}
