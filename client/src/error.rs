//! Client errors, classified from gRPC statuses and the `rkube-reason` metadata.

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("Error from server (NotFound): {0}")]
    NotFound(String),
    #[error("Error from server (AlreadyExists): {0}")]
    AlreadyExists(String),
    #[error("Error from server (Conflict): {0}")]
    Conflict(String),
    #[error("Error from server (Invalid): {0}")]
    Invalid(String),
    #[error("Error from server (BadRequest): {0}")]
    BadRequest(String),
    /// The resourceVersion is too old (compacted): relist.
    #[error("Error from server (Expired): {0}")]
    Gone(String),
    #[error("error: You must be logged in to the server (Unauthorized): {0}")]
    Unauthenticated(String),
    #[error("Error from server (Forbidden): {0}")]
    Forbidden(String),
    /// No server could be reached, or the one reached could not serve (retry).
    #[error("{0}")]
    Unavailable(String),
    #[error("Error from server (Timeout): {0}")]
    Timeout(String),
    /// A write carried a fencing term that is no longer current: the writer lost leadership.
    #[error("Error from server (Fenced): {0}")]
    Fenced(String),
    #[error("Error from server: {0}")]
    Server(String),
    /// Bad client configuration (kubeconfig, certificates).
    #[error("error: {0}")]
    Config(String),
    #[error("error: {0}")]
    Decode(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether trying another server (or again later) may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Timeout(_))
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        let msg = s.message().to_string();
        let reason = s
            .metadata()
            .get("rkube-reason")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match s.code() {
            Code::NotFound => Error::NotFound(msg),
            Code::AlreadyExists => Error::AlreadyExists(msg),
            Code::Aborted => Error::Conflict(msg),
            Code::InvalidArgument if reason == "Invalid" => Error::Invalid(msg),
            Code::InvalidArgument => Error::BadRequest(msg),
            Code::OutOfRange if reason == "Expired" => Error::Gone(msg),
            Code::OutOfRange => Error::BadRequest(format!("request too large: {msg}")),
            Code::Unauthenticated => Error::Unauthenticated(msg),
            Code::PermissionDenied => Error::Forbidden(msg),
            Code::Unavailable | Code::Cancelled | Code::Unknown => Error::Unavailable(msg),
            Code::DeadlineExceeded => Error::Timeout(msg),
            Code::FailedPrecondition if reason == "Fenced" => Error::Fenced(msg),
            _ => Error::Server(format!("{}: {msg}", s.code())),
        }
    }
}
