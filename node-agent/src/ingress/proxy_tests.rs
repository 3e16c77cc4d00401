//! The router in-process on loopback: a table built from an Ingress, a catalog of fixed Services
//! and Endpoints, and upstream HTTP servers the tests start (hyper, on 127.0.0.1).

use super::*;
use crate::ingress::routes::RouteTable;
use skiff_api::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, HttpIngressPath,
    HttpIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    ObjectMeta, Service, ServiceBackendPort, ServicePort, ServiceSpec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn hop_by_hop_headers_and_those_connection_names_go() {
    let mut headers = HeaderMap::new();
    headers.insert("connection", HeaderValue::from_static("close, x-secret"));
    headers.insert("x-secret", HeaderValue::from_static("1"));
    headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    headers.insert("x-kept", HeaderValue::from_static("1"));
    strip_hop_by_hop(&mut headers);
    let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(left, ["x-kept"]);
}

/// An upstream answering `NAME PATH xff=.. proto=.. fhost=.. host=..`, and 101 then an echo of
/// every byte to an upgrade.
async fn upstream(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service =
                hyper::service::service_fn(move |mut req: Request<Incoming>| async move {
                    let header = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_string()
                    };
                    let mut response = Response::new(Full::new(Bytes::new()));
                    if let Some(protocol) = req.headers().get(header::UPGRADE).cloned() {
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let Ok(upgraded) = on.await else { return };
                            let mut io = TokioIo::new(upgraded);
                            let mut buf = [0u8; 64];
                            while let Ok(n) = io.read(&mut buf).await {
                                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        });
                        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                        let headers = response.headers_mut();
                        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                        headers.insert(header::UPGRADE, protocol);
                    } else {
                        *response.body_mut() = Full::new(Bytes::from(format!(
                            "{name} {} xff={} proto={} fhost={} host={}",
                            req.uri().path(),
                            header("x-forwarded-for"),
                            header("x-forwarded-proto"),
                            header("x-forwarded-host"),
                            header("host"),
                        )));
                    }
                    Ok::<_, Infallible>(response)
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    port
}

/// A loopback port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

fn meta(name: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: name.into(),
        namespace: "default".into(),
        ..Default::default()
    })
}

/// A Service `name` with port 80 (`http`), and its Endpoints: 127.0.0.1 on each of `ports`.
fn service(name: &str, ports: &[u16]) -> (Service, Endpoints) {
    let service = Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            ports: vec![ServicePort {
                name: "http".into(),
                port: 80,
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let endpoints = Endpoints {
        metadata: meta(name),
        subsets: ports
            .iter()
            .map(|p| EndpointSubset {
                addresses: vec![EndpointAddress {
                    ip: "127.0.0.1".into(),
                    ..Default::default()
                }],
                not_ready_addresses: vec![],
                ports: vec![EndpointPort {
                    name: "http".into(),
                    port: i32::from(*p),
                    protocol: "TCP".into(),
                    ..Default::default()
                }],
            })
            .collect(),
    };
    (service, endpoints)
}

/// An Ingress sending host `NAME.test` to Service `NAME`, for each name.
fn ingress(names: &[&str]) -> Ingress {
    let rule = |name: &str| IngressRule {
        host: format!("{name}.test"),
        http: Some(HttpIngressRuleValue {
            paths: vec![HttpIngressPath {
                path: "/".into(),
                path_type: "Prefix".into(),
                backend: Some(IngressBackend {
                    service: Some(IngressServiceBackend {
                        name: name.into(),
                        port: Some(ServiceBackendPort {
                            number: 80,
                            ..Default::default()
                        }),
                    }),
                    resource: None,
                }),
            }],
        }),
    };
    Ingress {
        metadata: meta("i"),
        spec: Some(IngressSpec {
            rules: names.iter().map(|n| rule(n)).collect(),
            ..Default::default()
        }),
        status: None,
    }
}

/// A router on loopback over `services`, routing `NAME.test` to each (and `ghost.test` to a
/// Service that does not exist); its address.
async fn router(services: Vec<(Service, Endpoints)>) -> SocketAddr {
    let mut names: Vec<String> = services
        .iter()
        .map(|(s, _)| s.metadata.as_ref().unwrap().name.clone())
        .collect();
    names.push("ghost".into());
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let table = RouteTable::build(&[ingress(&names)]);
    let (services, endpoints) = services.into_iter().unzip();
    let catalog = Catalog::from_objects(services, endpoints);
    // The receiver keeps the last value when the sender goes.
    let (_, rx) = watch::channel(Arc::new(Routing { table }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Router::new(rx, catalog).serve_http(listener));
    addr
}

/// One request on a new connection: (status, body).
async fn send(
    router: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(router).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

#[tokio::test]
async fn requests_are_forwarded_with_forwarding_headers_or_answered_404_503_502() {
    let one = upstream("one").await;
    let router = router(vec![
        service("a", &[one]),
        service("empty", &[]),
        service("broken", &[closed_port().await]),
    ])
    .await;
    let (status, body) = send(router, "GET", "a.test", "/x?q=1", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "one /x xff=127.0.0.1 proto=http fhost=a.test host=a.test"
    );
    let (status, body) = send(router, "GET", "other.test", "/", "").await;
    assert_eq!(
        (status, body.as_str()),
        (404, "404 page not found: no ingress rule matches\n")
    );
    let (status, body) = send(router, "GET", "empty.test", "/", "").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("service \"default/empty\" has no ready endpoints"),
        "{body}"
    );
    let (status, body) = send(router, "GET", "ghost.test", "/", "").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("service \"default/ghost\" not found"),
        "{body}"
    );
    let (status, body) = send(router, "GET", "broken.test", "/", "").await;
    assert_eq!(status, 502, "{body}");
}

#[tokio::test]
async fn a_bodiless_request_skips_a_refused_endpoint_and_one_with_a_body_does_not() {
    let (open, closed) = (upstream("open").await, closed_port().await);
    let router = router(vec![service("a", &[closed, open])]).await;
    for _ in 0..6 {
        let (status, body) = send(router, "GET", "a.test", "/", "").await;
        assert_eq!(status, 200, "{body}");
    }
    // A body cannot be sent twice: the round robin's turn on the refusing endpoint is a 502.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(send(router, "POST", "a.test", "/", "data").await.0);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 502]);
}

#[tokio::test]
async fn an_upgrade_joins_the_client_and_the_upstream() {
    let router = router(vec![service("a", &[upstream("ws").await])]).await;
    let mut stream = tokio::net::TcpStream::connect(router).await.unwrap();
    stream
        .write_all(b"GET /socket HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "{head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    stream.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    stream.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
}
