//! The controller manager: one reusable runtime (reflector → cache → keyed work queue →
//! reconcile), leader election fenced by the Raft term, and one module per controller.

pub mod controllers;
pub mod error;
pub mod expectations;
pub mod runtime;
pub mod setup;
pub mod util;

pub use error::{Error, Result};
pub use setup::{build_manager, ControllerOptions, DEFAULT_VOLUME_ROOT, NAMES};
