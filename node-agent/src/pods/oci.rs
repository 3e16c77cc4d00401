//! An OCI container's process, from its pod spec and its image config, as Kubernetes and
//! containerd's CRI plugin build it.
//!
//! - argv: `command` replaces the image's Entrypoint, `args` its Cmd; a `command` without `args`
//!   drops the image's Cmd.
//! - env: the image's `Env`, then the container's (a container variable replaces an image one of
//!   the same name, in place).
//! - cwd: `workingDir`, else the image's `WorkingDir`, else `/`.
//! - user: `securityContext.runAsUser/runAsGroup` (container, then pod), else the image's
//!   `User`: `uid` (group from the image's passwd entry, else 0), `uid:gid`, or names looked up
//!   in the image's `/etc/passwd` and `/etc/group`, resolved inside the layer (never a host file).
//! - capabilities: the runtime default set, plus `add`, minus `drop` (`ALL` drops every one).
//!
//! Must not: start anything or touch the file system beyond reading the image's passwd file.

use std::path::PathBuf;

use skiff_api::v1::{Container, Pod};
use skiff_runtime::image::ImageProcess;
use skiff_runtime::linux::default_spec::DEFAULT_CAPS;

/// The process part of a container spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    /// The pod's `supplementalGroups`, then its `fsGroup` (Kubernetes adds it to every
    /// container's groups so that the volumes it owns are writable).
    pub additional_gids: Vec<u32>,
    /// `None`: the default set.
    pub capabilities: Option<Vec<String>>,
    pub readonly_rootfs: bool,
}

/// The process of `container` of `pod` over an image with `image` config and `layers` (bottom
/// first). `env` is the container's resolved environment.
pub fn process(
    pod: &Pod,
    container: &Container,
    image: &ImageProcess,
    layers: &[PathBuf],
    env: Vec<(String, String)>,
) -> Result<Process, String> {
    let mut args = if container.command.is_empty() {
        image.entrypoint.clone()
    } else {
        container.command.clone()
    };
    if !container.args.is_empty() {
        args.extend(container.args.iter().cloned());
    } else if container.command.is_empty() {
        args.extend(image.cmd.iter().cloned());
    }
    if args.is_empty() {
        return Err(format!(
            "container {:?}: no command: the image has neither Entrypoint nor Cmd, and the container sets no command",
            container.name
        ));
    }
    let mut merged: Vec<String> = image.env.clone();
    for (name, value) in env {
        let entry = format!("{name}={value}");
        match merged
            .iter_mut()
            .find(|e| e.split_once('=').map(|(n, _)| n) == Some(name.as_str()))
        {
            Some(existing) => *existing = entry,
            None => merged.push(entry),
        }
    }
    let cwd = [container.working_dir.as_str(), image.working_dir.as_str()]
        .into_iter()
        .find(|d| !d.is_empty())
        .unwrap_or("/")
        .to_string();
    if !cwd.starts_with('/') {
        return Err(format!(
            "container {:?}: workingDir {cwd:?} must be an absolute path",
            container.name
        ));
    }
    let security = container.security_context.as_ref();
    let pod_security = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    if security.and_then(|s| s.privileged) == Some(true) {
        return Err(format!(
            "container {:?}: securityContext.privileged is not supported by this node",
            container.name
        ));
    }
    let run_as_user = security
        .and_then(|s| s.run_as_user)
        .or(pod_security.and_then(|s| s.run_as_user));
    let run_as_group = security
        .and_then(|s| s.run_as_group)
        .or(pod_security.and_then(|s| s.run_as_group));
    // The image's USER matters only where the pod spec does not say.
    let (uid, gid) = match (run_as_user, run_as_group) {
        (Some(u), Some(g)) => (u, g),
        (Some(u), None) => (u, 0),
        (None, g) => {
            let (image_uid, image_gid) = image_user(&image.user, layers)?;
            (image_uid, g.unwrap_or(image_gid))
        }
    };
    let non_root = security
        .and_then(|s| s.run_as_non_root)
        .or(pod_security.and_then(|s| s.run_as_non_root));
    if non_root == Some(true) && uid == 0 {
        return Err(format!(
            "container {:?}: runAsNonRoot is set but the container would run as root (uid 0)",
            container.name
        ));
    }
    let capabilities = security
        .and_then(|s| s.capabilities.as_ref())
        .map(|c| capabilities(&c.add, &c.drop));
    let mut additional_gids: Vec<u32> = pod_security
        .map(|s| s.supplemental_groups.clone())
        .unwrap_or_default();
    if let Some(fs_group) = pod_security.and_then(|s| s.fs_group) {
        additional_gids.push(fs_group);
    }
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(Process {
        args,
        env: merged,
        cwd,
        uid,
        gid,
        additional_gids,
        capabilities,
        readonly_rootfs: security.and_then(|s| s.read_only_root_filesystem) == Some(true),
    })
}

fn cap_name(c: &str) -> String {
    let upper = c.to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// The default set plus `add` minus `drop`.
fn capabilities(add: &[String], drop: &[String]) -> Vec<String> {
    let drop_all = drop.iter().any(|d| d.eq_ignore_ascii_case("ALL"));
    let mut caps: Vec<String> = if drop_all {
        Vec::new()
    } else {
        DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
    };
    let dropped: Vec<String> = drop.iter().map(|d| cap_name(d)).collect();
    caps.retain(|c| !dropped.contains(c));
    for a in add {
        let name = cap_name(a);
        if !caps.contains(&name) {
            caps.push(name);
        }
    }
    caps
}

/// The image's `User`: `uid`, `uid:gid`, or names looked up in the top-most layer's
/// `/etc/passwd` and `/etc/group`.
fn image_user(user: &str, layers: &[PathBuf]) -> Result<(u32, u32), String> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = layers.iter().rev().find_map(|l| read_in_layer(l, file))?;
        text.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.first() == Some(&name) && f.len() >= 3).then(|| {
                let id = f[2].parse().ok()?;
                let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
                Some((id, gid))
            })?
        })
    };
    let gid_of_uid = |uid: u32| -> Option<u32> {
        let text = layers
            .iter()
            .rev()
            .find_map(|l| read_in_layer(l, "etc/passwd"))?;
        text.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 4 && f[2].parse() == Ok(uid)).then(|| f[3].parse().ok())?
        })
    };
    let (uid, primary) = match u.parse::<u32>() {
        // containerd: a numeric user's group is its passwd entry's, else 0.
        Ok(uid) => (uid, gid_of_uid(uid).unwrap_or(0)),
        Err(_) => lookup("etc/passwd", u)
            .ok_or_else(|| format!("the image's user {u:?} is not in its /etc/passwd"))?,
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup("etc/group", g)
                .map(|(gid, _)| gid)
                .ok_or_else(|| format!("the image's group {g:?} is not in its /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

/// The most of an image's passwd or group file read.
const MAX_ACCOUNT_FILE: u64 = 1 << 20;

/// `file` (e.g. `etc/passwd`) of one layer, resolved as inside the container (symlinks stay
/// within the layer, never reaching the host) and read only if it is a regular file, at most
/// [`MAX_ACCOUNT_FILE`] bytes. Whiteouts below the top layer are not applied: a user deleted by
/// a later layer without a replacement file is still found.
fn read_in_layer(layer: &std::path::Path, file: &str) -> Option<String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use std::io::Read;
    let root = rustix::fs::open(
        layer,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let fd = rustix::fs::openat2(
        &root,
        file,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    let file = std::fs::File::from(fd);
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_ACCOUNT_FILE).read_to_string(&mut text).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{Capabilities, SecurityContext};

    fn image() -> ImageProcess {
        ImageProcess {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into()],
            env: vec!["PATH=/bin".into(), "MODE=image".into()],
            working_dir: "/app".into(),
            user: String::new(),
        }
    }

    fn container() -> Container {
        Container {
            name: "c".into(),
            ..Default::default()
        }
    }

    #[test]
    fn argv_follows_kubernetes() {
        let pod = Pod::default();
        let p = |c: &Container| process(&pod, c, &image(), &[], vec![]).unwrap().args;
        assert_eq!(p(&container()), ["/entry", "serve"]);
        let mut c = container();
        c.args = vec!["x".into()];
        assert_eq!(p(&c), ["/entry", "x"]);
        c.command = vec!["/bin/sh".into()];
        assert_eq!(p(&c), ["/bin/sh", "x"]);
        c.args.clear();
        assert_eq!(p(&c), ["/bin/sh"], "command alone drops the image's Cmd");
        let empty = ImageProcess::default();
        assert!(process(&pod, &container(), &empty, &[], vec![]).is_err());
    }

    #[test]
    fn env_cwd_and_user() {
        let pod = Pod::default();
        let got = process(
            &pod,
            &container(),
            &image(),
            &[],
            vec![("MODE".into(), "pod".into()), ("X".into(), "1".into())],
        )
        .unwrap();
        assert_eq!(got.env, ["PATH=/bin", "MODE=pod", "X=1"]);
        assert_eq!(got.cwd, "/app");
        assert_eq!((got.uid, got.gid), (0, 0));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "app:x:1001:1002::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "staff:x:50:\n").unwrap();
        let layers = [dir.path().to_path_buf()];
        assert_eq!(image_user("app", &layers), Ok((1001, 1002)));
        assert_eq!(image_user("app:staff", &layers), Ok((1001, 50)));
        assert_eq!(image_user("7:8", &layers), Ok((7, 8)));
        assert_eq!(
            image_user("1001", &layers),
            Ok((1001, 1002)),
            "its passwd group"
        );
        assert_eq!(image_user("7", &layers), Ok((7, 0)), "no entry: group 0");
        // A symlink in the image never reads a host file.
        let evil = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(evil.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", evil.path().join("etc/passwd")).unwrap();
        assert!(image_user("root", &[evil.path().to_path_buf()]).is_err());
        std::fs::remove_file(evil.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", evil.path().join("etc/passwd")).unwrap();
        assert!(image_user("root", &[evil.path().to_path_buf()]).is_err());
        assert!(
            image_user("nobody", &layers)
                .unwrap_err()
                .contains("nobody")
        );
    }

    #[test]
    fn security_context_overrides() {
        let pod = Pod::default();
        let mut c = container();
        c.security_context = Some(SecurityContext {
            run_as_user: Some(1000),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: vec!["NET_ADMIN".into()],
                drop: vec!["ALL".into()],
            }),
            ..Default::default()
        });
        let got = process(&pod, &c, &image(), &[], vec![]).unwrap();
        assert_eq!(got.uid, 1000);
        assert!(got.readonly_rootfs);
        assert_eq!(got.capabilities, Some(vec!["CAP_NET_ADMIN".to_string()]));
        let caps = capabilities(&[], &["chown".into()]);
        assert!(!caps.contains(&"CAP_CHOWN".to_string()) && caps.len() == DEFAULT_CAPS.len() - 1);
        c.security_context = Some(SecurityContext {
            run_as_non_root: Some(true),
            ..Default::default()
        });
        assert!(
            process(&pod, &c, &image(), &[], vec![])
                .unwrap_err()
                .contains("runAsNonRoot")
        );
        c.security_context = Some(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        });
        assert!(
            process(&pod, &c, &image(), &[], vec![])
                .unwrap_err()
                .contains("privileged")
        );
    }
}
