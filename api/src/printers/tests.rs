use super::*;
use crate::v1::*;

fn meta(name: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: name.into(),
        ..Default::default()
    })
}

#[test]
fn every_cell_has_a_column() {
    fn check<K: Printer>() {
        assert_eq!(
            K::columns().len(),
            K::default().cells().len(),
            "{}",
            K::KIND
        );
        assert_eq!(K::columns()[0].priority, 0, "{}", K::KIND);
    }
    // Every kind has a Printer (the CLI's `with_kind!` requires it); their columns and cells agree.
    check::<Namespace>();
    check::<Pod>();
    check::<Deployment>();
    check::<ReplicaSet>();
    check::<Service>();
    check::<Endpoints>();
    check::<Secret>();
    check::<ConfigMap>();
    check::<PersistentVolumeClaim>();
    check::<Node>();
    check::<Event>();
    check::<Lease>();
    check::<Ingress>();
    check::<IngressClass>();
    check::<HorizontalPodAutoscaler>();
    check::<LimitRange>();
    check::<ServiceAccount>();
    check::<Role>();
    check::<ClusterRole>();
    check::<RoleBinding>();
    check::<ClusterRoleBinding>();
    check::<PodDisruptionBudget>();
}

#[test]
fn services_show_their_addresses_and_node_ports_as_kubectl() {
    let svc = |r#type: &str, ip: &str, ports: Vec<ServicePort>| Service {
        metadata: meta("s"),
        spec: Some(ServiceSpec {
            r#type: r#type.into(),
            cluster_ip: ip.into(),
            ports,
            external_name: "db.example.com".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let port = |port, node_port, protocol: &str| ServicePort {
        port,
        node_port,
        protocol: protocol.into(),
        ..Default::default()
    };
    let cells = |s: Service| row(&s, false)[1..5].join(" ");
    assert_eq!(
        cells(svc(
            "NodePort",
            "10.96.0.10",
            vec![port(80, 30080, "TCP"), port(53, 30053, "UDP")]
        )),
        "NodePort 10.96.0.10 <none> 80:30080/TCP,53:30053/UDP"
    );
    assert_eq!(
        cells(svc("ClusterIP", "None", vec![port(5432, 0, "")])),
        "ClusterIP None <none> 5432/TCP"
    );
    assert_eq!(
        cells(svc("ExternalName", "", vec![])),
        "ExternalName <none> db.example.com <none>"
    );
    assert_eq!(
        cells(svc(
            "LoadBalancer",
            "10.96.0.11",
            vec![port(80, 31000, "TCP")]
        )),
        "LoadBalancer 10.96.0.11 <pending> 80:31000/TCP"
    );
}

fn header_line<K: Printer>(wide: bool) -> String {
    headers::<K>(wide).join(" ")
}

#[test]
fn headers_are_kubectls() {
    assert_eq!(header_line::<Pod>(false), "NAME READY STATUS RESTARTS AGE");
    assert_eq!(
        header_line::<Pod>(true),
        "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES"
    );
    assert_eq!(header_line::<Node>(false), "NAME STATUS ROLES AGE VERSION");
    assert_eq!(
        header_line::<Node>(true),
        "NAME STATUS ROLES AGE VERSION INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME"
    );
    assert_eq!(
        header_line::<Deployment>(true),
        "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR"
    );
    assert_eq!(
        header_line::<ReplicaSet>(false),
        "NAME DESIRED CURRENT READY AGE"
    );
    assert_eq!(
        header_line::<Service>(true),
        "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE SELECTOR"
    );
    assert_eq!(
        header_line::<PersistentVolumeClaim>(false),
        "NAME STATUS VOLUME CAPACITY ACCESS MODES STORAGECLASS VOLUMEATTRIBUTESCLASS AGE"
    );
    assert_eq!(
        header_line::<Event>(false),
        "LAST SEEN TYPE REASON OBJECT MESSAGE"
    );
    assert_eq!(header_line::<Role>(false), "NAME CREATED AT");
    assert_eq!(
        header_line::<RoleBinding>(true),
        "NAME ROLE AGE USERS GROUPS SERVICEACCOUNTS"
    );
    assert_eq!(
        header_line::<HorizontalPodAutoscaler>(false),
        "NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE"
    );
}

fn waiting(reason: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: reason.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn terminated(reason: &str, exit_code: i32) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            reason: reason.into(),
            exit_code,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn running() -> ContainerState {
    ContainerState {
        running: Some(ContainerStateRunning::default()),
        ..Default::default()
    }
}

fn status(name: &str, state: ContainerState, ready: bool, restarts: i32) -> ContainerStatus {
    ContainerStatus {
        name: name.into(),
        state: Some(state),
        ready,
        restart_count: restarts,
        ..Default::default()
    }
}

fn pod(phase: &str, init: Vec<ContainerStatus>, containers: Vec<ContainerStatus>) -> Pod {
    let container = |n: &str| Container {
        name: n.into(),
        ..Default::default()
    };
    Pod {
        metadata: meta("p"),
        spec: Some(PodSpec {
            init_containers: init.iter().map(|c| container(&c.name)).collect(),
            containers: containers.iter().map(|c| container(&c.name)).collect(),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: phase.into(),
            init_container_statuses: init,
            container_statuses: containers,
            ..Default::default()
        }),
    }
}

/// READY STATUS RESTARTS of a pod's row.
fn ready_status_restarts(p: &Pod) -> String {
    row(p, false)[1..4].join(" ")
}

#[test]
fn pod_status_reasons_are_kubectls() {
    let cases = [
        (
            pod(
                "Pending",
                vec![],
                vec![status("a", waiting("ContainerCreating"), false, 0)],
            ),
            "0/1 ContainerCreating 0",
        ),
        (
            pod(
                "Running",
                vec![],
                vec![status("a", waiting("CrashLoopBackOff"), false, 4)],
            ),
            "0/1 CrashLoopBackOff 4",
        ),
        (
            pod(
                "Pending",
                vec![],
                vec![status("a", waiting("ErrImagePull"), false, 0)],
            ),
            "0/1 ErrImagePull 0",
        ),
        (
            pod(
                "Succeeded",
                vec![],
                vec![status("a", terminated("Completed", 0), false, 0)],
            ),
            "0/1 Completed 0",
        ),
        (
            pod(
                "Failed",
                vec![],
                vec![status("a", terminated("", 3), false, 0)],
            ),
            "0/1 ExitCode:3 0",
        ),
        (
            pod(
                "Running",
                vec![],
                vec![
                    status("a", running(), true, 0),
                    status("b", running(), true, 1),
                ],
            ),
            "2/2 Running 1",
        ),
        (
            pod(
                "Pending",
                vec![status("i", waiting("PodInitializing"), false, 0)],
                vec![status("a", waiting("PodInitializing"), false, 0)],
            ),
            "0/1 Init:0/1 0",
        ),
        (
            pod(
                "Pending",
                vec![
                    status("i", terminated("Completed", 0), false, 0),
                    status("j", waiting("ErrImagePull"), false, 0),
                ],
                vec![status("a", waiting("PodInitializing"), false, 0)],
            ),
            "0/1 Init:ErrImagePull 0",
        ),
        (
            pod(
                "Pending",
                vec![status("i", terminated("Error", 1), false, 2)],
                vec![status("a", waiting("PodInitializing"), false, 0)],
            ),
            "0/1 Init:Error 2",
        ),
    ];
    for (p, want) in cases {
        assert_eq!(ready_status_restarts(&p), want, "{p:?}");
    }
    let mut deleting = pod("Running", vec![], vec![status("a", running(), true, 0)]);
    deleting.metadata.as_mut().unwrap().deletion_timestamp = Some(crate::time::now());
    assert_eq!(pod_status(&deleting), "Terminating");
    assert_eq!(pod_status(&Pod::default()), "Pending");
}

#[test]
fn restarts_say_when_the_last_one_was() {
    let mut p = pod("Running", vec![], vec![status("a", running(), true, 2)]);
    let mut now = crate::time::now();
    now.seconds -= 300;
    p.status.as_mut().unwrap().container_statuses[0].last_state = Some(ContainerState {
        terminated: Some(ContainerStateTerminated {
            finished_at: Some(now),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(row(&p, false)[3], "2 (5m ago)");
}

fn node(ready: Option<&str>, unschedulable: bool) -> Node {
    Node {
        metadata: Some(ObjectMeta {
            name: "n".into(),
            labels: [
                (
                    "node-role.kubernetes.io/control-plane".to_string(),
                    String::new(),
                ),
                ("node-role.kubernetes.io/worker".to_string(), String::new()),
            ]
            .into(),
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            unschedulable,
            ..Default::default()
        }),
        status: Some(NodeStatus {
            conditions: ready
                .map(|s| Condition {
                    r#type: "Ready".into(),
                    status: s.into(),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            addresses: vec![NodeAddress {
                r#type: "InternalIP".into(),
                address: "10.0.0.5".into(),
            }],
            node_info: Some(NodeSystemInfo {
                kubelet_version: "skiff-0.1.0".into(),
                os_image: "Debian GNU/Linux 12 (bookworm)".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

#[test]
fn a_lost_node_is_not_ready_and_a_cordoned_one_scheduling_disabled() {
    assert_eq!(node_status(&node(Some("True"), false)), "Ready");
    assert_eq!(node_status(&node(Some("Unknown"), false)), "NotReady");
    assert_eq!(node_status(&node(Some("False"), false)), "NotReady");
    assert_eq!(node_status(&node(None, false)), "Unknown");
    assert_eq!(
        node_status(&node(Some("True"), true)),
        "Ready,SchedulingDisabled"
    );
    let r = row(&node(Some("True"), false), true);
    assert_eq!(r[2], "control-plane,worker");
    assert_eq!(
        r[4..].join("|"),
        "skiff-0.1.0|10.0.0.5|<none>|Debian GNU/Linux 12 (bookworm)|<unknown>|<unknown>"
    );
}

#[test]
fn a_table_carries_column_definitions_and_rows() {
    let pods = [pod(
        "Running",
        vec![],
        vec![status("a", running(), true, 0)],
    )];
    let t = table(
        &pods,
        &TableOptions {
            resource_version: "42".into(),
            ..Default::default()
        },
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"]["resourceVersion"], "42");
    assert_eq!(t["columnDefinitions"][0]["name"], "Name");
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    assert_eq!(t["columnDefinitions"][5]["name"], "IP");
    assert_eq!(t["columnDefinitions"][5]["priority"], 1);
    assert_eq!(t["rows"][0]["cells"][0], "p");
    assert_eq!(t["rows"][0]["cells"][1], "1/1");
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "p");
    let full = table(
        &pods,
        &TableOptions {
            include_object: IncludeObject::Object,
            no_columns: true,
            ..Default::default()
        },
    );
    assert!(full.get("columnDefinitions").is_none());
    assert_eq!(full["rows"][0]["object"]["kind"], "Pod");
    let none = table(
        &pods,
        &TableOptions {
            include_object: IncludeObject::None,
            ..Default::default()
        },
    );
    assert!(none["rows"][0].get("object").is_none());
    assert_eq!(IncludeObject::parse(""), Ok(IncludeObject::Metadata));
    assert!(IncludeObject::parse("All").is_err());
}

#[test]
fn integer_columns_carry_numbers() {
    let cm = ConfigMap {
        metadata: meta("c"),
        data: [("a".to_string(), "b".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(cm.cells()[1], serde_json::json!(1));
    assert_eq!(ConfigMap::columns()[1].r#type, "integer");
    assert_eq!(row(&cm, false)[1], "1");
}
