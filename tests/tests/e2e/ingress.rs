//! Ingress end to end on three nodes that live in network namespaces the test made: busybox httpd
//! pods behind two Services, an Ingress routing two hosts to them through each node's router
//! (default address: the node's, ports 80 and 443), Exact and Prefix paths, 404 for no rule, 503
//! for a Service with no ready endpoint and for one that does not exist (with a Warning Event on
//! the Ingress naming the field), X-Forwarded-* headers, TLS from a `kubernetes.io/tls` Secret
//! picked by SNI (the default certificate otherwise), the status addresses and `get ingress`
//! columns, the default IngressClass, a LoadBalancer Service asking for port 80 told why it gets
//! no address, and validation that names the field.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, ClusterOptions, stderr, stdout, text, wait_for};

/// A pod serving `files` (path → body) with busybox httpd on 8080, and a CGI script at
/// `/cgi-bin/headers` that prints the forwarding headers it got.
fn server_pod(name: &str, app: &str, image: &str, node: &str, files: &[(&str, &str)]) -> String {
    let mut script = String::from("mkdir -p /www/cgi-bin; ");
    for (path, body) in files {
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        script.push_str(&format!("mkdir -p /www{dir}; echo {body} > /www{path}; "));
    }
    script.push_str(
        "printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho \"xff=$HTTP_X_FORWARDED_FOR proto=$HTTP_X_FORWARDED_PROTO fhost=$HTTP_X_FORWARDED_HOST host=$HTTP_HOST\"\\n' > /www/cgi-bin/headers; chmod +x /www/cgi-bin/headers; exec busybox httpd -f -p 8080 -h /www",
    );
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {app}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  nodeSelector:\n    kubernetes.io/hostname: {node}\n  containers:\n  - name: httpd\n    image: {image}\n    command: [sh, -c, {script:?}]\n---\n"
    )
}

fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {name}}}\n  ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n---\n"
    )
}

const INGRESS: &str = "\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  tls:
  - hosts: [b.test]
    secretName: b-tls
  rules:
  - host: a.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}
  - host: b.test
    http:
      paths:
      - {path: /exact, pathType: Exact, backend: {service: {name: b, port: {name: http}}}}
      - {path: /docs, pathType: Prefix, backend: {service: {name: b, port: {name: http}}}}
      - {path: /, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}
  - host: \"*.wild.test\"
    http:
      paths:
      - {path: /, pathType: ImplementationSpecific, backend: {service: {name: b, port: {number: 80}}}}
  - host: empty.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: empty, port: {number: 80}}}}
";

const OTHER_CLASS: &str = "\
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: elsewhere}
spec:
  ingressClassName: nginx
  rules:
  - host: other.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}
---
";

const BROKEN: &str = "\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: broken}
spec:
  rules:
  - host: ghost.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: ghost, port: {number: 80}}}}
";

/// One HTTP/1.1 request to `addr` for `host` and `path`: (status, body).
fn get(addr: &str, host: &str, path: &str) -> Option<(u16, String)> {
    let stream = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    exchange(stream, host, path)
}

fn exchange(mut stream: impl Read + Write, host: &str, path: &str) -> Option<(u16, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    // A TLS peer may end without close_notify: whatever arrived counts.
    let _ = stream.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Waits until `host``path` through `addr` answers `status` with a body containing `body`.
fn expect(addr: &str, host: &str, path: &str, status: u16, body: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = get(addr, host, path);
        if got
            .as_ref()
            .is_some_and(|(s, b)| *s == status && b.contains(body))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "http://{host}{path} via {addr}: want {status} {body:?}, last got {got:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A CA, and a certificate for `hosts` it signed: (CA PEM, cert PEM, key PEM).
fn certificates(hosts: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "skiff ingress test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// A TLS client that trusts only `ca_pem`.
fn tls_client(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A request over TLS with SNI `host`: Ok((status, body)), or Err(the handshake's error).
fn get_tls(
    config: &Arc<rustls::ClientConfig>,
    addr: &str,
    host: &str,
    path: &str,
) -> Result<(u16, String), String> {
    let name =
        rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| e.to_string())?;
    }
    exchange(tls, host, path).ok_or_else(|| "no HTTP answer".to_string())
}

fn events_of(c: &Cluster, kind: &str, name: &str) -> Vec<Value> {
    let out = c.skiff(&["get", "events", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["involvedObject"]["kind"] == kind && e["involvedObject"]["name"] == name)
        .collect()
}

#[test]
fn an_ingress_routes_two_hosts_by_path_to_two_services_over_http_and_tls() {
    let slot = NetSlot::take();
    // Dropped last (declared first): after the cluster has ended its agents.
    let net = NodeNetwork::new(&slot, 3);
    let registry = Registry::start_on(net.host_address().parse().unwrap());
    let image = registry.push_busybox();
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        agent_env: vec![("SKIFF_INSECURE_REGISTRIES".into(), registry.host())],
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    c.add_agent_at("node-a", net.address(0), Some(net.namespace(0)), &[]);
    c.add_agent_at("node-b", net.address(1), Some(net.namespace(1)), &[]);
    // A node running no backend pod: its router still reaches them.
    c.add_agent_at("node-c", net.address(2), Some(net.namespace(2)), &[]);

    // The server made the default class.
    let out = c.skiff(&["get", "ingressclass"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = stdout(&out);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.lines().any(|l| l.split_whitespace().take(3).eq([
            "skiff",
            "skiff.dev/ingress",
            "<none>"
        ])),
        "{table}"
    );

    let (ca, crt, key) = certificates(&["b.test"]);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "b-tls"},
        "stringData": {"tls.crt": crt, "tls.key": key},
    });
    let mut manifests = String::new();
    manifests.push_str(&server_pod(
        "a",
        "a",
        &image,
        "node-a",
        &[
            ("/index.html", "from-a"),
            ("/exact/more", "from-a"),
            ("/docsx", "from-a"),
        ],
    ));
    manifests.push_str(&server_pod(
        "b",
        "b",
        &image,
        "node-b",
        &[
            ("/index.html", "from-b"),
            ("/exact", "from-b"),
            ("/docs/page", "from-b"),
        ],
    ));
    manifests.push_str(&service("a"));
    manifests.push_str(&service("b"));
    manifests.push_str(&service("empty"));
    manifests.push_str(&format!("{secret}\n---\n"));
    // Another controller's Ingress, created first: skiff's routers and controller leave it alone.
    manifests.push_str(OTHER_CLASS);
    manifests.push_str(INGRESS);
    c.apply(&manifests);

    // Every node's router answers for every route; pods on any node are reached from all.
    let (node_a, node_b, node_c) = (
        format!("{}:80", net.address(0)),
        format!("{}:80", net.address(1)),
        format!("{}:80", net.address(2)),
    );
    for node in [&node_a, &node_b, &node_c] {
        expect(node, "a.test", "/", 200, "from-a");
        expect(node, "b.test", "/", 200, "from-a");
        expect(node, "b.test", "/exact", 200, "from-b");
        // Exact is exact; Prefix goes element by element.
        expect(node, "b.test", "/exact/more", 200, "from-a");
        expect(node, "b.test", "/docs/page", 200, "from-b");
        expect(node, "b.test", "/docsx", 200, "from-a");
        expect(node, "B.Test:80", "/docs/page", 200, "from-b");
        // A wildcard host stands for one label.
        expect(node, "x.wild.test", "/", 200, "from-b");
        expect(node, "x.y.wild.test", "/", 404, "no ingress rule");
        // No rule (other.test is another class's): 404; a Service with no ready endpoint: 503.
        expect(node, "other.test", "/", 404, "no ingress rule");
        expect(node, "empty.test", "/", 503, "no ready endpoints");
    }
    let (status, body) = get(&node_b, "a.test", "/cgi-bin/headers").expect("an answer");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!(
            "xff={} proto=http fhost=a.test host=a.test",
            net.host_address()
        )),
        "{body}"
    );

    // TLS: the Secret's certificate for b.test (trusted through the test's CA), the default
    // (self-signed, untrusted) one for a host no tls entry names.
    let client = tls_client(&ca);
    let node_b_tls = format!("{}:443", net.address(1));
    let answered = wait_for(
        "the b.test certificate to be served",
        Duration::from_secs(30),
        || get_tls(&client, &node_b_tls, "b.test", "/exact").ok(),
    );
    assert_eq!(answered.0, 200, "{answered:?}");
    assert!(answered.1.contains("from-b"), "{answered:?}");
    let refused = get_tls(&client, &node_b_tls, "a.test", "/").unwrap_err();
    assert!(
        refused.to_lowercase().contains("unknownissuer")
            || refused.contains("invalid peer certificate"),
        "{refused}"
    );
    let (status, body) =
        get(&format!("{}:443", net.address(0)), "b.test", "/").map_or((0, String::new()), |r| r);
    assert_ne!(
        status, 200,
        "plain HTTP on the TLS port is no request: {body}"
    );

    // The class was defaulted on create; the status lists both nodes; get shows kubectl's columns.
    let ingress = wait_for(
        "the Ingress's status addresses",
        Duration::from_secs(30),
        || {
            c.get_json("ingress", "web").filter(|i| {
                i["status"]["loadBalancer"]["ingress"]
                    .as_array()
                    .is_some_and(|a| a.len() == 3)
            })
        },
    );
    assert_eq!(ingress["spec"]["ingressClassName"], "skiff", "{ingress:#}");
    let elsewhere = c
        .get_json("ingress", "elsewhere")
        .expect("ingress elsewhere");
    assert!(
        elsewhere["status"]["loadBalancer"]["ingress"].is_null(),
        "{elsewhere:#}"
    );
    let mut addresses = [0, 1, 2].map(|i| net.address(i).to_string());
    addresses.sort();
    assert_eq!(
        ingress["status"]["loadBalancer"]["ingress"],
        json!(
            addresses
                .iter()
                .map(|ip| json!({"ip": ip}))
                .collect::<Vec<_>>()
        ),
        "{ingress:#}"
    );
    let out = c.skiff(&["get", "ing", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = stdout(&out);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or("")
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let address = addresses.join(",");
    assert_eq!(
        row[..5],
        [
            "web",
            "skiff",
            "a.test,b.test,*.wild.test + 1 more...",
            address.as_str(),
            "80, 443"
        ],
        "{table}"
    );

    // A missing Service: a Warning Event naming the field, 503 at request time, and nothing else
    // breaks.
    c.apply(BROKEN);
    let event = wait_for(
        "a ServiceNotFound event on ingress/broken",
        Duration::from_secs(30),
        || {
            events_of(&c, "Ingress", "broken")
                .into_iter()
                .find(|e| e["reason"] == "ServiceNotFound")
        },
    );
    assert_eq!(event["type"], "Warning", "{event:#}");
    let out = c.skiff(&["describe", "ingress", "broken"]);
    assert!(
        out.status.success() && stdout(&out).contains("ServiceNotFound"),
        "{}",
        text(&out)
    );
    assert_eq!(
        event["message"],
        "spec.rules[0].http.paths[0].backend.service.name: service \"default/ghost\" not found",
        "{event:#}"
    );
    expect(
        &node_a,
        "ghost.test",
        "/",
        503,
        "service \"default/ghost\" not found",
    );
    expect(&node_a, "a.test", "/", 200, "from-a");
    assert!(
        events_of(&c, "Ingress", "web").is_empty(),
        "{:#?}",
        events_of(&c, "Ingress", "web")
    );

    // A LoadBalancer Service asking for the routers' port is told why it gets no address.
    c.apply("apiVersion: v1\nkind: Service\nmetadata: {name: lb}\nspec:\n  type: LoadBalancer\n  selector: {app: a}\n  ports:\n  - {port: 80, targetPort: 8080}\n");
    let event = wait_for(
        "an IngressPortReserved event on service/lb",
        Duration::from_secs(30),
        || {
            events_of(&c, "Service", "lb")
                .into_iter()
                .find(|e| e["reason"] == "IngressPortReserved")
        },
    );
    assert_eq!(event["type"], "Warning", "{event:#}");
    let message = event["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with(
            "spec.ports[0].port: port 80 of the nodes' addresses is the ingress router's"
        ),
        "{event:#}"
    );
    let lb = c.get_json("service", "lb").expect("service lb");
    assert!(lb["status"]["loadBalancer"]["ingress"].is_null(), "{lb:#}");

    // The routers follow Endpoints: b's pod gone, its routes answer 503, the others still work.
    let out = c.skiff(&["delete", "pod", "b"]);
    assert!(out.status.success(), "{}", text(&out));
    expect(&node_c, "b.test", "/exact", 503, "no ready endpoints");
    expect(&node_c, "b.test", "/", 200, "from-a");
}

#[test]
fn bad_ingresses_are_refused_naming_the_field() {
    let c = Cluster::start();
    let cases = [
        (
            INGRESS.replace("pathType: Exact, ", ""),
            "spec.rules[1].http.paths[0].pathType: Required value: pathType must be specified",
        ),
        (
            INGRESS.replace("pathType: Exact", "pathType: Regex"),
            "spec.rules[1].http.paths[0].pathType: Unsupported value: \"Regex\"",
        ),
        (
            INGRESS.replace("{path: /docs,", "{path: docs,"),
            "spec.rules[1].http.paths[1].path: Invalid value: \"docs\": must be an absolute path",
        ),
        (
            INGRESS.replace("host: a.test", "host: 10.0.0.1"),
            "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
        ),
        (
            INGRESS.replace("{name: b, port: {name: http}}", "{name: b, port: {}}"),
            "spec.rules[1].http.paths[0].backend.service.port: Required value: port name or number is required",
        ),
        (
            INGRESS.replace(
                "{name: a, port: {number: 80}}}}\n  - host: b.test",
                "{port: {number: 80}}}}\n  - host: b.test",
            ),
            "spec.rules[0].http.paths[0].backend.service.name: Required value",
        ),
        (
            INGRESS.replace("secretName: b-tls", "secret: b-tls"),
            "spec.tls[0].secret: unknown field",
        ),
    ];
    for (manifest, want) in cases {
        let out = c.skiff_stdin(&["apply", "-f", "-"], &manifest);
        assert_eq!(out.status.code(), Some(2), "{want}\n{}", text(&out));
        assert!(stderr(&out).contains(want), "want {want:?}\n{}", text(&out));
    }
    // The server judges the same way (a client that skips the CLI's check).
    let mut ingress: skiff_api::v1::Ingress = skiff_api::manifest::parse("i.yaml", INGRESS)
        .unwrap()[0]
        .decode()
        .unwrap();
    ingress.metadata.as_mut().unwrap().namespace = "default".into();
    ingress.spec.as_mut().unwrap().rules[0]
        .http
        .as_mut()
        .unwrap()
        .paths[0]
        .path_type = String::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let refused = rt
        .block_on(async {
            c.api::<skiff_api::v1::Ingress>("default")
                .create(ingress)
                .await
        })
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("spec.rules[0].http.paths[0].pathType: Required value"),
        "{refused:?}"
    );
    // Nothing was stored.
    let out = c.skiff(&["get", "ingress"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!stdout(&out).contains("web"), "{}", text(&out));

    // A bad --ingress-addr stops the agent before it joins, naming the flag.
    let out = c
        .skiff_cmd(&[
            "agent",
            "--server",
            &c.addr.to_string(),
            "--ingress-addr",
            "nonsense",
        ])
        .env("SKIFF_TOKEN", c.join_token())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("--ingress-addr \"nonsense\": expected off, an IP"),
        "{}",
        text(&out)
    );

    // IngressClass: a controller that is no domain-prefixed path.
    let class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: other}\nspec: {controller: nginx}\n";
    let out = c.skiff_stdin(&["apply", "-f", "-"], class);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out)
            .contains("spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path"),
        "{}",
        text(&out)
    );
}
