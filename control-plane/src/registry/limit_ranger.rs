//! LimitRanger admission (Kubernetes' plugin of that name): a new pod's containers get the
//! defaults of its namespace's LimitRanges where they set no limit or request (mutating), then
//! the pod is refused if a container, or the pod's sum, is outside a LimitRange's bounds
//! (validating): `pods "p" is forbidden: [maximum memory usage per Container is 1Gi, but limit
//! is 2Gi]` (PermissionDenied, as Kubernetes' 403). The rules are in
//! [`skiff_api::validation::limit_range`].
//!
//! The defaults come before the node's own (a Wasm container with no memory limit gets the
//! LimitRange's default, else the agent's `--wasm-default-memory-limit`).
//!
//! Must not: write anything; it lists the namespace's LimitRanges on each pod create.

use std::sync::Arc;

use skiff_api::v1::LimitRange;
use skiff_api::validation::limit_range;

use super::admission::{Attributes, Mutating, ObjectMut, Operation, Validating};
use super::{decode, prefix};
use crate::error::ApiError;
use crate::store::Store;

pub struct LimitRanger {
    pub store: Arc<dyn Store>,
}

impl LimitRanger {
    async fn ranges(&self, namespace: &str) -> Result<Vec<LimitRange>, ApiError> {
        use skiff_api::Resource;
        let page = self
            .store
            .list(&prefix::<LimitRange>(namespace), None, 0)
            .await
            .map_err(|e| ApiError::from_store(e, LimitRange::PLURAL, namespace))?;
        page.items.iter().map(decode).collect()
    }
}

#[async_trait::async_trait]
impl Mutating for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    async fn admit(&self, attrs: &Attributes<'_>, obj: ObjectMut<'_>) -> Result<(), ApiError> {
        let ObjectMut::Pod(pod) = obj else {
            return Ok(());
        };
        if attrs.operation != Operation::Create {
            return Ok(());
        }
        let Some(spec) = pod.spec.as_mut() else {
            return Ok(());
        };
        let ranges = self.ranges(attrs.namespace).await?;
        limit_range::apply_defaults(&ranges, spec);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Validating for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    async fn validate(&self, attrs: &Attributes<'_>, obj: ObjectMut<'_>) -> Result<(), ApiError> {
        let ObjectMut::Pod(pod) = obj else {
            return Ok(());
        };
        if attrs.operation != Operation::Create {
            return Ok(());
        }
        let Some(spec) = pod.spec.as_ref() else {
            return Ok(());
        };
        let ranges = self.ranges(attrs.namespace).await?;
        let problems = limit_range::check_pod(&ranges, spec);
        if problems.is_empty() {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "pods {:?} is forbidden: [{}]",
            attrs.name,
            problems.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use skiff_api::v1::{
        Container, LimitRangeItem, LimitRangeSpec, Pod, PodSpec, ResourceRequirements,
    };

    use super::super::tests::{Harness, meta};
    use super::*;

    fn quantities(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(name: &str, limits: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: meta("default", name),
            spec: Some(PodSpec {
                runtime_class_name: "wasm".into(),
                containers: vec![Container {
                    name: "app".into(),
                    image: "file:app.wasm".into(),
                    resources: (!limits.is_empty()).then(|| ResourceRequirements {
                        limits: quantities(limits),
                        requests: Default::default(),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    #[tokio::test]
    async fn pods_get_defaults_and_are_held_to_the_bounds() {
        let h = Harness::new().await;
        let lr = h
            .create(LimitRange {
                metadata: meta("default", "limits"),
                spec: Some(LimitRangeSpec {
                    limits: vec![LimitRangeItem {
                        r#type: "Container".into(),
                        max: quantities(&[("memory", "256Mi")]),
                        default_request: quantities(&[("memory", "32Mi")]),
                        ..Default::default()
                    }],
                }),
            })
            .await
            .unwrap();
        // Stored defaulted: default from max.
        let item = &lr.spec.as_ref().unwrap().limits[0];
        assert_eq!(item.r#default, quantities(&[("memory", "256Mi")]));

        let created = h.create(pod("bare", &[])).await.unwrap();
        let res = created.spec.unwrap().containers[0]
            .resources
            .clone()
            .unwrap();
        assert_eq!(res.limits, quantities(&[("memory", "256Mi")]));
        assert_eq!(res.requests, quantities(&[("memory", "32Mi")]));

        let e = h
            .create(pod("big", &[("memory", "1Gi")]))
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::Forbidden(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "pods \"big\" is forbidden: [maximum memory usage per Container is 256Mi, but limit is 1Gi]"
        );
        // A bad LimitRange is refused by validation.
        let e = h
            .create(LimitRange {
                metadata: meta("default", "upside-down"),
                spec: Some(LimitRangeSpec {
                    limits: vec![LimitRangeItem {
                        r#type: "Container".into(),
                        max: quantities(&[("cpu", "1")]),
                        min: quantities(&[("cpu", "2")]),
                        ..Default::default()
                    }],
                }),
            })
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("spec.limits[0].min[cpu]: min value 2 is greater than max value 1"),
            "{e}"
        );
    }
}
