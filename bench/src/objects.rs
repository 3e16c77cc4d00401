//! Objects the API benchmarks create: one shape for all of them, so their figures compare.

use skiff_api::v1::{Container, ObjectMeta, Pod, PodSpec};

/// A Wasm pod named `name` with the label `app: bench` (never started: the API benchmarks run
/// no node, or one that cannot read its module).
pub fn pod(name: &str) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            labels: [("app".to_string(), "bench".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            runtime_class_name: "wasm".into(),
            containers: vec![Container {
                name: "app".into(),
                image: "file:/srv/app.wasm".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}
