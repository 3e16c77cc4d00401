//! OCI bundles for the linux executor's tests: a rootfs with Debian's static busybox and every
//! applet linked to it, and `config.json` from skiff's default spec (`skiff oci spec`), edited
//! per test. The same bundle runs under `skiff oci` and runc for differential tests.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::images::BUSYBOX_PATH;
use crate::skiff_bin;

/// A bundle directory and its spec.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Value,
}

impl Bundle {
    /// `DIR/rootfs` with busybox, and the default spec running `args`.
    pub fn busybox(dir: &Path, args: &[&str]) -> Self {
        let rootfs = dir.join("rootfs");
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("rootfs dir");
        }
        assert!(
            Path::new(BUSYBOX_PATH).exists(),
            "{BUSYBOX_PATH} is missing: install busybox-static (scripts/test does)"
        );
        std::fs::copy(BUSYBOX_PATH, rootfs.join("bin/busybox")).expect("copy busybox");
        let list = Command::new(BUSYBOX_PATH)
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let link = rootfs.join("bin").join(applet);
            if applet != "busybox" && !link.exists() {
                std::os::unix::fs::symlink("busybox", &link).expect("applet link");
            }
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nuser:x:1000:\n").expect("group");
        let out = Command::new(skiff_bin())
            .args(["oci", "spec", "--bundle"])
            .arg(dir)
            .output()
            .expect("skiff oci spec");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(dir.join("config.json")).expect("config.json");
        let mut spec: Value = serde_json::from_str(&text).expect("spec json");
        spec["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
        let b = Bundle {
            dir: dir.to_path_buf(),
            spec,
        };
        b.save();
        b
    }

    /// Writes the (edited) spec back.
    pub fn save(&self) {
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.spec).expect("spec"),
        )
        .expect("write config.json");
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

/// `skiff oci --root ROOT ARGS...` run in the bundle's directory. `create` gets no pipes: the
/// container inherits its stdio and outlives the command (as with runc), so waiting for the end
/// of piped output would wait for the container; its stderr goes through a file instead.
pub fn skiff_oci(root: &Path, bundle: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(skiff_bin());
    cmd.arg("oci")
        .arg("--root")
        .arg(root)
        .args(args)
        .current_dir(bundle);
    if args.first() != Some(&"create") {
        return cmd.output().expect("skiff oci");
    }
    let err = tempfile::tempfile().expect("stderr file");
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err.try_clone().expect("dup"))
        .status()
        .expect("skiff oci create");
    let mut stderr = Vec::new();
    let mut err = err;
    err.seek(SeekFrom::Start(0)).expect("seek");
    err.read_to_end(&mut stderr).expect("read stderr");
    Output {
        status,
        stdout: Vec::new(),
        stderr,
    }
}

/// `runc --root ROOT ARGS...` run in the bundle's directory.
pub fn runc(root: &Path, bundle: &Path, args: &[&str]) -> Output {
    Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(args)
        .current_dir(bundle)
        .output()
        .expect("runc (install the runc package)")
}
