//! `wasi:sockets/ip-name-lookup` for components, with the resolver settings their spec gives
//! ([`Resolver`]: a pod's nameservers, search domains and `ndots`, as an OCI container's
//! `/etc/resolv.conf` holds them) instead of the process's own resolver.
//!
//! wasmtime-wasi resolves names with the process's `getaddrinfo`, which reads the host's
//! `/etc/resolv.conf` (and `/etc/hosts`): a guest of a pod would ask the node's resolvers, not
//! its cluster's DNS. So this module defines the interface again over wasmtime-wasi's (the
//! linker allows shadowing for it alone), answering with hickory's stub resolver configured from
//! the spec. The lookup runs as a task of the instance's runtime, which is the thread inside the
//! pod's network namespace ([`super::netns`]): its queries leave from the pod's address. A spec
//! without resolver settings keeps the process's resolver, as wasmtime-wasi has it; a spec
//! without outbound sockets gets no lookups at all.
//!
//! Must not: read any resolver file, or resolve outside the instance's task.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Name, ResolveError};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddress};
use wasmtime_wasi::p2::{DynPollable, Network, Pollable, subscribe};

use super::spec::Resolver;
use super::state::ComponentState;

/// The interface, at the version wasmtime-wasi serves (guests importing any 0.2.x reach it).
const INTERFACE: &str = "wasi:sockets/ip-name-lookup@0.2.12";

/// How an instance resolves names.
#[derive(Clone, Default)]
pub(crate) enum NameLookup {
    /// Not granted (no outbound sockets).
    #[default]
    Denied,
    /// The process's resolver (`getaddrinfo`): a spec without resolver settings.
    System,
    /// A stub resolver of the spec's settings.
    Stub(Arc<hickory_resolver::Resolver<TokioConnectionProvider>>),
}

impl NameLookup {
    /// The lookups `allowed` (outbound sockets granted) and `resolver` give.
    pub(crate) fn new(allowed: bool, resolver: Option<&Resolver>) -> Self {
        match (allowed, resolver) {
            (false, _) => Self::Denied,
            (true, None) => Self::System,
            (true, Some(r)) => Self::Stub(Arc::new(stub(r))),
        }
    }

    /// The addresses of `name` (an IP address is itself).
    pub(crate) async fn resolve(self, name: String) -> Result<Vec<IpAddr>, ErrorCode> {
        if let Self::Denied = self {
            return Err(ErrorCode::PermanentResolverFailure);
        }
        if let Some(ip) = literal(&name) {
            return Ok(vec![ip]);
        }
        // IDNA: a Unicode name is asked in its ASCII form; anything else is no host name.
        let ascii = Name::from_utf8(&name)
            .map_err(|_| ErrorCode::InvalidArgument)?
            .to_ascii();
        match self {
            Self::Denied => Err(ErrorCode::PermanentResolverFailure),
            Self::System => tokio::net::lookup_host((ascii.as_str(), 0))
                .await
                .map(|addrs| addrs.map(|a| a.ip().to_canonical()).collect())
                .map_err(|_| ErrorCode::NameUnresolvable),
            Self::Stub(resolver) => match resolver.lookup_ip(ascii.as_str()).await {
                Ok(found) => Ok(found.iter().map(|ip| ip.to_canonical()).collect()),
                Err(e) => Err(error_code(&e)),
            },
        }
    }
}

/// `10.0.0.1`, `::1` or `[::1]`.
fn literal(name: &str) -> Option<IpAddr> {
    if let Ok(ip) = IpAddr::from_str(name) {
        return Some(ip);
    }
    let inner = name.strip_prefix('[')?.strip_suffix(']')?;
    Ipv6Addr::from_str(inner).ok().map(IpAddr::V6)
}

/// A resolver asking `r.nameservers` (port 53, UDP then TCP) with its search path and `ndots`.
fn stub(r: &Resolver) -> hickory_resolver::Resolver<TokioConnectionProvider> {
    let servers = NameServerConfigGroup::from_ips_clear(&r.nameservers, 53, true);
    let search = r
        .searches
        .iter()
        .filter_map(|s| Name::from_ascii(format!("{}.", s.trim_end_matches('.'))).ok())
        .collect();
    let config = ResolverConfig::from_parts(None, search, servers);
    let mut options = ResolverOpts::default();
    options.ndots = r.ndots;
    options.timeout = r.timeout;
    options.attempts = r.attempts;
    options.use_hosts_file = ResolveHosts::Never;
    options.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
    hickory_resolver::Resolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(options)
        .build()
}

/// What a failed lookup tells the guest.
fn error_code(e: &ResolveError) -> ErrorCode {
    match e.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::NoRecordsFound { .. }) => ErrorCode::NameUnresolvable,
        Some(ProtoErrorKind::Timeout) => ErrorCode::TemporaryResolverFailure,
        _ => ErrorCode::PermanentResolverFailure,
    }
}

/// A lookup under way, then its addresses: the guest's `resolve-address-stream`.
pub struct ResolveAddressStream {
    pending: Option<tokio::task::JoinHandle<Result<Vec<IpAddr>, ErrorCode>>>,
    done: Option<Result<std::vec::IntoIter<IpAddr>, ErrorCode>>,
}

impl ResolveAddressStream {
    /// The next address, `None` at the end; `WouldBlock` while the lookup runs.
    fn next(&mut self) -> Result<Option<IpAddr>, ErrorCode> {
        if let Some(handle) = &self.pending {
            if !handle.is_finished() {
                return Err(ErrorCode::WouldBlock);
            }
            // Finished: taking its result does not block.
            let handle = self.pending.take();
            let result = handle.and_then(futures::FutureExt::now_or_never);
            self.done = Some(match result {
                Some(Ok(found)) => found.map(Vec::into_iter),
                _ => Err(ErrorCode::PermanentResolverFailure),
            });
        }
        match &mut self.done {
            Some(Ok(addresses)) => Ok(addresses.next()),
            Some(Err(e)) => Err(*e),
            None => Err(ErrorCode::PermanentResolverFailure),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for ResolveAddressStream {
    async fn ready(&mut self) {
        if let Some(handle) = self.pending.take() {
            self.done = Some(match handle.await {
                Ok(found) => found.map(Vec::into_iter),
                Err(_) => Err(ErrorCode::PermanentResolverFailure),
            });
        }
    }
}

type Store<'a> = StoreContextMut<'a, ComponentState>;

/// Defines `wasi:sockets/ip-name-lookup` (0.2 and 0.3) over wasmtime-wasi's in `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let defined = define(linker).and_then(|()| define_p3(linker));
    linker.allow_shadowing(false);
    defined
}

/// The WASI 0.3 interface, at the version wasmtime-wasi serves.
const P3_INTERFACE: &str = "wasi:sockets/ip-name-lookup@0.3.0";

/// WASI 0.3's `resolve-addresses` (an `async func`): a concurrent host function, so the guest's
/// other tasks run while the lookup waits; it runs in the store's event loop, on the instance's
/// runtime (its network namespace's thread).
fn define_p3(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p3::bindings::sockets::ip_name_lookup::ErrorCode as P3Error;
    use wasmtime_wasi::p3::bindings::sockets::types::IpAddress as P3Address;
    let mut inst = linker.instance(P3_INTERFACE)?;
    inst.func_wrap_concurrent(
        "resolve-addresses",
        |accessor: &wasmtime::component::Accessor<ComponentState>, (name,): (String,)| {
            Box::pin(async move {
                let lookup = accessor.with(|mut access| access.get().lookup.clone());
                let found = lookup.resolve(name).await;
                let found = found
                    .map(|ips| ips.into_iter().map(P3Address::from).collect::<Vec<_>>())
                    .map_err(|code| match code {
                        ErrorCode::InvalidArgument => P3Error::InvalidArgument,
                        ErrorCode::NameUnresolvable => P3Error::NameUnresolvable,
                        ErrorCode::TemporaryResolverFailure => P3Error::TemporaryResolverFailure,
                        ErrorCode::PermanentResolverFailure => P3Error::PermanentResolverFailure,
                        ErrorCode::AccessDenied => P3Error::AccessDenied,
                        other => P3Error::Other(Some(format!("{other:?}"))),
                    });
                Ok((found,))
            })
        },
    )
}

fn define(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    let mut inst = linker.instance(INTERFACE)?;
    inst.resource(
        "resolve-address-stream",
        ResourceType::host::<ResolveAddressStream>(),
        |mut store: Store<'_>, rep| {
            store
                .data_mut()
                .table
                .delete(Resource::<ResolveAddressStream>::new_own(rep))?;
            Ok(())
        },
    )?;
    inst.func_wrap(
        "resolve-addresses",
        |mut store: Store<'_>, (network, name): (Resource<Network>, String)| {
            let state = store.data_mut();
            // The network resource is the capability to look names up.
            state.table.get(&network)?;
            let lookup = state.lookup.clone();
            if let NameLookup::Denied = lookup {
                return Ok((Err(ErrorCode::PermanentResolverFailure),));
            }
            let stream = ResolveAddressStream {
                pending: Some(tokio::spawn(lookup.resolve(name))),
                done: None,
            };
            Ok((Ok(state.table.push(stream)?),))
        },
    )?;
    inst.func_wrap(
        "[method]resolve-address-stream.resolve-next-address",
        |mut store: Store<'_>, (stream,): (Resource<ResolveAddressStream>,)| {
            let stream = store.data_mut().table.get_mut(&stream)?;
            Ok((stream.next().map(|ip| ip.map(IpAddress::from)),))
        },
    )?;
    inst.func_wrap(
        "[method]resolve-address-stream.subscribe",
        |mut store: Store<'_>,
         (stream,): (Resource<ResolveAddressStream>,)|
         -> wasmtime::Result<(Resource<DynPollable>,)> {
            Ok((subscribe(&mut store.data_mut().table, stream)?,))
        },
    )?;
    Ok(())
}

impl Resolver {
    /// The settings of a `resolv.conf` text: `nameserver` lines (at most 3, as glibc),
    /// the last `search`/`domain` line, `options ndots:N timeout:N attempts:N`.
    pub fn parse(text: &str) -> Self {
        let mut r = Resolver::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok())
                        && r.nameservers.len() < 3
                    {
                        r.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => {
                    r.searches = words.map(str::to_string).collect();
                }
                Some("options") => {
                    for option in words {
                        let (name, value) = option.split_once(':').unwrap_or((option, ""));
                        let value = value.parse::<u64>().ok();
                        match (name, value) {
                            ("ndots", Some(n)) => r.ndots = n.min(15) as usize,
                            ("timeout", Some(n)) => r.timeout = Duration::from_secs(n.clamp(1, 30)),
                            ("attempts", Some(n)) => r.attempts = n.clamp(1, 5) as usize,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        r
    }

    /// The nameservers as socket addresses (port 53).
    pub fn servers(&self) -> Vec<SocketAddr> {
        self.nameservers
            .iter()
            .map(|ip| SocketAddr::new(*ip, 53))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_text_gives_the_settings() {
        let r = Resolver::parse(
            "search ns.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.244.1.1\nnameserver 10.0.0.2 # second\noptions ndots:5 timeout:2 attempts:3 edns0\n",
        );
        assert_eq!(
            r.nameservers,
            [
                "10.244.1.1".parse::<IpAddr>().unwrap(),
                "10.0.0.2".parse().unwrap()
            ]
        );
        assert_eq!(
            r.searches,
            ["ns.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        );
        assert_eq!(
            (r.ndots, r.timeout, r.attempts),
            (5, Duration::from_secs(2), 3)
        );
        let plain = Resolver::parse("nameserver 192.0.2.53\n");
        assert_eq!((plain.ndots, plain.attempts), (1, 2), "glibc's defaults");
        assert_eq!(
            plain.servers(),
            ["192.0.2.53:53".parse::<SocketAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn literals_resolve_to_themselves_and_denied_lookups_fail() {
        let system = NameLookup::System;
        assert_eq!(
            system.clone().resolve("10.1.2.3".into()).await.unwrap(),
            ["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            system.clone().resolve("[::1]".into()).await.unwrap(),
            [IpAddr::V6(Ipv6Addr::LOCALHOST)]
        );
        assert!(matches!(
            system.resolve("bad name!".into()).await,
            Err(ErrorCode::InvalidArgument)
        ));
        assert!(matches!(
            NameLookup::Denied.resolve("10.1.2.3".into()).await,
            Err(ErrorCode::PermanentResolverFailure)
        ));
    }
}
