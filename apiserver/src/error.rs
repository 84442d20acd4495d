//! The API server's errors, phrased like Kubernetes' (`pods "x" not found`), and their one
//! mapping to gRPC statuses (with the Kubernetes reason in the `rkube-reason` metadata key).

use crate::validation::FieldError;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum Error {
    // ---- the request cannot be served as asked ----
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, name: String },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String },
    /// A stale resourceVersion or a failed precondition.
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {message}")]
    Conflict {
        resource: String,
        name: String,
        message: String,
    },
    /// Validation failed; every field error is listed.
    #[error("{kind} \"{name}\" is invalid: {}", join_errors(errors))]
    Invalid {
        kind: String,
        name: String,
        errors: Vec<FieldError>,
    },
    /// The request itself is malformed (bad JSON, unknown kind, bad selector, ...).
    #[error("{0}")]
    BadRequest(String),
    /// The requested resourceVersion is older than the compacted history: relist.
    #[error("too old resource version: {requested} ({compacted})")]
    Gone { requested: i64, compacted: i64 },
    #[error("{0}")]
    RequestTooLarge(String),
    #[error("{0}")]
    MethodNotSupported(String),
    /// A write stamped with a fencing term was committed in a later term: the writer is no longer
    /// the leader it thought it was.
    #[error("fenced: {0}")]
    Fenced(String),

    // ---- who is asking ----
    #[error("Unauthorized: {0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),

    // ---- transient ----
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Timeout(String),

    // ---- bugs and storage failures ----
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn join_errors(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl Error {
    /// Kubernetes' `metav1.StatusReason` for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "NotFound",
            Error::AlreadyExists { .. } => "AlreadyExists",
            Error::Conflict { .. } => "Conflict",
            Error::Invalid { .. } => "Invalid",
            Error::BadRequest(_) => "BadRequest",
            Error::Gone { .. } => "Expired",
            Error::RequestTooLarge(_) => "RequestEntityTooLarge",
            Error::MethodNotSupported(_) => "MethodNotAllowed",
            Error::Fenced(_) => "Fenced",
            Error::Unauthenticated(_) => "Unauthorized",
            Error::Forbidden(_) => "Forbidden",
            Error::Unavailable(_) => "ServiceUnavailable",
            Error::Timeout(_) => "Timeout",
            Error::Internal(_) => "InternalError",
        }
    }

    /// The HTTP status code Kubernetes would answer with.
    pub fn http_code(&self) -> u16 {
        match self {
            Error::NotFound { .. } => 404,
            Error::AlreadyExists { .. } | Error::Conflict { .. } => 409,
            Error::Invalid { .. } => 422,
            Error::BadRequest(_) => 400,
            Error::Gone { .. } => 410,
            Error::RequestTooLarge(_) => 413,
            Error::MethodNotSupported(_) => 405,
            Error::Fenced(_) => 409,
            Error::Unauthenticated(_) => 401,
            Error::Forbidden(_) => 403,
            Error::Unavailable(_) => 503,
            Error::Timeout(_) => 504,
            Error::Internal(_) => 500,
        }
    }
}

impl From<rkube_store::Error> for Error {
    fn from(e: rkube_store::Error) -> Self {
        use rkube_store::Error as S;
        match e {
            S::Compacted { requested, compacted } => Error::Gone { requested, compacted },
            S::FutureRevision { requested, current } => Error::Timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )),
            S::Invalid(m) => Error::BadRequest(m),
            S::Fenced { stamped, committed } => Error::Fenced(format!(
                "the writer lost leadership (write stamped with term {stamped}, committed in term {committed})"
            )),
            S::Unauthenticated(m) => Error::Unauthenticated(m),
            S::Unavailable(m) | S::Stopped(m) => Error::Unavailable(m),
            S::Timeout(m) => Error::Timeout(m),
            S::Storage(m) => Error::Internal(m),
        }
    }
}

/// The one place API errors become gRPC statuses.
impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use tonic::Code;
        let code = match &e {
            Error::NotFound { .. } => Code::NotFound,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::Conflict { .. } => Code::Aborted,
            Error::Invalid { .. } | Error::BadRequest(_) | Error::RequestTooLarge(_) => {
                Code::InvalidArgument
            }
            Error::Gone { .. } => Code::OutOfRange,
            Error::MethodNotSupported(_) => Code::Unimplemented,
            Error::Fenced(_) => Code::FailedPrecondition,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Forbidden(_) => Code::PermissionDenied,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Timeout(_) => Code::DeadlineExceeded,
            Error::Internal(_) => Code::Internal,
        };
        let mut status = tonic::Status::new(code, e.to_string());
        status.metadata_mut().insert(
            "rkube-reason",
            tonic::metadata::MetadataValue::from_static(e.reason()),
        );
        status
    }
}
