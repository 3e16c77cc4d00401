//! Volumes against a fake of their sources: the files of ConfigMap and Secret volumes written,
//! refreshed and kept as Kubernetes does, and subPath mounts.

use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use super::*;

#[test]
fn item_paths_stay_inside() {
    assert!(safe_relative("a/b.txt").is_ok());
    assert!(safe_relative("./a").is_ok());
    for bad in ["", "/etc/passwd", "../x", "a/../../x"] {
        assert!(safe_relative(bad).is_err(), "{bad}");
    }
}

type Objects = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// ConfigMaps and Secrets of namespace `ns`, by name, and how many reads were made.
#[derive(Default)]
struct Fake {
    config_maps: Mutex<Objects>,
    secrets: Mutex<Objects>,
    reads: Mutex<usize>,
}

impl Fake {
    fn set_config_map(&self, name: &str, data: &[(&str, &str)]) {
        let data = data
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        self.config_maps
            .lock()
            .unwrap()
            .insert(name.to_string(), data);
    }

    fn get(
        &self,
        objects: &Mutex<Objects>,
        ns: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        *self.reads.lock().unwrap() += 1;
        if ns != "ns" {
            return Err(format!("namespace {ns}"));
        }
        Ok(objects.lock().unwrap().get(name).cloned())
    }
}

impl VolumeSources for Fake {
    async fn config_map(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        self.get(&self.config_maps, ns, name)
    }

    async fn secret(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        self.get(&self.secrets, ns, name)
    }

    async fn claim_uid(&self, _: &str, _: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// A pod in `ns` with a ConfigMap volume `cfg` (configmap `app`: key `conf` at `etc/app.conf`
/// mode 0600, key `motd` at `motd`) and a Secret volume `creds` (secret `db`, defaultMode
/// 0400).
fn pod() -> Pod {
    let cfg = ConfigMapVolumeSource {
        name: "app".into(),
        items: vec![
            KeyToPath {
                key: "conf".into(),
                path: "etc/app.conf".into(),
                mode: Some(0o600),
            },
            KeyToPath {
                key: "motd".into(),
                path: "motd".into(),
                mode: None,
            },
        ],
        ..Default::default()
    };
    let creds = SecretVolumeSource {
        secret_name: "db".into(),
        default_mode: Some(0o400),
        ..Default::default()
    };
    Pod {
        metadata: Some(ObjectMeta {
            name: "p".into(),
            namespace: "ns".into(),
            uid: "uid-1".into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            volumes: vec![
                Volume {
                    name: "cfg".into(),
                    config_map: Some(cfg),
                    ..Default::default()
                },
                Volume {
                    name: "creds".into(),
                    secret: Some(creds),
                    ..Default::default()
                },
                Volume {
                    name: "scratch".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test]
async fn config_map_and_secret_files_are_written_and_refreshed() {
    let data = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    fake.set_config_map("app", &[("conf", "v1"), ("motd", "hello")]);
    fake.secrets.lock().unwrap().insert(
        "db".into(),
        BTreeMap::from([("password".into(), b"s3cret".to_vec())]),
    );
    let pod = pod();
    let dirs = prepare(&fake, data.path(), &pod).await.unwrap();
    let cfg = &dirs["cfg"].path;
    assert_eq!(cfg, &data.path().join("pods/uid-1/volumes/cfg"));
    assert!(dirs["cfg"].read_only && dirs["creds"].read_only);
    assert_eq!(read(&cfg.join("etc/app.conf")), "v1");
    assert_eq!(read(&cfg.join("motd")), "hello");
    // Item modes, else defaultMode, else 0644; dirs 0755 as today.
    assert_eq!(mode(&cfg.join("etc/app.conf")), 0o600);
    assert_eq!(mode(&cfg.join("motd")), 0o644);
    assert_eq!(mode(cfg), 0o755);
    let creds = &dirs["creds"].path;
    assert_eq!(read(&creds.join("password")), "s3cret");
    assert_eq!(mode(&creds.join("password")), 0o400);
    assert_eq!(mode(&data.path().join("pods/uid-1")), 0o700);
    let version = atomic_writer::current_version(cfg).unwrap();
    let dir_inode = std::fs::metadata(cfg).unwrap().ino();

    // Nothing changed: prepare again and refresh write nothing.
    prepare(&fake, data.path(), &pod).await.unwrap();
    assert_eq!(refresh(&fake, data.path(), &pod).await, Ok(vec![]));
    assert_eq!(atomic_writer::current_version(cfg).unwrap(), version);

    // The ConfigMap changes: refresh swaps its files in, in the same directory.
    fake.set_config_map("app", &[("conf", "v2"), ("motd", "hello")]);
    let reads = *fake.reads.lock().unwrap();
    assert_eq!(
        refresh(&fake, data.path(), &pod).await,
        Ok(vec!["cfg".to_string()])
    );
    // One read per ConfigMap or Secret volume, none for the emptyDir.
    assert_eq!(*fake.reads.lock().unwrap(), reads + 2);
    assert_eq!(read(&cfg.join("etc/app.conf")), "v2");
    assert_ne!(atomic_writer::current_version(cfg).unwrap(), version);
    assert_eq!(std::fs::metadata(cfg).unwrap().ino(), dir_inode);
    // prepare also brings files up to date.
    fake.set_config_map("app", &[("conf", "v3"), ("motd", "hello")]);
    prepare(&fake, data.path(), &pod).await.unwrap();
    assert_eq!(read(&cfg.join("etc/app.conf")), "v3");

    // The ConfigMap is deleted (not optional): the files stay, the error names the volume.
    fake.config_maps.lock().unwrap().clear();
    let e = refresh(&fake, data.path(), &pod).await.unwrap_err();
    assert_eq!(e, r#"volume "cfg": configmap "app" not found"#);
    assert_eq!(read(&cfg.join("etc/app.conf")), "v3");
    let e = prepare(&fake, data.path(), &pod).await.unwrap_err();
    assert_eq!(e, r#"volume "cfg": configmap "app" not found"#);
}

#[tokio::test]
async fn refresh_creates_nothing_and_optional_sources_may_be_missing() {
    let data = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    let mut pod = pod();
    // Never prepared (or the pod's dir is gone): nothing is made.
    assert_eq!(refresh(&fake, data.path(), &pod).await, Ok(vec![]));
    assert!(!data.path().join("pods").exists());

    // Optional volumes whose objects (or keys) are missing are empty.
    if let Some(spec) = pod.spec.as_mut() {
        for v in &mut spec.volumes {
            if let Some(cm) = v.config_map.as_mut() {
                cm.optional = Some(true);
            }
            if let Some(s) = v.secret.as_mut() {
                s.optional = Some(true);
            }
        }
    }
    let dirs = prepare(&fake, data.path(), &pod).await.unwrap();
    let cfg = &dirs["cfg"].path;
    assert!(atomic_writer::current_version(cfg).is_some());
    assert!(!cfg.join("motd").exists());
    fake.set_config_map("app", &[("motd", "late")]);
    assert_eq!(
        refresh(&fake, data.path(), &pod).await,
        Ok(vec!["cfg".to_string()])
    );
    assert_eq!(read(&cfg.join("motd")), "late");
    assert!(!cfg.join("etc").exists());
}

#[tokio::test]
async fn bad_item_paths_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    fake.set_config_map("app", &[("conf", "v1"), ("motd", "hello")]);
    for bad in ["../../escape", "/etc/passwd", "..data"] {
        let mut pod = pod();
        if let Some(spec) = pod.spec.as_mut() {
            spec.volumes[0].config_map.as_mut().unwrap().items[0].path = bad.into();
        }
        let e = prepare(&fake, data.path(), &pod).await.unwrap_err();
        assert!(e.starts_with(r#"volume "cfg": item path"#), "{bad}: {e}");
    }
    assert!(!data.path().join("escape").exists());
}

#[tokio::test]
async fn sub_paths_of_managed_volumes_come_from_the_current_version() {
    let data = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    fake.set_config_map("app", &[("conf", "v1"), ("motd", "hello")]);
    fake.secrets
        .lock()
        .unwrap()
        .insert("db".into(), BTreeMap::new());
    let dirs = prepare(&fake, data.path(), &pod()).await.unwrap();
    let cfg = &dirs["cfg"].path;
    let version = atomic_writer::current_version(cfg).unwrap();
    let container = |sub: &str| Container {
        name: "c".into(),
        volume_mounts: vec![VolumeMount {
            name: "cfg".into(),
            mount_path: "/etc/app".into(),
            sub_path: sub.into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let m = mounts(&container("etc"), &dirs).unwrap();
    assert_eq!(m[0].host, cfg.join(&version).join("etc"));
    assert_eq!(m[0].beneath.as_ref(), Some(cfg));
    assert!(m[0].read_only);
    let e = mounts(&container("nope"), &dirs).unwrap_err();
    assert!(e.contains("not in the volume's files"), "{e}");
    assert!(!cfg.join(&version).join("nope").exists());
    // The whole volume is its directory, as before.
    let m = mounts(&container(""), &dirs).unwrap();
    assert_eq!(&m[0].host, cfg);
}
