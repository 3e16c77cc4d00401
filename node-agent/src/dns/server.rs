//! The DNS server loop: hickory's [`ServerFuture`] on one UDP socket and one TCP listener, with
//! a [`RequestHandler`] that answers the cluster zone from the catalog ([`super::records`]) and
//! hands every other name to the upstream resolvers ([`super::upstream`]).
//!
//! Must not: parse or write DNS messages itself (hickory does), or block.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Header, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Name, Record};
use hickory_server::ServerFuture;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};

use super::DnsError;
use super::records::{Answer, Zone};
use super::upstream::Upstream;
use crate::catalog::Catalog;

/// How long an idle TCP connection is kept.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest UDP answer offered to EDNS clients (RFC 9715's advice).
const EDNS_PAYLOAD: u16 = 1232;

/// Answers one query: the cluster zone from the catalog, anything else from upstream.
pub struct Handler {
    pub zone: Zone,
    pub catalog: Arc<Catalog>,
    pub upstream: Upstream,
}

/// One response's sections.
struct Reply {
    code: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authority: Vec<Record>,
    additionals: Vec<Record>,
}

impl Handler {
    async fn reply(&self, name: Name, qtype: hickory_proto::rr::RecordType) -> Reply {
        let negative = |code| Reply {
            code,
            authoritative: true,
            answers: Vec::new(),
            authority: vec![self.zone.soa().clone()],
            additionals: Vec::new(),
        };
        match self.zone.answer(&self.catalog, &name, qtype) {
            Answer::Records {
                answers,
                additionals,
            } if !answers.is_empty() => Reply {
                code: ResponseCode::NoError,
                authoritative: true,
                answers,
                authority: Vec::new(),
                additionals,
            },
            Answer::Records { .. } => negative(ResponseCode::NoError),
            Answer::NxDomain => negative(ResponseCode::NXDomain),
            Answer::Forward => {
                let got = self.upstream.ask(name, qtype).await;
                Reply {
                    code: got.code,
                    authoritative: false,
                    answers: got.answers,
                    authority: got.authority,
                    additionals: Vec::new(),
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if request.edns().is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            builder.edns(edns);
        }
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(true);
        let query = match request.request_info() {
            Ok(info) if request.message_type() == MessageType::Query => {
                (request.op_code() == OpCode::Query).then(|| info.query.clone())
            }
            _ => {
                header.set_response_code(ResponseCode::FormErr);
                return send(&mut response, builder.build_no_records(header), header).await;
            }
        };
        let Some(query) = query else {
            header.set_response_code(ResponseCode::NotImp);
            return send(&mut response, builder.build_no_records(header), header).await;
        };
        let reply = self.reply(query.name().into(), query.query_type()).await;
        header.set_response_code(reply.code);
        header.set_authoritative(reply.authoritative);
        let message = builder.build(
            header,
            reply.answers.iter(),
            std::iter::empty(),
            reply.authority.iter(),
            reply.additionals.iter(),
        );
        send(&mut response, message, header).await
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    message: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    header: Header,
) -> ResponseInfo {
    match response.send_response(message).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "sending a DNS response");
            header.into()
        }
    }
}

/// Serves `handler` on UDP and TCP `addr` (port 0: a free port, the same for both) until the
/// returned server is dropped. Returns the address bound.
pub async fn bind(
    addr: SocketAddr,
    handler: Handler,
) -> Result<(ServerFuture<Handler>, SocketAddr), DnsError> {
    let bind_error = |source| DnsError::Bind { addr, source };
    let udp = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(bind_error)?;
    let bound = udp.local_addr().map_err(bind_error)?;
    let tcp = tokio::net::TcpListener::bind(bound)
        .await
        .map_err(|source| DnsError::Bind {
            addr: bound,
            source,
        })?;
    let mut server = ServerFuture::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_TIMEOUT);
    Ok((server, bound))
}
