//! Validation of autoscaling/v2 kinds: HorizontalPodAutoscaler (as Kubernetes'
//! `ValidateHorizontalPodAutoscaler`), and what skiff honours of it.
//!
//! Honoured: a Deployment target; `Resource` metrics on cpu or memory with a `Utilization` or
//! `AverageValue` target; `Pods` metrics named [`REQUESTS_IN_FLIGHT`] or
//! [`REQUESTS_PER_SECOND`] (a function's figures) with an `AverageValue` target; `behavior` with
//! stabilisation windows, select policies and `Pods`/`Percent` policies. Refused with a reason:
//! `Object`, `External` and `ContainerResource` metrics and a Pods metric's `selector` (Kubernetes
//! knows them; skiff has no metrics API behind them). `minReplicas: 0` passes here; whether the
//! target may go to zero (a Wasm pod template) is the server's admission's to say, since only it
//! reads the target.

use super::FieldErrors;
use crate::quantity::Quantity;
use crate::v1::{HorizontalPodAutoscaler, HpaScalingRules, MetricSpec, MetricTarget};

/// A function's requests being served, per pod (a `Pods` metric with an `AverageValue` target).
pub const REQUESTS_IN_FLIGHT: &str = "requests_in_flight";
/// A function's requests per second, per pod (a `Pods` metric with an `AverageValue` target).
pub const REQUESTS_PER_SECOND: &str = "requests_per_second";
/// The one kind of target skiff scales.
pub const SCALE_TARGET_KIND: &str = "Deployment";
/// Kubernetes' limits on behavior.
const MAX_WINDOW_SECONDS: i32 = 3600;
const MAX_PERIOD_SECONDS: i32 = 1800;

pub fn validate_hpa(hpa: &HorizontalPodAutoscaler, errors: &mut FieldErrors) {
    let Some(spec) = &hpa.spec else {
        errors.add("spec", "required");
        return;
    };
    match &spec.scale_target_ref {
        None => errors.add("spec.scaleTargetRef", "required"),
        Some(target) => {
            if target.kind.is_empty() {
                errors.add("spec.scaleTargetRef.kind", "required");
            } else if target.kind != SCALE_TARGET_KIND {
                errors.add(
                    "spec.scaleTargetRef.kind",
                    format!(
                        "Unsupported value: {:?}: skiff scales Deployments (supported values: \"Deployment\")",
                        target.kind
                    ),
                );
            }
            if !target.api_version.is_empty() && target.api_version != "apps/v1" {
                errors.add(
                    "spec.scaleTargetRef.apiVersion",
                    format!(
                        "Unsupported value: {:?}: supported values: \"apps/v1\"",
                        target.api_version
                    ),
                );
            }
            if target.name.is_empty() {
                errors.add("spec.scaleTargetRef.name", "required");
            } else if !super::is_dns1123_subdomain(&target.name) {
                errors.add(
                    "spec.scaleTargetRef.name",
                    format!("Invalid value: {:?}: not a valid name", target.name),
                );
            }
        }
    }
    let min = spec.min_replicas.unwrap_or(1);
    if min < 0 {
        errors.add(
            "spec.minReplicas",
            format!("Invalid value: {min}: must be greater than or equal to 0"),
        );
    }
    if spec.max_replicas < 1 {
        errors.add(
            "spec.maxReplicas",
            format!(
                "Invalid value: {}: must be greater than or equal to 1",
                spec.max_replicas
            ),
        );
    } else if spec.max_replicas < min {
        errors.add(
            "spec.maxReplicas",
            format!(
                "Invalid value: {}: must be greater than or equal to `minReplicas`",
                spec.max_replicas
            ),
        );
    }
    for (i, metric) in spec.metrics.iter().enumerate() {
        validate_metric(metric, &format!("spec.metrics[{i}]"), errors);
    }
    if let Some(behavior) = &spec.behavior {
        if let Some(up) = &behavior.scale_up {
            validate_rules(up, "spec.behavior.scaleUp", errors);
        }
        if let Some(down) = &behavior.scale_down {
            validate_rules(down, "spec.behavior.scaleDown", errors);
        }
    }
}

fn validate_metric(metric: &MetricSpec, path: &str, errors: &mut FieldErrors) {
    let set = [
        ("Resource", metric.resource.is_some()),
        ("Pods", metric.pods.is_some()),
        ("Object", metric.object.is_some()),
        ("External", metric.external.is_some()),
        ("ContainerResource", metric.container_resource.is_some()),
    ];
    let field = |t: &str| match t {
        "Resource" => "resource",
        "Pods" => "pods",
        "Object" => "object",
        "External" => "external",
        _ => "containerResource",
    };
    match metric.r#type.as_str() {
        "" => errors.add(format!("{path}.type"), "required"),
        t @ ("Object" | "External" | "ContainerResource") => errors.add(
            format!("{path}.type"),
            format!(
                "Unsupported value: {t:?}: skiff has no metrics API for {t} metrics (supported values: \"Resource\", \"Pods\")"
            ),
        ),
        "Resource" | "Pods" => {}
        other => errors.add(
            format!("{path}.type"),
            format!("Unsupported value: {other:?}: supported values: \"Resource\", \"Pods\""),
        ),
    }
    for (t, present) in set {
        if present && t != metric.r#type {
            errors.add(
                format!("{path}.{}", field(t)),
                format!("must be empty for metric source type {:?}", metric.r#type),
            );
        }
    }
    if let Some(resource) = &metric.resource
        && metric.r#type == "Resource"
    {
        let p = format!("{path}.resource");
        if !matches!(resource.name.as_str(), "cpu" | "memory") {
            errors.add(
                format!("{p}.name"),
                format!(
                    "Unsupported value: {:?}: supported values: \"cpu\", \"memory\"",
                    resource.name
                ),
            );
        }
        validate_target(
            resource.target.as_ref(),
            &format!("{p}.target"),
            &["Utilization", "AverageValue"],
            errors,
        );
    } else if metric.r#type == "Resource" {
        errors.add(format!("{path}.resource"), "required for type Resource");
    }
    if let Some(pods) = &metric.pods
        && metric.r#type == "Pods"
    {
        let p = format!("{path}.pods");
        match &pods.metric {
            None => errors.add(format!("{p}.metric"), "required"),
            Some(id) => {
                if id.name.is_empty() {
                    errors.add(format!("{p}.metric.name"), "required");
                } else if id.name != REQUESTS_IN_FLIGHT && id.name != REQUESTS_PER_SECOND {
                    errors.add(
                        format!("{p}.metric.name"),
                        format!(
                            "Unsupported value: {:?}: skiff's pod metrics are \"{REQUESTS_IN_FLIGHT}\" and \"{REQUESTS_PER_SECOND}\" (a function's)",
                            id.name
                        ),
                    );
                }
                if id.selector.is_some() {
                    errors.add(
                        format!("{p}.metric.selector"),
                        "not supported by skiff: a pod metric has no labels to select by",
                    );
                }
            }
        }
        validate_target(
            pods.target.as_ref(),
            &format!("{p}.target"),
            &["AverageValue"],
            errors,
        );
    } else if metric.r#type == "Pods" {
        errors.add(format!("{path}.pods"), "required for type Pods");
    }
}

fn validate_target(
    target: Option<&MetricTarget>,
    path: &str,
    allowed: &[&str],
    errors: &mut FieldErrors,
) {
    let Some(target) = target else {
        errors.add(path, "required");
        return;
    };
    if !allowed.contains(&target.r#type.as_str()) {
        let names: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        errors.add(
            format!("{path}.type"),
            format!(
                "Unsupported value: {:?}: supported values: {}",
                target.r#type,
                names.join(", ")
            ),
        );
        return;
    }
    match target.r#type.as_str() {
        "Utilization" => {
            match target.average_utilization {
                None => errors.add(
                    format!("{path}.averageUtilization"),
                    "required for type Utilization",
                ),
                Some(u) if u < 1 => errors.add(
                    format!("{path}.averageUtilization"),
                    format!("Invalid value: {u}: must be greater than 0"),
                ),
                Some(_) => {}
            }
            if !target.average_value.is_empty() || !target.value.is_empty() {
                errors.add(
                    path,
                    "only averageUtilization may be set for type Utilization",
                );
            }
        }
        _ => {
            let p = format!("{path}.averageValue");
            if target.average_value.is_empty() {
                errors.add(p, "required for type AverageValue");
            } else {
                match Quantity::parse(&target.average_value) {
                    Err(e) => errors.add(p, e.to_string()),
                    Ok(q) if q.millis() <= 0 => errors.add(
                        p,
                        format!(
                            "Invalid value: {:?}: must be positive",
                            target.average_value
                        ),
                    ),
                    Ok(_) => {}
                }
            }
            if target.average_utilization.is_some() || !target.value.is_empty() {
                errors.add(path, "only averageValue may be set for type AverageValue");
            }
        }
    }
}

fn validate_rules(rules: &HpaScalingRules, path: &str, errors: &mut FieldErrors) {
    if let Some(w) = rules.stabilization_window_seconds
        && !(0..=MAX_WINDOW_SECONDS).contains(&w)
    {
        errors.add(
            format!("{path}.stabilizationWindowSeconds"),
            format!("Invalid value: {w}: must be between 0 and {MAX_WINDOW_SECONDS}"),
        );
    }
    if !matches!(
        rules.select_policy.as_str(),
        "" | "Max" | "Min" | "Disabled"
    ) {
        errors.add(
            format!("{path}.selectPolicy"),
            format!(
                "Unsupported value: {:?}: supported values: \"Disabled\", \"Max\", \"Min\"",
                rules.select_policy
            ),
        );
    }
    for (i, policy) in rules.policies.iter().enumerate() {
        let p = format!("{path}.policies[{i}]");
        if !matches!(policy.r#type.as_str(), "Pods" | "Percent") {
            errors.add(
                format!("{p}.type"),
                format!(
                    "Unsupported value: {:?}: supported values: \"Percent\", \"Pods\"",
                    policy.r#type
                ),
            );
        }
        if policy.value <= 0 {
            errors.add(
                format!("{p}.value"),
                format!("Invalid value: {}: must be greater than zero", policy.value),
            );
        }
        if !(1..=MAX_PERIOD_SECONDS).contains(&policy.period_seconds) {
            errors.add(
                format!("{p}.periodSeconds"),
                format!(
                    "Invalid value: {}: must be greater than zero and less than or equal to {MAX_PERIOD_SECONDS}",
                    policy.period_seconds
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;

    const HPA: &str = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  minReplicas: 0\n  maxReplicas: 5\n  metrics:\n  - type: Resource\n    resource:\n      name: cpu\n      target: {type: Utilization, averageUtilization: 50}\n  - type: Pods\n    pods:\n      metric: {name: requests_in_flight}\n      target: {type: AverageValue, averageValue: \"10\"}\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 5\n      selectPolicy: Max\n      policies:\n      - {type: Percent, value: 100, periodSeconds: 15}\n";

    fn errors_of(text: &str) -> Vec<String> {
        let m = manifest::parse("hpa.yaml", text).unwrap();
        let hpa: HorizontalPodAutoscaler = m[0].decode().unwrap();
        let mut errors = FieldErrors::default();
        validate_hpa(&hpa, &mut errors);
        errors.0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_target_quantity_may_be_a_yaml_number() {
        let text = HPA.replace("averageValue: \"10\"", "averageValue: 10");
        assert_ne!(text, HPA);
        let m = manifest::parse("hpa.yaml", &text).unwrap();
        let hpa: HorizontalPodAutoscaler = m[0].decode().unwrap();
        let spec = hpa.spec.as_ref().unwrap();
        let target = spec.metrics[1]
            .pods
            .as_ref()
            .unwrap()
            .target
            .as_ref()
            .unwrap();
        assert_eq!(target.average_value, "10");
        assert!(errors_of(&text).is_empty());
        let text = HPA.replace("averageValue: \"10\"", "averageValue: 0.5");
        assert!(errors_of(&text).is_empty());
        // A behavior policy's value is a count, not a quantity: it stays a number.
        assert_eq!(
            spec.behavior
                .as_ref()
                .unwrap()
                .scale_down
                .as_ref()
                .unwrap()
                .policies[0]
                .value,
            100
        );
    }

    #[test]
    fn a_kubernetes_manifest_decodes_and_validates() {
        let m = manifest::parse("hpa.yaml", HPA).unwrap();
        let hpa: HorizontalPodAutoscaler = m[0].decode_valid("default").unwrap();
        let spec = hpa.spec.unwrap();
        assert_eq!(spec.min_replicas, Some(0));
        assert_eq!(spec.scale_target_ref.unwrap().name, "web");
        let down = spec.behavior.unwrap().scale_down.unwrap();
        assert_eq!(down.stabilization_window_seconds, Some(5));
        assert_eq!(down.policies[0].period_seconds, 15);
    }

    #[test]
    fn unknown_fields_are_named() {
        let text = HPA.replace("averageUtilization: 50", "averageUtilisation: 50");
        let err = manifest::parse("hpa.yaml", &text).unwrap()[0]
            .decode::<HorizontalPodAutoscaler>()
            .unwrap_err();
        assert_eq!(
            err.path,
            "spec.metrics[0].resource.target.averageUtilisation"
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let errors = errors_of(
            &HPA.replace("maxReplicas: 5", "maxReplicas: 0")
                .replace("kind: Deployment", "kind: StatefulSet")
                .replace("name: cpu", "name: gpu")
                .replace("requests_in_flight", "queue_length")
                .replace("selectPolicy: Max", "selectPolicy: Most")
                .replace(
                    "value: 100, periodSeconds: 15",
                    "value: 0, periodSeconds: 4000",
                ),
        );
        let paths: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "spec.scaleTargetRef.kind",
                "spec.maxReplicas",
                "spec.metrics[0].resource.name",
                "spec.metrics[1].pods.metric.name",
                "spec.behavior.scaleDown.selectPolicy",
                "spec.behavior.scaleDown.policies[0].value",
                "spec.behavior.scaleDown.policies[0].periodSeconds",
            ],
            "{errors:#?}"
        );
    }

    #[test]
    fn kinds_of_metrics_skiff_does_not_serve_are_refused_with_a_reason() {
        let text = HPA.replace(
            "  - type: Pods\n    pods:\n      metric: {name: requests_in_flight}\n      target: {type: AverageValue, averageValue: \"10\"}\n",
            "  - type: External\n    external:\n      metric: {name: queue}\n      target: {type: Value, value: \"3\"}\n",
        );
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("spec.metrics[1].type: Unsupported value: \"External\""));
        let errors = errors_of(&HPA.replace(
            "type: Utilization, averageUtilization: 50",
            "type: Value, value: \"1\"",
        ));
        assert!(
            errors[0].starts_with("spec.metrics[0].resource.target.type"),
            "{errors:?}"
        );
        let errors = errors_of(&HPA.replace("averageValue: \"10\"", "averageValue: ten"));
        assert!(
            errors[0].starts_with("spec.metrics[1].pods.target.averageValue"),
            "{errors:?}"
        );
    }
}
