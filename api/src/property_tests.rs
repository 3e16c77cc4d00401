//! Property tests (proptest) of what the API reads from users: manifests (YAML documents, pods in
//! them, decoding and validation of every kind), quantities and label and field selectors. Any
//! input gives an answer or an error naming what is wrong, never a panic; what is well formed
//! reads back as written.
//!
//! Each property runs a few hundred cases (a second or two in CI); a failure prints its smallest
//! input.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::kinds::KINDS;
use crate::manifest;
use crate::quantity::Quantity;
use crate::selector::{FieldSelector, LabelSelector};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text that looks like what users write: YAML punctuation, keys of real manifests, numbers.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("apiVersion: v1\n".to_string()),
        Just("kind: Pod\n".to_string()),
        Just("kind: Deployment\n".to_string()),
        Just("metadata:\n  name: web\n".to_string()),
        Just("spec:\n".to_string()),
        Just("  containers:\n".to_string()),
        Just("  - name: app\n    image: x\n".to_string()),
        Just("    resources: {limits: {cpu: 1, memory: 1e3}}\n".to_string()),
        Just("---\n".to_string()),
        Just("[".to_string()),
        Just("{".to_string()),
        Just(": ".to_string()),
        Just("- ".to_string()),
        Just("&a *a ".to_string()),
        Just("!!binary ".to_string()),
        Just("\t".to_string()),
        "[a-zA-Z0-9 _.:/-]{0,12}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(token, 0..24).prop_map(|t| t.concat())
}

/// A pod manifest with arbitrary values where users put values.
fn pod_manifest() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        "[a-z0-9.-]{0,20}",
        "-?[0-9]{1,12}(\\.[0-9]{0,4})?([eE][0-9]{1,3})?(m|k|Ki|Mi|Gi|Ei|E)?",
        Just("null".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("true".to_string()),
        any::<String>().prop_map(|s| format!("{s:?}")),
    ];
    (
        value.clone(),
        value.clone(),
        value.clone(),
        value.clone(),
        value.clone(),
        value,
    )
        .prop_map(|(name, image, cpu, memory, port, policy)| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {policy}\n  containers:\n  - name: {name}\n    image: {image}\n    ports: [{{containerPort: {port}}}]\n    resources:\n      limits: {{cpu: {cpu}, memory: {memory}}}\n      requests: {{cpu: {memory}}}\n"
            )
        })
}

/// A quantity as users write them.
fn quantity_text() -> impl Strategy<Value = String> {
    "[+-]?[0-9]{0,20}(\\.[0-9]{0,12})?([eE][+-]?[0-9]{0,4})?(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?"
}

fn label_key() -> impl Strategy<Value = String> {
    "([a-z]{1,5}(\\.[a-z]{1,4})?/)?[a-z0-9]([a-z0-9._-]{0,8}[a-z0-9])?"
}

/// Decodes and validates `m` as its kind says (every kind the API serves).
fn decode_valid(m: &manifest::Manifest) -> Result<(), manifest::ManifestError> {
    use crate::v1::*;
    macro_rules! each {
        ($($ty:ident)*) => {
            match m.info.kind {
                $( stringify!($ty) => m.decode_valid::<$ty>("default").map(|_| ()), )*
                _ => Ok(()),
            }
        };
    }
    each!(Namespace Pod Deployment ReplicaSet Service Endpoints Secret ConfigMap
        PersistentVolumeClaim Node Event Lease Ingress IngressClass HorizontalPodAutoscaler
        LimitRange ServiceAccount Role ClusterRole RoleBinding ClusterRoleBinding PodDisruptionBudget)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn manifests_never_panic(text in yamlish()) {
        if let Ok(objects) = manifest::parse("fuzz.yaml", &text) {
            for m in objects {
                let _ = decode_valid(&m);
            }
        }
    }

    #[test]
    fn pod_manifests_decode_and_validate_without_panic(text in pod_manifest()) {
        if let Ok(objects) = manifest::parse("pod.yaml", &text) {
            for m in objects {
                match decode_valid(&m) {
                    Ok(()) => {}
                    // Every refusal says where.
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
            }
        }
    }

    #[test]
    fn every_kind_decodes_arbitrary_json_without_panic(
        kind in 0..KINDS.len(),
        body in prop::collection::btree_map("[a-zA-Z]{1,10}", "[a-z0-9]{0,6}", 0..4),
    ) {
        let info = &KINDS[kind];
        let mut text = format!("apiVersion: {}\nkind: {}\nmetadata:\n  name: x\n", info.api_version, info.kind);
        for (k, v) in &body {
            text.push_str(&format!("{k}: {v:?}\n"));
        }
        if let Ok(objects) = manifest::parse("kind.yaml", &text) {
            for m in objects {
                let _ = decode_valid(&m);
            }
        }
    }

    #[test]
    fn quantities_parse_or_refuse_and_read_back(text in quantity_text(), other in any::<String>()) {
        let _ = Quantity::parse(&other);
        if let Ok(q) = Quantity::parse(&text) {
            // The canonical form reads back to the same amount.
            let shown = q.to_string();
            let again = Quantity::parse(&shown);
            prop_assert_eq!(again.as_ref().ok(), Some(&q), "{} shown as {}", text, shown);
        }
    }

    #[test]
    fn small_quantities_round_trip(millis in -1_000_000_000_000i64..1_000_000_000_000) {
        let q = Quantity::from_millis(millis);
        prop_assert_eq!(Quantity::parse(&q.to_string()).ok(), Some(q));
    }

    #[test]
    fn selectors_parse_or_refuse(text in any::<String>(), labels in prop::collection::btree_map(label_key(), "[a-z0-9]{0,5}", 0..4)) {
        if let Ok(s) = LabelSelector::parse(&text) {
            let _ = s.matches(&labels);
        }
        if let Ok(s) = FieldSelector::parse(&text) {
            let _ = s.matches(|p| labels.get(p).cloned());
        }
    }

    #[test]
    fn well_formed_selectors_match_what_they_say(
        labels in prop::collection::btree_map(label_key(), "[a-z0-9]{1,5}", 1..5),
    ) {
        // key=value for each label: the labels match; one value changed: they do not.
        let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let selector = match LabelSelector::parse(&text.join(",")) {
            Ok(s) => s,
            Err(e) => return Err(TestCaseError::fail(format!("{text:?}: {e}"))),
        };
        prop_assert!(selector.matches(&labels));
        let mut changed: BTreeMap<String, String> = labels.clone();
        if let Some(v) = changed.values_mut().next() {
            v.push('x');
        }
        prop_assert!(!selector.matches(&changed));
        let exists: Vec<String> = labels.keys().cloned().collect();
        let selector = LabelSelector::parse(&exists.join(","));
        prop_assert!(selector.is_ok_and(|s| s.matches(&labels)));
    }
}
