//! Control-plane controllers: level-triggered reconcilers over list + watch.
//!
//! Today: the namespace controller. The scheduler, Deployment, node lifecycle and garbage
//! collection controllers join here (issue "Scheduler, controllers and a multi-node test cluster").

pub mod namespace;

use std::sync::Arc;

use crate::store::Store;

/// Runs every controller until the task is aborted.
pub async fn run(store: Arc<dyn Store>) {
    namespace::run(store).await;
}
