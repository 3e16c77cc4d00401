//! Manifests as people write them (issue 24): pod semantics Kubernetes users rely on, on three
//! agents that each run in a network namespace the test made (traffic only goes to addresses
//! inside those namespaces and the test's bridge).
//!
//! - A Deployment with quantities as YAML numbers (`cpu: 0.05`, `memory: 33554432`) and required
//!   pod anti-affinity on `kubernetes.io/hostname` puts its 3 replicas on 3 nodes; a 4th waits
//!   with Kubernetes' FailedScheduling words. `topologySpreadConstraints` over a node label
//!   (`rack`: one node in r1, two in r2) put 3 of 6 replicas on the r1 node, where the default
//!   spreading alone puts 2.
//! - Lifecycle hooks in an OCI pod: postStart runs, preStop runs before SIGTERM and delays the
//!   end of the pod; a failing postStart kills the container (FailedPostStartHook).
//! - `fsGroup` and `supplementalGroups`: the process has the groups, the volumes are the
//!   fsGroup's (setgid directories, new files inherit it).
//! - A `type: LoadBalancer` Service gets every node's address in `status.loadBalancer.ingress`
//!   and answers its own port on each of them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, ClusterOptions, stdout, text, wait_for};

struct Nodes {
    // Dropped in this order: the cluster (its agents) before the namespaces they live in.
    c: Cluster,
    net: NodeNetwork,
    _registry: Registry,
    image: String,
}

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
const RACKS: [&str; 3] = ["r1", "r2", "r2"];

/// Three nodes labelled `rack`, each agent in its own namespace, a registry with busybox.
fn three_nodes() -> Nodes {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 3);
    let registry = Registry::start_on(net.host_address().parse().expect("ip"));
    let image = registry.push_busybox();
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        agent_env: vec![("SKIFF_INSECURE_REGISTRIES".into(), registry.host())],
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    for (i, name) in NODES.iter().enumerate() {
        let labels = format!("rack={}", RACKS[i]);
        c.add_agent_at(
            name,
            net.address(i),
            Some(net.namespace(i)),
            &["--labels", &labels],
        );
    }
    // Every node routes the others' blocks before pods talk across them.
    for (i, node) in NODES.iter().enumerate() {
        wait_for(
            &format!("{node} routes the two other blocks"),
            Duration::from_secs(30),
            || {
                let routes = stdout(
                    &Command::new("ip")
                        .args(["-n", net.namespace(i), "-o", "route", "show", "proto", "77"])
                        .output()
                        .expect("ip route"),
                );
                (routes.lines().count() == 2).then_some(())
            },
        );
    }
    Nodes {
        c,
        net,
        _registry: registry,
        image,
    }
}

fn pods(c: &Cluster, label: &str) -> Vec<Value> {
    let out = c.skiff(&["get", "pods", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let list: Value = serde_json::from_slice(&out.stdout).expect("pods as JSON");
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == label)
        .collect()
}

/// The nodes of the `label` pods once `count` of them are bound, sorted.
fn placed(c: &Cluster, label: &str, count: usize) -> Vec<String> {
    wait_for(
        &format!("{count} {label} pods bound"),
        Duration::from_secs(60),
        || {
            let nodes: Vec<String> = pods(c, label)
                .iter()
                .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
                .collect();
            (nodes.len() == count).then(|| {
                let mut nodes = nodes;
                nodes.sort();
                nodes
            })
        },
    )
}

fn deployment(name: &str, image: &str, replicas: u32, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
{extra_spec}      containers:
      - name: main
        image: {image}
        command: [sleep, \"3600\"]
        resources:
          requests: {{cpu: 0.05, memory: 33554432}}
          limits: {{cpu: 1, memory: 67108864}}
"
    )
}

#[test]
fn anti_affinity_and_spread_constraints_place_replicas_as_kubernetes_does() {
    // Bound whole: the namespaces and the registry must outlive the test's use of them.
    let nodes = three_nodes();
    let (c, image) = (&nodes.c, &nodes.image);
    let anti = "      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector:
              matchLabels: {app: apart}
            topologyKey: kubernetes.io/hostname
";
    c.apply(&deployment("apart", image, 3, anti));
    assert_eq!(placed(c, "apart", 3), NODES, "one replica per node");
    let d = c.get_json("deployment", "apart").expect("deployment");
    let requests = &d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"];
    assert_eq!(requests["cpu"], "0.05", "{requests}");
    assert_eq!(requests["memory"], "33554432", "{requests}");

    let out = c.skiff(&["scale", "deployment/apart", "--replicas", "4"]);
    assert!(out.status.success(), "{}", text(&out));
    let message = wait_for(
        "the 4th replica to be unschedulable",
        Duration::from_secs(60),
        || {
            pods(c, "apart").iter().find_map(|p| {
                p["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
                    .and_then(|c| c["message"].as_str().map(str::to_string))
            })
        },
    );
    assert_eq!(
        message,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    );

    // Spread over racks: r1 is node-a alone, r2 node-b and node-c. maxSkew 1 over 6 replicas
    // is 3 + 3, so node-a takes 3 (spreading by node alone would give it 2).
    let spread = "      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: rack
        whenUnsatisfiable: DoNotSchedule
        labelSelector:
          matchLabels: {app: racked}
";
    c.apply(&deployment("racked", image, 6, spread));
    let racked = placed(c, "racked", 6);
    let on = |n: &str| racked.iter().filter(|x| *x == n).count();
    assert_eq!(on("node-a"), 3, "{racked:?}");
    assert_eq!(on("node-b") + on("node-c"), 3, "{racked:?}");
}

fn pod_json(c: &Cluster, name: &str) -> Option<Value> {
    c.get_json("pod", name)
}

fn running(c: &Cluster, name: &str) -> Value {
    wait_for(
        &format!("pod {name} Running"),
        Duration::from_secs(90),
        || pod_json(c, name).filter(|p| p["status"]["phase"] == "Running"),
    )
}

fn events(c: &Cluster, name: &str) -> String {
    let out = c.skiff(&["get", "events", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let list: Value = serde_json::from_slice(&out.stdout).expect("events as JSON");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == name)
        .map(|e| {
            format!(
                "{}: {}\n",
                e["reason"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn hooks_and_groups_are_honoured_in_oci_pods() {
    // Bound whole: the namespaces and the registry must outlive the test's use of them.
    let nodes = three_nodes();
    let (c, image) = (&nodes.c, &nodes.image);
    let shared = tempfile::tempdir().expect("dir");
    let dir = shared.path().display().to_string();
    // The main process notes SIGTERM; the hooks note themselves. preStop takes 2 s.
    let hooks = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: hooks
spec:
  terminationGracePeriodSeconds: 30
  nodeSelector: {{kubernetes.io/hostname: node-a}}
  volumes:
  - name: data
    hostPath: {{path: {dir}, type: Directory}}
  containers:
  - name: main
    image: {image}
    command: [sh, -c, \"trap 'echo term >> /data/order; exit 0' TERM; while true; do sleep 0.1; done\"]
    volumeMounts:
    - {{name: data, mountPath: /data}}
    lifecycle:
      postStart:
        exec: {{command: [sh, -c, \"echo poststart >> /data/post\"]}}
      preStop:
        exec: {{command: [sh, -c, \"echo prestop >> /data/order; sleep 2\"]}}
"
    );
    c.apply(&hooks);
    running(c, "hooks");
    let post = shared.path().join("post");
    wait_for("postStart to run", Duration::from_secs(30), || {
        std::fs::read_to_string(&post)
            .ok()
            .filter(|s| s == "poststart\n")
    });
    let asked = Instant::now();
    let out = c.skiff(&["delete", "pod", "hooks"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("pod hooks to be gone", Duration::from_secs(60), || {
        pod_json(c, "hooks").is_none().then_some(())
    });
    let took = asked.elapsed();
    let order = std::fs::read_to_string(shared.path().join("order")).unwrap_or_default();
    assert_eq!(order, "prestop\nterm\n", "preStop runs before SIGTERM");
    assert!(
        took >= Duration::from_secs(2),
        "the pod ended {took:?} after its deletion, before its 2 s preStop hook was done"
    );

    // A failing postStart kills the container, which restarts.
    let failing = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: bad-hook
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {{kubernetes.io/hostname: node-a}}
  containers:
  - name: main
    image: {image}
    command: [sleep, \"3600\"]
    lifecycle:
      postStart:
        exec: {{command: [sh, -c, \"echo no >&2; exit 3\"]}}
"
    );
    c.apply(&failing);
    let told = wait_for("FailedPostStartHook", Duration::from_secs(60), || {
        Some(events(c, "bad-hook")).filter(|e| e.contains("FailedPostStartHook"))
    });
    assert!(
        told.contains("Exec lifecycle hook ([\"sh\", \"-c\", \"echo no >&2; exit 3\"]) for Container \"main\" in Pod \"bad-hook_default("),
        "{told}"
    );
    wait_for("the container restarted", Duration::from_secs(60), || {
        pod_json(c, "bad-hook").filter(|p| {
            p["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .is_some_and(|n| n >= 1)
        })
    });

    // fsGroup and supplementalGroups.
    let groups = format!(
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  key: value
---
apiVersion: v1
kind: Pod
metadata:
  name: groups
spec:
  restartPolicy: Never
  nodeSelector: {{kubernetes.io/hostname: node-b}}
  securityContext:
    runAsUser: 1000
    runAsGroup: 1000
    fsGroup: 2000
    supplementalGroups: [3000]
  volumes:
  - name: scratch
    emptyDir: {{}}
  - name: settings
    configMap: {{name: settings}}
  containers:
  - name: main
    image: {image}
    command: [sh, -c, \"id -G; stat -c '%g %a' /scratch; touch /scratch/f; stat -c '%g' /scratch/f; stat -L -c '%g' /settings/key\"]
    volumeMounts:
    - {{name: scratch, mountPath: /scratch}}
    - {{name: settings, mountPath: /settings}}
"
    );
    c.apply(&groups);
    let done = wait_for("pod groups to finish", Duration::from_secs(90), || {
        pod_json(c, "groups")
            .filter(|p| matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
    });
    let out = c.skiff(&["logs", "groups"]);
    let log = stdout(&out);
    assert_eq!(done["status"]["phase"], "Succeeded", "{done:#}\n{log}");
    assert_eq!(log, "1000 2000 3000\n2000 2777\n2000\n2000\n", "{log}");
}

/// `GET /` over HTTP/1.0 to `addr`; the body, or the error.
fn http_get(addr: &str) -> Result<String, String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(|e| e.to_string())?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .ok_or_else(|| format!("no HTTP response: {response:?}"))
}

#[test]
fn load_balancer_services_answer_on_every_nodes_address() {
    let nodes = three_nodes();
    let (c, net, image) = (&nodes.c, &nodes.net, &nodes.image);
    let web = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: lbweb
  labels: {{app: lbweb}}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {{kubernetes.io/hostname: node-b}}
  containers:
  - name: main
    image: {image}
    command: [sh, -c, \"mkdir -p /tmp/www && echo lbweb > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www\"]
    ports:
    - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: lbweb
spec:
  type: LoadBalancer
  selector: {{app: lbweb}}
  ports:
  - port: 8085
    targetPort: 8080
"
    );
    c.apply(&web);
    let mut want: Vec<String> = (0..3).map(|i| net.address(i).to_string()).collect();
    want.sort();
    let service = wait_for(
        "the Service's load balancer addresses",
        Duration::from_secs(60),
        || {
            let s = c.get_json("service", "lbweb")?;
            let mut ips: Vec<String> = s["status"]["loadBalancer"]["ingress"]
                .as_array()?
                .iter()
                .filter_map(|i| i["ip"].as_str().map(str::to_string))
                .collect();
            ips.sort();
            (ips == want).then_some(s)
        },
    );
    assert_eq!(service["spec"]["allocateLoadBalancerNodePorts"], true);
    assert!(
        service["spec"]["ports"][0]["nodePort"]
            .as_u64()
            .is_some_and(|p| (30000..=32767).contains(&p)),
        "{service:#}"
    );
    running(c, "lbweb");
    let out = c.skiff(&["get", "service", "lbweb"]);
    assert!(stdout(&out).contains(&want.join(",")), "{}", text(&out));
    for ip in &want {
        let addr = format!("{ip}:8085");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let last = match http_get(&addr) {
                Ok(body) if body == "lbweb" => break,
                Ok(body) => format!("answered {body:?}"),
                Err(e) => e,
            };
            assert!(Instant::now() < deadline, "GET {addr}: {last}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // From inside a node too (its own address and another's).
    let inside = Command::new("ip")
        .args(["netns", "exec", net.namespace(0)])
        .args(["sh", "-c"])
        .arg(format!(
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {} 8085",
            net.address(2)
        ))
        .output()
        .expect("ip netns exec");
    assert!(
        stdout(&inside).trim_end().ends_with("lbweb"),
        "{}",
        text(&inside)
    );
}
