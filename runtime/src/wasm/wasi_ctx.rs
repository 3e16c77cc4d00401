//! Turns a [`WasmSpec`] into a WASI context that grants exactly what the spec says.
//!
//! Owns the mapping spec → `WasiCtxBuilder`: argv, env (only the spec's), cwd, preopens
//! (read-only or read-write; wasmtime-wasi confines every path to them with cap-std), stdout and
//! stderr to the CRI log or the caller's streams, and the socket policy ([`permits`]): nothing
//! unless granted. Must not: instantiate or run anything. Opening preopens is blocking: call it
//! from `spawn_blocking` (inside the runtime: streams register with its reactor).

use std::net::SocketAddr;

use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::error::{WasmError, chain};
use super::spec::{Network, WasmSpec};
use super::stdio::{self, LogOutput};
use crate::logs::{LogStream, LogWriter};

/// The WASI context builder for `spec`, writing output to `log` (given when `spec.stdio` is
/// [`super::Stdio::Log`]) or to the spec's streams.
pub(crate) fn builder(
    spec: &WasmSpec,
    log: Option<&LogWriter>,
) -> Result<WasiCtxBuilder, WasmError> {
    let mut b = WasiCtxBuilder::new();
    let argv0 = if spec.argv0.is_empty() {
        spec.module_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        spec.argv0.clone()
    };
    b.arg(argv0).args(&spec.args).envs(&spec.env);
    if let Some(cwd) = spec.cwd.as_deref().filter(|c| !c.is_empty()) {
        b.initial_cwd(cwd);
    }
    match (log, &spec.stdio) {
        (Some(log), _) => {
            b.stdout(LogOutput::new(log.clone(), LogStream::Stdout))
                .stderr(LogOutput::new(log.clone(), LogStream::Stderr));
        }
        (None, super::Stdio::Streams(streams)) => stdio::attach(&mut b, streams)?,
        (None, super::Stdio::Log) => {
            return Err(WasmError::InvalidSpec("stdio: no log to write to".into()));
        }
    }
    for p in &spec.preopens {
        if let Err(why) = super::check_guest_path(&p.guest) {
            return Err(WasmError::InvalidSpec(format!(
                "preopen {} (guest {:?}): {why}",
                p.host.display(),
                p.guest
            )));
        }
        let perms = if p.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        // Held while wasmtime opens it: `/proc/self/fd/N` is then the very directory opened.
        let opened = match &p.beneath {
            Some(dir) => Some(
                crate::linux::mounts::open_beneath(dir, &p.host).map_err(|e| {
                    WasmError::InvalidSpec(format!(
                        "preopen {} (guest {}): {e}",
                        p.host.display(),
                        p.guest
                    ))
                })?,
            ),
            None => None,
        };
        let host = match &opened {
            Some(fd) => std::path::PathBuf::from(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(fd)
            )),
            None => p.host.clone(),
        };
        b.preopened_dir(&host, &p.guest, perms).map_err(|e| {
            WasmError::InvalidSpec(format!(
                "preopen {} (guest {}): {}",
                p.host.display(),
                p.guest,
                chain(&e)
            ))
        })?;
    }
    let net = &spec.network;
    b.allow_tcp(!net.is_none())
        .allow_udp(net.allow_outbound)
        .allow_ip_name_lookup(net.allow_outbound);
    let policy = net.clone();
    b.socket_addr_check(move |addr, use_| {
        let ok = permits(&policy, addr, use_);
        Box::pin(async move { ok })
    });
    Ok(b)
}

/// Whether `net` lets a guest use `addr` for `use_`.
pub(crate) fn permits(net: &Network, addr: SocketAddr, use_: SocketAddrUse) -> bool {
    let bindable = net.bind_any_port || net.allow_bind_ports.contains(&addr.port());
    match use_ {
        // Port 0 is the implicit bind before a connect.
        SocketAddrUse::TcpBind => bindable || (addr.port() == 0 && net.allow_outbound),
        SocketAddrUse::TcpListen => bindable,
        SocketAddrUse::TcpAccept => net.bind_any_port || !net.allow_bind_ports.is_empty(),
        SocketAddrUse::TcpConnect
        | SocketAddrUse::UdpBind
        | SocketAddrUse::UdpSend
        | SocketAddrUse::UdpReceive => net.allow_outbound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn no_grant_no_sockets() {
        let none = Network::default();
        for use_ in [
            SocketAddrUse::TcpBind,
            SocketAddrUse::TcpListen,
            SocketAddrUse::TcpAccept,
            SocketAddrUse::TcpConnect,
            SocketAddrUse::UdpBind,
            SocketAddrUse::UdpSend,
            SocketAddrUse::UdpReceive,
        ] {
            assert!(!permits(&none, addr(8080), use_), "{use_:?}");
            assert!(!permits(&none, addr(0), use_), "{use_:?}");
        }
    }

    #[test]
    fn bind_ports_only_allow_those_ports() {
        let net = Network {
            allow_bind_ports: vec![8080],
            allow_outbound: false,
            ..Network::default()
        };
        assert!(permits(&net, addr(8080), SocketAddrUse::TcpBind));
        assert!(permits(&net, addr(8080), SocketAddrUse::TcpListen));
        assert!(permits(&net, addr(40000), SocketAddrUse::TcpAccept));
        assert!(!permits(&net, addr(8081), SocketAddrUse::TcpBind));
        assert!(!permits(&net, addr(0), SocketAddrUse::TcpBind));
        assert!(!permits(&net, addr(80), SocketAddrUse::TcpConnect));
        assert!(!permits(&net, addr(53), SocketAddrUse::UdpSend));
    }

    #[test]
    fn outbound_allows_connects_not_listening() {
        let net = Network {
            allow_bind_ports: vec![],
            allow_outbound: true,
            ..Network::default()
        };
        assert!(permits(&net, addr(443), SocketAddrUse::TcpConnect));
        assert!(permits(&net, addr(0), SocketAddrUse::TcpBind));
        assert!(permits(&net, addr(53), SocketAddrUse::UdpSend));
        assert!(!permits(&net, addr(8080), SocketAddrUse::TcpListen));
        assert!(!permits(&net, addr(8080), SocketAddrUse::TcpBind));
    }

    #[test]
    fn any_port_means_any_port_and_no_outbound() {
        let net = Network {
            bind_any_port: true,
            ..Network::default()
        };
        assert!(!net.is_none());
        for port in [80, 8080, 65535] {
            assert!(permits(&net, addr(port), SocketAddrUse::TcpBind));
            assert!(permits(&net, addr(port), SocketAddrUse::TcpListen));
        }
        assert!(permits(&net, addr(40000), SocketAddrUse::TcpAccept));
        assert!(!permits(&net, addr(80), SocketAddrUse::TcpConnect));
        assert!(!permits(&net, addr(53), SocketAddrUse::UdpSend));
    }
}
