//! Cluster DNS, the kubelet's files and Service env vars, end to end on a cluster whose agents
//! each run in a network namespace the test made, with `--cluster-domain skiff.internal` and an
//! upstream resolver the test starts on its own bridge address (named in the agents'
//! `--resolv-conf`): no query leaves the machine, none reaches the host's resolvers.
//!
//! An OCI busybox pod on one node resolves a Service by its full name and by its short name
//! (the search path of its `/etc/resolv.conf`; the short name carries HTTP through the node
//! proxy to the Service's pod on the other node), a headless Service to the address of its pod on
//! the other node (and that pod by `hostname.subdomain`), a name outside the cluster through the
//! test's upstream; it sees the Services' env vars, and its `/etc/hosts`, `/etc/hostname` and
//! `hostname` are the kubelet's (`localhost` and its own name resolve, `hostAliases` are
//! there); `dnsPolicy: None` takes only `dnsConfig` (and is refused without it, naming the
//! field), `enableServiceLinks: false` leaves the env vars out. A Wasm pod granted sockets
//! resolves the same names through `wasi:sockets` name
//! lookups, with the pod's resolver settings. A bad `--cluster-domain` keeps the server from
//! starting, naming the flag.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;
use skiff_tests::dns::Upstream;
use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::registry::{Compress, Registry};
use skiff_tests::{Cluster, ClusterOptions, skiff_bin, stderr, stdout, text, wait_for};

const DOMAIN: &str = "skiff.internal";
/// The name only the test's upstream knows, and its (never contacted) address.
const OUTSIDE: &str = "outside.example";
const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// busybox with an `/etc/nsswitch.conf` that reads `/etc/hosts` before DNS, as Debian's images
/// have (busybox-static is glibc's, whose default without the file asks DNS first).
fn busybox_with_nsswitch(registry: &Registry) -> String {
    let base = skiff_tests::images::busybox_rootfs().expect("busybox rootfs");
    let mut layer = tar::Builder::new(Vec::new());
    let file = b"hosts: files dns\n";
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(file.len() as u64);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    layer
        .append_data(&mut header, "etc/nsswitch.conf", &file[..])
        .expect("nsswitch layer");
    let layer = layer.into_inner().expect("nsswitch layer");
    let config = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/bin/sh"],
        "WorkingDir": "/",
    });
    registry
        .push_layer_tars_as("busybox-dns", "v1", &[base, layer], config, Compress::Gzip)
        .reference
}

/// `f`'s first answer within `timeout`.
fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn finished(c: &Cluster, name: &str) -> Value {
    wait_for(
        &format!("pod {name} to finish"),
        Duration::from_secs(90),
        || {
            c.get_json("pod", name)
                .filter(|p| matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        },
    )
}

fn logs(c: &Cluster, name: &str) -> String {
    let out = c.skiff(&["logs", name]);
    assert!(out.status.success(), "{}", text(&out));
    stdout(&out)
}

/// The part of `log` after the line `== SECTION` up to the next section.
fn section<'a>(log: &'a str, name: &str) -> &'a str {
    let marker = format!("== {name}\n");
    let start = log
        .find(&marker)
        .map(|i| i + marker.len())
        .unwrap_or_else(|| panic!("no section {name} in:\n{log}"));
    let rest = &log[start..];
    &rest[..rest.find("\n== ").map_or(rest.len(), |i| i + 1)]
}

/// The Services and the pods behind them, on node-b: `web` (ClusterIP, named port `http`, pod
/// `web-1`) and `db` (headless, pod `db-0` with `hostname: db-0, subdomain: db`).
fn services_and_backends(image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  selector: {{app: web}}\n  ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: db}}\nspec:\n  clusterIP: None\n  selector: {{app: db}}\n  ports:\n  - {{name: pg, port: 5432}}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: db-0\n  labels: {{app: db}}\nspec:\n  hostname: db-0\n  subdomain: db\n  terminationGracePeriodSeconds: 1\n  nodeSelector: {{kubernetes.io/hostname: node-b}}\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, 'while :; do busybox sleep 1; done']\n    ports: [{{containerPort: 5432}}]\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web-1\n  labels: {{app: web}}\nspec:\n  terminationGracePeriodSeconds: 1\n  nodeSelector: {{kubernetes.io/hostname: node-b}}\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {WEB:?}]\n    ports: [{{containerPort: 8080}}]\n"
    )
}

/// The `web` pod: answers HTTP on 8080, one connection at a time.
const WEB: &str =
    r"while :; do printf 'HTTP/1.0 200 OK\r\n\r\nfrom-web\n' | nc -l -p 8080 >/dev/null; done";

/// What the client pod prints, section by section.
const CLIENT: &str = r#"
echo '== resolv'; cat /etc/resolv.conf
echo '== hosts'; cat /etc/hosts
echo '== hostname'; cat /etc/hostname; hostname; hostname -i
echo '== env'; env | sort | grep -E '^(WEB|DB)_'
echo '== fqdn'; nslookup web.default.svc.skiff.internal
echo '== short'; ping -c 1 -W 1 web 2>&1 | head -n 1
echo '== headless'; nslookup db.default.svc.skiff.internal
echo '== member'; nslookup db-0.db.default.svc.skiff.internal
echo '== outside'; nslookup outside.example
echo '== alias'; ping -c 1 -W 1 extra.alias 2>&1 | head -n 1
echo '== traffic'; for i in $(seq 1 40); do out=$(timeout 2 wget -q -O - http://web/ 2>/dev/null) && break; sleep 0.25; done; echo "$out"
echo '== localhost'; (echo from-localhost | nc -l -p 9999 &) ; sleep 0.5; nc localhost 9999
echo '== end'
"#;

fn client(image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  nodeSelector: {{kubernetes.io/hostname: node-a}}\n  hostAliases:\n  - ip: 192.0.2.77\n    hostnames: [extra.alias, other.alias]\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {CLIENT:?}]\n"
    )
}

#[test]
fn oci_pods_find_services_by_dns_and_env_and_get_the_kubelets_files() {
    let slot = NetSlot::take();
    // Dropped last (declared first): after the cluster has ended its agents.
    let net = NodeNetwork::new(&slot, 2);
    let host: std::net::IpAddr = net.host_address().parse().expect("ip");
    let upstream = Upstream::start(host, &[(&format!("{OUTSIDE}."), OUTSIDE_IP)]);
    let registry = Registry::start_on(host);
    let image = busybox_with_nsswitch(&registry);
    let options = ClusterOptions {
        listen: Some(format!("{host}:0")),
        agent_env: vec![("SKIFF_INSECURE_REGISTRIES".into(), registry.host())],
        cluster_domain: Some(DOMAIN.into()),
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    let resolv_conf = c.dir.path().join("node-resolv.conf");
    std::fs::write(
        &resolv_conf,
        format!("nameserver {host}\nsearch corp.test\noptions timeout:1\n"),
    )
    .expect("resolv.conf");
    let flag = ["--resolv-conf", resolv_conf.to_str().expect("utf-8")];
    c.add_agent_at("node-a", net.address(0), Some(net.namespace(0)), &flag);
    c.add_agent_at("node-b", net.address(1), Some(net.namespace(1)), &flag);

    c.apply(&services_and_backends(&image));
    let web = c.get_json("service", "web").expect("service web");
    let web_ip = web["spec"]["clusterIP"]
        .as_str()
        .expect("a cluster IP")
        .to_string();
    let db = poll(Duration::from_secs(60), || {
        c.get_json("endpoints", "db")
            .filter(|e| e["subsets"][0]["addresses"][0]["hostname"] == "db-0")
    })
    .unwrap_or_else(|| {
        panic!(
            "db-0 is not in the endpoints of db: {:#}\n{:#}\nnode-b's agent:\n{}",
            c.get_json("endpoints", "db").unwrap_or_default(),
            c.get_json("pod", "db-0").unwrap_or_default(),
            c.agent(1).log()
        )
    });
    poll(Duration::from_secs(60), || {
        c.get_json("endpoints", "web")
            .filter(|e| e["subsets"][0]["addresses"][0]["ip"].is_string())
    })
    .unwrap_or_else(|| panic!("web-1 is not in the endpoints of web: {}", c.agent(1).log()));
    let db_ip = db["subsets"][0]["addresses"][0]["ip"]
        .as_str()
        .expect("an address")
        .to_string();

    c.apply(&client(&image));
    let pod = finished(&c, "client");
    let log = logs(&c, "client");
    assert_eq!(pod["status"]["phase"], "Succeeded", "{pod:#}\n{log}");
    let pod_ip = pod["status"]["podIP"].as_str().expect("podIP").to_string();
    let gateway = {
        let block: skiff_api::cidr::Ipv4Cidr = c
            .get_json("node", "node-a")
            .and_then(|n| n["spec"]["podCIDR"].as_str().and_then(|b| b.parse().ok()))
            .expect("node-a's podCIDR");
        Ipv4Addr::from(u32::from(block.network()) + 1)
    };

    // The kubelet's resolv.conf: the node's DNS server (its bridge), the Kubernetes search
    // path before the node's own, ndots:5.
    assert_eq!(
        section(&log, "resolv"),
        format!(
            "search default.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN} corp.test\nnameserver {gateway}\noptions ndots:5\n"
        ),
        "{log}"
    );
    let hosts = section(&log, "hosts");
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"),
        "{hosts}"
    );
    assert!(hosts.contains(&format!("\n{pod_ip}\tclient\n")), "{hosts}");
    assert!(
        hosts.ends_with("# Entries added by HostAliases.\n192.0.2.77\textra.alias\tother.alias\n"),
        "{hosts}"
    );
    let names: Vec<&str> = section(&log, "hostname").lines().map(str::trim).collect();
    assert_eq!(
        names,
        ["client", "client", pod_ip.as_str()],
        "/etc/hostname, the UTS name, and the name resolved from /etc/hosts: {log}"
    );

    // Service env vars, as kubelet's: the ClusterIP Service's, none for the headless one.
    let env = section(&log, "env");
    for want in [
        format!("WEB_SERVICE_HOST={web_ip}\n"),
        "WEB_SERVICE_PORT=80\n".to_string(),
        "WEB_SERVICE_PORT_HTTP=80\n".to_string(),
        format!("WEB_PORT=tcp://{web_ip}:80\n"),
        format!("WEB_PORT_80_TCP_ADDR={web_ip}\n"),
        "WEB_PORT_80_TCP_PROTO=tcp\n".to_string(),
    ] {
        assert!(env.contains(&want), "{want} in {env}");
    }
    assert!(
        !env.contains("DB_"),
        "a headless Service has no env vars: {env}"
    );

    // Names: the full name, the short one through the search path, the headless Service and
    // its member, and a name only the upstream knows.
    let fqdn = section(&log, "fqdn");
    assert!(fqdn.contains(&format!("Address: {web_ip}")), "{log}");
    let short = section(&log, "short");
    assert!(short.starts_with(&format!("PING web ({web_ip})")), "{log}");
    let headless = section(&log, "headless");
    assert!(headless.contains(&format!("Address: {db_ip}")), "{log}");
    let member = section(&log, "member");
    assert!(member.contains(&format!("Address: {db_ip}")), "{log}");
    let outside = section(&log, "outside");
    assert!(outside.contains(&format!("Address: {OUTSIDE_IP}")), "{log}");
    let alias = section(&log, "alias");
    assert!(
        alias.starts_with("PING extra.alias (192.0.2.77)"),
        "a hostAlias resolves: {log}"
    );
    assert_eq!(section(&log, "localhost"), "from-localhost\n", "{log}");
    assert_eq!(
        section(&log, "traffic"),
        "from-web\n",
        "the short name carries traffic through the node proxy: {log}"
    );

    // dnsPolicy None takes only dnsConfig; enableServiceLinks false leaves the Services' vars out.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: own-dns\nspec:\n  restartPolicy: Never\n  nodeSelector: {{kubernetes.io/hostname: node-a}}\n  enableServiceLinks: false\n  dnsPolicy: None\n  dnsConfig:\n    nameservers: [192.0.2.53]\n    searches: [a.example]\n    options: [{{name: ndots, value: \"2\"}}, {{name: edns0}}]\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, 'cat /etc/resolv.conf; env | grep -c ^WEB_ || true']\n"
    ));
    let own = finished(&c, "own-dns");
    let said = logs(&c, "own-dns");
    assert_eq!(own["status"]["phase"], "Succeeded", "{own:#}\n{said}");
    assert_eq!(
        said,
        "search a.example\nnameserver 192.0.2.53\noptions ndots:2 edns0\n0\n"
    );
    // ... and is refused without dnsConfig, naming the field.
    let out = c.skiff_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: no-dns}}\nspec:\n  dnsPolicy: None\n  containers:\n  - {{name: main, image: {image}}}\n"
        ),
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("spec.dnsConfig"), "{}", text(&out));

    // A Wasm pod granted sockets resolves the same names through wasi:sockets, with the pod's
    // resolver settings (short names through the search path), from its own namespace.
    let lookup = skiff_tests::guests::socket_component("net");
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: wasm-client\n  annotations: {{skiff.dev/allow-outbound: \"true\"}}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  nodeSelector: {{kubernetes.io/hostname: node-a}}\n  containers:\n  - name: main\n    image: file:{}\n    command: [net, lookup, web, web.default.svc.{DOMAIN}, db-0.db, {OUTSIDE}]\n",
        lookup.display()
    ));
    let wasm = finished(&c, "wasm-client");
    let said = logs(&c, "wasm-client");
    assert_eq!(wasm["status"]["phase"], "Succeeded", "{wasm:#}\n{said}");
    assert_eq!(
        said,
        format!(
            "web {web_ip}\nweb.default.svc.{DOMAIN} {web_ip}\ndb-0.db {db_ip}\n{OUTSIDE} {OUTSIDE_IP}\n"
        )
    );

    // ... and reaches a Service by its short name: resolved from the pod's namespace, carried to
    // the Service's pod on the other node by the node proxy.
    let net = skiff_tests::guests::socket_component("net");
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: wasm-fetch\n  annotations: {{skiff.dev/allow-outbound: \"true\"}}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  nodeSelector: {{kubernetes.io/hostname: node-a}}\n  containers:\n  - name: main\n    image: file:{}\n    command: [net, fetch, web, \"80\", \"20\"]\n",
        net.display()
    ));
    let fetch = finished(&c, "wasm-fetch");
    let said = logs(&c, "wasm-fetch");
    assert_eq!(fetch["status"]["phase"], "Succeeded", "{fetch:#}\n{said}");
    assert!(said.contains("from-web"), "{said}");

    // The upstream was asked the outside name, and never a cluster name.
    let asked = upstream.asked();
    assert!(asked.contains(&format!("{OUTSIDE}.")), "{asked:?}");
    assert!(
        !asked.iter().any(|n| n.ends_with(&format!("{DOMAIN}."))),
        "cluster names stay on the node: {asked:?}"
    );
}

#[test]
fn a_bad_cluster_domain_keeps_the_server_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(skiff_bin())
        .args(["server", "--data-dir"])
        .arg(dir.path())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--cluster-domain",
            "Not_A.Domain",
        ])
        .output()
        .expect("run skiff server");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--cluster-domain") && err.contains("Not_A.Domain"),
        "{err}"
    );
}
