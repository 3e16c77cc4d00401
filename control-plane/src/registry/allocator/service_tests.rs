//! Services through the registry over the real embedded store: what create, update and delete
//! take and give back, refusals naming the field, concurrent registries, and deletion by the
//! namespace controller and the garbage collector. Failed writes and the repair loop are in
//! `recovery_tests.rs`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use skiff_api::v1::*;
use skiff_api::{Resource, ResourceExt};

use super::ip::IpPool;
use super::pool::Allocator;
use super::port::PortPool;
use super::ranges::ServiceRanges;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::registry::tests::{Harness, meta};
use crate::store::Store;

const CIDR: &str = "10.112.0.0/28";
const PORTS: &str = "31000-31009";

pub(super) async fn harness() -> Harness {
    let h = Harness::new().await;
    configure(&h.store, CIDR, PORTS).await;
    h
}

pub(super) async fn configure(store: &Arc<dyn Store>, cidr: &str, ports: &str) {
    ServiceRanges::new(cidr.parse().unwrap(), ports.parse().unwrap())
        .unwrap()
        .save(store.as_ref())
        .await
        .unwrap();
}

pub(super) fn port(name: &str, port: i32, node_port: i32) -> ServicePort {
    ServicePort {
        name: name.into(),
        protocol: "TCP".into(),
        port,
        node_port,
        ..Default::default()
    }
}

pub(super) fn service(
    name: &str,
    r#type: &str,
    cluster_ip: &str,
    ports: Vec<ServicePort>,
) -> Service {
    Service {
        metadata: meta("default", name),
        spec: Some(ServiceSpec {
            r#type: r#type.into(),
            cluster_ip: cluster_ip.into(),
            selector: [("app".to_string(), name.to_string())].into(),
            ports,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn spec(svc: &Service) -> &ServiceSpec {
    svc.spec.as_ref().unwrap()
}

pub(super) fn node_ports(svc: &Service) -> Vec<i32> {
    spec(svc).ports.iter().map(|p| p.node_port).collect()
}

/// Every claim in the store, as `ip`/`port` → holder name.
pub(super) async fn claims(store: &Arc<dyn Store>) -> BTreeSet<(String, String)> {
    let ranges = ServiceRanges::load(store.as_ref()).await.unwrap();
    let ips = Allocator::new(store.as_ref(), IpPool::new(ranges.cidr()));
    let ports = Allocator::new(store.as_ref(), PortPool::new(ranges.node_ports()));
    let mut out: BTreeSet<(String, String)> = ips
        .claims()
        .await
        .unwrap()
        .into_iter()
        .map(|(ip, c, _)| (ip.to_string(), c.name))
        .collect();
    out.extend(
        ports
            .claims()
            .await
            .unwrap()
            .into_iter()
            .map(|(p, c, _)| (p.to_string(), c.name)),
    );
    out
}

pub(super) fn held(svc: &Service) -> BTreeSet<(String, String)> {
    let name = svc.name().to_string();
    let mut out = BTreeSet::new();
    if spec(svc).cluster_ip.parse::<Ipv4Addr>().is_ok() {
        out.insert((spec(svc).cluster_ip.clone(), name.clone()));
    }
    for p in node_ports(svc).into_iter().filter(|p| *p != 0) {
        out.insert((p.to_string(), name.clone()));
    }
    out
}

fn errors_of(e: &ApiError) -> String {
    match e {
        ApiError::Invalid { errors, .. } | ApiError::Taken { errors, .. } => errors.to_string(),
        other => panic!("not a field error: {other}"),
    }
}

pub(super) fn in_cidr(ip: &str) -> bool {
    let cidr: skiff_api::cidr::Ipv4Cidr = CIDR.parse().unwrap();
    cidr.contains(ip.parse().unwrap())
}

#[tokio::test]
async fn create_takes_a_cluster_ip_and_node_ports_from_the_ranges() {
    let h = harness().await;
    let web = h
        .create(service("web", "", "", vec![port("", 80, 0)]))
        .await
        .unwrap();
    let ip = spec(&web).cluster_ip.clone();
    assert!(in_cidr(&ip), "{ip}");
    assert_ne!(
        ip, "10.112.0.1",
        "the first address is kept for default/kubernetes"
    );
    assert_eq!(spec(&web).cluster_ips, vec![ip.clone()]);
    assert_eq!(
        node_ports(&web),
        vec![0],
        "a ClusterIP Service has no node port"
    );

    let api = h
        .create(service(
            "api",
            "NodePort",
            "",
            vec![port("http", 80, 0), port("https", 443, 0)],
        ))
        .await
        .unwrap();
    let np = node_ports(&api);
    assert!(np.iter().all(|p| (31000..=31009).contains(p)), "{np:?}");
    assert_ne!(np[0], np[1]);

    // TCP and UDP of one port share one node port, as Kubernetes gives them.
    let mut dns = service("dns", "NodePort", "", vec![port("dns", 53, 0)]);
    dns.spec.as_mut().unwrap().ports.push(ServicePort {
        protocol: "UDP".into(),
        ..port("dns-udp", 53, 0)
    });
    let dns = h.create(dns).await.unwrap();
    assert_eq!(node_ports(&dns)[0], node_ports(&dns)[1]);

    let expected: BTreeSet<_> = [&web, &api, &dns].into_iter().flat_map(held).collect();
    assert_eq!(
        claims(&h.store).await,
        expected,
        "every value claimed by its holder"
    );
}

#[tokio::test]
async fn headless_and_external_name_services_take_no_address() {
    let h = harness().await;
    let headless = h
        .create(service("db", "", "None", vec![port("", 5432, 0)]))
        .await
        .unwrap();
    assert_eq!(spec(&headless).cluster_ip, "None");
    assert_eq!(spec(&headless).cluster_ips, vec!["None".to_string()]);
    let mut external = service("ext", "ExternalName", "", vec![]);
    external.spec.as_mut().unwrap().external_name = "db.example.com".into();
    let external = h.create(external).await.unwrap();
    assert_eq!(spec(&external).cluster_ip, "");
    assert!(claims(&h.store).await.is_empty());
}

#[tokio::test]
async fn requested_values_are_honoured_or_refused_naming_the_field() {
    let h = harness().await;
    let a = h
        .create(service(
            "a",
            "NodePort",
            "10.112.0.5",
            vec![port("", 80, 31005)],
        ))
        .await
        .unwrap();
    assert_eq!(spec(&a).cluster_ip, "10.112.0.5");
    assert_eq!(node_ports(&a), vec![31005]);
    let before = claims(&h.store).await;

    let err = h
        .create(service("b", "", "10.112.0.5", vec![port("", 80, 0)]))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Taken { .. }), "{err}");
    assert_eq!(
        errors_of(&err),
        "spec.clusterIP: Invalid value: \"10.112.0.5\": failed to allocate IP 10.112.0.5: provided IP is already allocated"
    );
    assert_eq!(
        tonic::Status::from(err).code(),
        tonic::Code::FailedPrecondition,
        "a taken value is the cluster's state saying no, not bad input"
    );

    // ports[0] is free and taken, ports[1] is not: nothing stays taken.
    let err = h
        .create(service(
            "b",
            "NodePort",
            "",
            vec![port("http", 80, 31006), port("https", 443, 31005)],
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Taken { .. }), "{err}");
    assert_eq!(
        errors_of(&err),
        "spec.ports[1].nodePort: Invalid value: 31005: provided port is already allocated"
    );
    assert_eq!(
        claims(&h.store).await,
        before,
        "a refused create leaks nothing"
    );

    let err = h
        .create(service("b", "NodePort", "", vec![port("", 80, 30080)]))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Invalid { .. }), "{err}");
    assert_eq!(
        errors_of(&err),
        "spec.ports[0].nodePort: Invalid value: 30080: provided port is not in the valid range. The range of valid ports is 31000-31009"
    );
    let err = h
        .create(service("b", "", "10.96.0.10", vec![port("", 80, 0)]))
        .await
        .unwrap_err();
    assert_eq!(
        errors_of(&err),
        "spec.clusterIP: Invalid value: \"10.96.0.10\": failed to allocate IP 10.96.0.10: the provided IP (10.96.0.10) is not in the valid range. The range of valid IPs is 10.112.0.0/28"
    );
    for edge in ["10.112.0.0", "10.112.0.15"] {
        let err = h
            .create(service("b", "", edge, vec![port("", 80, 0)]))
            .await
            .unwrap_err();
        assert!(errors_of(&err).contains("not in the valid range"), "{err}");
    }
    let err = h
        .create(service("b", "", "10.112.0.1", vec![port("", 80, 0)]))
        .await
        .unwrap_err();
    assert!(
        errors_of(&err).contains("reserved for the default/kubernetes Service"),
        "{err}"
    );
    assert_eq!(claims(&h.store).await, before, "refusals leak nothing");
}

#[tokio::test]
async fn a_used_up_range_is_exhausted_not_invalid() {
    let h = Harness::new().await;
    configure(&h.store, "10.112.0.0/30", "31000-31000").await;
    let one = h
        .create(service("one", "NodePort", "", vec![port("", 80, 0)]))
        .await
        .unwrap();
    assert_eq!(
        spec(&one).cluster_ip,
        "10.112.0.2",
        "the only address to hand out"
    );
    assert_eq!(node_ports(&one), vec![31000]);
    let err = h
        .create(service("two", "", "", vec![port("", 80, 0)]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApiError::Exhausted(m) if m.contains("failed to allocate a serviceIP: range is full")),
        "{err}"
    );
    // The address is free again once `one` goes, and the port range is what is used up now.
    let deleted = Registry::<Service>::new(h.store.clone())
        .delete(
            &Identity::Admin,
            &DeleteRequest {
                namespace: "default".into(),
                name: "one".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(deleted.name(), "one");
    h.create(service("filler", "NodePort", "", vec![port("", 80, 0)]))
        .await
        .unwrap();
    let err = h
        .create(service("two", "NodePort", "None", vec![port("", 80, 0)]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Invalid { .. }),
        "None is no NodePort: {err}"
    );
    assert_eq!(
        claims(&h.store).await.len(),
        2,
        "{:?}",
        claims(&h.store).await
    );
}

#[tokio::test]
async fn updates_keep_what_they_leave_out_and_free_what_they_drop() {
    let h = harness().await;
    let svcs = h.registry::<Service>();
    let created = h
        .create(service("web", "NodePort", "", vec![port("http", 80, 0)]))
        .await
        .unwrap();
    let ip = spec(&created).cluster_ip.clone();
    let http = node_ports(&created)[0];

    // As `skiff apply` sends a manifest without the allocated values: nothing changes.
    let mut manifest = service("web", "NodePort", "", vec![port("http", 80, 0)]);
    manifest.metadata_mut().resource_version = created.meta().resource_version.clone();
    let same = svcs.update(&Identity::Admin, manifest).await.unwrap();
    assert_eq!(
        same, created,
        "an update leaving the allocated values out keeps them"
    );

    // clusterIP is immutable (the address asked for is one the allocator did not pick).
    let other = ["10.112.0.9", "10.112.0.10"]
        .into_iter()
        .find(|a| *a != ip)
        .unwrap();
    let mut moved = created.clone();
    moved.spec.as_mut().unwrap().cluster_ip = other.into();
    moved.spec.as_mut().unwrap().cluster_ips = vec![other.into()];
    let err = svcs.update(&Identity::Admin, moved).await.unwrap_err();
    assert_eq!(
        errors_of(&err),
        format!("spec.clusterIP: Invalid value: \"{other}\": field is immutable")
    );

    // A port added gets a node port; a node port changed frees the old one.
    let mut more = created.clone();
    more.spec
        .as_mut()
        .unwrap()
        .ports
        .push(port("admin", 9000, 0));
    let more = svcs.update(&Identity::Admin, more).await.unwrap();
    let admin = node_ports(&more)[1];
    assert!(admin != 0 && admin != http);
    let wanted = (31000..=31009)
        .find(|p| ![http, admin].contains(p))
        .unwrap();
    let mut changed = more.clone();
    changed.spec.as_mut().unwrap().ports[0].node_port = wanted;
    let changed = svcs.update(&Identity::Admin, changed).await.unwrap();
    assert_eq!(node_ports(&changed), vec![wanted, admin]);
    assert_eq!(
        claims(&h.store).await,
        held(&changed),
        "the old node port is free"
    );

    // Away from NodePort: the node ports go (the update did not ask for them).
    let current = svcs.get("default", "web").await.unwrap();
    let mut cluster_ip = current.clone();
    cluster_ip.spec.as_mut().unwrap().r#type = "ClusterIP".into();
    let cluster_ip = svcs.update(&Identity::Admin, cluster_ip).await.unwrap();
    assert_eq!(node_ports(&cluster_ip), vec![0, 0]);
    assert_eq!(spec(&cluster_ip).cluster_ip, ip);
    assert_eq!(claims(&h.store).await, held(&cluster_ip));

    // Back to NodePort: new node ports; to ExternalName: the address goes too.
    let mut again = cluster_ip.clone();
    again.spec.as_mut().unwrap().r#type = "NodePort".into();
    let again = svcs.update(&Identity::Admin, again).await.unwrap();
    assert!(node_ports(&again).iter().all(|p| *p != 0));
    let mut external = again.clone();
    let s = external.spec.as_mut().unwrap();
    s.r#type = "ExternalName".into();
    s.external_name = "web.example.com".into();
    let external = svcs.update(&Identity::Admin, external).await.unwrap();
    assert_eq!(spec(&external).cluster_ip, "");
    assert!(
        claims(&h.store).await.is_empty(),
        "{:?}",
        claims(&h.store).await
    );
}

#[tokio::test]
async fn a_deleted_services_values_can_be_asked_for_again() {
    let h = harness().await;
    let svcs = h.registry::<Service>();
    h.create(service(
        "a",
        "NodePort",
        "10.112.0.7",
        vec![port("", 80, 31007)],
    ))
    .await
    .unwrap();
    let delete = |name: &str| DeleteRequest {
        namespace: "default".into(),
        name: name.into(),
        ..Default::default()
    };
    let again = h
        .create(service(
            "a",
            "NodePort",
            "10.112.0.7",
            vec![port("", 80, 31007)],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(again, ApiError::AlreadyExists { .. }),
        "a second create of one Service is no allocation conflict: {again}"
    );
    svcs.delete(&Identity::Admin, &delete("a")).await.unwrap();
    assert!(claims(&h.store).await.is_empty());
    let b = h
        .create(service(
            "b",
            "NodePort",
            "10.112.0.7",
            vec![port("", 80, 31007)],
        ))
        .await
        .unwrap();
    assert_eq!(claims(&h.store).await, held(&b));
}

/// Several registries on one store (as several API servers) creating at once never give two
/// Services one address or port.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registries_never_share_a_value() {
    let h = Harness::new().await;
    configure(&h.store, "10.112.0.0/27", "31000-31039").await;
    let mut tasks = Vec::new();
    for server in 0..2 {
        let svcs = Registry::<Service>::new(h.store.clone());
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for i in 0..12 {
                let name = format!("s{server}-{i}");
                made.push(
                    svcs.create(
                        &Identity::Admin,
                        service(&name, "NodePort", "", vec![port("", 80, 0)]),
                    )
                    .await
                    .unwrap(),
                );
            }
            made
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let ips: BTreeSet<_> = all.iter().map(|s| spec(s).cluster_ip.clone()).collect();
    let ports: BTreeSet<_> = all.iter().map(|s| node_ports(s)[0]).collect();
    assert_eq!(
        (ips.len(), ports.len()),
        (24, 24),
        "a value was given twice"
    );
    let expected: BTreeSet<_> = all.iter().flat_map(held).collect();
    assert_eq!(claims(&h.store).await, expected);
}

async fn wait_until_free(store: &Arc<dyn Store>, what: &str) {
    for _ in 0..200 {
        if claims(store).await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: still claimed: {:?}", claims(store).await);
}

#[tokio::test]
async fn deletion_by_the_namespace_controller_and_the_garbage_collector_frees_values() {
    let h = harness().await;
    let controllers = [
        tokio::spawn(crate::controllers::namespace::run(h.store.clone())),
        tokio::spawn(crate::controllers::gc::run(h.store.clone())),
    ];

    h.namespace("team").await;
    let mut svc = service("api", "NodePort", "", vec![port("", 80, 0)]);
    svc.metadata_mut().namespace = "team".into();
    h.create(svc).await.unwrap();
    h.registry::<Namespace>()
        .delete(
            &Identity::Admin,
            &DeleteRequest {
                name: "team".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    wait_until_free(&h.store, "namespace deletion").await;

    // A dependent of a deleted owner, and a foreground deletion (the collector removes the
    // finalizer: the last update completes the deletion).
    let owner = h
        .create(ConfigMap {
            metadata: meta("default", "owner"),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut dependent = service("dependent", "NodePort", "", vec![port("", 80, 0)]);
    dependent.metadata_mut().owner_references = vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.meta().uid.clone(),
        ..Default::default()
    }];
    h.create(dependent).await.unwrap();
    h.create(service("fg", "NodePort", "", vec![port("", 80, 0)]))
        .await
        .unwrap();
    let delete = |name: &str, policy: &str| DeleteRequest {
        namespace: "default".into(),
        name: name.into(),
        propagation_policy: policy.into(),
        ..Default::default()
    };
    h.registry::<ConfigMap>()
        .delete(&Identity::Admin, &delete("owner", ""))
        .await
        .unwrap();
    let fg = h
        .registry::<Service>()
        .delete(&Identity::Admin, &delete("fg", "Foreground"))
        .await
        .unwrap();
    assert!(
        fg.meta().deletion_timestamp.is_some(),
        "waits for the collector"
    );
    wait_until_free(&h.store, "garbage collection").await;
    for c in controllers {
        c.abort();
    }
}
