//! A pod's `eth0`: one end of a veth pair inside the pod's network namespace, with the pod's
//! address and a default route via the node bridge's gateway; the other end (`skv` + 12 hex
//! digits of the pod uid's hash) is a port of the bridge.
//!
//! Every step is idempotent (`replace`), so attaching again (a second container, an agent
//! restart) repairs rather than fails. A pod with an address gets its namespace here too. Made
//! over rtnetlink ([`super::netlink`]), not `ip`: nine `ip` runs cost some 20 ms of a
//! function's scale from zero.
//!
//! Must not: give the pod any capability over its interface (containers get no CAP_NET_ADMIN
//! from here), or touch other pods' links. Blocking: call from `spawn_blocking`.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::PathBuf;

use skiff_api::cidr::Ipv4Cidr;

use super::NetworkError;
use super::bridge::fnv1a;
use super::iproute::{host_link_exists, ip};
use super::netlink::{self, Rtnl};
use super::netns;

/// The pod's interface inside its namespace.
pub const POD_IFACE: &str = "eth0";

/// The host end of pod `uid`'s veth pair (15 characters).
pub fn host_name(uid: &str) -> String {
    format!("skv{:012x}", fnv1a(uid) & 0xffff_ffff_ffff)
}

/// Gives pod `uid` its namespace (made if missing, loopback up) and its `eth0` with `address` in
/// `block`, on `bridge`, over rtnetlink from a thread of its own ([`super::netlink`]). Returns
/// the namespace file.
pub fn attach(
    uid: &str,
    bridge: &str,
    address: Ipv4Addr,
    block: Ipv4Cidr,
    gateway: Ipv4Addr,
) -> Result<PathBuf, NetworkError> {
    let path = netns::path(uid);
    let host = host_name(uid);
    let step = |what: &str| {
        let path = path.clone();
        let what = format!("pod {uid}: {what}");
        move |source: std::io::Error| NetworkError::Netlink {
            step: what,
            path,
            source,
        }
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let fresh = !path.exists();
                let mut here = Rtnl::open().map_err(step("opening rtnetlink"))?;
                let bridge_index = here
                    .link_index(bridge)
                    .map_err(step("reading links"))?
                    .ok_or_else(|| NetworkError::Command {
                        command: format!("pod {uid}: attaching to bridge {bridge}"),
                        message: "the node bridge does not exist".into(),
                    })?;
                // A veth pair is made whole in one step and dies whole with either end, so the
                // host end tells whether the pod has its `eth0`. In a namespace made just now it
                // cannot, so a host end of that name is a leftover (an earlier namespace of this
                // pod still being destroyed).
                let mut host_index = here.link_index(&host).map_err(step("reading links"))?;
                if fresh {
                    if let Some(index) = host_index.take() {
                        here.delete_link(index)
                            .map_err(step(&format!("removing a leftover {host}")))?;
                    }
                    netlink::create_netns_here(&path).map_err(step("creating its namespace"))?;
                } else {
                    netlink::enter_netns(&path).map_err(step("entering its namespace"))?;
                }
                let configured = (|| {
                    let pod_netns = netlink::current_netns().map_err(step("its namespace"))?;
                    let mut inside = Rtnl::open().map_err(step("opening rtnetlink inside"))?;
                    let host_index = match host_index {
                        Some(index) => index,
                        None => {
                            here.add_veth(&host, POD_IFACE, pod_netns.as_fd())
                                .map_err(step(&format!("adding veth {host}")))?;
                            here.link_index(&host)
                                .map_err(step("reading links"))?
                                .ok_or_else(|| {
                                    step("adding its veth")(std::io::ErrorKind::NotFound.into())
                                })?
                        }
                    };
                    here.set_up(host_index, Some(bridge_index))
                        .map_err(step(&format!("setting {host} up on {bridge}")))?;
                    let lo = inside
                        .link_index("lo")
                        .map_err(step("reading links inside"))?;
                    let eth0 = inside
                        .link_index(POD_IFACE)
                        .map_err(step("reading links inside"))?;
                    let (Some(lo), Some(eth0)) = (lo, eth0) else {
                        return Err(step("finding lo and eth0")(
                            std::io::ErrorKind::NotFound.into(),
                        ));
                    };
                    inside.set_up(lo, None).map_err(step("setting lo up"))?;
                    inside
                        .replace_address(eth0, address, block.prefix())
                        .map_err(step(&format!("giving eth0 {address}/{}", block.prefix())))?;
                    inside.set_up(eth0, None).map_err(step("setting eth0 up"))?;
                    inside
                        .replace_default_route(gateway, eth0)
                        .map_err(step(&format!("routing by {gateway}")))?;
                    // Both ends carry frames only once the kernel's link watch (a deferred
                    // work item, late on a busy machine) has seen their carrier. A pod first
                    // reached before that loses the ARP exchange and waits for its retry, a
                    // second later: wait here, briefly, instead.
                    wait_oper_up(&mut here, host_index, &mut inside, eth0);
                    Ok(())
                })();
                if configured.is_err() && fresh {
                    netns::remove(uid);
                }
                configured.map(|()| path.clone())
            })
            .join()
            .unwrap_or_else(|_| Err(NetworkError::Task("pod network thread panicked".into())))
    })
}

/// How long [`attach`] waits for a new pair to be operationally up, and how often it looks.
const OPER_UP_WAIT: std::time::Duration = std::time::Duration::from_millis(200);
const OPER_UP_POLL: std::time::Duration = std::time::Duration::from_micros(100);

/// Waits (at most [`OPER_UP_WAIT`]) until both ends of a pod's pair are operationally up. A pair
/// still down after that is left as it is: traffic to it then waits for its ARP retry, no worse
/// than without this wait.
fn wait_oper_up(here: &mut Rtnl, host: u32, inside: &mut Rtnl, eth0: u32) {
    let deadline = std::time::Instant::now() + OPER_UP_WAIT;
    loop {
        match (here.is_oper_up(host), inside.is_oper_up(eth0)) {
            (Ok(true), Ok(true)) => return,
            (Ok(_), Ok(_)) => {}
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "reading a pod's veth state; going on");
                return;
            }
        }
        if std::time::Instant::now() >= deadline {
            tracing::debug!(
                host_index = host,
                "a pod's veth pair is not up yet; going on"
            );
            return;
        }
        std::thread::sleep(OPER_UP_POLL);
    }
}

/// Removes pod `uid`'s host end (and so the pair), if it exists.
pub fn detach(uid: &str) {
    let host = host_name(uid);
    if host_link_exists(&host)
        && let Err(e) = ip(&["link", "delete", &host])
    {
        tracing::warn!(veth = %host, error = %e, "removing a pod's veth");
    }
}
