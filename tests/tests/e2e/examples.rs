//! Every example of `examples/` exercised as a user would run it, end to end:
//!
//! - `function-python` (componentize-py) and `function-js` (componentize-js), built by their own
//!   `build.sh` with the third-party toolchains of the test set-up, applied from their
//!   manifests: the Python function's Deployment and NodePort Service answer on the NodePort of
//!   either node, the JavaScript one's Deployment, Service and Ingress (`web.yaml`) through the
//!   Ingress; each is also reached the other way (an extra Ingress rule, an extra NodePort), so
//!   both third-party components are served through NodePort and Ingress; the JavaScript one
//!   is also published with `skiff push` to a registry and served from there;
//! - `mixed-pod`: its busybox sidecar reaches the Wasm function on the pod's localhost;
//! - `skiff up --demo` (`hello-http`): the `curl` command it prints answers from the Wasm HTTP
//!   function. Its cluster lives in a network namespace of the test's own, and every request
//!   goes to addresses of this machine: the node namespaces' and their loopback.
//!
//! A manifest's `file:examples/...` image is replaced by the absolute path of the component the
//! test built (the agent resolves relative paths from its own working directory), and the
//! mixed pod's busybox by the one the test pushed to its registry.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_tests::guests::workspace_root;
use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::registry::Registry;
use skiff_tests::third_party::{Function, component};
use skiff_tests::{Cluster, ClusterOptions, skiff_bin, stdout, text, wait_for};

/// How long a function's first pod may take to be Ready: the node compiles the component
/// (the Python one is 18 MB) before it serves, on a debug build and a busy 2-core machine.
const FIRST_READY: Duration = Duration::from_secs(300);

/// `curl -s URL` with extra `args`, from node namespace `ns` or the host's: (status, body).
fn curl(ns: Option<&str>, args: &[&str], url: &str) -> (u16, String) {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).args(["--", "curl"]);
            c
        }
        None => Command::new("curl"),
    };
    let out = cmd
        .args(["-s", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// `examples/NAME/FILE` with its `file:examples/...` image pointing at `built`.
fn example(name: &str, file: &str, image: &str, built: &std::path::Path) -> String {
    let path = workspace_root().join("examples").join(name).join(file);
    let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(yaml.contains(image), "{} names {image}", path.display());
    yaml.replace(image, &format!("file:{}", built.display()))
}

const PYTHON_IMAGE: &str = "file:examples/function-python/hello.wasm";
const JS_IMAGE: &str = "file:examples/function-js/hello.wasm";

#[test]
fn function_examples_answer_through_nodeport_and_ingress() {
    let python = component(Function::Python);
    let js = component(Function::JavaScript);
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 2);
    // A registry the nodes reach, for the JavaScript function as `skiff push` publishes it.
    let registry = Registry::start_on(net.host_address().parse().expect("ip"));
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        agent_env: vec![("SKIFF_INSECURE_REGISTRIES".into(), registry.host())],
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    c.add_agent_at("node-a", net.address(0), Some(net.namespace(0)), &[]);
    c.add_agent_at("node-b", net.address(1), Some(net.namespace(1)), &[]);
    let pushed = registry.reference("hello-js:v1");
    let out = Command::new(skiff_bin())
        .args(["push", &js.display().to_string(), &pushed])
        .env("SKIFF_INSECURE_REGISTRIES", registry.host())
        .output()
        .expect("skiff push");
    assert!(out.status.success(), "{}", text(&out));

    c.apply(&example(
        "function-python",
        "function.yaml",
        PYTHON_IMAGE,
        &python,
    ));
    c.apply(&example("function-js", "web.yaml", JS_IMAGE, &js));
    // The other way round for each: the Python function behind an Ingress rule, the JavaScript
    // one behind a NodePort.
    // The pushed artifact, served from the registry on a NodePort of its own.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: pushed, labels: {{app: pushed}}}}\nspec:\n  runtimeClassName: wasm\n  containers:\n  - {{name: web, image: \"{pushed}\", ports: [{{containerPort: 8080}}]}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: pushed}}\nspec:\n  type: NodePort\n  selector: {{app: pushed}}\n  ports: [{{port: 80, targetPort: 8080, nodePort: 30082}}]\n"
    ));
    c.apply(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: python}\nspec:\n  rules:\n  - host: python.test\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: hello-python, port: {number: 80}}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web-nodeport}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080, nodePort: 30081}]\n",
    );

    let started = Instant::now();
    let answers = |url: &str, host: Option<&str>, function: Function, path: &str| {
        let header = host.map(|h| format!("Host: {h}"));
        let args: Vec<&str> = header.iter().flat_map(|h| ["-H", h.as_str()]).collect();
        let want = format!("{}GET {path}\n", function.greeting());
        wait_for(
            &format!("{url} (Host {host:?}) to answer {want:?}"),
            FIRST_READY,
            || (curl(None, &args, url) == (200, want.clone())).then_some(()),
        );
    };
    for i in 0..2 {
        let node = net.address(i);
        answers(
            &format!("http://{node}:30080/nodeport?node={i}"),
            None,
            Function::Python,
            &format!("/nodeport?node={i}"),
        );
        answers(
            &format!("http://{node}:30081/nodeport"),
            None,
            Function::JavaScript,
            "/nodeport",
        );
        answers(
            &format!("http://{node}/ingress/{i}"),
            Some("hello.local"),
            Function::JavaScript,
            &format!("/ingress/{i}"),
        );
        answers(
            &format!("http://{node}/ingress/{i}"),
            Some("python.test"),
            Function::Python,
            &format!("/ingress/{i}"),
        );
        answers(
            &format!("http://{node}:30082/pushed"),
            None,
            Function::JavaScript,
            "/pushed",
        );
    }
    eprintln!(
        "both third-party functions answered on every path after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Every replica of the web Deployment becomes Ready: two pods.
    wait_for("web's 2 replicas Ready", FIRST_READY, || {
        let deploy = c.get_json("deployment", "web")?;
        (deploy["status"]["readyReplicas"] == 2).then_some(())
    });
    // A POST reaches the function with its method.
    let (code, body) = curl(
        None,
        &["-H", "Host: hello.local", "--data-binary", "x"],
        &format!("http://{}/posted", net.address(0)),
    );
    assert_eq!(
        (code, body.as_str()),
        (200, "hello from javascript: POST /posted\n")
    );
}

#[test]
fn the_mixed_pod_example_reaches_its_function_on_localhost() {
    let python = component(Function::Python);
    let registry = Registry::start();
    let busybox = registry.push_busybox();
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let yaml = example("mixed-pod", "pod.yaml", PYTHON_IMAGE, &python)
        .replace("127.0.0.1:5000/busybox:v1", &busybox);
    c.apply(&yaml);
    let logs = wait_for(
        "the sidecar to log the function's answer",
        FIRST_READY,
        || {
            let out = c.skiff(&["logs", "mixed", "-c", "poller"]);
            let said = stdout(&out);
            said.contains("hello from python: GET /from-the-sidecar\n")
                .then_some(said)
        },
    );
    assert!(
        logs.lines()
            .all(|l| l == "hello from python: GET /from-the-sidecar"),
        "{logs}"
    );
    let p = c.get_json("pod", "mixed").expect("the pod");
    assert_eq!(p["status"]["phase"], "Running", "{p:#}");
}

/// `skiff up` in a namespace, ended (Ctrl-C, then kill) when dropped.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn skiff_up_demo_prints_a_curl_command_that_answers() {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let ns = net.namespace(0).to_string();
    let log = std::fs::File::create(tmp.path().join("up.log")).expect("log");
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .arg(skiff_bin())
        .arg("up")
        .arg("--demo")
        .arg("--data-dir")
        .arg(tmp.path().join("up"))
        .args(["--listen", &format!("{}:0", net.address(0))])
        .args(["--cluster-cidr", &slot.cluster_cidr()])
        .args(["--service-cidr", &slot.service_cidr()])
        .current_dir(workspace_root())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("skiff up --demo");
    let out = child.stdout.take().expect("stdout");
    let up = Up(child);
    let up_log = || std::fs::read_to_string(tmp.path().join("up.log")).unwrap_or_default();
    // Its greeting ends with what to try; the curl line is the demo's.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut printed = String::new();
    let curl_line = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) => {
                printed.push_str(&line);
                printed.push('\n');
                if let Some(cmd) = line.trim().strip_prefix("curl ") {
                    break cmd.to_string();
                }
            }
            Err(_) => panic!("no curl command printed:\n{printed}\n--- log\n{}", up_log()),
        }
    };
    assert!(
        printed.contains("deployment.apps/hello-http") || printed.contains("hello-http"),
        "{printed}"
    );
    // The node address of `skiff up` is its namespace's loopback: curl from inside it.
    let url = curl_line.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1"), "{url}");
    let started = Instant::now();
    let body = wait_for("the demo's curl command to answer", FIRST_READY, || {
        let (code, body) = curl(Some(&ns), &[], &url);
        (code == 200).then_some(body)
    });
    eprintln!(
        "the demo answered {:.1} s after its curl command was printed",
        started.elapsed().as_secs_f64()
    );
    let path = url
        .trim_start_matches("http://")
        .split_once('/')
        .map_or("/", |(_, p)| p);
    assert_eq!(
        body,
        format!("Hello from a skiff Wasm function: GET /{path}\n"),
        "{}",
        up_log()
    );
    // Both replicas serve.
    let config = tmp.path().join("up/config.yaml");
    let deploy = Command::new(skiff_bin())
        .arg("--config")
        .arg(&config)
        .args([
            "get",
            "deployment",
            "hello-http",
            "-n",
            "demo",
            "-o",
            "json",
        ])
        .output()
        .expect("skiff get");
    let deploy: serde_json::Value =
        serde_json::from_slice(&deploy.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&deploy)));
    assert_eq!(deploy["spec"]["replicas"], 2, "{deploy:#}");
    drop(up);
}
