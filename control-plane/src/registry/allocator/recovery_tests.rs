//! What goes wrong, over the real embedded store: a Service write that fails gives back what it
//! took, and the repair loop puts claims and Services back in agreement.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use skiff_api::v1::*;
use skiff_api::{Resource, ResourceExt};

use super::ip::IpPool;
use super::pool::{Allocator, Claim};
use super::port::PortPool;
use super::ranges::ServiceRanges;
use super::repair::{GRACE, Report, repair_once};
use super::service_tests::{claims, harness, held, in_cidr, node_ports, port, service, spec};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::store::{KeyValue, Store, StoreError};

/// A store whose writes of Services fail on demand (as a backend error or a lost race would).
struct FailingStore {
    inner: Arc<dyn Store>,
    fail: AtomicBool,
}

impl FailingStore {
    fn check(&self, key: &str) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) && key.starts_with("/services/") {
            return Err(StoreError::Backend("injected failure".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for FailingStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<crate::store::ListPage, StoreError> {
        self.inner.list(prefix, start_after, limit).await
    }
    async fn create(&self, key: &str, value: bytes::Bytes) -> Result<KeyValue, StoreError> {
        self.check(key)?;
        self.inner.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: bytes::Bytes,
        expected: Option<crate::store::Revision>,
    ) -> Result<KeyValue, StoreError> {
        self.check(key)?;
        self.inner.update(key, value, expected).await
    }
    async fn delete(
        &self,
        key: &str,
        expected: Option<crate::store::Revision>,
    ) -> Result<KeyValue, StoreError> {
        self.inner.delete(key, expected).await
    }
    async fn watch(
        &self,
        prefix: &str,
        after: crate::store::Revision,
    ) -> Result<crate::store::EventStream, StoreError> {
        self.inner.watch(prefix, after).await
    }
    async fn revision(&self) -> Result<crate::store::Revision, StoreError> {
        self.inner.revision().await
    }
}

#[tokio::test]
async fn a_failed_write_gives_back_what_it_took() {
    let h = harness().await;
    let failing = Arc::new(FailingStore {
        inner: h.store.clone(),
        fail: AtomicBool::new(false),
    });
    let svcs = Registry::<Service>::new(failing.clone());
    let created = svcs
        .create(
            &Identity::Admin,
            service("web", "ClusterIP", "", vec![port("http", 80, 0)]),
        )
        .await
        .unwrap();
    let before = claims(&h.store).await;

    failing.fail.store(true, Ordering::SeqCst);
    let err = svcs
        .create(
            &Identity::Admin,
            service("api", "NodePort", "", vec![port("", 80, 31003)]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Internal(_)), "{err}");
    assert_eq!(
        claims(&h.store).await,
        before,
        "a failed create leaks nothing"
    );

    let mut node_port = created.clone();
    node_port.spec.as_mut().unwrap().r#type = "NodePort".into();
    svcs.update(&Identity::Admin, node_port.clone())
        .await
        .unwrap_err();
    assert_eq!(
        claims(&h.store).await,
        before,
        "a failed update leaks nothing"
    );

    failing.fail.store(false, Ordering::SeqCst);
    let updated = svcs.update(&Identity::Admin, node_port).await.unwrap();
    assert_eq!(claims(&h.store).await, held(&updated));
}

fn claim_of(name: &str, uid: &str, created: i64) -> Claim {
    Claim {
        resource: "services".into(),
        namespace: "default".into(),
        name: name.into(),
        uid: uid.into(),
        created,
    }
}

#[tokio::test]
async fn repair_frees_leaks_after_a_grace_period_and_retakes_what_was_lost() {
    let h = harness().await;
    let ranges = ServiceRanges::load(h.store.as_ref()).await.unwrap();
    let ips = Allocator::new(h.store.as_ref(), IpPool::new(ranges.cidr()));
    let ports = Allocator::new(h.store.as_ref(), PortPool::new(ranges.node_ports()));
    let web = h
        .create(service("web", "NodePort", "", vec![port("", 80, 0)]))
        .await
        .unwrap();
    let now = super::pool::unix_now();
    // `web`'s values are random: the leaked ones below must not be among them.
    let web_port = u16::try_from(node_ports(&web)[0]).unwrap();
    let web_ip: Ipv4Addr = spec(&web).cluster_ip.parse().unwrap();
    let leaked_ip = [12, 13]
        .map(|last| Ipv4Addr::new(10, 112, 0, last))
        .into_iter()
        .find(|ip| *ip != web_ip)
        .unwrap();
    let inflight_port = if web_port == 31009 { 31010 } else { 31009 };

    // A server killed between taking a value and writing its Service left two claims: one
    // long ago, one a moment ago (maybe a write still in flight).
    ips.take(leaked_ip, &claim_of("gone", "uid-gone", now - GRACE))
        .await
        .unwrap();
    ports
        .take(inflight_port, &claim_of("inflight", "uid-inflight", now))
        .await
        .unwrap();
    // And a claim of `web` was lost (a restored store).
    assert!(ports.release(web_port, &web.meta().uid).await.unwrap());

    let report = repair_once(&h.store, now).await.unwrap();
    assert_eq!(
        report,
        Report {
            retaken: 1,
            freed: 1,
            ..Default::default()
        }
    );
    let mut expected = held(&web);
    expected.insert((inflight_port.to_string(), "inflight".into()));
    assert_eq!(claims(&h.store).await, expected);
    let (retaken, _) = ports.get(web_port).await.unwrap().unwrap();
    assert_eq!(retaken.uid, web.meta().uid, "re-taken for its holder");

    // A grace period later the in-flight write never came: freed.
    let report = repair_once(&h.store, now + GRACE).await.unwrap();
    assert_eq!(report.freed, 1);
    assert_eq!(claims(&h.store).await, held(&web));
    assert_eq!(
        repair_once(&h.store, now + GRACE).await.unwrap(),
        Report::default(),
        "nothing left to repair"
    );
}

#[tokio::test]
async fn repair_hands_claims_over_assigns_old_services_and_warns_of_duplicates() {
    let h = harness().await;
    let ranges = ServiceRanges::load(h.store.as_ref()).await.unwrap();
    let ips = Allocator::new(h.store.as_ref(), IpPool::new(ranges.cidr()));
    let now = super::pool::unix_now();

    // Services as an older skiff stored them, written past the registry: one with no address,
    // two with the same one (whose claim names a Service long gone).
    let put = |svc: Service| {
        let store = h.store.clone();
        async move {
            use prost::Message;
            let key = crate::registry::key::<Service>("default", svc.name());
            store
                .create(&key, bytes::Bytes::from(svc.encode_to_vec()))
                .await
                .unwrap();
        }
    };
    let with_uid = |mut svc: Service, uid: &str| {
        svc.metadata_mut().uid = uid.into();
        svc
    };
    put(with_uid(
        service("old", "NodePort", "", vec![port("", 80, 0)]),
        "uid-old",
    ))
    .await;
    put(with_uid(
        service("twin-a", "", "10.112.0.9", vec![port("", 80, 0)]),
        "uid-a",
    ))
    .await;
    put(with_uid(
        service("twin-b", "", "10.112.0.9", vec![port("", 80, 0)]),
        "uid-b",
    ))
    .await;
    ips.take(
        Ipv4Addr::new(10, 112, 0, 9),
        &claim_of("gone", "uid-gone", now - GRACE),
    )
    .await
    .unwrap();

    let report = repair_once(&h.store, now).await.unwrap();
    assert_eq!(report.assigned, 1, "{report:?}");
    assert_eq!(report.handed_over, 1, "{report:?}");
    assert_eq!(report.warnings, 1, "{report:?}");
    let old = h.registry::<Service>().get("default", "old").await.unwrap();
    assert!(in_cidr(&spec(&old).cluster_ip));
    assert!(node_ports(&old)[0] != 0);
    let (claim, _) = ips
        .get(Ipv4Addr::new(10, 112, 0, 9))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.name, "twin-a", "handed to the first holder");
    let (events, _) = h
        .registry::<Event>()
        .list(&ListRequest {
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.reason == "ClusterIPAlreadyAllocated"
                && e.involved_object.as_ref().unwrap().name == "twin-b"
                && e.message.contains("10.112.0.9")),
        "{events:?}"
    );
}
