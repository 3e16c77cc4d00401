//! Pod Security admission (Kubernetes' `PodSecurity` plugin): a new pod is judged by the Pod
//! Security Standard its namespace's labels choose ([`skiff_api::pod_security`] holds the
//! standards).
//!
//! - `pod-security.kubernetes.io/enforce: LEVEL`: a pod that violates the level is refused,
//!   `pods "p" is forbidden: violates PodSecurity "restricted:latest": ...` (PermissionDenied).
//! - `pod-security.kubernetes.io/warn: LEVEL`: the pod is admitted with a warning,
//!   `would violate PodSecurity "restricted:latest": ...` (the CLI prints `Warning: ...`).
//! - A Deployment's pod template is judged too, by the enforce and warn levels, with warnings
//!   only (as Kubernetes does for workload resources: the pods it makes are refused).
//! - `audit` and the `-version` labels are accepted and validated; every version is judged by
//!   the latest standard.
//!
//! Pods are judged when created; updates are not (a pod's security fields cannot change after it
//! is created). There are no exemptions: skiff's controllers create pods like any user.
//!
//! Must not: write anything; it reads the pod's Namespace from the store on each pod create.

use std::sync::Arc;

use skiff_api::ResourceExt;
use skiff_api::pod_security::{self, ENFORCE, Level, Policy, WARN};
use skiff_api::v1::{Namespace, PodSpec};

use super::admission::{Attributes, ObjectMut, Operation, Validating};
use super::{decode, key, warnings};
use crate::error::ApiError;
use crate::store::Store;

pub struct PodSecurity {
    pub store: Arc<dyn Store>,
}

impl PodSecurity {
    /// The enforce and warn policies of `namespace` (none if it has no labels, or is gone).
    async fn policies(
        &self,
        namespace: &str,
    ) -> Result<(Option<Policy>, Option<Policy>), ApiError> {
        use skiff_api::Resource;
        let Some(kv) = self
            .store
            .get(&key::<Namespace>("", namespace))
            .await
            .map_err(|e| ApiError::from_store(e, Namespace::PLURAL, namespace))?
        else {
            return Ok((None, None));
        };
        let ns: Namespace = decode(&kv)?;
        let labels = &ns.meta().labels;
        Ok((
            pod_security::policy(labels, ENFORCE),
            pod_security::policy(labels, WARN),
        ))
    }
}

/// The warning for `spec` under `policy`, if it violates it.
fn would_violate(policy: &Policy, spec: &PodSpec) -> Option<String> {
    let violations = pod_security::check(policy.level, spec);
    (!violations.is_empty()).then(|| {
        format!(
            "would violate PodSecurity \"{policy}\": {}",
            pod_security::describe(&violations)
        )
    })
}

#[async_trait::async_trait]
impl Validating for PodSecurity {
    fn name(&self) -> &'static str {
        "PodSecurity"
    }

    async fn validate(&self, attrs: &Attributes<'_>, obj: ObjectMut<'_>) -> Result<(), ApiError> {
        let spec = match (&obj, attrs.operation) {
            (ObjectMut::Pod(pod), Operation::Create) => pod.spec.as_ref(),
            (ObjectMut::Deployment(d), Operation::Create | Operation::Update) => d
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.spec.as_ref()),
            _ => return Ok(()),
        };
        let Some(spec) = spec else {
            return Ok(());
        };
        let (enforce, warn) = self.policies(attrs.namespace).await?;
        if enforce.is_none() && warn.is_none() {
            return Ok(());
        }
        let is_pod = matches!(obj, ObjectMut::Pod(_));
        if is_pod
            && let Some(policy) = &enforce
            && policy.level != Level::Privileged
        {
            let violations = pod_security::check(policy.level, spec);
            if !violations.is_empty() {
                return Err(ApiError::Forbidden(format!(
                    "pods {:?} is forbidden: violates PodSecurity \"{policy}\": {}",
                    attrs.name,
                    pod_security::describe(&violations)
                )));
            }
        }
        // A template is warned about at the enforce level too; a pod only at the warn level.
        let levels = if is_pod {
            vec![warn]
        } else {
            vec![enforce, warn]
        };
        for policy in levels.into_iter().flatten() {
            if let Some(message) = would_violate(&policy, spec) {
                warnings::warn(message);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use skiff_api::v1::{
        Capabilities, Container, Deployment, DeploymentSpec, LabelSelector, ObjectMeta, Pod,
        PodTemplateSpec, SeccompProfile, SecurityContext,
    };

    use super::super::tests::{Harness, meta};
    use super::*;

    async fn namespace(h: &Harness, name: &str, labels: &[(&str, &str)]) {
        let mut m = meta("", name).unwrap();
        m.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        h.create(Namespace {
            metadata: Some(m),
            ..Default::default()
        })
        .await
        .unwrap();
    }

    fn spec(sc: Option<SecurityContext>) -> PodSpec {
        PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: "file:app.wasm".into(),
                security_context: sc,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn pod(namespace: &str, name: &str, sc: Option<SecurityContext>) -> Pod {
        Pod {
            metadata: meta(namespace, name),
            spec: Some(spec(sc)),
            status: None,
        }
    }

    fn restricted() -> SecurityContext {
        SecurityContext {
            allow_privilege_escalation: Some(false),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                add: vec![],
                drop: vec!["ALL".into()],
            }),
            seccomp_profile: Some(SeccompProfile {
                r#type: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn enforce_refuses_with_kubernetes_message_and_warn_warns() {
        let h = Harness::new().await;
        namespace(&h, "strict", &[(ENFORCE, "restricted")]).await;
        let (result, _) = warnings::collect(h.create(pod("strict", "bare", None))).await;
        let e = result.unwrap_err();
        assert!(matches!(e, ApiError::Forbidden(_)), "{e:?}");
        let message = e.to_string();
        assert!(
            message.starts_with("pods \"bare\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false)"),
            "{message}"
        );
        let (result, warned) =
            warnings::collect(h.create(pod("strict", "good", Some(restricted())))).await;
        assert!(result.is_ok() && warned.is_empty(), "{result:?} {warned:?}");

        namespace(
            &h,
            "mild",
            &[
                (ENFORCE, "baseline"),
                (WARN, "restricted"),
                ("pod-security.kubernetes.io/warn-version", "v1.30"),
            ],
        )
        .await;
        let (result, warned) = warnings::collect(h.create(pod("mild", "bare", None))).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(
            warned[0].starts_with(
                "would violate PodSecurity \"restricted:v1.30\": allowPrivilegeEscalation != false"
            ),
            "{warned:?}"
        );
        // No labels: nothing judged.
        let (result, warned) = warnings::collect(h.create(pod("default", "bare", None))).await;
        assert!(result.is_ok() && warned.is_empty());
    }

    #[tokio::test]
    async fn a_template_is_warned_about_never_refused() {
        let h = Harness::new().await;
        namespace(&h, "strict", &[(ENFORCE, "restricted")]).await;
        let labels: std::collections::BTreeMap<String, String> =
            [("app".to_string(), "web".to_string())].into();
        let d = Deployment {
            metadata: meta("strict", "web"),
            spec: Some(DeploymentSpec {
                selector: Some(LabelSelector {
                    match_labels: labels.clone(),
                    ..Default::default()
                }),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels,
                        ..Default::default()
                    }),
                    spec: Some(spec(None)),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (result, warned) = warnings::collect(h.create(d)).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].starts_with("would violate PodSecurity \"restricted:latest\""));
    }

    #[tokio::test]
    async fn a_namespace_with_a_bad_level_is_refused() {
        let h = Harness::new().await;
        let mut m = meta("", "odd").unwrap();
        m.labels = [(ENFORCE.to_string(), "strict".to_string())].into();
        let e = h
            .create(Namespace {
                metadata: Some(m),
                ..Default::default()
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "metadata.labels[pod-security.kubernetes.io/enforce]: invalid value \"strict\""
            ),
            "{e}"
        );
    }
}
