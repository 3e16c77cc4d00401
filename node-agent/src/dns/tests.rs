//! The node's DNS server in process on loopback, with an upstream the test starts beside it
//! (a hickory server answering one name): cluster names from a catalog, other names forwarded,
//! over UDP and TCP. Never asks the host's resolvers.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use skiff_api::v1::Service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::records::Zone;
use super::server::{Handler, bind};
use super::upstream::Upstream;
use crate::catalog::Catalog;

/// The test's upstream: `outside.example.` is 192.0.2.10, anything else NXDOMAIN.
struct Outside;

#[async_trait::async_trait]
impl RequestHandler for Outside {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut header = Header::response_from_request(request.header());
        let query = request.request_info().expect("one query").query.clone();
        let name: Name = query.name().into();
        let records = if name == Name::from_ascii("outside.example.").unwrap()
            && query.query_type() == RecordType::A
        {
            vec![Record::from_rdata(
                name,
                60,
                RData::A(A::new(192, 0, 2, 10)),
            )]
        } else {
            header.set_response_code(ResponseCode::NXDomain);
            Vec::new()
        };
        let message = builder.build(
            header,
            records.iter(),
            std::iter::empty(),
            std::iter::empty(),
            std::iter::empty(),
        );
        response.send_response(message).await.expect("sent")
    }
}

fn service(ns: &str, name: &str, ip: &str) -> Service {
    crate::catalog::fixtures::service(ns, name, ip, &[("http", 80, "")])
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(4242)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message.to_vec().unwrap()
}

async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&query(name, qtype), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        socket.recv_from(&mut buf),
    )
    .await
    .expect("an answer in time")
    .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut stream = tokio::net::TcpStream::connect(server).await.unwrap();
    let bytes = query(name, qtype);
    let len = u16::try_from(bytes.len()).unwrap().to_be_bytes();
    stream.write_all(&len).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addresses(m: &Message) -> Vec<String> {
    m.answers().iter().map(|r| r.data().to_string()).collect()
}

#[tokio::test]
async fn cluster_names_come_from_the_catalog_and_others_from_the_upstream() {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    // The upstream: a bare hickory server of the test's own.
    let udp = tokio::net::UdpSocket::bind(loopback).await.unwrap();
    let upstream_addr = udp.local_addr().unwrap();
    let mut upstream_server = hickory_server::ServerFuture::new(Outside);
    upstream_server.register_socket(udp);

    let catalog = Catalog::from_objects(vec![service("shop", "web", "10.96.0.10")], Vec::new());
    let handler = Handler {
        zone: Zone::new("cluster.local").unwrap(),
        catalog: Arc::clone(&catalog),
        upstream: Upstream::new(&[upstream_addr]),
    };
    let (_server, addr) = bind(loopback, handler).await.expect("bound");

    let m = ask_udp(addr, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.id(), 4242);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.authoritative() && m.recursion_available());
    assert_eq!(addresses(&m), ["10.96.0.10"]);

    let m = ask_tcp(addr, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&m), ["10.96.0.10"], "over TCP too");

    let m = ask_udp(
        addr,
        "_http._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(addresses(&m), ["0 100 80 web.shop.svc.cluster.local."]);
    assert_eq!(m.additionals().len(), 1);

    let m = ask_udp(addr, "nope.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert!(m.answers().is_empty());
    assert_eq!(
        m.name_servers().len(),
        1,
        "the zone's SOA for negative caching"
    );
    assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);

    let m = ask_udp(addr, "web.shop.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.answers().is_empty() && m.name_servers().len() == 1);

    let m = ask_udp(addr, "outside.example.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(!m.authoritative());
    assert_eq!(
        addresses(&m),
        ["192.0.2.10"],
        "forwarded to the test's upstream"
    );

    let m = ask_udp(addr, "missing.example.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);

    // Without an upstream, other names fail rather than hang.
    let lonely = Handler {
        zone: Zone::new("cluster.local").unwrap(),
        catalog,
        upstream: Upstream::new(&[]),
    };
    let (_lonely, lonely_addr) = bind(loopback, lonely).await.expect("bound");
    let m = ask_udp(lonely_addr, "outside.example.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::ServFail);
}

#[test]
fn a_resolv_conf_gives_port_53_upstreams_and_a_missing_one_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    std::fs::write(&path, "nameserver 192.0.2.53\nsearch corp.example\n").unwrap();
    let (servers, conf) = super::read_resolv_conf(&path).unwrap();
    assert_eq!(servers, ["192.0.2.53:53".parse::<SocketAddr>().unwrap()]);
    assert_eq!(conf.searches, ["corp.example"]);
    let (servers, _) = super::read_resolv_conf(&dir.path().join("missing")).unwrap();
    assert!(servers.is_empty());
}
