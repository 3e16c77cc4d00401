//! apps/v1 kinds' columns: Deployments and ReplicaSets.

use serde_json::{Value, json};

use super::{Column, Printer, containers_and_images, created, selector_text, text};
use crate::resource::ResourceExt;
use crate::v1::{Deployment, ReplicaSet};

const CONTAINERS: &str = "Names of each container in the template.";
const IMAGES: &str = "Images referenced by each container in the template.";
const SELECTOR: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.";

impl Printer for Deployment {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Ready", "Number of the pod with ready state"),
            Column::new("Up-to-date", "Total number of non-terminated pods targeted by this deployment that have the desired template spec.").integer(),
            Column::new("Available", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.").integer(),
            Column::age(),
            Column::new("Containers", CONTAINERS).wide(),
            Column::new("Images", IMAGES).wide(),
            Column::new("Selector", SELECTOR).wide(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let [containers, images] =
            containers_and_images(spec.template.as_ref().and_then(|t| t.spec.as_ref()));
        vec![
            text(self.name()),
            text(format!(
                "{}/{}",
                status.ready_replicas,
                spec.replicas.unwrap_or(1)
            )),
            json!(status.updated_replicas),
            json!(status.available_replicas),
            created(self),
            containers,
            images,
            selector_text(spec.selector.as_ref()),
        ]
    }
}

impl Printer for ReplicaSet {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Desired", "Number of desired pods.").integer(),
            Column::new("Current", "Number of actual pods.").integer(),
            Column::new("Ready", "Number of ready pods.").integer(),
            Column::age(),
            Column::new("Containers", CONTAINERS).wide(),
            Column::new("Images", IMAGES).wide(),
            Column::new(
                "Selector",
                "Label selector for pods. It must match the pod template's labels.",
            )
            .wide(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let [containers, images] =
            containers_and_images(spec.template.as_ref().and_then(|t| t.spec.as_ref()));
        vec![
            text(self.name()),
            json!(spec.replicas.unwrap_or(1)),
            json!(status.replicas),
            json!(status.ready_replicas),
            created(self),
            containers,
            images,
            selector_text(spec.selector.as_ref()),
        ]
    }
}
