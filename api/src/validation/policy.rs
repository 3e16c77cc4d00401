//! Validation of policy/v1 kinds: PodDisruptionBudget, as Kubernetes'
//! `ValidatePodDisruptionBudget` (minAvailable and maxUnavailable exclusive, non-negative, a
//! percentage at most 100%, a valid selector, a known unhealthyPodEvictionPolicy).
//!
//! Must not: look at pods (the disruption controller and the eviction subresource do).

use super::FieldErrors;
use crate::v1::PodDisruptionBudget;
use crate::{IntOrString, IntOrStringValue};

/// The unhealthy-pod eviction policies Kubernetes knows (`IfHealthyBudget` is the default).
pub const UNHEALTHY_POD_EVICTION_POLICIES: &[&str] = &["IfHealthyBudget", "AlwaysAllow"];

pub fn validate_pdb(pdb: &PodDisruptionBudget, errors: &mut FieldErrors) {
    let Some(spec) = &pdb.spec else {
        errors.add("spec", "required");
        return;
    };
    if spec.min_available.is_some() && spec.max_unavailable.is_some() {
        errors.add("spec", "minAvailable and maxUnavailable cannot be both set");
    }
    for (field, value) in [
        ("minAvailable", &spec.min_available),
        ("maxUnavailable", &spec.max_unavailable),
    ] {
        if let Some(v) = value {
            count_or_percent(v, &format!("spec.{field}"), errors);
        }
    }
    if let Some(selector) = &spec.selector
        && let Err(e) = crate::selector::LabelSelector::from_spec(selector)
    {
        errors.add("spec.selector", format!("Invalid value: {e}"));
    }
    let policy = spec.unhealthy_pod_eviction_policy.as_str();
    if !policy.is_empty() && !UNHEALTHY_POD_EVICTION_POLICIES.contains(&policy) {
        errors.add(
            "spec.unhealthyPodEvictionPolicy",
            format!(
                "Unsupported value: {policy:?}: supported values: \"IfHealthyBudget\", \"AlwaysAllow\""
            ),
        );
    }
}

/// A count (>= 0) or a percentage between 0% and 100%, as Kubernetes' `ValidatePositiveIntOrPercent`
/// and `IsNotMoreThan100Percent`.
fn count_or_percent(v: &IntOrString, path: &str, errors: &mut FieldErrors) {
    match &v.value {
        Some(IntOrStringValue::Int(n)) if *n < 0 => {
            errors.add(path, format!("Invalid value: {n}: must be greater than or equal to 0"));
        }
        Some(IntOrStringValue::Str(s)) => match s.strip_suffix('%').map(str::parse::<i64>) {
            Some(Ok(pct)) if (0..=100).contains(&pct) => {}
            Some(Ok(pct)) if pct < 0 => errors.add(
                path,
                format!("Invalid value: {s:?}: must be greater than or equal to 0"),
            ),
            Some(Ok(_)) => errors.add(
                path,
                format!("Invalid value: {s:?}: must not be greater than 100%"),
            ),
            _ => errors.add(
                path,
                format!("Invalid value: {s:?}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"),
            ),
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta, PodDisruptionBudgetSpec};

    fn pdb(spec: PodDisruptionBudgetSpec) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                ..Default::default()
            }),
            spec: Some(spec),
            status: None,
        }
    }

    fn errors_of(p: &PodDisruptionBudget) -> Vec<String> {
        let mut errors = FieldErrors::default();
        validate_pdb(p, &mut errors);
        errors.0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_count_or_a_percentage_of_one_of_the_two() {
        let ok = pdb(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::int(2)),
            selector: Some(LabelSelector {
                match_labels: [("app".into(), "web".into())].into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(errors_of(&ok).is_empty(), "{:?}", errors_of(&ok));
        let pct = pdb(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::string("25%")),
            ..Default::default()
        });
        assert!(errors_of(&pct).is_empty());

        let both = pdb(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::int(1)),
            max_unavailable: Some(IntOrString::int(1)),
            ..Default::default()
        });
        assert_eq!(
            errors_of(&both),
            ["spec: minAvailable and maxUnavailable cannot be both set"]
        );
        let negative = pdb(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::int(-1)),
            ..Default::default()
        });
        assert!(errors_of(&negative)[0].starts_with("spec.minAvailable: Invalid value: -1"));
        let over = pdb(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::string("120%")),
            ..Default::default()
        });
        assert!(errors_of(&over)[0].contains("must not be greater than 100%"));
        let word = pdb(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::string("half")),
            ..Default::default()
        });
        assert!(errors_of(&word)[0].starts_with("spec.minAvailable: Invalid value: \"half\""));
    }

    #[test]
    fn selector_and_policy_are_checked() {
        let p = pdb(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::int(1)),
            selector: Some(LabelSelector {
                match_expressions: vec![LabelSelectorRequirement {
                    key: "app".into(),
                    operator: "Sometimes".into(),
                    values: vec![],
                }],
                ..Default::default()
            }),
            unhealthy_pod_eviction_policy: "Never".into(),
            ..Default::default()
        });
        let errors = errors_of(&p);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("spec.selector: Invalid value"));
        assert!(
            errors[1].starts_with("spec.unhealthyPodEvictionPolicy: Unsupported value: \"Never\"")
        );
        assert_eq!(
            errors_of(&PodDisruptionBudget::default()),
            ["spec: required"]
        );
    }
}
