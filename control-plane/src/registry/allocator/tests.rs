//! The pools over the real embedded store: exhaustion, requested values, release, and
//! concurrent allocation by several allocators (as several API servers) on one store.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::ip::IpPool;
use super::pool::{Allocator, Claim, PoolError};
use super::port::PortPool;
use crate::store::Store;
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};

pub(crate) fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        EmbeddedStore::open(&dir.path().join("store.redb"), EmbeddedOptions::default()).unwrap();
    (dir, Arc::new(store))
}

fn owner(name: &str) -> Claim {
    Claim {
        resource: "services".into(),
        namespace: "default".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        created: 0,
    }
}

fn ip_pool(cidr: &str) -> IpPool {
    IpPool::new(cidr.parse().unwrap())
}

#[tokio::test]
async fn a_tiny_cidr_hands_out_each_usable_address_once_then_is_full() {
    let (_dir, store) = store();
    let ips = Allocator::new(store.as_ref(), ip_pool("10.96.0.0/29"));
    let mut got = HashSet::new();
    for i in 0..5 {
        let ip = ips.take_next(&owner(&format!("s{i}"))).await.unwrap();
        assert!(got.insert(ip), "{ip} handed out twice");
    }
    let expected: HashSet<Ipv4Addr> = (2..=6).map(|h| Ipv4Addr::new(10, 96, 0, h)).collect();
    assert_eq!(
        got, expected,
        "not the network, the kept first, nor the broadcast address"
    );
    assert_eq!(ips.take_next(&owner("late")).await, Err(PoolError::Full));

    // A value given back is handed out again.
    let freed = Ipv4Addr::new(10, 96, 0, 4);
    let holder = ips.get(freed).await.unwrap().unwrap().0.uid;
    assert!(ips.release(freed, &holder).await.unwrap());
    assert_eq!(ips.take_next(&owner("late")).await, Ok(freed));
}

#[tokio::test]
async fn a_tiny_port_range_is_used_up_and_given_back() {
    let (_dir, store) = store();
    let ports = Allocator::new(
        store.as_ref(),
        PortPool::new("31000-31002".parse().unwrap()),
    );
    let mut got = Vec::new();
    for i in 0..3 {
        got.push(ports.take_next(&owner(&format!("s{i}"))).await.unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, vec![31000, 31001, 31002]);
    assert_eq!(ports.take_next(&owner("late")).await, Err(PoolError::Full));
    let held_by = ports.get(31001).await.unwrap().unwrap().0;
    assert!(
        !ports.release(31001, "someone-else").await.unwrap(),
        "only the holder gives a value back"
    );
    assert!(ports.release(31001, &held_by.uid).await.unwrap());
    assert!(!ports.release(31001, &held_by.uid).await.unwrap(), "once");
    assert_eq!(ports.take_next(&owner("late")).await, Ok(31001));
}

#[tokio::test]
async fn a_requested_value_is_taken_once_and_names_its_holder() {
    let (_dir, store) = store();
    let ports = Allocator::new(store.as_ref(), PortPool::new(Default::default()));
    ports.take(30080, &owner("a")).await.unwrap();
    assert_eq!(
        ports.take(30080, &owner("b")).await,
        Err(PoolError::Allocated("services/default/a".into()))
    );
    let (claim, _) = ports.get(30080).await.unwrap().unwrap();
    assert_eq!(claim, owner("a"));
    assert_eq!(ports.pool().refuse_request(30080), None);
    assert!(ports.pool().refuse_request(29999).is_some());
}

#[tokio::test]
async fn dynamic_allocation_leaves_the_static_band_to_requests() {
    let (_dir, store) = store();
    // A /24: 16 addresses at the bottom are for requests while the rest has room.
    let ips = Allocator::new(store.as_ref(), ip_pool("10.96.0.0/24"));
    for i in 0..200 {
        let ip = ips.take_next(&owner(&format!("s{i}"))).await.unwrap();
        assert!(ip.octets()[3] >= 16, "{ip} is in the static band");
    }
}

/// Several allocators on one store (as several API servers) never hand out one address twice,
/// and between them use the range up exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_allocators_on_one_store_never_share_a_value() {
    let (_dir, store) = store();
    // 61 usable addresses (64 less the network, the kept first and the broadcast address), 4
    // allocators trying 20 each: 80 attempts, 61 succeed.
    let mut tasks = Vec::new();
    for server in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let ips = Allocator::new(store.as_ref(), ip_pool("10.96.0.0/26"));
            let mut got = Vec::new();
            for i in 0..20 {
                match ips.take_next(&owner(&format!("s{server}-{i}"))).await {
                    Ok(ip) => got.push(ip),
                    Err(PoolError::Full) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "an address was handed out twice");
    assert_eq!(all.len(), 61, "the range is used up exactly");
    let ips = Allocator::new(store.as_ref(), ip_pool("10.96.0.0/26"));
    assert_eq!(ips.claims().await.unwrap().len(), 61);
}
