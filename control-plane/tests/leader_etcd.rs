//! Leader election and fenced writes against a real etcd (one member on loopback).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use skiff_control_plane::leader::{self, LeaderOptions};
use skiff_control_plane::store::Store;
use skiff_control_plane::store::etcd::{EtcdOptions, EtcdStore, FENCED};
use skiff_tests::etcd::EtcdCluster;
use tokio::sync::mpsc;

async fn connect(cluster: &EtcdCluster) -> EtcdStore {
    EtcdStore::connect(EtcdOptions::new(cluster.endpoints()))
        .await
        .unwrap()
}

fn options(identity: &str, ttl: u64) -> LeaderOptions {
    LeaderOptions {
        name: leader::CONTROLLERS.into(),
        identity: identity.into(),
        ttl: Duration::from_secs(ttl),
    }
}

/// A leader whose term ended (its key deleted, as when its lease expires) cannot write through
/// its fenced handle, even before it notices; the next leader can, and the first one's work is
/// stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposed_leader_writes_are_refused() {
    let cluster = EtcdCluster::start(1);
    let a = connect(&cluster).await;
    let b = connect(&cluster).await;

    let term_a = leader::campaign(&a, &options("a", 60)).await.unwrap();
    let fenced_a = a.fenced(term_a.fence.clone());
    fenced_a
        .create("/pods/ns/one", Bytes::from_static(b"1"))
        .await
        .unwrap();

    // b campaigns while a leads: it must wait.
    let (won_tx, mut won_rx) = mpsc::channel(1);
    let b_task = tokio::spawn(async move {
        let term = leader::campaign(&b, &options("b", 60)).await.unwrap();
        won_tx
            .send((b.fenced(term.fence.clone()), term))
            .await
            .unwrap();
    });
    assert!(
        tokio::time::timeout(Duration::from_secs(3), won_rx.recv())
            .await
            .is_err(),
        "b won while a's term held"
    );

    // a's term ends without its hearing of it (as when a paused leader's lease expires): its
    // lease is revoked behind its back.
    let mut client = a.client();
    client.lease_revoke(term_a.lease).await.unwrap();
    let (fenced_b, term_b) = tokio::time::timeout(Duration::from_secs(10), won_rx.recv())
        .await
        .expect("b leads within 10 s")
        .unwrap();
    b_task.await.unwrap();
    assert!(term_b.fence.create_revision > term_a.fence.create_revision);

    // Every kind of write by the deposed leader is refused, and nothing of it lands.
    let refused = [
        fenced_a
            .create("/pods/ns/two", Bytes::from_static(b"2"))
            .await,
        fenced_a
            .update("/pods/ns/one", Bytes::from_static(b"x"), None)
            .await,
        fenced_a.delete("/pods/ns/one", None).await,
    ];
    for r in refused {
        let e = r.expect_err("a deposed leader's write must fail");
        assert!(e.to_string().contains(FENCED), "{e}");
    }
    assert_eq!(a.get("/pods/ns/two").await.unwrap(), None);
    assert_eq!(
        &a.get("/pods/ns/one").await.unwrap().unwrap().value[..],
        b"1"
    );

    // The new leader writes; an unfenced handle (the API server's own) is not affected.
    fenced_b
        .update("/pods/ns/one", Bytes::from_static(b"b"), None)
        .await
        .unwrap();
    a.create("/pods/ns/three", Bytes::from_static(b"3"))
        .await
        .unwrap();
}

/// `run` runs the work only while leading: a second candidate takes over within the lease's
/// time after the first stops renewing, and the first's work is aborted when its term is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_hands_over_when_the_leader_stops() {
    let cluster = EtcdCluster::start(1);
    let (events_tx, mut events) = mpsc::unbounded_channel::<(&'static str, bool)>();
    let spawn = |who: &'static str, store: EtcdStore, stop: tokio::sync::oneshot::Receiver<()>| {
        let events_tx = events_tx.clone();
        tokio::spawn(leader::run(
            store,
            options(who, 2),
            move |fenced: EtcdStore| {
                let events_tx = events_tx.clone();
                async move {
                    let _ = events_tx.send((who, true));
                    // Works until aborted, writing through its fence.
                    loop {
                        let _ = fenced.update("/leader-work", Bytes::from(who), None).await;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            },
            async move {
                let _ = stop.await;
            },
        ))
    };
    let a = connect(&cluster).await;
    a.create("/leader-work", Bytes::from_static(b"-"))
        .await
        .unwrap();
    let (stop_a, stop_a_rx) = tokio::sync::oneshot::channel();
    let run_a = spawn("a", a.clone(), stop_a_rx);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap(),
        Some(("a", true))
    );
    let (_stop_b, stop_b_rx) = tokio::sync::oneshot::channel();
    let _run_b = spawn("b", connect(&cluster).await, stop_b_rx);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(events.try_recv().is_err(), "only one leader at a time");

    // a stops: it revokes its lease, so b takes over at once.
    stop_a.send(()).unwrap();
    run_a.await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap(),
        Some(("b", true))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        &a.get("/leader-work").await.unwrap().unwrap().value[..],
        b"b"
    );
}
