//! The real `kubectl` against a test [`Cluster`], through the Kubernetes REST API with the
//! kubeconfig `skiff server` writes (`DIR/kubeconfig`) and no other configuration: `$KUBECTL`, else
//! /usr/bin/kubectl (scripts/test installs one); a test fails loudly without it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use crate::{Cluster, stdout, text};

/// The kubectl under test.
pub fn bin() -> PathBuf {
    let bin = std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/kubectl"));
    assert!(
        bin.exists(),
        "kubectl not found at {} (install kubectl 1.30+ or set $KUBECTL)",
        bin.display()
    );
    bin
}

/// `kubectl` against `c` (its HOME the cluster's dir, so no user cache or config is read).
pub fn kubectl(c: &Cluster) -> Command {
    let config = c.data_dir().join("kubeconfig");
    assert!(config.exists(), "{} was not written", config.display());
    let mut command = Command::new(bin());
    command
        .env("KUBECONFIG", config)
        .env("HOME", c.data_dir())
        .env_remove("KUBERNETES_MASTER");
    command
}

pub fn run(c: &Cluster, args: &[&str]) -> Output {
    kubectl(c).args(args).output().expect("run kubectl")
}

/// Runs kubectl and asserts it succeeded; its stdout.
pub fn ok(c: &Cluster, args: &[&str]) -> String {
    let out = run(c, args);
    assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    stdout(&out)
}

/// Runs kubectl with `input` on its stdin.
pub fn run_stdin(c: &Cluster, args: &[&str], input: &str) -> Output {
    let mut child = kubectl(c)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("kubectl output")
}

/// A child (a `kubectl get -w`, `logs -f`, ...) killed when the test ends first.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
