//! One module per command.

pub mod api_resources;
pub mod apply;
pub mod cluster;
pub mod create;
pub mod delete;
pub mod describe;
pub mod edit;
pub mod exec;
pub mod expose;
pub mod get;
pub mod label;
pub mod logs;
pub mod patch;
pub mod port_forward;
pub mod rollout;
pub mod run;
pub mod scale;
pub mod set;
pub mod top;
pub mod wait;
