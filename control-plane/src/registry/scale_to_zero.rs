//! The `ScaleToZero` admission link: a HorizontalPodAutoscaler may say `minReplicas: 0` only when
//! its target Deployment's pod template is Wasm (`runtimeClassName: wasm` and no Linux container),
//! which the template alone tells, without pulling an image: a Wasm pod starts in milliseconds, a
//! container does not, and scale from zero holds the first request for as long as the start takes.
//! A Deployment that such an HPA scales keeps a Wasm template (an update to a Linux one is refused
//! while the HPA says 0). The HPA may come first, as manifests list them in any order: with its
//! target missing it is admitted, and the Deployment is checked when it is created.
//!
//! Must not: write anything; it reads the target (or the HPAs of a Deployment's namespace).

use std::sync::Arc;

use skiff_api::v1::{Deployment, HorizontalPodAutoscaler, Pod, PodTemplateSpec};
use skiff_api::validation::FieldErrors;
use skiff_api::workload::{WorkloadKind, container_kind};
use skiff_api::{Resource, ResourceExt};

use super::admission::{Attributes, ObjectMut, Operation, Validating};
use super::{decode, key, prefix};
use crate::error::ApiError;
use crate::store::Store;

/// The link; see the module doc.
pub struct ScaleToZero {
    pub store: Arc<dyn Store>,
}

/// Whether `template` runs Wasm only: `Err` names its Linux containers (or says that the pod is
/// not a Wasm pod).
pub fn wasm_only(template: Option<&PodTemplateSpec>) -> Result<(), String> {
    let pod = Pod {
        metadata: template.and_then(|t| t.metadata.clone()),
        spec: template.and_then(|t| t.spec.clone()),
        status: None,
    };
    let Some(spec) = &pod.spec else {
        return Err("it has no pod template".into());
    };
    if spec.runtime_class_name != skiff_api::workload::WASM_RUNTIME {
        return Err(format!(
            "its pod template is not Wasm (runtimeClassName {:?}, not \"wasm\")",
            spec.runtime_class_name
        ));
    }
    let linux: Vec<&str> = spec
        .init_containers
        .iter()
        .chain(&spec.containers)
        .filter(|c| container_kind(&pod, &c.name) == WorkloadKind::Linux)
        .map(|c| c.name.as_str())
        .collect();
    if linux.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "its pod template has Linux containers ({})",
            linux.join(", ")
        ))
    }
}

fn invalid<K: Resource>(obj: &K, path: &str, message: String) -> ApiError {
    let mut errors = FieldErrors::default();
    errors.add(path, message);
    ApiError::Invalid {
        kind: K::KIND,
        name: obj.name().to_string(),
        errors,
    }
}

/// `minReplicas: 0` and the name of the Deployment it scales.
fn scales_to_zero(hpa: &HorizontalPodAutoscaler) -> Option<&str> {
    let spec = hpa.spec.as_ref()?;
    (spec.min_replicas == Some(0))
        .then_some(spec.scale_target_ref.as_ref())
        .flatten()
        .filter(|t| t.kind == Deployment::KIND)
        .map(|t| t.name.as_str())
}

impl ScaleToZero {
    async fn check_hpa(&self, ns: &str, hpa: &HorizontalPodAutoscaler) -> Result<(), ApiError> {
        let Some(target) = scales_to_zero(hpa) else {
            return Ok(());
        };
        let kv = self
            .store
            .get(&key::<Deployment>(ns, target))
            .await
            .map_err(|e| ApiError::from_store(e, Deployment::PLURAL, target))?;
        // A target yet to come is checked as it is created.
        let Some(kv) = kv else {
            return Ok(());
        };
        let d: Deployment = decode(&kv)?;
        let why = match wasm_only(d.spec.as_ref().and_then(|s| s.template.as_ref())) {
            Ok(()) => return Ok(()),
            Err(why) => format!("Deployment {target:?} cannot scale to zero: {why}"),
        };
        Err(invalid(
            hpa,
            "spec.minReplicas",
            format!(
                "Invalid value: 0: must be greater than or equal to 1 unless the target's pod template is Wasm only; {why}"
            ),
        ))
    }

    async fn check_deployment(&self, ns: &str, d: &Deployment) -> Result<(), ApiError> {
        let Err(why) = wasm_only(d.spec.as_ref().and_then(|s| s.template.as_ref())) else {
            return Ok(());
        };
        let page = self
            .store
            .list(&prefix::<HorizontalPodAutoscaler>(ns), None, 0)
            .await
            .map_err(|e| ApiError::from_store(e, HorizontalPodAutoscaler::PLURAL, ""))?;
        for kv in &page.items {
            let hpa: HorizontalPodAutoscaler = decode(kv)?;
            if scales_to_zero(&hpa) == Some(d.name()) {
                return Err(invalid(
                    d,
                    "spec.template.spec.runtimeClassName",
                    format!(
                        "HorizontalPodAutoscaler {:?} scales this Deployment to zero (minReplicas: 0), which only a Wasm pod template may: {why}",
                        hpa.name()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Validating for ScaleToZero {
    fn name(&self) -> &'static str {
        "ScaleToZero"
    }

    async fn validate(&self, attrs: &Attributes<'_>, obj: ObjectMut<'_>) -> Result<(), ApiError> {
        if !matches!(attrs.operation, Operation::Create | Operation::Update) {
            return Ok(());
        }
        match obj {
            ObjectMut::HorizontalPodAutoscaler(hpa) => self.check_hpa(attrs.namespace, hpa).await,
            ObjectMut::Deployment(d) => self.check_deployment(attrs.namespace, d).await,
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{Container, ObjectMeta, PodSpec};

    fn template(runtime: &str, annotations: &[(&str, &str)]) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                annotations: annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                runtime_class_name: runtime.into(),
                containers: vec![
                    Container {
                        name: "app".into(),
                        ..Default::default()
                    },
                    Container {
                        name: "sidecar".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn only_a_wasm_only_template_may_scale_to_zero() {
        assert_eq!(wasm_only(Some(&template("wasm", &[]))), Ok(()));
        let oci = wasm_only(Some(&template("", &[]))).unwrap_err();
        assert!(oci.contains("not Wasm"), "{oci}");
        let mixed = wasm_only(Some(&template(
            "wasm",
            &[(skiff_api::workload::LINUX_CONTAINERS, "sidecar")],
        )))
        .unwrap_err();
        assert!(mixed.contains("Linux containers (sidecar)"), "{mixed}");
        assert!(wasm_only(None).is_err());
    }

    fn decode_one<K: Resource>(text: &str) -> K {
        let m = skiff_api::manifest::parse("test.yaml", text).unwrap();
        m[0].decode_valid("default").unwrap()
    }

    fn deployment(name: &str, runtime: &str) -> Deployment {
        decode_one(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      runtimeClassName: {runtime:?}\n      containers:\n      - {{name: app, image: \"file:/tmp/x.wasm\"}}\n"
        ))
    }

    #[tokio::test]
    async fn an_hpa_may_come_before_its_deployment_which_is_checked_as_it_is_created() {
        let h = crate::registry::tests::Harness::new().await;
        let hpa: HorizontalPodAutoscaler = decode_one(
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  minReplicas: 0\n  maxReplicas: 3\n",
        );
        h.create(hpa).await.unwrap();
        let err = h
            .create(deployment("web", ""))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("spec.template.spec.runtimeClassName"), "{err}");
        assert!(err.contains("minReplicas: 0"), "{err}");
        h.create(deployment("web", "wasm")).await.unwrap();
        // A Linux Deployment no HPA scales to zero is left alone.
        h.create(deployment("other", "")).await.unwrap();
    }
}
