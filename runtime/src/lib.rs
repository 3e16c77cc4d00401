//! skiff-runtime: the executors that run workloads, with no knowledge of the cluster.
//!
//! Will own (issue "Node agent and Wasm pods", issue "OCI pods"): the wasm executor (one shared
//! wasmtime `Engine`, modules compiled once per digest and cached on disk, `InstancePre`, the pooling
//! allocator, `ResourceLimiter` and epoch interruption for limits), the linux executor (namespaces,
//! cgroups v1 and v2, seccomp, capabilities), the image store (OCI pull, verify, unpack safely) and
//! container logs. It takes its own small specs, never the API's cluster objects.
//!
//! Must not: import `skiff-api`, talk to the control plane, or keep cluster state.
//!
//! Empty today: the Foundation issue only lays the crate out so that later work adds to it.
