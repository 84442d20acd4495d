//! The controller runtime shared by every controller and the scheduler: informers (reflector +
//! cache), the keyed work queue, reconcile loops, leader election fenced by the Raft term, the
//! event recorder and the manager that runs them.

pub mod api;
pub mod controller;
pub mod events;
pub mod fake;
pub mod informer;
pub mod leader;
pub mod manager;
pub mod queue;

pub use api::{Api, ApiExt, ApiRef, DeleteOptions, Patch, Propagation};
pub use controller::{fast_clock, system_clock, Action, Clock, Context, Controller, Reconciler};
pub use events::Recorder;
pub use informer::{Change, Informer, Informers, Object, ObjectKey};
pub use manager::Manager;
pub use queue::WorkQueue;
