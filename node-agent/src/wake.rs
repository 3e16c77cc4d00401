//! Scale from zero on this node: the holder behind [`Proxy::hold`](crate::proxy::Proxy::hold).
//!
//! The control plane streams the Services that can scale from zero (`ScaleFromZeroApi.WatchHolds`:
//! a Service selecting a Wasm Deployment whose HorizontalPodAutoscaler has `minReplicas: 0`); the
//! holder asks the proxy to hold exactly those, on one listener at the node bridge's gateway
//! address (reachable from pods, the node and, through a NodePort, from outside). While such a
//! Service has no ready endpoint its connections come here, DNATed: the connection's original
//! destination (`SO_ORIGINAL_DST`: the cluster IP and port, or the node address and NodePort)
//! names the Service port. The first one wakes the target (`ScaleFromZeroApi.Wake`, one RPC; the
//! server scales 0 → 1 through the registry, and coalesces wakes); every held connection waits
//! until the Service has a ready endpoint in the catalog, then is spliced to it (bytes copied both
//! ways by this process until either side closes). Connections keep arriving and are held the
//! same way meanwhile; one not served within [`HOLD_TIMEOUT`] is closed, and all of them are
//! closed at once when the wake fails (the server refused it, say the Service no longer scales
//! from zero: nothing will come). At most [`MAX_HELD`] connections are held (or spliced) at a
//! time, each a task and a descriptor or two, reachable from outside through a NodePort: one
//! beyond is closed as it is accepted. Once the endpoint is in the proxy's rules, new connections
//! go to it directly and nothing passes through here.
//!
//! Which comes first serves: a ready endpoint in the catalog (the pod may run on any node), or a
//! pod of the Service bound to this very node, reached at its address as soon as the node has
//! given it one and its server accepts (the holder follows the node's pods with a watch of its
//! own). The second skips the pod's status write, the Endpoints controller and the catalog's
//! watch: `bench/run cold-start` measures both paths together, the client's figure.
//!
//! Must not: write objects (the wake is the server's), or hold Services the server did not name.

use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use skiff_api::client::{Api, ListParams, Transport};
use skiff_api::v1::Pod;
use skiff_api::v1::scale_from_zero_api_client::ScaleFromZeroApiClient;
use skiff_api::v1::{WakeRequest, WatchHoldsRequest};
use skiff_api::{IntOrStringValue, ResourceExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_stream::StreamExt;

use crate::catalog::Catalog;
use crate::network::{PodNetwork, bridge};
use crate::proxy::Proxy;
use crate::proxy::snapshot::{self, Protocol, ServiceKey};

/// How long a held connection waits for an endpoint before it is closed.
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(30);
/// A wake of a Service is joined while it is on its way, and for this long after its answer
/// (the connections of one burst); a connection held later sends its own, which costs the
/// server one read while the Deployment is up. Joining an answered wake for longer would hold a
/// connection that comes just after a scale back to zero with nothing to wake its pod.
const WAKE_AGAIN: Duration = Duration::from_millis(100);
/// The most connections held (and spliced by this process) at once; one beyond is closed.
pub const MAX_HELD: usize = 1024;
/// Pause before connecting again to an endpoint that refused (it is not listening yet), or
/// looking again for a pod of this node; a pod of this node is also tried again as soon as any
/// task on the node has started (its listeners are then up).
const CONNECT_RETRY: Duration = Duration::from_millis(2);
/// How long a connection to a pod of this node may take before it is tried again (its network
/// may not be up yet).
const LOCAL_CONNECT: Duration = Duration::from_millis(100);
/// Pause before a broken hold stream is opened again (the holds stay as they were meanwhile).
const RETRY: Duration = Duration::from_secs(1);

/// The node's holder.
pub struct Holder {
    node: String,
    transport: Transport,
    catalog: Arc<Catalog>,
    network: PodNetwork,
    /// Changes after each task the node starts.
    starts: watch::Receiver<u64>,
    /// The pods bound to this node, by uid.
    local: DashMap<String, Arc<Pod>>,
    /// The wakes sent from here.
    wakes: Wakes,
}

/// How a wake went: `None` while it is on its way, then whether the server did it.
type Outcome = watch::Receiver<Option<bool>>;

/// Service → its last wake from here: when it was sent or answered, and how it went (coalesces
/// the wakes of a burst of connections into one, which all learn its outcome).
#[derive(Default)]
struct Wakes(DashMap<ServiceKey, (Instant, Outcome)>);

/// Whether a wake is still on its way: unanswered, and its sender alive (one that died without
/// an answer is not waited for).
fn on_its_way(outcome: &Outcome) -> bool {
    outcome.borrow().is_none() && outcome.has_changed().is_ok()
}

/// What a connection does about the wake of its Service.
enum Wake {
    /// Sends it, and tells the others through this.
    Send(watch::Sender<Option<bool>>),
    /// One is on its way or just went: waits for its outcome.
    Joined(Outcome),
}

impl Wakes {
    /// A connection's part in its Service's wake at `now`.
    fn start(&self, service: &ServiceKey, now: Instant) -> Wake {
        let (tx, rx) = watch::channel(None);
        match self.0.entry(service.clone()) {
            Entry::Occupied(o)
                if on_its_way(&o.get().1)
                    || now.saturating_duration_since(o.get().0) < WAKE_AGAIN =>
            {
                return Wake::Joined(o.get().1.clone());
            }
            Entry::Occupied(mut o) => {
                o.insert((now, rx));
            }
            Entry::Vacant(v) => {
                v.insert((now, rx));
            }
        }
        Wake::Send(tx)
    }

    /// The wake of `service` was answered at `now`: joined for [`WAKE_AGAIN`] from then.
    fn answered(&self, service: &ServiceKey, now: Instant) {
        if let Some(mut e) = self.0.get_mut(service) {
            e.0 = now;
        }
    }
}

/// Runs until aborted: binds the holder, then follows the server's set of held Services.
pub async fn run(
    transport: Transport,
    node: String,
    proxy: Arc<Proxy>,
    catalog: Arc<Catalog>,
    network: PodNetwork,
    starts: watch::Receiver<u64>,
) {
    if !network.enabled() {
        return;
    }
    let listener = loop {
        if let Some(gateway) = network.block().and_then(bridge::gateway)
            && let Ok(l) = TcpListener::bind((gateway, 0)).await
        {
            break l;
        }
        tokio::time::sleep(RETRY).await;
    };
    let Ok(std::net::SocketAddr::V4(addr)) = listener.local_addr() else {
        return;
    };
    tracing::info!(%addr, "scale-from-zero holder listening");
    let holder = Arc::new(Holder {
        node,
        transport,
        catalog,
        network,
        starts,
        local: DashMap::new(),
        wakes: Wakes::default(),
    });
    let serving = holder.clone();
    let accept = tokio::spawn(accept(
        listener,
        Arc::new(Semaphore::new(MAX_HELD)),
        move |stream, permit| {
            let holder = serving.clone();
            async move {
                holder.serve(stream).await;
                drop(permit);
            }
        },
    ));
    let pods = tokio::spawn(holder.clone().follow_pods());
    holder.follow(&proxy, addr).await;
    accept.abort();
    pods.abort();
}

impl Holder {
    /// Keeps the proxy's holds equal to the server's set.
    async fn follow(&self, proxy: &Proxy, addr: SocketAddrV4) {
        let mut held: BTreeSet<ServiceKey> = BTreeSet::new();
        loop {
            let mut client = ScaleFromZeroApiClient::new(self.transport.clone());
            let request = WatchHoldsRequest {
                node_name: self.node.clone(),
            };
            match client.watch_holds(request).await {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    while let Some(Ok(set)) = stream.next().await {
                        let wanted: BTreeSet<ServiceKey> = set
                            .services
                            .into_iter()
                            .map(|s| (s.namespace, s.name))
                            .collect();
                        for (ns, name) in held.difference(&wanted) {
                            proxy.release(ns, name);
                        }
                        for (ns, name) in wanted.difference(&held) {
                            if let Err(e) = proxy.hold(ns, name, addr) {
                                tracing::warn!(error = %e, "holding a Service");
                            }
                        }
                        held = wanted;
                    }
                }
                Err(status) => tracing::debug!(%status, "the held Services' stream"),
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Keeps [`Holder::local`]: a list, then a watch, of the pods bound to this node.
    async fn follow_pods(self: Arc<Self>) {
        let api: Api<Pod> = Api::new(self.transport.clone(), "");
        let params = || ListParams::default().fields(&format!("spec.nodeName={}", self.node));
        loop {
            match api.list_paged(params(), 500).await {
                Ok((pods, meta)) => {
                    self.local.clear();
                    for pod in pods {
                        self.local.insert(pod.meta().uid.clone(), Arc::new(pod));
                    }
                    if let Ok(mut stream) = api.watch(params(), &meta.resource_version).await {
                        let opened = Instant::now();
                        while let Some(Ok(event)) = stream.next().await {
                            let uid = event.object.meta().uid.clone();
                            if event.kind == "DELETED" {
                                self.local.remove(&uid);
                            } else {
                                self.local.insert(uid, Arc::new(event.object));
                            }
                        }
                        // Ended after a while (a server's watch timeout, say): list again at
                        // once, so that no pod started meanwhile waits for the pause below.
                        if opened.elapsed() > RETRY {
                            continue;
                        }
                    }
                }
                Err(status) => tracing::debug!(%status, "the holder's list of the node's pods"),
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// A pod of Service `service` on this node that has its address, and its port for Service
    /// port `port`.
    fn local_endpoint(&self, service: &ServiceKey, port: u16) -> Option<SocketAddrV4> {
        let svc = self.catalog.service(&service.0, &service.1)?;
        let spec = svc.spec.as_ref()?;
        if spec.selector.is_empty() {
            return None;
        }
        let sp = spec
            .ports
            .iter()
            .find(|p| u16::try_from(p.port).ok() == Some(port))?;
        self.local.iter().find_map(|pod| {
            let labels = &pod.meta().labels;
            if pod.namespace() != service.0
                || pod.meta().deletion_timestamp.is_some()
                || !spec.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            {
                return None;
            }
            let ip = self.network.address_of(&pod.meta().uid)?;
            let target = match sp.target_port.as_ref().and_then(|t| t.value.as_ref()) {
                Some(IntOrStringValue::Int(n)) if *n != 0 => u16::try_from(*n).ok()?,
                Some(IntOrStringValue::Str(name)) if !name.is_empty() => pod
                    .spec
                    .iter()
                    .flat_map(|s| &s.containers)
                    .flat_map(|c| &c.ports)
                    .find(|p| p.name == *name)
                    .and_then(|p| u16::try_from(p.container_port).ok())?,
                _ => port,
            };
            Some(SocketAddrV4::new(ip, target))
        })
    }

    /// Waits for a pod of the Service on this node (see [`Holder::local_endpoint`]) and connects
    /// to it, trying again until it accepts.
    async fn connect_local(
        &self,
        service: &ServiceKey,
        port: u16,
    ) -> Option<(SocketAddrV4, TcpStream)> {
        let mut starts = self.starts.clone();
        loop {
            starts.mark_unchanged();
            if let Some(at) = self.local_endpoint(service, port)
                && let Ok(Ok(stream)) =
                    tokio::time::timeout(LOCAL_CONNECT, TcpStream::connect(at)).await
            {
                return Some((at, stream));
            }
            tokio::select! {
                _ = starts.changed() => {}
                () = tokio::time::sleep(CONNECT_RETRY) => {}
            }
        }
    }

    /// Waits for a ready endpoint of the Service port and connects to it, trying again while it
    /// refuses (a pod without a readiness probe is Ready as it starts, maybe before it listens).
    async fn connect_endpoint(
        &self,
        port: &snapshot::ServicePort,
    ) -> Option<(SocketAddrV4, TcpStream)> {
        let started = Instant::now();
        let endpoint = self.endpoint(&port.id, &port.service).await?;
        loop {
            // A SYN lost to a pod that has only just come up would otherwise wait for TCP's
            // first retransmission, a second later.
            match tokio::time::timeout(LOCAL_CONNECT, TcpStream::connect(endpoint)).await {
                Ok(Ok(s)) => return Some((endpoint, s)),
                Err(_) if started.elapsed() < HOLD_TIMEOUT => {}
                Ok(Err(e))
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && started.elapsed() < HOLD_TIMEOUT =>
                {
                    tokio::time::sleep(CONNECT_RETRY).await;
                }
                Ok(Err(e)) => {
                    tracing::info!(%endpoint, error = %e, "connecting a held connection");
                    return None;
                }
                Err(_) => {
                    tracing::info!(%endpoint, "connecting a held connection: timed out");
                    return None;
                }
            }
        }
    }

    /// The Service port a held connection was addressed to.
    fn port_of(&self, to: SocketAddrV4) -> Option<snapshot::ServicePort> {
        let services = self.catalog.services();
        let ports = snapshot::service_ports(
            &services,
            |ns, name| self.catalog.endpoints(ns, name),
            &Default::default(),
        );
        match_port(ports, to)
    }

    /// One held connection: wake, wait for an endpoint, splice.
    async fn serve(self: Arc<Self>, mut client: TcpStream) {
        let started = Instant::now();
        let to = match rustix::net::sockopt::ip_original_dst(&client) {
            Ok(to) => to,
            Err(e) => {
                tracing::debug!(error = %e, "a held connection without its destination");
                return;
            }
        };
        let Some(port) = self.port_of(to) else {
            tracing::debug!(%to, "a held connection to no Service port");
            return;
        };
        let service = port.service.clone();
        let outcome = self.wake(&service).await;
        let reach = tokio::time::timeout(HOLD_TIMEOUT, async {
            tokio::select! {
                Some(found) = self.connect_local(&service, port.port) => Some((found, "local pod")),
                found = self.connect_endpoint(&port) => found.map(|f| (f, "endpoint")),
            }
        });
        let reached = match hold(async { reach.await.ok().flatten() }, outcome).await {
            Held::Reached(found) => found,
            Held::Refused => {
                tracing::debug!(service = %format!("{}/{}", service.0, service.1), "the wake failed: closing a held connection");
                return;
            }
        };
        let Some(((endpoint, mut upstream), via)) = reached else {
            tracing::info!(service = %format!("{}/{}", service.0, service.1), "no endpoint within {HOLD_TIMEOUT:?}: closing a held connection");
            return;
        };
        let _ = upstream.set_nodelay(true);
        tracing::debug!(%endpoint, via, waited = ?started.elapsed(), "held connection spliced");
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }

    /// Sends the Service's wake, unless one is on its way or was answered within [`WAKE_AGAIN`]
    /// (that one's outcome is then this one's).
    async fn wake(&self, service: &ServiceKey) -> Outcome {
        let tx = match self.wakes.start(service, Instant::now()) {
            Wake::Joined(outcome) => return outcome,
            Wake::Send(tx) => tx,
        };
        let outcome = tx.subscribe();
        let mut client = ScaleFromZeroApiClient::new(self.transport.clone());
        let request = WakeRequest {
            namespace: service.0.clone(),
            name: service.1.clone(),
            node_name: self.node.clone(),
        };
        let done = match client.wake(request).await {
            Ok(_) => true,
            Err(status) => {
                tracing::warn!(service = %format!("{}/{}", service.0, service.1), %status, "wake refused");
                false
            }
        };
        tx.send_replace(Some(done));
        self.wakes.answered(service, Instant::now());
        outcome
    }

    /// Waits for a ready endpoint of Service port `id` (at most [`HOLD_TIMEOUT`]).
    async fn endpoint(&self, id: &str, service: &ServiceKey) -> Option<SocketAddrV4> {
        let mut changes = self.catalog.subscribe();
        let find = || {
            let svc = self.catalog.service(&service.0, &service.1)?;
            snapshot::service_ports(
                &[svc],
                |ns, name| self.catalog.endpoints(ns, name),
                &Default::default(),
            )
            .into_iter()
            .find(|p| p.id == id)?
            .endpoints
            .first()
            .copied()
        };
        let wait = async {
            loop {
                changes.mark_unchanged();
                if let Some(found) = find() {
                    return found;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(HOLD_TIMEOUT, wait).await.ok()
    }
}

/// Accepts connections to hold and hands each to `serve` with its permit of `held`; one beyond
/// `held`'s permits is closed at once.
async fn accept<F, Fut>(listener: TcpListener, held: Arc<Semaphore>, serve: F)
where
    F: Fn(TcpStream, OwnedSemaphorePermit) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                let Ok(permit) = held.clone().try_acquire_owned() else {
                    tracing::debug!(%from, "{MAX_HELD} connections held already: closing one more");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, permit));
            }
            Err(e) => {
                tracing::warn!(error = %e, "holder accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// How a hold ended.
#[derive(Debug, PartialEq, Eq)]
enum Held<T> {
    Reached(T),
    /// The wake failed.
    Refused,
}

/// Waits for `reach` unless the wake's `outcome` says it failed first.
async fn hold<T>(reach: impl std::future::Future<Output = T>, mut outcome: Outcome) -> Held<T> {
    let refused = async move {
        let failed = outcome.wait_for(|o| *o == Some(false)).await.is_ok();
        if !failed {
            // The sender went without a word (its task ended): nothing to learn.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        found = reach => Held::Reached(found),
        () = refused => Held::Refused,
    }
}

/// The TCP Service port among `ports` that a connection to `to` was addressed to: the one at
/// exactly that cluster IP and port, else — only when `to` is no Service's cluster IP (a node
/// address) — the one whose NodePort is `to`'s port. A cluster IP port in the NodePort range must
/// not match another Service's NodePort.
fn match_port(
    ports: Vec<snapshot::ServicePort>,
    to: SocketAddrV4,
) -> Option<snapshot::ServicePort> {
    let tcp = || ports.iter().filter(|p| p.protocol == Protocol::Tcp);
    if let Some(exact) = tcp().find(|p| p.cluster_ip == *to.ip() && p.port == to.port()) {
        return Some(exact.clone());
    }
    if ports.iter().any(|p| p.cluster_ip == *to.ip()) {
        return None;
    }
    tcp().find(|p| p.node_port == Some(to.port())).cloned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::Ipv4Addr;

    fn port(name: &str, ip: [u8; 4], number: u16, node_port: Option<u16>) -> snapshot::ServicePort {
        snapshot::ServicePort {
            id: format!("default/{name}:{number}"),
            service: ("default".into(), name.into()),
            cluster_ip: Ipv4Addr::from(ip),
            port: number,
            protocol: Protocol::Tcp,
            node_port,
            load_balancer: false,
            affinity: None,
            endpoints: Vec::new(),
            hold: None,
        }
    }

    #[test]
    fn a_cluster_ip_port_in_the_node_port_range_never_matches_another_services_node_port() {
        let ports = vec![
            port("a", [10, 96, 0, 10], 80, Some(30080)),
            port("b", [10, 96, 0, 11], 30080, None),
        ];
        let to = SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 11), 30080);
        assert_eq!(match_port(ports.clone(), to).unwrap().service.1, "b");
        // A cluster IP with no port of that number is no NodePort either.
        let to = SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 11), 30081);
        let mut more = ports.clone();
        more.push(port("c", [10, 96, 0, 12], 80, Some(30081)));
        assert!(match_port(more.clone(), to).is_none());
        // A node address reaches a NodePort.
        let to = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 5), 30081);
        assert_eq!(match_port(more, to).unwrap().service.1, "c");
        let to = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 5), 30080);
        assert_eq!(match_port(ports, to).unwrap().service.1, "a");
    }

    fn key(name: &str) -> ServiceKey {
        ("default".into(), name.into())
    }

    #[test]
    fn a_burst_of_connections_sends_one_wake_and_all_learn_how_it_went() {
        let wakes = Wakes::default();
        let now = Instant::now();
        let Wake::Send(tx) = wakes.start(&key("web"), now) else {
            panic!("the first connection wakes");
        };
        let Wake::Joined(joined) = wakes.start(&key("web"), now + WAKE_AGAIN / 2) else {
            panic!("the second joins the first's wake");
        };
        assert!(matches!(wakes.start(&key("api"), now), Wake::Send(_)));
        // That wake's sender is gone unanswered: not waited for past the window.
        assert!(matches!(
            wakes.start(&key("api"), now + WAKE_AGAIN * 3),
            Wake::Send(_)
        ));
        assert_eq!(*joined.borrow(), None);
        // On its way for longer than WAKE_AGAIN: still joined.
        assert!(matches!(
            wakes.start(&key("web"), now + WAKE_AGAIN * 3),
            Wake::Joined(_)
        ));
        let answered = now + WAKE_AGAIN * 4;
        tx.send_replace(Some(false));
        wakes.answered(&key("web"), answered);
        assert_eq!(*joined.borrow(), Some(false));
        assert!(matches!(
            wakes.start(&key("web"), answered + WAKE_AGAIN / 2),
            Wake::Joined(_)
        ));
        // Later (the Deployment may be back at zero): a wake of its own.
        assert!(matches!(
            wakes.start(&key("web"), answered + WAKE_AGAIN),
            Wake::Send(_)
        ));
    }

    #[tokio::test]
    async fn a_failed_wake_closes_its_held_connections_at_once() {
        let (tx, rx) = watch::channel(None);
        let waiting = tokio::spawn(hold(std::future::pending::<()>(), rx.clone()));
        tx.send_replace(Some(false));
        assert_eq!(waiting.await.unwrap(), Held::Refused);
        // One joining after the failure learns it too, though the wake's sender is gone.
        drop(tx);
        assert_eq!(hold(std::future::pending::<()>(), rx).await, Held::Refused);
        // A wake that worked leaves the connection to its endpoint.
        let (tx, rx) = watch::channel(None);
        tx.send_replace(Some(true));
        drop(tx);
        assert_eq!(hold(async { 7 }, rx).await, Held::Reached(7));
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_as_they_come() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (kept, mut served) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(accept(
            listener,
            Arc::new(Semaphore::new(1)),
            move |stream, permit| {
                let kept = kept.clone();
                async move {
                    // Held until the test ends.
                    let _ = kept.send((stream, permit));
                }
            },
        ));
        let _first = TcpStream::connect(addr).await.unwrap();
        let (held, _permit) = served.recv().await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let read = second.read(&mut buf).await;
        assert!(matches!(read, Ok(0) | Err(_)), "closed at once: {read:?}");
        // The permit back, the next one is held.
        drop((held, _permit));
        let _third = TcpStream::connect(addr).await.unwrap();
        assert!(served.recv().await.is_some());
        task.abort();
    }
}
