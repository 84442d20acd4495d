//! The controllers' errors: API failures (retry, conflict, fenced) and objects that cannot be
//! decoded.

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] rkube_client::Error),
    /// An object from the API did not match its kind's schema.
    #[error("decoding {0}")]
    Decode(String),
    /// The object asks for something the controller cannot do (reported as an Event).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Whether the writer lost leadership (its fencing term is stale): stop, do not retry.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Error::Api(rkube_client::Error::Fenced(_)))
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api(rkube_client::Error::NotFound(_)))
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Api(rkube_client::Error::Conflict(_)))
    }

    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::Api(rkube_client::Error::AlreadyExists(_)))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
