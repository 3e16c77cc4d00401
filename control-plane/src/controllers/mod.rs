//! Control-plane controllers: level-triggered reconcilers over list + watch.
//!
//! Today: the namespace controller and a first Deployment controller; the [`crate::scheduler`]
//! runs beside them. Revisions and rollouts, node lifecycle and garbage collection join here (issue "Scheduler, controllers and a
//! multi-node test cluster").

pub mod deployment;
pub mod namespace;

use std::sync::Arc;

use crate::store::Store;

/// Runs every controller (and the scheduler) until the task is aborted.
pub async fn run(store: Arc<dyn Store>) {
    tokio::join!(
        namespace::run(store.clone()),
        deployment::run(store.clone()),
        crate::scheduler::run(store)
    );
}
