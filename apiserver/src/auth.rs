//! Authentication: a client certificate issued by the cluster CA (CN = user, O = groups) or a
//! bearer token whose SHA-256 is registered in the store (so every replica knows every token).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rkube_proto::store as pb;
use rkube_store::Store;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::{Error, Result};

/// Where token records live in the store (outside `/registry/`: not a Kubernetes resource).
const TOKEN_PREFIX: &str = "/rkube/tokens/";
const CACHE_TTL: Duration = Duration::from_secs(10);

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// Verifies callers of the API.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    cache: Arc<Mutex<HashMap<String, (User, Instant)>>>,
}

fn token_key(token: &str) -> String {
    format!(
        "{TOKEN_PREFIX}{}",
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    )
}

impl Authenticator {
    pub fn new(store: Store) -> Authenticator {
        Authenticator {
            store,
            cache: Default::default(),
        }
    }

    /// Register a bearer token for `user` (only its hash is stored).
    pub async fn add_token(&self, token: &str, user: &User) -> Result<()> {
        let value = serde_json::to_vec(user).map_err(|e| Error::Internal(e.to_string()))?;
        self.store
            .put(pb::PutRequest {
                key: token_key(token).into_bytes(),
                value,
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Authenticate a request from its peer certificates and metadata.
    pub async fn authenticate<T>(&self, req: &tonic::Request<T>) -> Result<User> {
        if let Some(header) = req.metadata().get("authorization") {
            let header = header
                .to_str()
                .map_err(|_| Error::Unauthenticated("malformed authorization header".into()))?;
            let token = header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .ok_or_else(|| {
                    Error::Unauthenticated(
                        "the authorization header must be `Bearer <token>`".into(),
                    )
                })?;
            return self.user_for_token(token.trim()).await;
        }
        if let Some(certs) = req.peer_certs() {
            if let Some(leaf) = certs.first() {
                let (cn, groups) = rkube_store::tls::subject_of(leaf.as_ref()).map_err(|e| {
                    Error::Unauthenticated(format!("unreadable client certificate: {e}"))
                })?;
                return Ok(User { name: cn, groups });
            }
        }
        Err(Error::Unauthenticated(
            "no bearer token and no client certificate".into(),
        ))
    }

    async fn user_for_token(&self, token: &str) -> Result<User> {
        let key = token_key(token);
        if let Some((u, at)) = self.cache.lock().expect("token cache").get(&key) {
            if at.elapsed() < CACHE_TTL {
                return Ok(u.clone());
            }
        }
        let resp = self
            .store
            .range(pb::RangeRequest {
                key: key.clone().into_bytes(),
                serializable: true,
                ..Default::default()
            })
            .await?;
        let kv = resp
            .kvs
            .first()
            .ok_or_else(|| Error::Unauthenticated("invalid bearer token".into()))?;
        let user: User = serde_json::from_slice(&kv.value)
            .map_err(|e| Error::Internal(format!("corrupt token record: {e}")))?;
        self.cache
            .lock()
            .expect("token cache")
            .insert(key, (user.clone(), Instant::now()));
        Ok(user)
    }
}

/// A new random bearer token (32 bytes, hex).
pub fn generate_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}
