//! Services get cluster IPs from `--service-cidr` and node ports from
//! `--service-node-port-range`, through the real CLI and server: requested values honoured,
//! taken ones refused naming the field (exit 1), out-of-range ones too (exit 2), values freed by
//! a delete usable again, nothing handed out twice across a server restart; bad ranges refuse to
//! start the server, naming the flag.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skiff_tests::{Cluster, skiff_bin, stderr, stdout, text};

fn service(name: &str, r#type: &str, extra_spec: &str, ports: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: {type}\n  selector: {{app: {name}}}\n{extra_spec}  ports:\n{ports}---\n",
        type = r#type
    )
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, bits) = cidr.split_once('/').unwrap();
    let (net, bits, ip): (Ipv4Addr, u32, Ipv4Addr) = (
        net.parse().unwrap(),
        bits.parse().unwrap(),
        ip.parse().unwrap(),
    );
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net)
}

/// `spec.clusterIP` and the node ports of a Service.
fn allocated(c: &Cluster, name: &str) -> (String, Vec<u64>) {
    let v = c
        .get_json("services", name)
        .unwrap_or_else(|| panic!("service {name}"));
    let spec = &v["spec"];
    assert_eq!(
        spec["clusterIPs"][0], spec["clusterIP"],
        "clusterIPs follows clusterIP: {v}"
    );
    let ports = spec["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["nodePort"].as_u64().unwrap_or(0))
        .collect();
    (spec["clusterIP"].as_str().unwrap().to_string(), ports)
}

#[test]
fn services_get_cluster_ips_and_node_ports_and_give_them_back() {
    let mut c = Cluster::start();
    let cidr = c.service_cidr();
    let manifests = [
        service("web", "ClusterIP", "", "  - {port: 80, targetPort: 8080}\n"),
        service(
            "api",
            "NodePort",
            "",
            "  - {name: http, port: 80, nodePort: 30080}\n  - {name: admin, port: 9000}\n",
        ),
        service(
            "db",
            "ClusterIP",
            "  clusterIP: None\n",
            "  - {port: 5432}\n",
        ),
    ]
    .concat();
    c.apply(&manifests);

    let (web_ip, _) = allocated(&c, "web");
    let (api_ip, api_ports) = allocated(&c, "api");
    let (db_ip, _) = allocated(&c, "db");
    for ip in [&web_ip, &api_ip] {
        assert!(in_cidr(ip, &cidr), "{ip} is outside --service-cidr {cidr}");
    }
    assert_ne!(web_ip, api_ip);
    assert_eq!(db_ip, "None", "headless");
    assert_eq!(api_ports[0], 30080, "the requested node port");
    assert!(
        (30000..=32767).contains(&api_ports[1]) && api_ports[1] != 30080,
        "{api_ports:?}"
    );

    // kubectl's columns.
    let out = c.skiff(&["get", "svc"]);
    let table = stdout(&out);
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("row {name}: {table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("api")[1..5],
        [
            "NodePort".to_string(),
            api_ip.clone(),
            "<none>".into(),
            format!("80:30080/TCP,9000:{}/TCP", api_ports[1])
        ],
        "{table}"
    );
    assert_eq!(row("db")[2], "None", "{table}");
    assert_eq!(row("web")[4], "80/TCP", "{table}");

    // Applying the same manifests again keeps every allocated value.
    let again = c.skiff_stdin(&["apply", "-f", "-"], &manifests);
    assert!(
        stdout(&again).lines().all(|l| l.ends_with(" unchanged")),
        "{}",
        text(&again)
    );
    assert_eq!(allocated(&c, "api"), (api_ip.clone(), api_ports.clone()));

    // Taken values: the cluster says no (exit 1), naming the field; nothing is written.
    let taken_port = service("other", "NodePort", "", "  - {port: 80, nodePort: 30080}\n");
    let out = c.skiff_stdin(&["apply", "-f", "-"], &taken_port);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains(
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{}",
        text(&out)
    );
    assert_eq!(
        stderr(&out).matches("already allocated").count(),
        1,
        "said once: {}",
        text(&out)
    );
    let taken_ip = service(
        "other",
        "ClusterIP",
        &format!("  clusterIP: {web_ip}\n"),
        "  - {port: 80}\n",
    );
    let out = c.skiff_stdin(&["apply", "-f", "-"], &taken_ip);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!(
            "spec.clusterIP: Invalid value: \"{web_ip}\": failed to allocate IP {web_ip}: provided IP is already allocated"
        )),
        "{}",
        text(&out)
    );
    // Outside the range: bad input (exit 2), naming the field and the range.
    let out = c.skiff_stdin(
        &["apply", "-f", "-"],
        &service("other", "NodePort", "", "  - {port: 80, nodePort: 8080}\n"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767"),
        "{}",
        text(&out)
    );
    assert!(c.get_json("services", "other").is_none(), "nothing written");

    // Deleting `api` frees its node port (and address) for the next Service.
    let out = c.skiff(&["delete", "svc", "api"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = c.skiff_stdin(&["apply", "-f", "-"], &taken_port);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(allocated(&c, "other").1, vec![30080]);

    // A restarted server sees every claim in the store: nothing is handed out twice.
    c.restart_server();
    c.apply(&service("late", "NodePort", "", "  - {port: 80}\n"));
    let (late_ip, late_ports) = allocated(&c, "late");
    let (other_ip, _) = allocated(&c, "other");
    assert!(in_cidr(&late_ip, &cidr));
    for ip in [&web_ip, &other_ip] {
        assert_ne!(&late_ip, ip);
    }
    assert_ne!(late_ports, vec![30080]);
}

/// `skiff server ARGS` must refuse to start: exit 2, its error naming `flag` and `reason`.
fn refused(args: &[&str], flag: &str, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(skiff_bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("skiff server {args:?} started: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains(flag) && err.contains(reason),
        "{args:?}: the error names {flag} and {reason:?}: {}",
        text(&out)
    );
}

#[test]
fn bad_service_ranges_keep_the_server_from_starting() {
    refused(
        &["--service-cidr", "10.112.0.0/31"],
        "--service-cidr",
        "too small",
    );
    refused(
        &["--service-cidr", "10.0.0.0/8"],
        "--service-cidr",
        "too large",
    );
    refused(
        &["--service-cidr", "ten/12"],
        "--service-cidr",
        "not a CIDR",
    );
    refused(
        &["--service-cidr", "127.0.0.0/16"],
        "--service-cidr",
        "loopback",
    );
    refused(
        &[
            "--cluster-cidr",
            "10.200.0.0/16",
            "--service-cidr",
            "10.200.128.0/20",
        ],
        "--service-cidr",
        "overlaps the cluster CIDR 10.200.0.0/16",
    );
    refused(
        &["--service-node-port-range", "32767-30000"],
        "--service-node-port-range",
        "not a port range",
    );

    // The host's own routes and resolver (outside the default cluster CIDR).
    let routes = Command::new("ip")
        .args(["-o", "-4", "route", "show", "table", "main"])
        .output()
        .unwrap();
    let routes: Vec<String> = String::from_utf8_lossy(&routes.stdout)
        .lines()
        .filter(|l| !l.contains(" dev skiff") && !l.contains(" proto 77"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|dst| dst.contains('/'))
        .collect();
    let usable = |cidr: &str| {
        cidr.split_once('/').is_some_and(|(net, bits)| {
            bits.parse::<u8>().is_ok_and(|b| (12..=30).contains(&b))
                && !net.starts_with("127.")
                && !net.starts_with("169.254.")
                && !in_cidr(net, "10.244.0.0/16")
        })
    };
    if let Some(route) = routes.iter().find(|r| usable(r)) {
        refused(&["--service-cidr", route], "--service-cidr", "route");
    }
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolver = resolv.lines().find_map(|l| {
        let ip: Ipv4Addr = l.strip_prefix("nameserver")?.trim().parse().ok()?;
        (!ip.is_loopback()).then_some(ip)
    });
    if let Some(ip) = resolver {
        let [a, b, c, _] = ip.octets();
        let block = format!("{a}.{b}.{c}.0/24");
        if usable(&block) {
            // A route that reaches the resolver is found first.
            let routed = routes.iter().any(|r| {
                let net = r.split('/').next().unwrap_or("");
                in_cidr(&ip.to_string(), r) || in_cidr(net, &block)
            });
            let reason = if routed { "route" } else { "resolver" };
            refused(&["--service-cidr", &block], "--service-cidr", reason);
        }
    }
}

#[test]
fn a_target_port_name_no_selected_pod_declares_is_named_in_a_warning() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let probe = skiff_tests::guests::guest("probe");
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: lone\n  labels: {{app: lone}}\nspec:\n  runtimeClassName: wasm\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: file:{}\n    command: [probe, sleep, \"0\"]\n    ports: [{{name: web, containerPort: 8080}}]\n---\n{}",
        probe.display(),
        service("lone", "ClusterIP", "", "  - {port: 80, targetPort: http}\n")
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    let warning = loop {
        let out = c.skiff(&["get", "events", "-o", "json"]);
        let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let found =
            events["items"].as_array().into_iter().flatten().find(|e| {
                e["reason"] == "PortNotDeclared" && e["involvedObject"]["name"] == "lone"
            });
        if let Some(e) = found {
            break e.clone();
        }
        assert!(Instant::now() < deadline, "no warning: {events:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(warning["type"], "Warning", "{warning:#}");
    let message = warning["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("spec.ports[0].targetPort:")
            && message.contains("\"http\"")
            && message.contains("(lone)"),
        "{message}"
    );
    // The Service still exists and has its address; the pod is just left out of its endpoints.
    let (ip, _) = allocated(&c, "lone");
    assert!(!ip.is_empty());
    let ep = c.get_json("endpoints", "lone").expect("endpoints");
    assert!(ep["subsets"].as_array().is_none_or(Vec::is_empty), "{ep:#}");
}
