//! The agent's errors, grouped by who must react: configuration mistakes stop the agent, API and
//! runtime failures are retried by the loop that met them.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or option the agent cannot work with (fatal at start).
    #[error("invalid agent configuration: {0}")]
    Config(String),
    /// The API answered with an error or could not be reached (retried by the caller).
    #[error(transparent)]
    Api(#[from] rkube_client::Error),
    /// A container could not be started or stopped.
    #[error("container runtime: {0}")]
    Runtime(String),
    /// A container's image is not on this node, and images are never pulled: the container
    /// waits with reason `ErrImageNeverPull` (retried with back-off, in case it gets built).
    #[error("{0}")]
    ImageNotPresent(String),
    /// A file under the data directory could not be written or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
