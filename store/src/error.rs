//! The store's error type, grouped by who must react, and its one mapping to `tonic::Status`.

use serde::{Deserialize, Serialize};

/// Errors of the replicated store.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize, PartialEq, Eq)]
pub enum Error {
    // ---- the caller asked for something that cannot be served as asked ----
    /// The requested revision has been compacted away; the caller must relist.
    #[error("required revision {requested} has been compacted (compacted at {compacted}, relist)")]
    Compacted { requested: i64, compacted: i64 },
    /// The requested revision is ahead of the store.
    #[error("required revision {requested} is a future revision (current revision is {current})")]
    FutureRevision { requested: i64, current: i64 },
    /// The request is malformed or exceeds a limit; the message names the field.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A write stamped with a fencing term was committed in a later term: its author lost
    /// leadership before the write took effect.
    #[error(
        "fenced: write was stamped with raft term {stamped} but committed in term {committed}"
    )]
    Fenced { stamped: u64, committed: u64 },
    /// The caller is not authenticated or not allowed to call this.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),

    // ---- transient: retry, perhaps on another replica ----
    /// No leader is known, quorum is lost, or the leader cannot be reached.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Waited too long (for the leader, for this replica to apply a revision, ...).
    #[error("timed out: {0}")]
    Timeout(String),

    // ---- the replica cannot continue ----
    /// Storage failed (disk full, unwritable data directory, corruption). The replica stops
    /// rather than acknowledge writes it cannot persist.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The replica is shutting down or has stopped.
    #[error("replica stopped: {0}")]
    Stopped(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether a retry (perhaps on another replica) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable(_) | Error::Timeout(_) | Error::Stopped(_)
        )
    }
}

/// The one place store errors become gRPC statuses.
impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use tonic::Code;
        let code = match &e {
            Error::Compacted { .. } => Code::OutOfRange,
            Error::FutureRevision { .. } => Code::FailedPrecondition,
            Error::Invalid(_) => Code::InvalidArgument,
            Error::Fenced { .. } => Code::FailedPrecondition,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Unavailable(_) | Error::Stopped(_) => Code::Unavailable,
            Error::Timeout(_) => Code::DeadlineExceeded,
            Error::Storage(_) => Code::Internal,
        };
        let mut status = tonic::Status::new(code, e.to_string());
        if let Error::Compacted { compacted, .. } = e {
            if let Ok(v) = compacted.to_string().parse() {
                status.metadata_mut().insert("rkube-compact-revision", v);
            }
        }
        status
    }
}

/// Turn a gRPC status from a peer back into a store error (for forwarded requests).
impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        let msg = s.message().to_string();
        match s.code() {
            Code::OutOfRange => {
                let compacted = s
                    .metadata()
                    .get("rkube-compact-revision")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Error::Compacted {
                    requested: 0,
                    compacted,
                }
            }
            Code::InvalidArgument => Error::Invalid(
                msg.strip_prefix("invalid request: ")
                    .unwrap_or(&msg)
                    .to_string(),
            ),
            Code::Unauthenticated | Code::PermissionDenied => Error::Unauthenticated(msg),
            Code::DeadlineExceeded => Error::Timeout(msg),
            Code::Internal | Code::DataLoss => Error::Storage(msg),
            _ => Error::Unavailable(format!("{}: {msg}", s.code())),
        }
    }
}
