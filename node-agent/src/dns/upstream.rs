//! Names outside the cluster domain, asked of the node's upstream resolvers (the nameservers of
//! `--resolv-conf`) through hickory's resolver, which caches answers for their TTL (the node's
//! DNS server is a node-local cache, as NodeLocal DNSCache is).
//!
//! Must not: apply search domains (pods' resolvers already did: every name asked is fully
//! qualified), read the node's `/etc/hosts`, or ask anything but the given servers.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::{ProtoError, ProtoErrorKind};
use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, Resolver};

/// How long one upstream server has to answer, and how often a query is tried.
const TIMEOUT: Duration = Duration::from_secs(2);
const ATTEMPTS: usize = 2;
/// Answers kept (the resolver's LRU cache).
const CACHE: usize = 4096;

/// What an upstream said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    /// The SOA of a negative answer (for the authority section).
    pub authority: Vec<Record>,
}

/// The node's upstream resolvers.
#[derive(Clone)]
pub struct Upstream {
    resolver: Option<Resolver<TokioConnectionProvider>>,
}

impl Upstream {
    /// Asks `servers` (UDP, TCP on truncation); none: every forwarded name fails (`SERVFAIL`).
    pub fn new(servers: &[SocketAddr]) -> Self {
        if servers.is_empty() {
            return Self { resolver: None };
        }
        let mut group = NameServerConfigGroup::new();
        for server in servers {
            let one = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
            group.merge(one);
        }
        let config = ResolverConfig::from_parts(None, Vec::new(), group);
        let mut options = ResolverOpts::default();
        options.ndots = 0;
        options.timeout = TIMEOUT;
        options.attempts = ATTEMPTS;
        options.cache_size = CACHE;
        options.use_hosts_file = ResolveHosts::Never;
        options.preserve_intermediates = true;
        options.edns0 = true;
        let resolver = Resolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(options)
            .build();
        Self {
            resolver: Some(resolver),
        }
    }

    /// The upstream's answer to `name` `qtype`.
    pub async fn ask(&self, name: Name, qtype: RecordType) -> Forwarded {
        let Some(resolver) = &self.resolver else {
            return failed();
        };
        match resolver.lookup(name.clone(), qtype).await {
            Ok(lookup) => Forwarded {
                code: ResponseCode::NoError,
                answers: lookup.records().to_vec(),
                authority: Vec::new(),
            },
            Err(e) => negative(&name, &e),
        }
    }
}

fn failed() -> Forwarded {
    Forwarded {
        code: ResponseCode::ServFail,
        answers: Vec::new(),
        authority: Vec::new(),
    }
}

/// NXDOMAIN or an empty answer (with the upstream's SOA) as they came; anything else
/// (timeouts, refusals) is `SERVFAIL`.
fn negative(name: &Name, e: &ResolveError) -> Forwarded {
    let proto: Option<&ProtoError> = e.proto();
    match proto.map(ProtoError::kind) {
        Some(ProtoErrorKind::NoRecordsFound {
            response_code, soa, ..
        }) => Forwarded {
            code: *response_code,
            answers: Vec::new(),
            authority: soa
                .as_ref()
                .map(|s| vec![s.as_ref().clone().into_record_of_rdata()])
                .unwrap_or_default(),
        },
        _ => {
            tracing::debug!(%name, error = %e, "upstream DNS failed");
            failed()
        }
    }
}
