//! The rkube scheduler: a filter + score pipeline over a snapshot of nodes and pods, preemption
//! of lower-priority pods, and the leader-elected loop that binds pending pods through the API.

pub mod algorithm;
pub mod scheduler;

use rkube_controllers::runtime::Manager;

/// The scheduler's name in `rkube server --controllers`.
pub const NAME: &str = "scheduler";

/// Add the scheduler to a controller manager: it then runs in every server and acts only on the
/// leader, with the same fencing as the controllers.
pub fn register(manager: &mut Manager) {
    let c = scheduler::controller(manager.context());
    manager.add(c);
}
