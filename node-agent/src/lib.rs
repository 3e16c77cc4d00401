//! skiff-node-agent: the kubelet of skiff.
//!
//! Will own (issue "Node agent and Wasm pods"): joining with the join token, registering the Node,
//! heartbeats, the level-triggered pod sync loop over a watch of the pods bound to this node,
//! probes, volumes, secrets and config maps as files and env, the service proxy, DNS and HTTP
//! ingress. It drives workloads through `skiff-runtime` (via the containerd shim v2 task API).
//!
//! Must not: write objects other than its Node, its pods' status and Events; schedule pods.
//!
//! Empty today: the Foundation issue only lays the crate out so that later work adds to it.
