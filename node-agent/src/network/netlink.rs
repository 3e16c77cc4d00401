//! rtnetlink from the agent's own process, for the one network change on a pod's start path:
//! making its namespace and giving it its `eth0` ([`super::veth::attach`]). Run as `ip`, the
//! same steps cost a fork, an exec and iproute2's start-up each, some 3 ms apiece: most of a
//! function's scale from zero. Rarer changes (the bridge, routes between nodes, removal) stay the
//! `ip` commands an operator would type ([`super::iproute`]).
//!
//! An [`Rtnl`] socket acts in the network namespace of the thread that opened it, so a pod is set
//! up on a thread of its own that opens one socket in the agent's namespace, then creates or
//! enters the pod's ([`create_netns_here`], [`enter_netns`]) and opens another there; the thread
//! ends with the pod's setup, and no thread of the agent's pools ever changes namespace.
//!
//! Must not: be called from async code (every request waits for the kernel's answer); change the
//! namespace of a thread it did not start.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};

/// Where named network namespaces live, as iproute2 keeps them.
const NETNS_RUN_DIR: &str = "/run/netns";

/// An rtnetlink socket, in the network namespace of the thread that opened it.
pub struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self { socket, seq: 0 })
    }

    /// Sends `message` and waits for the kernel's acknowledgement; the messages it answered with
    /// before that (a get's reply).
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut request = NetlinkMessage::from(message);
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        request.header.sequence_number = self.seq;
        request.finalize();
        let mut bytes = vec![0; request.buffer_len()];
        request.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;
        let mut replies = Vec::new();
        loop {
            let (datagram, _) = self.socket.recv_from_full()?;
            let mut rest = &datagram[..];
            while !rest.is_empty() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = (reply.header.length as usize).next_multiple_of(4);
                rest = rest.get(len..).unwrap_or_default();
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
        }
    }

    /// The index of interface `name`, if it exists here.
    pub fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(message), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc_enodev()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether interface `index` is operationally up: the kernel's link watch has seen its
    /// carrier, which is also when it attaches the interface's queue discipline (until then
    /// every frame it sends is dropped) and a bridge starts forwarding to it as a port.
    pub fn is_oper_up(&mut self, index: u32) -> io::Result<bool> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        let replies = self.request(RouteNetlinkMessage::GetLink(message), 0)?;
        Ok(replies.iter().any(|m| match m {
            RouteNetlinkMessage::NewLink(link) => link
                .attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::OperState(State::Up))),
            _ => false,
        }))
    }

    /// `ip link add NAME type veth peer name PEER netns <peer_netns>`.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
    ) -> io::Result<()> {
        let mut peer_message = LinkMessage::default();
        peer_message.attributes = vec![
            LinkAttribute::IfName(peer.to_string()),
            LinkAttribute::NetNsFd(peer_netns.as_raw_fd()),
        ];
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
            ]),
        ];
        self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// `ip link delete INDEX`.
    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(message), 0)
            .map(drop)
    }

    /// `ip link set INDEX [master CONTROLLER] up`.
    pub fn set_up(&mut self, index: u32, controller: Option<u32>) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        message
            .attributes
            .extend(controller.map(LinkAttribute::Controller));
        self.request(RouteNetlinkMessage::SetLink(message), 0)
            .map(drop)
    }

    /// `ip addr replace ADDRESS/PREFIX dev INDEX`.
    pub fn replace_address(&mut self, index: u32, address: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix;
        message.header.index = index;
        message.attributes = vec![
            AddressAttribute::Local(address.into()),
            AddressAttribute::Address(address.into()),
        ];
        self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// `ip route replace default via GATEWAY dev INDEX`.
    pub fn replace_default_route(&mut self, gateway: Ipv4Addr, index: u32) -> io::Result<()> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        // What `ip route` marks a route made by hand with.
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message.attributes = vec![
            RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
            RouteAttribute::Oif(index),
        ];
        self.request(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }
}

fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}

/// Makes `/run/netns` a shared mount point once, as `ip netns add` does, so that namespaces
/// mounted there later show in every mount namespace that sees the directory.
fn prepare_run_dir() -> io::Result<()> {
    static PREPARED: OnceLock<Result<(), String>> = OnceLock::new();
    let prepared = PREPARED.get_or_init(|| {
        let shared = || {
            mount(
                None::<&str>,
                NETNS_RUN_DIR,
                None::<&str>,
                MsFlags::MS_SHARED | MsFlags::MS_REC,
                None::<&str>,
            )
        };
        std::fs::create_dir_all(NETNS_RUN_DIR).map_err(|e| e.to_string())?;
        match shared() {
            Err(nix::errno::Errno::EINVAL) => {
                // Not a mount point yet: make it one, on itself.
                mount(
                    Some(NETNS_RUN_DIR),
                    NETNS_RUN_DIR,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .and_then(|()| shared())
                .map_err(|e| e.to_string())
            }
            other => other.map_err(|e| e.to_string()),
        }
    });
    prepared
        .clone()
        .map_err(|e| io::Error::other(format!("{NETNS_RUN_DIR}: {e}")))
}

/// Creates a network namespace, moves the calling thread into it and keeps it at `path` (a bind
/// mount, as `ip netns add` makes, that holds it with no process in it). Call on a thread made
/// for the purpose: it stays in the new namespace.
pub fn create_netns_here(path: &Path) -> io::Result<()> {
    prepare_run_dir()?;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(path)?;
    let made = unshare(CloneFlags::CLONE_NEWNET).and_then(|()| {
        mount(
            Some("/proc/thread-self/ns/net"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(path);
        return Err(io::Error::from(e));
    }
    Ok(())
}

/// Moves the calling thread into the network namespace kept at `path`. Call on a thread made for
/// the purpose.
pub fn enter_netns(path: &Path) -> io::Result<()> {
    let ns = File::open(path)?;
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// The network namespace of the calling thread, open.
pub fn current_netns() -> io::Result<File> {
    File::open("/proc/thread-self/ns/net")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything happens in a namespace the test makes (kept at a file in a temp dir, not under
    /// /run/netns), on a thread of its own: the host's links are never touched.
    #[test]
    fn a_veth_pair_is_made_addressed_and_routed_in_a_namespace_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        let made = std::thread::scope(|s| {
            s.spawn(|| -> io::Result<()> {
                create_netns_here(&path)?;
                let mut rtnl = Rtnl::open()?;
                let lo = rtnl.link_index("lo")?.expect("lo in a new namespace");
                rtnl.set_up(lo, None)?;
                assert_eq!(rtnl.link_index("skv-none")?, None);
                let here = current_netns()?;
                rtnl.add_veth("skvtest0", "eth0", here.as_fd())?;
                let err = rtnl.add_veth("skvtest0", "eth1", here.as_fd()).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
                let host = rtnl.link_index("skvtest0")?.unwrap();
                let eth0 = rtnl.link_index("eth0")?.unwrap();
                rtnl.set_up(host, None)?;
                rtnl.set_up(eth0, None)?;
                for _ in 0..2 {
                    // Replacing is idempotent.
                    rtnl.replace_address(eth0, Ipv4Addr::new(10, 9, 8, 7), 24)?;
                    rtnl.replace_default_route(Ipv4Addr::new(10, 9, 8, 1), eth0)?;
                }
                rtnl.delete_link(host)?;
                assert_eq!(rtnl.link_index("eth0")?, None, "a pair dies whole");
                Ok(())
            })
            .join()
            .unwrap()
        });
        // What `ip` sees in that namespace, before it goes.
        let seen = std::process::Command::new("nsenter")
            .arg(format!("--net={}", path.display()))
            .args(["ip", "-br", "link", "show", "lo"])
            .output()
            .unwrap();
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        made.unwrap();
        assert!(
            String::from_utf8_lossy(&seen.stdout).contains("UNKNOWN"),
            "lo up: {seen:?}"
        );
    }

    #[test]
    fn a_namespace_file_that_exists_is_not_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taken");
        std::fs::write(&path, "").unwrap();
        let err = std::thread::spawn(move || create_netns_here(&path))
            .join()
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }
}
