//! rkube library: the roles behind the one `rkube` binary, callable from tests on port 0.

pub mod agent;
pub mod control_plane;
pub mod demo;
pub mod logging;
pub mod server;
