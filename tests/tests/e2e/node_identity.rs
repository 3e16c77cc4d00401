//! Node identities and node restriction end to end: agents join with a bootstrap token for
//! their own client certificate; a node reaches only its own pods and what they use; tokens
//! expire and are revoked; only the cluster CA's client certificates are taken.

use std::time::Duration;

use skiff_api::client::{Api, ClientConfig, ClientIdentity, ListParams, Transport};
use skiff_api::join::JoinToken;
use skiff_api::v1::*;
use skiff_tests::guests::guest;
use skiff_tests::{Cluster, stdout, text, wait_for};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// A channel presenting agent `index`'s own certificate, as the agent does.
pub(crate) fn as_node(c: &Cluster, index: usize) -> Transport {
    let pki = c.agent(index).data_dir.join("pki");
    let read = |name: &str| std::fs::read_to_string(pki.join(name)).unwrap();
    let config = ClientConfig {
        server: c.config().server,
        certificate_authority_data: read("ca.crt"),
        token: String::new(),
    };
    let identity = ClientIdentity {
        certificate_pem: read("node.crt"),
        key_pem: read("node.key"),
    };
    config.connect_renewable(&identity).unwrap().0
}

/// A channel with this bearer token and no certificate.
fn with_token(c: &Cluster, token: &str) -> Transport {
    ClientConfig {
        token: token.into(),
        ..c.config()
    }
    .connect()
    .unwrap()
}

/// A CSR for `system:node:NAME`.
fn csr(name: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{name}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params.serialize_request(&key).unwrap().pem().unwrap()
}

/// Asks for a node certificate with `transport`'s credentials.
async fn sign(transport: Transport, name: &str) -> Result<NodeCertificate, tonic::Status> {
    certificate_api_client::CertificateApiClient::new(transport)
        .sign_node_certificate(NodeCertificateRequest { csr: csr(name) })
        .await
        .map(|r| r.into_inner())
}

/// `r` is a PermissionDenied refusal.
fn denied<T>(r: Result<T, tonic::Status>, what: &str) {
    match r {
        Ok(_) => panic!("{what}: allowed"),
        Err(s) => assert_eq!(s.code(), tonic::Code::PermissionDenied, "{what}: {s}"),
    }
}

fn bearer_of(join: &str) -> String {
    JoinToken::parse(join).unwrap().bearer()
}

#[test]
fn a_node_joins_once_with_its_token_and_restarts_on_its_certificate() {
    let runtime = rt();
    // Channels spawn their connection tasks on the runtime they are made in.
    let _enter = runtime.enter();
    use std::os::unix::fs::PermissionsExt;
    let mut c = Cluster::start();
    let i = c.add_agent("n1");
    let join = c.join_token();
    let pki = c.agent(i).data_dir.join("pki");
    let mode = |name: &str| {
        std::fs::metadata(pki.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("node.key"), 0o600);
    assert!(
        std::fs::read_to_string(pki.join("node.crt"))
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    // The token is nowhere on the agent's command line.
    let pid = c.agent(i).pid().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let secret = JoinToken::parse(&join).unwrap().secret;
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(&secret),
        "the token is on the command line"
    );
    // Revoke the token the node joined with: the node restarts on its certificate alone.
    let out = c.skiff(&["token", "revoke", join.trim()]);
    assert!(out.status.success(), "{}", text(&out));
    let id = JoinToken::parse(&join).unwrap().id;
    assert_eq!(
        stdout(&out).trim(),
        format!("bootstrap token \"{id}\" deleted")
    );
    c.kill_agent(i);
    c.start_agent(i);
    let nodes: Api<Node> = c.api("");
    let node = runtime.block_on(nodes.get("n1")).unwrap();
    assert!(
        node.status
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True")
    );
    // ... while the revoked token gets nobody a certificate.
    let refused = rt()
        .block_on(sign(with_token(&c, &bearer_of(&join)), "n2"))
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
}

#[test]
fn expired_and_revoked_tokens_are_refused() {
    let runtime = rt();
    // Channels spawn their connection tasks on the runtime they are made in.
    let _enter = runtime.enter();
    let c = Cluster::start();
    let create = |args: &[&str]| {
        let mut all = vec!["token", "create"];
        all.extend_from_slice(args);
        let out = c.skiff(&all);
        assert!(out.status.success(), "{}", text(&out));
        stdout(&out).trim().to_string()
    };
    let good = create(&["--description", "for n5"]);
    let short = create(&["--ttl", "1s"]);
    let revoked = create(&[]);
    let out = c.skiff(&["token", "list"]);
    let listed = stdout(&out);
    assert!(listed.starts_with("TOKEN"), "{listed}");
    let good_id = JoinToken::parse(&good).unwrap().id;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&good_id) && l.ends_with("for n5")),
        "{listed}"
    );
    assert!(
        !listed.contains(&JoinToken::parse(&good).unwrap().secret),
        "list shows a secret: {listed}"
    );
    let out = c.skiff(&["token", "revoke", &JoinToken::parse(&revoked).unwrap().id]);
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(2100));
    runtime.block_on(async {
        // A good token gets a node its certificate, and can do nothing else.
        let signed = sign(with_token(&c, &bearer_of(&good)), "n5").await.unwrap();
        assert!(
            signed
                .certificate
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        let pods: Api<Pod> = Api::new(with_token(&c, &bearer_of(&good)), "");
        let denied = pods.list(ListParams::default()).await.unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied}");
        assert!(
            denied
                .message()
                .contains("User \"system:bootstrap\" cannot list resource \"pods\""),
            "{denied}"
        );
        for (what, token) in [("expired", &short), ("revoked", &revoked)] {
            let refused = sign(with_token(&c, &bearer_of(token)), "n5")
                .await
                .unwrap_err();
            assert_eq!(
                refused.code(),
                tonic::Code::Unauthenticated,
                "{what}: {refused}"
            );
        }
    });
    // Bad input names what is wrong.
    let out = c.skiff(&["token", "revoke", "NOT-A-TOKEN"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = c.skiff(&["token", "revoke", "zzzzzz"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("bootstrap token \"zzzzzz\" not found"),
        "{}",
        text(&out)
    );
}

#[test]
fn node_a_cannot_reach_node_b() {
    let runtime = rt();
    // Channels spawn their connection tasks on the runtime they are made in.
    let _enter = runtime.enter();
    let mut c = Cluster::start();
    let a = c.add_agent("na");
    let b = c.add_agent("nb");
    let probe = format!("file:{}", guest("probe").display());
    c.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: b-secret}}\nstringData: {{password: canary-b}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: a-secret}}\nstringData: {{password: canary-a}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: on-b}}\nspec:\n  runtimeClassName: wasm\n  nodeSelector: {{kubernetes.io/hostname: nb}}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {probe}\n    command: [probe]\n    args: [sleep, \"0\"]\n    env:\n    - name: PASSWORD\n      valueFrom: {{secretKeyRef: {{name: b-secret, key: password}}}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: on-a}}\nspec:\n  runtimeClassName: wasm\n  nodeSelector: {{kubernetes.io/hostname: na}}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {probe}\n    command: [probe]\n    args: [sleep, \"0\"]\n    env:\n    - name: PASSWORD\n      valueFrom: {{secretKeyRef: {{name: a-secret, key: password}}}}\n"
    ));
    let admin_pods: Api<Pod> = c.api("default");
    for name in ["on-a", "on-b"] {
        wait_for(name, Duration::from_secs(30), || {
            runtime
                .block_on(admin_pods.get(name))
                .ok()
                .filter(|p| p.status.as_ref().is_some_and(|s| s.phase == "Running"))
        });
    }
    runtime.block_on(async {
        let node_a = as_node(&c, a);
        let pods: Api<Pod> = Api::new(node_a.clone(), "default");
        let secrets: Api<Secret> = Api::new(node_a.clone(), "default");
        let nodes: Api<Node> = Api::new(node_a.clone(), "");
        // Its own pod and secret: yes.
        pods.get("on-a").await.unwrap();
        secrets.get("a-secret").await.unwrap();
        nodes.get("na").await.unwrap();
        // Node B's pod and secret: no; a list of pods holds only its own.
        denied(pods.get("on-b").await, "get B's pod");
        denied(secrets.get("b-secret").await, "get B's secret");
        denied(
            secrets
                .list(ListParams::default().fields("metadata.name=b-secret"))
                .await,
            "list B's secret",
        );
        denied(secrets.list(ListParams::default()).await, "list secrets");
        let (listed, _) = Api::<Pod>::new(node_a.clone(), "")
            .list(ListParams::default())
            .await
            .unwrap();
        let names: Vec<&str> = listed
            .iter()
            .filter_map(|p| p.metadata.as_ref())
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, ["on-a"]);
        // Writes to B's pod, B's Node: no.
        let mut theirs = admin_pods.get("on-b").await.unwrap();
        if let Some(s) = theirs.status.as_mut() {
            s.pod_ip = "10.0.0.66".into();
        }
        denied(pods.update_status(theirs).await, "update B's pod status");
        denied(pods.delete("on-b").await, "delete B's pod");
        let mut b_node = nodes.get("nb").await.unwrap();
        if let Some(m) = b_node.metadata.as_mut() {
            m.labels.insert("taken".into(), "yes".into());
        }
        denied(nodes.update(b_node.clone()).await, "update B's Node");
        denied(nodes.update_status(b_node).await, "update B's Node status");
        denied(nodes.delete("nb").await, "delete B's Node");
        // B's tunnel: no.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(TunnelUp {
            message: Some(tunnel_up::Message::Hello(TunnelHello {
                node_name: "nb".into(),
            })),
        })
        .await
        .unwrap();
        let attached = node_tunnel_api_client::NodeTunnelApiClient::new(node_a.clone())
            .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
        denied(attached.map(|_| ()), "attach B's tunnel");
        // Nor a certificate in B's name.
        denied(sign(node_a, "nb").await.map(|_| ()), "sign for B");
        // Node B reaches its own.
        let node_b = as_node(&c, b);
        Api::<Secret>::new(node_b, "default")
            .get("b-secret")
            .await
            .unwrap();
    });
    // B's pod is untouched, and B's tunnel still serves it.
    let out = c.skiff(&["logs", "on-b"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn only_the_cluster_ca_signs_client_certificates() {
    let runtime = rt();
    // Channels spawn their connection tasks on the runtime they are made in.
    let _enter = runtime.enter();
    let c = Cluster::start();
    let ca_dir = c.data_dir().join("pki");
    // A user certificate the cluster CA signs: the server takes it, and RBAC (or no grant)
    // decides; one made by another CA fails the handshake.
    let user = |issuer_cert: &str, issuer_key: &str| {
        let issuer = rcgen::Issuer::from_ca_cert_pem(
            issuer_cert,
            rcgen::KeyPair::from_pem(issuer_key).unwrap(),
        )
        .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "jane");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "dev");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer).unwrap();
        ClientIdentity {
            certificate_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    };
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    let jane = user(&read(&ca_dir.join("ca.crt")), &read(&ca_dir.join("ca.key")));
    let other_key = rcgen::KeyPair::generate().unwrap();
    let mut other_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    other_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    other_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "skiff cluster CA");
    let other_ca = other_params.self_signed(&other_key).unwrap();
    let stranger = user(&other_ca.pem(), &other_key.serialize_pem());
    let config = ClientConfig {
        token: String::new(),
        ..c.config()
    };
    runtime.block_on(async {
        let pods: Api<Pod> = Api::new(config.connect_renewable(&jane).unwrap().0, "default");
        let refused = pods.list(ListParams::default()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
        assert!(
            refused.message().starts_with(
                "User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
            ),
            "{refused}"
        );
        let pods: Api<Pod> = Api::new(config.connect_renewable(&stranger).unwrap().0, "default");
        let refused = pods.list(ListParams::default()).await.unwrap_err();
        assert!(
            !matches!(
                refused.code(),
                tonic::Code::Ok | tonic::Code::PermissionDenied
            ),
            "a certificate of another CA got as far as authorization: {refused}"
        );
    });
}

#[test]
fn the_node_certificate_is_renewed_without_disturbing_pods() {
    let runtime = rt();
    let _enter = runtime.enter();
    let mut c = Cluster::start_with(skiff_tests::ClusterOptions {
        server_args: vec!["--node-certificate-lifetime".into(), "12s".into()],
        heartbeat_interval: Some("1s".into()),
        ..Default::default()
    });
    let i = c.add_agent("n1");
    let probe = format!("file:{}", guest("probe").display());
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: steady}}\nspec:\n  runtimeClassName: wasm\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {probe}\n    command: [probe]\n    args: [sleep, \"0\"]\n"
    ));
    let pods: Api<Pod> = c.api("default");
    let running = |p: &Pod| p.status.as_ref().is_some_and(|s| s.phase == "Running");
    let before = wait_for("steady running", Duration::from_secs(30), || {
        runtime.block_on(pods.get("steady")).ok().filter(running)
    });
    let crt = c.agent(i).data_dir.join("pki").join("node.crt");
    let first = std::fs::read_to_string(&crt).unwrap();
    // Renewed at 70 % of 12 s; wait past the first certificate's end.
    let second = wait_for("a renewed certificate", Duration::from_secs(20), || {
        std::fs::read_to_string(&crt)
            .ok()
            .filter(|now| *now != first)
    });
    assert!(second.starts_with("-----BEGIN CERTIFICATE-----"));
    std::thread::sleep(Duration::from_secs(6));
    // The node still heartbeats (on the new certificate: the first one has expired) ...
    let leases: Api<Lease> = c.api("kube-node-lease");
    let renewed = |l: &Lease| {
        l.spec
            .as_ref()
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.seconds)
    };
    let then = runtime
        .block_on(leases.get("n1"))
        .ok()
        .and_then(|l| renewed(&l))
        .unwrap();
    wait_for(
        "a heartbeat after the renewal",
        Duration::from_secs(10),
        || {
            runtime
                .block_on(leases.get("n1"))
                .ok()
                .and_then(|l| renewed(&l))
                .filter(|t| *t > then)
        },
    );
    // ... and its pod ran on, untouched, reachable through the tunnel.
    let after = runtime.block_on(pods.get("steady")).unwrap();
    assert!(running(&after));
    let uid = |p: &Pod| p.metadata.as_ref().unwrap().uid.clone();
    assert_eq!(uid(&before), uid(&after));
    let restarts = |p: &Pod| p.status.as_ref().unwrap().container_statuses[0].restart_count;
    assert_eq!(restarts(&after), 0);
    let out = c.skiff(&["logs", "steady"]);
    assert!(out.status.success(), "{}", text(&out));
    // Renewed once or twice in these ~20 s, not in a loop.
    let renewals = c.agent(i).log().matches("node certificate renewed").count();
    assert!(
        (1..=3).contains(&renewals),
        "{renewals} renewals\n{}",
        c.agent(i).log()
    );
}

#[test]
fn a_revoked_node_is_refused_at_once() {
    use tokio_stream::StreamExt;
    let runtime = rt();
    let _enter = runtime.enter();
    let mut c = Cluster::start_with(skiff_tests::ClusterOptions {
        heartbeat_interval: Some("1s".into()),
        ..Default::default()
    });
    let a = c.add_agent("na");
    let b = c.add_agent("nb");
    let probe = format!("file:{}", guest("probe").display());
    c.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: a-secret}}\nstringData: {{password: canary-a}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: on-a}}\nspec:\n  runtimeClassName: wasm\n  nodeSelector: {{kubernetes.io/hostname: na}}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {probe}\n    command: [probe]\n    args: [sleep, \"0\"]\n    env:\n    - name: PASSWORD\n      valueFrom: {{secretKeyRef: {{name: a-secret, key: password}}}}\n"
    ));
    let admin_pods: Api<Pod> = c.api("default");
    wait_for("on-a running", Duration::from_secs(30), || {
        runtime
            .block_on(admin_pods.get("on-a"))
            .ok()
            .filter(|p| p.status.as_ref().is_some_and(|s| s.phase == "Running"))
    });
    let node_a = as_node(&c, a);
    let secrets: Api<Secret> = Api::new(node_a.clone(), "default");
    runtime.block_on(secrets.get("a-secret")).unwrap();
    // A watch node A holds open before the revocation.
    let mut watch = runtime
        .block_on(Api::<Pod>::new(node_a.clone(), "").watch(ListParams::default(), ""))
        .unwrap();

    // A bad name is a usage error.
    let out = c.skiff(&["node", "revoke", "Not_A_Node"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = c.skiff(&["node", "revoke", "na"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).starts_with("node \"na\" revoked: its certificates signed up to "),
        "{}",
        text(&out)
    );

    // The open watch ends, refused.
    let ended = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match watch.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(status)) => break status,
                    None => panic!("the watch ended without a refusal"),
                }
            }
        })
        .await
        .expect("the revoked node's watch was not ended")
    });
    assert_eq!(ended.code(), tonic::Code::Unauthenticated, "{ended}");
    assert!(ended.message().contains("revoked"), "{ended}");
    // New calls (on the old connection and a new one) are refused, its pods' Secrets with them,
    // and so is a renewal of the certificate.
    let unauthenticated = |r: Result<(), tonic::Status>, what: &str| match r {
        Ok(()) => panic!("{what}: allowed after the revocation"),
        Err(s) => {
            assert_eq!(s.code(), tonic::Code::Unauthenticated, "{what}: {s}");
            assert!(s.message().contains("revoked"), "{what}: {s}");
        }
    };
    unauthenticated(
        runtime.block_on(secrets.get("a-secret")).map(|_| ()),
        "get its pod's Secret",
    );
    let fresh: Api<Secret> = Api::new(as_node(&c, a), "default");
    unauthenticated(
        runtime.block_on(fresh.get("a-secret")).map(|_| ()),
        "get its pod's Secret on a new connection",
    );
    unauthenticated(
        runtime.block_on(sign(node_a.clone(), "na")).map(|_| ()),
        "renew its certificate",
    );
    // Its tunnel is closed: the pod's logs are out of reach.
    wait_for(
        "the revoked node's tunnel closed",
        Duration::from_secs(10),
        || (!c.skiff(&["logs", "on-a"]).status.success()).then_some(()),
    );
    // The agent itself is refused: its heartbeats stop.
    let leases: Api<Lease> = c.api("kube-node-lease");
    let renewed = |node: &str| {
        runtime
            .block_on(leases.get(node))
            .ok()
            .and_then(|l| l.spec)
            .and_then(|s| s.renew_time)
            .map(|t| t.seconds)
    };
    std::thread::sleep(Duration::from_secs(2));
    let last_a = renewed("na");
    // Node B heartbeats on (twice, so that A had the time to as well) ...
    let mut last_b = renewed("nb");
    for _ in 0..2 {
        last_b = Some(wait_for(
            "node B's heartbeat",
            Duration::from_secs(30),
            || renewed("nb").filter(|t| Some(*t) > last_b),
        ));
    }
    // ... while the revoked node does not.
    assert_eq!(renewed("na"), last_a, "the revoked node still heartbeats");
    // Node B is untouched.
    runtime
        .block_on(Api::<Node>::new(as_node(&c, b), "").get("nb"))
        .unwrap();
    assert!(c.agent(a).log().contains("revoked"), "{}", c.agent(a).log());
}

/// A user's client certificate made offline with `openssl`, as docs/security/node-identity.md
/// shows an admin doing: the key and a certificate of the cluster CA for `/CN=NAME/O=dev`.
fn openssl_user_certificate(c: &Cluster, name: &str, file: &str) -> ClientIdentity {
    let pki = c.data_dir().join("pki");
    let dir = c.data_dir();
    let key = dir.join(format!("{file}.key"));
    let csr = dir.join(format!("{file}.csr"));
    let crt = dir.join(format!("{file}.crt"));
    let ext = dir.join(format!("{file}.ext"));
    std::fs::write(&ext, "extendedKeyUsage=clientAuth\n").unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    run(&[
        &os("req"),
        &os("-new"),
        &os("-newkey"),
        &os("ec"),
        &os("-pkeyopt"),
        &os("ec_paramgen_curve:P-256"),
        &os("-nodes"),
        &os("-keyout"),
        key.as_os_str(),
        &os("-subj"),
        &os(&format!("/CN={name}/O=dev")),
        &os("-out"),
        csr.as_os_str(),
    ]);
    run(&[
        &os("x509"),
        &os("-req"),
        &os("-in"),
        csr.as_os_str(),
        &os("-CA"),
        pki.join("ca.crt").as_os_str(),
        &os("-CAkey"),
        pki.join("ca.key").as_os_str(),
        &os("-days"),
        &os("30"),
        &os("-extfile"),
        ext.as_os_str(),
        &os("-out"),
        crt.as_os_str(),
    ]);
    ClientIdentity {
        certificate_pem: std::fs::read_to_string(&crt).unwrap(),
        key_pem: std::fs::read_to_string(&key).unwrap(),
    }
}

/// `skiff user revoke NAME`: every certificate of the user signed up to then is refused at once,
/// over gRPC (an open watch ends, new calls on old and new connections) and REST (curl with the
/// certificate); another user goes on; a certificate signed afterwards is good. The name has an
/// `@` (spelled `_40` in the list's ConfigMap key).
#[test]
fn a_revoked_user_certificate_is_refused_at_once() {
    use tokio_stream::StreamExt;
    let runtime = rt();
    let _enter = runtime.enter();
    let c = Cluster::start();
    c.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: dev-views}\nsubjects:\n- {kind: Group, name: dev, apiGroup: rbac.authorization.k8s.io}\nroleRef: {kind: ClusterRole, name: view, apiGroup: rbac.authorization.k8s.io}\n",
    );
    let jane = openssl_user_certificate(&c, "jane@corp.example", "jane");
    let bob = openssl_user_certificate(&c, "bob", "bob");
    let config = ClientConfig {
        token: String::new(),
        ..c.config()
    };
    let pods_as = |who: &ClientIdentity| -> Api<Pod> {
        Api::new(config.connect_renewable(who).unwrap().0, "default")
    };
    let jane_pods = pods_as(&jane);
    runtime
        .block_on(jane_pods.list(ListParams::default()))
        .unwrap();
    let mut watch = runtime
        .block_on(jane_pods.watch(ListParams::default(), ""))
        .unwrap();
    // REST, as kubectl or curl with the certificate: 200 before.
    let curl = |file: &str| {
        let dir = c.data_dir();
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "-w", "\ncode=%{http_code}\n"])
            .arg("--cacert")
            .arg(dir.join("pki").join("ca.crt"))
            .arg("--cert")
            .arg(dir.join(format!("{file}.crt")))
            .arg("--key")
            .arg(dir.join(format!("{file}.key")))
            .arg(format!("https://{}/api/v1/namespaces/default/pods", c.addr))
            .output()
            .unwrap();
        text(&out)
    };
    let before = curl("jane");
    assert!(before.contains("code=200"), "{before}");

    let out = c.skiff(&["user", "revoke", ""]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = c.skiff(&["user", "revoke", "jane@corp.example"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).starts_with(
            "user \"jane@corp.example\" revoked: their client certificates signed up to "
        ),
        "{}",
        text(&out)
    );
    let list: Api<ConfigMap> = c.api("kube-system");
    let list = runtime
        .block_on(list.get("skiff-revoked-user-certificates"))
        .unwrap();
    assert!(list.data.contains_key("jane_40corp.example"), "{list:?}");

    let ended = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match watch.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(status)) => break status,
                    None => panic!("the watch ended without a refusal"),
                }
            }
        })
        .await
        .expect("the revoked user's watch was not ended")
    });
    assert_eq!(ended.code(), tonic::Code::Unauthenticated, "{ended}");
    assert_eq!(
        ended.message(),
        "the certificate of user \"jane@corp.example\" has been revoked"
    );
    for (what, pods) in [
        ("the old connection", jane_pods.clone()),
        ("a new connection", pods_as(&jane)),
    ] {
        let refused = runtime
            .block_on(pods.list(ListParams::default()))
            .unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::Unauthenticated,
            "{what}: {refused}"
        );
        assert!(
            refused
                .message()
                .contains("the certificate of user \"jane@corp.example\" has been revoked"),
            "{what}: {refused}"
        );
    }
    let after = curl("jane");
    // REST answers as Kubernetes does, without the reason: 401 Unauthorized.
    assert!(after.contains("code=401"), "{after}");
    assert!(after.contains("\"reason\":\"Unauthorized\""), "{after}");
    // Bob goes on.
    runtime
        .block_on(pods_as(&bob).list(ListParams::default()))
        .unwrap();
    assert!(curl("bob").contains("code=200"));
    // A certificate the admin signs after the revocation is good (notBefore is later).
    std::thread::sleep(Duration::from_millis(1_100));
    let renewed = openssl_user_certificate(&c, "jane@corp.example", "jane-2");
    runtime
        .block_on(pods_as(&renewed).list(ListParams::default()))
        .unwrap();
    assert!(curl("jane-2").contains("code=200"));
}
