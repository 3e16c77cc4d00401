//! Property tests (proptest) of the write path: pods built from arbitrary values (names,
//! namespaces, labels, annotations, images, quantities, ports, volumes, security fields), and
//! arbitrary bytes decoded as a Pod, go through the registry's create (strategy, admission chain,
//! validation, the embedded store) and come back created or refused with a client error: never a
//! panic, never `Internal`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;
use skiff_api::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, HostPathVolumeSource, ObjectMeta,
    Pod, PodSpec, ResourceRequirements, SecurityContext, Volume, VolumeMount,
};

use super::tests::Harness;
use crate::error::ApiError;

fn config() -> Config {
    Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]([a-z0-9.-]{0,10}[a-z0-9])?",
        "[ -~]{0,16}",
        any::<String>(),
        Just(String::new()),
    ]
}

fn quantities() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop_oneof![Just("cpu".to_string()), Just("memory".to_string()), text()],
        prop_oneof!["-?[0-9]{1,20}(\\.[0-9]{0,5})?(m|Ki|Mi|Gi|E|e9)?", text()],
        0..3,
    )
}

fn container() -> impl Strategy<Value = Container> {
    (
        text(),
        text(),
        quantities(),
        quantities(),
        prop::collection::vec((any::<i32>(), any::<i32>(), text()), 0..2),
        prop::collection::vec((text(), text()), 0..2),
        proptest::option::of((
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<u32>()),
            prop::collection::vec(text(), 0..2),
            text(),
        )),
    )
        .prop_map(
            |(name, image, limits, requests, ports, mounts, sc)| Container {
                name,
                image,
                resources: Some(ResourceRequirements { limits, requests }),
                ports: ports
                    .into_iter()
                    .map(|(container_port, host_port, protocol)| ContainerPort {
                        container_port,
                        host_port,
                        protocol,
                        ..Default::default()
                    })
                    .collect(),
                volume_mounts: mounts
                    .into_iter()
                    .map(|(name, mount_path)| VolumeMount {
                        name,
                        mount_path,
                        ..Default::default()
                    })
                    .collect(),
                security_context: sc.map(|(privileged, user, add, seccomp)| SecurityContext {
                    privileged,
                    run_as_user: user,
                    capabilities: Some(Capabilities { add, drop: vec![] }),
                    seccomp_profile: Some(skiff_api::v1::SeccompProfile {
                        r#type: seccomp,
                        localhost_profile: String::new(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
}

fn pod() -> impl Strategy<Value = Pod> {
    (
        text(),
        prop_oneof![Just("default".to_string()), text()],
        prop::collection::btree_map(text(), text(), 0..3),
        prop::collection::btree_map(text(), text(), 0..2),
        prop::collection::vec(container(), 0..3),
        prop::collection::vec((text(), any::<bool>(), text()), 0..2),
        prop_oneof![Just(String::new()), Just("wasm".to_string()), text()],
        any::<bool>(),
    )
        .prop_map(
            |(name, namespace, labels, annotations, containers, volumes, class, host_network)| {
                Pod {
                    metadata: Some(ObjectMeta {
                        name,
                        namespace,
                        labels,
                        annotations,
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers,
                        runtime_class_name: class,
                        host_network,
                        volumes: volumes
                            .into_iter()
                            .map(|(name, host, path)| Volume {
                                name,
                                host_path: host.then(|| HostPathVolumeSource {
                                    path: path.clone(),
                                    r#type: String::new(),
                                }),
                                empty_dir: (!host).then(|| EmptyDirVolumeSource {
                                    medium: String::new(),
                                    size_limit: path,
                                }),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }),
                    status: None,
                }
            },
        )
}

/// Creates `pod`; anything but Internal is an acceptable answer.
fn create_is_never_internal(
    rt: &tokio::runtime::Runtime,
    h: &Harness,
    pod: Pod,
) -> Result<(), TestCaseError> {
    let shown = format!("{pod:?}");
    let result = rt.block_on(h.create(pod));
    prop_assert!(
        !matches!(result, Err(ApiError::Internal(_))),
        "{result:?} for {shown}"
    );
    Ok(())
}

#[test]
fn generated_pods_are_created_or_refused_never_internal() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(Harness::new());
    TestRunner::new(config())
        .run(&pod(), |pod| create_is_never_internal(&rt, &h, pod))
        .unwrap();
}

#[test]
fn pods_decoded_from_mutated_bytes_are_never_internal() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(Harness::new());
    let mutated = (
        pod(),
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
    );
    TestRunner::new(config())
        .run(&mutated, |(pod, flips)| {
            let mut bytes = pod.encode_to_vec();
            if !bytes.is_empty() {
                for (at, b) in flips {
                    let i = at % bytes.len();
                    bytes[i] = b;
                }
            }
            match Pod::decode(bytes.as_slice()) {
                Ok(pod) => create_is_never_internal(&rt, &h, pod),
                Err(_) => Ok(()),
            }
        })
        .unwrap();
}
