//! Validation of coordination.k8s.io/v1 kinds: Lease (as Kubernetes' `ValidateLeaseSpec`).

use super::FieldErrors;
use crate::v1::Lease;

/// The namespace of node heartbeat Leases, one per node, named after it (Kubernetes' own).
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

pub fn validate_lease(lease: &Lease, errors: &mut FieldErrors) {
    let Some(spec) = &lease.spec else {
        return;
    };
    if spec.lease_duration_seconds.is_some_and(|d| d <= 0) {
        errors.add("spec.leaseDurationSeconds", "must be greater than 0");
    }
    if spec.lease_transitions.is_some_and(|t| t < 0) {
        errors.add("spec.leaseTransitions", "must not be negative");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;
    use crate::v1::LeaseSpec;

    #[test]
    fn a_node_lease_manifest_decodes_and_validates() {
        let text = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: node-1, namespace: kube-node-lease}\nspec:\n  holderIdentity: node-1\n  leaseDurationSeconds: 40\n  renewTime: \"2026-12-06T10:00:00.123456Z\"\n";
        let m = manifest::parse("lease.yaml", text).unwrap();
        let lease: Lease = m[0].decode_valid("default").unwrap();
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("node-1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(spec.renew_time.unwrap().nanos, 123_456_000);
        let err = manifest::parse("l.yaml", &text.replace("holderIdentity", "holder")).unwrap()[0]
            .decode::<Lease>()
            .unwrap_err();
        assert_eq!(err.path, "spec.holder");
    }

    #[test]
    fn durations_and_transitions_are_checked() {
        let mut errors = FieldErrors::default();
        let lease = Lease {
            spec: Some(LeaseSpec {
                lease_duration_seconds: Some(0),
                lease_transitions: Some(-1),
                ..Default::default()
            }),
            ..Default::default()
        };
        validate_lease(&lease, &mut errors);
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["spec.leaseDurationSeconds", "spec.leaseTransitions"]
        );
    }
}
