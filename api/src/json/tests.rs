use serde_json::json;

use super::*;
use crate::v1::*;
use serde_json::Value;

#[test]
fn api_version_and_kind_come_first() {
    let v = to_kube_value(&ConfigMap::default());
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys[..2], ["apiVersion", "kind"]);
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["kind"], "ConfigMap");
}

#[test]
fn timestamps_are_utc_with_z() {
    let pod = Pod {
        metadata: Some(ObjectMeta {
            name: "a".into(),
            creation_timestamp: Some(pbjson_types::Timestamp {
                seconds: 1_714_557_600,
                nanos: 0,
            }),
            labels: [("creationTimestamp".to_string(), "x+00:00".to_string())].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = to_kube_value(&pod);
    assert_eq!(v["metadata"]["creationTimestamp"], "2024-05-01T10:00:00Z");
    assert_eq!(v["metadata"]["labels"]["creationTimestamp"], "x+00:00");
    let back: Pod = from_kube_value(v).unwrap();
    assert_eq!(back.metadata, pod.metadata);
}

#[test]
fn kind_and_api_version_must_match() {
    let err = from_kube_value::<Pod>(json!({"apiVersion": "v1", "kind": "Service"})).unwrap_err();
    assert_eq!(err.path, "kind");
    let err = from_kube_value::<Pod>(json!({"apiVersion": "apps/v1", "kind": "Pod"})).unwrap_err();
    assert_eq!(err.path, "apiVersion");
}

/// A Kubernetes-written object (from the API reference, trimmed to the fields skiff serves) reads
/// into skiff's type and is written back exactly as Kubernetes wrote it.
fn round_trips<K: Resource + std::fmt::Debug>(fixture: &str) -> K {
    let written: Value = serde_json::from_str(fixture).unwrap();
    let obj: K = from_kube_value(written.clone()).unwrap_or_else(|e| panic!("{}: {e}", K::KIND));
    let again = to_kube_value(&obj);
    assert_eq!(
        again,
        written,
        "{}:\n{}",
        K::KIND,
        serde_json::to_string_pretty(&again).unwrap()
    );
    obj
}

#[test]
fn a_kubernetes_pod_with_status_round_trips() {
    let pod: Pod = round_trips(include_str!("fixtures/pod.json"));
    let cs = &pod.status.unwrap().container_statuses[0];
    assert!(cs.container_id.starts_with("containerd://"));
    assert!(cs.image_id.contains("@sha256:"));
}

#[test]
fn a_kubernetes_deployment_round_trips() {
    let d: Deployment = round_trips(include_str!("fixtures/deployment.json"));
    assert_eq!(d.spec.unwrap().replicas, Some(3));
}

#[test]
fn a_kubernetes_service_round_trips() {
    let s: Service = round_trips(include_str!("fixtures/service.json"));
    assert_eq!(s.spec.unwrap().cluster_ips, ["10.96.14.2"]);
}

#[test]
fn a_kubernetes_node_round_trips() {
    let n: Node = round_trips(include_str!("fixtures/node.json"));
    let info = n.status.unwrap().node_info.unwrap();
    assert_eq!(info.machine_id, "2a3b4c5d6e7f48091a2b3c4d5e6f7081");
    assert_eq!(info.system_uuid, "4c4c4544-0042-3510-8052-b4c04f565931");
    assert_eq!(n.spec.unwrap().provider_id, "kind://docker/kind/node-1");
}

#[test]
fn fields_kubernetes_always_writes_are_written_when_zero() {
    let pod = Pod {
        status: Some(PodStatus {
            container_statuses: vec![ContainerStatus {
                name: "app".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        reason: "Completed".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = to_kube_value(&pod);
    let cs = &v["status"]["containerStatuses"][0];
    assert_eq!(cs["restartCount"], 0);
    assert_eq!(cs["ready"], false);
    assert_eq!(cs["imageID"], "");
    assert_eq!(cs["lastState"], json!({}));
    assert_eq!(cs["state"]["terminated"]["exitCode"], 0);
    let svc = to_kube_value(&Service::default());
    assert_eq!(svc["status"], json!({"loadBalancer": {}}));
    let rs = to_kube_value(&ReplicaSet::default());
    assert_eq!(rs["status"]["replicas"], 0);
}

#[test]
fn old_spellings_are_refused_with_their_path() {
    let err = from_kube_value::<Pod>(json!({
        "status": {"containerStatuses": [{"name": "a", "containerId": "x"}]}
    }))
    .unwrap_err();
    assert_eq!(err.path, "status.containerStatuses[0].containerId");
    assert!(err.message.contains("containerID"), "{}", err.message);
}

#[test]
fn the_deprecated_service_account_fills_service_account_name() {
    let pod: Pod = from_kube_value(json!({
        "spec": {"serviceAccount": "builder", "containers": []}
    }))
    .unwrap();
    assert_eq!(pod.spec.unwrap().service_account_name, "builder");
    // Kubernetes' rule: serviceAccountName wins when both are set.
    let pod: Pod = from_kube_value(json!({
        "spec": {"serviceAccount": "old", "serviceAccountName": "new"}
    }))
    .unwrap();
    assert_eq!(pod.spec.unwrap().service_account_name, "new");
    let d: Deployment = from_kube_value(json!({
        "spec": {"template": {"spec": {"serviceAccount": "builder"}}}
    }))
    .unwrap();
    let spec = d.spec.unwrap().template.unwrap().spec.unwrap();
    assert_eq!(spec.service_account_name, "builder");
}

#[test]
fn quantities_may_be_numbers() {
    let pod: Pod = from_kube_value(json!({
        "spec": {"containers": [{"name": "a", "resources": {
            "limits": {"cpu": 1, "memory": 1000},
            "requests": {"cpu": 0.5}
        }}]}
    }))
    .unwrap();
    let r = pod.spec.unwrap().containers[0].resources.clone().unwrap();
    assert_eq!(r.limits["cpu"], "1");
    assert_eq!(r.limits["memory"], "1000");
    assert_eq!(r.requests["cpu"], "0.5");
}
