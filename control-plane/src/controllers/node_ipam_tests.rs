//! The node IPAM controller: block arithmetic, then the real controller over the real embedded
//! store (allocation, restarts, deletion, exhaustion, immutability).

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use skiff_api::v1::{DeleteRequest, Event, ListRequest, Namespace, NodeSpec, ObjectMeta};

use super::*;
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};

fn cidr(s: &str) -> Ipv4Cidr {
    s.parse().unwrap()
}

fn options(cluster: &str, mask: u8) -> NodeIpamOptions {
    NodeIpamOptions::new(cidr(cluster), mask).unwrap()
}

#[test]
fn the_lowest_free_block_is_chosen_around_foreign_ones() {
    let o = NodeIpamOptions::default();
    assert_eq!(o.cluster_cidr(), cidr("10.244.0.0/16"));
    assert_eq!(o.free_block(&[]), Some(cidr("10.244.0.0/24")));
    let used = [cidr("10.244.0.0/24"), cidr("10.244.2.0/24")];
    assert_eq!(o.free_block(&used), Some(cidr("10.244.1.0/24")));
    // A block set by hand over two /24s, one outside the cluster CIDR, one smaller than a /24.
    let used = [
        cidr("10.244.0.0/23"),
        cidr("192.168.0.0/24"),
        cidr("10.244.2.128/25"),
    ];
    assert_eq!(o.free_block(&used), Some(cidr("10.244.3.0/24")));
    assert_eq!(o.free_block(&[cidr("10.0.0.0/8")]), None, "covers it all");
    let small = options("10.1.0.0/23", 24);
    assert_eq!(
        small.free_block(&[cidr("10.1.0.0/24"), cidr("10.1.1.0/24")]),
        None
    );
}

#[test]
fn bad_masks_are_refused_with_the_reason() {
    let c = cidr("10.244.0.0/16");
    assert!(matches!(
        NodeIpamOptions::new(c, 8),
        Err(NodeIpamError::MaskTooShort { .. })
    ));
    assert!(matches!(
        NodeIpamOptions::new(c, 31),
        Err(NodeIpamError::MaskTooLong(31))
    ));
    let err = NodeIpamOptions::new(cidr("10.0.0.0/8"), 26).unwrap_err();
    assert!(err.to_string().contains("16 bits"), "{err}");
    assert!(NodeIpamOptions::new(cidr("10.0.0.0/8"), 24).is_ok());
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    nodes: Registry<Node>,
    controller: Option<tokio::task::JoinHandle<()>>,
    options: NodeIpamOptions,
}

impl Harness {
    async fn new(options: NodeIpamOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&dir.path().join("store.redb"), EmbeddedOptions::default())
                .unwrap(),
        );
        let default = Namespace {
            metadata: Some(ObjectMeta {
                name: "default".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        Registry::<Namespace>::new(store.clone())
            .create(&Identity::Admin, default)
            .await
            .unwrap();
        let mut h = Self {
            nodes: Registry::new(store.clone()),
            store,
            _dir: dir,
            controller: None,
            options,
        };
        h.restart_controller();
        h
    }

    fn restart_controller(&mut self) {
        if let Some(c) = self.controller.take() {
            c.abort();
        }
        self.controller = Some(tokio::spawn(run(self.store.clone(), self.options)));
    }

    async fn add(&self, name: &str) {
        let node = Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                ..Default::default()
            }),
            spec: Some(NodeSpec::default()),
            status: None,
        };
        self.nodes.create(&Identity::Admin, node).await.unwrap();
    }

    async fn remove(&self, name: &str) {
        let request = DeleteRequest {
            name: name.into(),
            ..Default::default()
        };
        self.nodes.delete(&Identity::Admin, &request).await.unwrap();
    }

    async fn block(&self, name: &str) -> String {
        let node = self.nodes.get("", name).await.unwrap();
        node.spec.map(|s| s.pod_cidr).unwrap_or_default()
    }

    /// Waits (at most 5 s) for `name` to hold a block; returns it.
    async fn wait_block(&self, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let block = self.block(name).await;
            if !block.is_empty() {
                return block;
            }
            assert!(Instant::now() < deadline, "{name} got no pod CIDR");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn events(&self, reason: &str) -> Vec<Event> {
        let request = ListRequest::default();
        let (events, _) = Registry::<Event>::new(self.store.clone())
            .list(&request)
            .await
            .unwrap();
        events.into_iter().filter(|e| e.reason == reason).collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(c) = self.controller.take() {
            c.abort();
        }
    }
}

#[tokio::test]
async fn nodes_get_distinct_blocks_that_survive_a_restart_and_are_freed_with_the_node() {
    let mut h = Harness::new(NodeIpamOptions::default()).await;
    for n in ["n1", "n2", "n3"] {
        h.add(n).await;
    }
    let mut blocks = Vec::new();
    for n in ["n1", "n2", "n3"] {
        blocks.push(h.wait_block(n).await);
    }
    let mut sorted = blocks.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"],
        "{blocks:?}"
    );
    let n1 = h.nodes.get("", "n1").await.unwrap();
    let spec = n1.spec.unwrap();
    assert_eq!(spec.pod_cidrs, vec![spec.pod_cidr.clone()]);

    // A new controller (a restarted control plane) reads the used blocks from the nodes.
    h.restart_controller();
    h.add("n4").await;
    assert_eq!(h.wait_block("n4").await, "10.244.3.0/24");
    for (n, b) in ["n1", "n2", "n3"].iter().zip(&blocks) {
        assert_eq!(&h.block(n).await, b, "{n} keeps its block");
    }

    // A deleted node's block goes to the next node.
    let freed = h.block("n2").await;
    h.remove("n2").await;
    h.add("n5").await;
    assert_eq!(h.wait_block("n5").await, freed);
}

#[tokio::test]
async fn an_exhausted_cluster_cidr_leaves_the_node_waiting_with_an_event() {
    let h = Harness::new(options("10.9.0.0/23", 24)).await;
    h.add("a").await;
    h.add("b").await;
    let a = h.wait_block("a").await;
    let b = h.wait_block("b").await;
    assert_ne!(a, b);
    h.add("c").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let events = loop {
        let events = h.events("CIDRNotAvailable").await;
        if !events.is_empty() {
            break events;
        }
        assert!(Instant::now() < deadline, "no CIDRNotAvailable event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(events[0].involved_object.as_ref().unwrap().name, "c");
    assert_eq!(events[0].r#type, "Warning");
    assert!(events[0].message.contains("10.9.0.0/23"), "{events:?}");
    assert_eq!(h.block("c").await, "");
    // A node that comes once the CIDR is known to be used up is told so too.
    h.add("d").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.events("CIDRNotAvailable").await.len() < 2 {
        assert!(Instant::now() < deadline, "no CIDRNotAvailable event for d");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = h.events("CIDRNotAvailable").await;
    let mut told: Vec<String> = events
        .iter()
        .map(|e| e.involved_object.as_ref().unwrap().name.clone())
        .collect();
    told.sort();
    assert_eq!(told, ["c", "d"], "one event per waiting node");
    assert_eq!(h.block("d").await, "");
    // Freed by a deletion, the block goes to a waiting node (the first by name); the other
    // still waits.
    h.remove("a").await;
    assert_eq!(h.wait_block("c").await, a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.block("d").await, "");
    assert_eq!(
        h.events("CIDRNotAvailable").await.len(),
        2,
        "no second event"
    );
    // And the next freed block goes to it.
    h.remove("b").await;
    assert_eq!(h.wait_block("d").await, b);
}

#[tokio::test]
async fn a_pod_cidr_is_kept_by_updates_that_omit_it_and_cannot_be_changed() {
    let h = Harness::new(NodeIpamOptions::default()).await;
    h.add("n1").await;
    let block = h.wait_block("n1").await;
    let mut node = h.nodes.get("", "n1").await.unwrap();
    node.spec = Some(NodeSpec {
        unschedulable: true,
        ..Default::default()
    });
    let node = h.nodes.update(&Identity::Admin, node).await.unwrap();
    assert_eq!(node.spec.as_ref().unwrap().pod_cidr, block, "kept");
    let mut changed = node;
    let spec = changed.spec.as_mut().unwrap();
    spec.pod_cidr = "10.244.99.0/24".into();
    spec.pod_cidrs = vec!["10.244.99.0/24".into()];
    let err = h.nodes.update(&Identity::Admin, changed).await.unwrap_err();
    assert!(err.to_string().contains("spec.podCIDR"), "{err}");
    // Not a CIDR at all: refused by validation on create.
    let bad = Node {
        metadata: Some(ObjectMeta {
            name: "bad".into(),
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            pod_cidr: "10.244.1.7/24".into(),
            ..Default::default()
        }),
        status: None,
    };
    let err = h.nodes.create(&Identity::Admin, bad).await.unwrap_err();
    assert!(err.to_string().contains("spec.podCIDR"), "{err}");
}
