//! Image references → a module file (Wasm) or unpacked layers (OCI containers, in the snapshot
//! store at `<data dir>/snapshots`) on this node, and the image-pull back-off.
//!
//! `file:PATH` names a module (or WAT text) on the node; a relative path is taken from the
//! agent's working directory. Any other reference is pulled from its OCI registry into the image
//! store at `<data dir>/images` ([`skiff_runtime::image`]), which verifies it by digest and keeps
//! it; the container's `imageID` is then the manifest digest. Registries in the comma-separated
//! `SKIFF_INSECURE_REGISTRIES` are reached over plain http (loopback ones always are).
//!
//! Pulls run as tasks of their own, one per image and pull policy however many containers wait
//! for it, so a large pull never holds up the pod sync loop: a container whose image is being
//! pulled waits (`ContainerCreating`, "Pulling image ...") and is looked at again on the next
//! tick. A failed pull, whatever the cause (registry down, tag missing, not a Wasm image — a tag
//! can appear later), keeps the container waiting as Kubernetes does: `ErrImagePull` right after
//! the failure, then `ImagePullBackOff` until the next try, 10 s after the first failure and
//! doubling to 5 min; the message names the cause. Pulls of more than 1 MiB log their progress.
//!
//! Must not: start containers or write pod status (the pod manager does).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use skiff_runtime::image::unpack::Snapshots;
use skiff_runtime::image::{ImageProcess, ImageStore, Keyring, Progress, PullPolicy, StoreOptions};
use tokio::sync::watch;

use crate::pods::restart;

/// How long a container is shown `ErrImagePull` before `ImagePullBackOff`.
const ERR_SHOWN: Duration = Duration::from_secs(2);
/// How long a reconcile waits for a pull it has just started (so that cache hits and small
/// pulls start the container at once).
const FIRST_WAIT: Duration = Duration::from_millis(500);
/// Pulls above this size log their progress at info.
const LOG_PROGRESS_ABOVE: u64 = 1 << 20;
/// How often a large pull logs its progress.
const LOG_INTERVAL: Duration = Duration::from_secs(2);
/// How often a waiting container's message shows a pull's progress.
const SHOW_INTERVAL: Duration = Duration::from_secs(1);
/// A container not asked about for this long is forgotten (its pod is gone).
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// The environment variable naming registries reached over plain http.
pub const INSECURE_REGISTRIES_ENV: &str = "SKIFF_INSECURE_REGISTRIES";

/// Why an image cannot be used (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageError {
    /// The container's waiting (or terminated) reason.
    pub reason: &'static str,
    pub message: String,
    /// Wait and try again at this time; `None`: the container fails to start.
    pub retry_at: Option<SystemTime>,
}

/// A usable image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The module of a Wasm image (empty for a container image).
    pub module: PathBuf,
    /// The unpacked layers and process of a container image.
    pub container: Option<ContainerImage>,
    /// The manifest digest of a pulled image; `None` for a `file:` image (its module digest is
    /// its ID).
    pub image_id: Option<String>,
    /// What the pull did, as the `Pulled` event says it; `None` for a `file:` image.
    pub pulled: Option<String>,
}

/// A container image on this node: snapshot directories (bottom first) and its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    pub layers: Vec<PathBuf>,
    pub process: ImageProcess,
}

/// How a pull ended, shared by every container that waited for it.
#[derive(Debug, Clone)]
enum Outcome {
    Pulled {
        module: PathBuf,
        container: Option<ContainerImage>,
        digest: String,
        /// The `Pulled` event's message.
        summary: String,
    },
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// A pull in flight: how it ended (once it has), and how far it is.
#[derive(Clone)]
struct Pull {
    outcome: watch::Receiver<Option<Outcome>>,
    /// `layer 2/3: 1.5 of 12.0 MiB`; empty before the first byte.
    progress: watch::Receiver<String>,
}

/// Image, policy, whether it is pulled as a container image, and the credentials' fingerprint
/// (containers share a pull only when they would pull with the same credentials).
type PullKey = (String, PullPolicyKey, bool, String);
type PullPolicyKey = &'static str;

/// One container's image state.
struct ContainerPull {
    image: String,
    /// The pull it waits for.
    waiting: Option<Pull>,
    /// Consecutive failed pulls, the last one's reason and message, and when to try again.
    failures: u32,
    reason: &'static str,
    cause: String,
    retry_at: SystemTime,
    touched: Instant,
}

/// The node's images: the store, the pulls in flight and each container's back-off.
#[derive(Clone)]
pub struct Images {
    store: Result<Arc<ImageStore>, String>,
    snapshots: Result<Arc<Snapshots>, String>,
    inflight: Arc<Mutex<HashMap<PullKey, Pull>>>,
    containers: Arc<Mutex<HashMap<String, ContainerPull>>>,
    /// `--registry-config`: the node's own Docker config, read at each pull (so a changed file
    /// is used without a restart).
    registry_config: Option<PathBuf>,
}

fn policy_key(p: PullPolicy) -> PullPolicyKey {
    match p {
        PullPolicy::Always => "Always",
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Never => "Never",
    }
}

impl Images {
    /// The store at `<data_dir>/images`. A store that cannot be opened makes every pull fail
    /// with the reason (the agent still runs `file:` images).
    pub fn new(data_dir: &Path) -> Self {
        let insecure_registries = std::env::var(INSECURE_REGISTRIES_ENV)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let options = StoreOptions {
            insecure_registries,
            ..StoreOptions::default()
        };
        let store = ImageStore::with_options(data_dir.join("images"), options)
            .map(Arc::new)
            .map_err(|e| e.to_string());
        if let Err(e) = &store {
            tracing::error!(error = %e, "the image store cannot be opened: registry images will not pull");
        }
        let snapshots = Snapshots::new(data_dir.join("snapshots"))
            .map(Arc::new)
            .map_err(|e| e.to_string());
        Self {
            store,
            snapshots,
            inflight: Arc::default(),
            containers: Arc::default(),
            registry_config: None,
        }
    }

    /// Pulls also use the credentials of the Docker config file at `path` (after the pod's
    /// image pull secrets).
    pub fn with_registry_config(mut self, path: Option<PathBuf>) -> Self {
        self.registry_config = path;
        self
    }

    /// The pod's credentials, then the node's (`--registry-config`); a node file that cannot be
    /// read fails the pull, naming the file.
    fn credentials(&self, pod: &Keyring) -> Result<Keyring, String> {
        match &self.registry_config {
            None => Ok(pod.clone()),
            Some(path) => Keyring::from_file(path)
                .map(|node| pod.clone().merge(&node))
                .map_err(|e| format!("the node's registry config: {e}")),
        }
    }

    /// The module for `image`, as container `key` (`<pod uid>/<container>`) with
    /// `imagePullPolicy` `policy` sees it now.
    /// `keyring` holds the pod's image pull secrets.
    pub async fn resolve(
        &self,
        key: &str,
        image: &str,
        policy: &str,
        keyring: &Keyring,
    ) -> Result<Resolved, ImageError> {
        self.resolve_as(key, image, policy, false, keyring).await
    }

    /// [`Images::resolve`] for a Linux container: every layer unpacked.
    pub async fn resolve_container(
        &self,
        key: &str,
        image: &str,
        policy: &str,
        keyring: &Keyring,
    ) -> Result<Resolved, ImageError> {
        if image.starts_with("file:") {
            return Err(ImageError {
                reason: "InvalidImageName",
                message: format!(
                    "image {image}: a file: image is a Wasm module; an OCI container needs a registry image (or set runtimeClassName: wasm)"
                ),
                retry_at: None,
            });
        }
        self.resolve_as(key, image, policy, true, keyring).await
    }

    async fn resolve_as(
        &self,
        key: &str,
        image: &str,
        policy: &str,
        container: bool,
        keyring: &Keyring,
    ) -> Result<Resolved, ImageError> {
        if image.starts_with("file:") {
            return resolve_file(image).map(|module| Resolved {
                module,
                container: None,
                image_id: None,
                pulled: None,
            });
        }
        let Some(policy) = PullPolicy::from_spec(policy, image) else {
            return Err(ImageError {
                reason: "ErrImagePull",
                message: format!(
                    "imagePullPolicy {policy:?}: expected Always, IfNotPresent or Never"
                ),
                retry_at: None,
            });
        };
        let now = SystemTime::now();
        let (mut pull, started) = {
            let mut containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
            containers.retain(|_, c| c.touched.elapsed() < FORGET_AFTER);
            let c = containers
                .entry(key.to_string())
                .or_insert_with(|| ContainerPull::new(image));
            if c.image != image {
                *c = ContainerPull::new(image);
            }
            c.touched = Instant::now();
            match &c.waiting {
                Some(pull) => (pull.clone(), false),
                None if c.failures > 0 && c.retry_at > now => return Err(c.backoff(image)),
                None => {
                    let (pull, started) = self.start_pull(image, policy, container, keyring);
                    c.waiting = Some(pull.clone());
                    (pull, started)
                }
            }
        };
        // Give a pull this call started a moment: cache hits and small images start the
        // container right away. (Only the starter waits, so that many containers of one image
        // never hold up the sync loop.)
        if started {
            let _ = tokio::time::timeout(FIRST_WAIT, pull.outcome.wait_for(Option::is_some)).await;
        }
        let outcome = pull.outcome.borrow().clone();
        let Some(outcome) = outcome else {
            let progress = pull.progress.borrow().clone();
            let message = if progress.is_empty() {
                format!("Pulling image {image:?}")
            } else {
                format!("Pulling image {image:?}: {progress}")
            };
            return Err(ImageError {
                reason: "ContainerCreating",
                message,
                retry_at: Some(now),
            });
        };
        let mut containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Outcome::Pulled {
                module,
                container,
                digest,
                summary,
            } => {
                containers.remove(key);
                Ok(Resolved {
                    module,
                    container,
                    image_id: Some(digest),
                    pulled: Some(summary),
                })
            }
            Outcome::Failed { reason, message } => {
                let Some(c) = containers.get_mut(key).filter(|c| c.image == image) else {
                    // The container's image changed meanwhile: try again on the next round.
                    return Err(ImageError {
                        reason,
                        message,
                        retry_at: Some(now),
                    });
                };
                c.waiting = None;
                c.failures += 1;
                c.reason = reason;
                c.cause = message.clone();
                let now = SystemTime::now();
                c.retry_at = now + restart::backoff(c.failures - 1);
                Err(ImageError {
                    reason,
                    message,
                    retry_at: Some((now + ERR_SHOWN).min(c.retry_at)),
                })
            }
        }
    }

    /// The pull of `image` under `policy`: the one in flight, or a new one (then `true`).
    fn start_pull(
        &self,
        image: &str,
        policy: PullPolicy,
        container: bool,
        keyring: &Keyring,
    ) -> (Pull, bool) {
        let credentials = self.credentials(keyring);
        let fingerprint = credentials
            .as_ref()
            .map_or_else(|e| e.clone(), Keyring::fingerprint);
        let key = (
            image.to_string(),
            policy_key(policy),
            container,
            fingerprint,
        );
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pull) = inflight.get(&key) {
            return (pull.clone(), false);
        }
        let (tx, outcome) = watch::channel(None);
        let (progress_tx, progress) = watch::channel(String::new());
        let waiting = Pull { outcome, progress };
        inflight.insert(key.clone(), waiting.clone());
        let store = self.store.clone();
        let snapshots = self.snapshots.clone();
        let table = self.inflight.clone();
        let image = image.to_string();
        tokio::spawn(async move {
            let outcome = match (store, snapshots, credentials) {
                (_, _, Err(e)) => Outcome::Failed {
                    reason: "ErrImagePull",
                    message: format!("{image}: {e}"),
                },
                (Ok(store), _, Ok(keyring)) if !container => {
                    pull(&store, &image, policy, &keyring, &progress_tx).await
                }
                (Ok(store), Ok(snapshots), Ok(keyring)) => {
                    pull_container(&store, &snapshots, &image, policy, &keyring, &progress_tx).await
                }
                (Ok(_), Err(e), _) => Outcome::Failed {
                    reason: "ErrImagePull",
                    message: format!("{image}: the snapshot store cannot be opened: {e}"),
                },
                (Err(e), _, _) => Outcome::Failed {
                    reason: "ErrImagePull",
                    message: format!("{image}: the image store cannot be opened: {e}"),
                },
            };
            table.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            let _ = tx.send(Some(outcome));
        });
        (waiting, true)
    }
}

impl ContainerPull {
    fn new(image: &str) -> Self {
        Self {
            image: image.to_string(),
            waiting: None,
            failures: 0,
            reason: "ErrImagePull",
            cause: String::new(),
            retry_at: SystemTime::UNIX_EPOCH,
            touched: Instant::now(),
        }
    }

    /// The waiting state between two tries.
    fn backoff(&self, image: &str) -> ImageError {
        // Kubernetes keeps InvalidImageName and ErrImageNeverPull as they are.
        let (reason, message) = if self.reason == "ErrImagePull" {
            (
                "ImagePullBackOff",
                format!("Back-off pulling image {image:?}: {}", self.cause),
            )
        } else {
            (self.reason, self.cause.clone())
        };
        ImageError {
            reason,
            message,
            retry_at: Some(self.retry_at),
        }
    }
}

/// Publishes a pull's progress for the waiting containers (at most every [`SHOW_INTERVAL`],
/// and at the end of each blob), and logs a large pull's every [`LOG_INTERVAL`].
fn progress_reporter<'a>(
    image: &'a str,
    shown: &'a watch::Sender<String>,
    received: &'a AtomicU64,
) -> impl Fn(&Progress) + Send + Sync + 'a {
    let last_shown = Mutex::new(None::<Instant>);
    let last_log = Mutex::new(None::<Instant>);
    move |p: &Progress| {
        let finished = p.done == p.total;
        if finished {
            received.fetch_add(p.total, Ordering::Relaxed);
        }
        let due = |last: &Mutex<Option<Instant>>, every: Duration| {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            let due = finished || last.is_none_or(|l| l.elapsed() >= every);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due(&last_shown, SHOW_INTERVAL) {
            shown.send_replace(progress_text(p));
        }
        if p.total >= LOG_PROGRESS_ABOVE && due(&last_log, LOG_INTERVAL) {
            tracing::info!(
                image,
                blob = %p.digest,
                what = p.what,
                step = %format_args!("{}/{}", p.index, p.count),
                done = p.done,
                total = p.total,
                "pulling: {} of {} MiB",
                p.done >> 20,
                p.total >> 20,
            );
        }
    }
}

/// `layer 2/3: 1.5 of 12.0 MiB`.
fn progress_text(p: &Progress) -> String {
    format!(
        "{} {}/{}: {} of {}",
        p.what,
        p.index,
        p.count,
        size_text(p.done),
        size_text(p.total)
    )
}

/// Bytes as people read them: `512 B`, `3.4 KiB`, `12.0 MiB`.
fn size_text(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    }
}

/// The `Pulled` event's message, as kubelet words it: how long a download since `started`
/// took and the bytes it `received`, or that the image was present.
fn pulled_summary(image: &str, downloaded: bool, started: Instant, received: &AtomicU64) -> String {
    if downloaded {
        format!(
            "Successfully pulled image {image:?} in {:.3}s. Image size: {} bytes.",
            started.elapsed().as_secs_f64(),
            received.load(Ordering::Relaxed)
        )
    } else {
        format!("Container image {image:?} already present on machine")
    }
}

fn failed(image: &str, e: skiff_runtime::image::PullError) -> Outcome {
    tracing::warn!(image, error = %e, retryable = e.retryable(), "image pull failed");
    Outcome::Failed {
        reason: e.reason(),
        message: e.to_string(),
    }
}

/// One pull of a container image, logged.
async fn pull_container(
    store: &ImageStore,
    snapshots: &Arc<Snapshots>,
    image: &str,
    policy: PullPolicy,
    keyring: &Keyring,
    shown: &watch::Sender<String>,
) -> Outcome {
    let started = Instant::now();
    let received = AtomicU64::new(0);
    let report = progress_reporter(image, shown, &received);
    match store
        .pull_container_with(image, policy, keyring, snapshots, &report)
        .await
    {
        Ok(pulled) => {
            if pulled.downloaded {
                tracing::info!(
                    image,
                    digest = %pulled.digest,
                    layers = pulled.layers.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "pulled container image"
                );
            }
            Outcome::Pulled {
                module: PathBuf::new(),
                container: Some(ContainerImage {
                    layers: pulled.layers,
                    process: pulled.process,
                }),
                digest: pulled.digest,
                summary: pulled_summary(image, pulled.downloaded, started, &received),
            }
        }
        Err(e) => failed(image, e),
    }
}

/// One pull, logged.
async fn pull(
    store: &ImageStore,
    image: &str,
    policy: PullPolicy,
    keyring: &Keyring,
    shown: &watch::Sender<String>,
) -> Outcome {
    let started = Instant::now();
    let received = AtomicU64::new(0);
    let report = progress_reporter(image, shown, &received);
    match store.pull_with(image, policy, keyring, &report).await {
        Ok(pulled) => {
            if pulled.downloaded {
                tracing::info!(
                    image,
                    digest = %pulled.digest,
                    kind = %pulled.record.kind,
                    module_bytes = pulled.record.module_size,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "pulled image"
                );
            } else {
                tracing::debug!(image, digest = %pulled.digest, "image present");
            }
            Outcome::Pulled {
                module: pulled.module_path,
                container: None,
                digest: pulled.digest,
                summary: pulled_summary(image, pulled.downloaded, started, &received),
            }
        }
        Err(e) => failed(image, e),
    }
}

/// Largest `file:` module the agent hands to a runtime (the Wasm executor reads at most as much).
const MAX_FILE_IMAGE_BYTES: u64 = 512 << 20;

/// The local file of a `file:` image: a regular file (symlinks followed) of bounded size.
fn resolve_file(image: &str) -> Result<PathBuf, ImageError> {
    let path = image.strip_prefix("file:").unwrap_or(image);
    let path = Path::new(path.trim_start_matches("//"));
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let fail = |message: String| ImageError {
        reason: "StartError",
        message,
        retry_at: None,
    };
    match std::fs::metadata(&absolute) {
        Ok(m) if m.is_file() && m.len() <= MAX_FILE_IMAGE_BYTES => Ok(absolute),
        Ok(m) if m.is_file() => Err(fail(format!(
            "image {image}: {} is {} bytes, more than the {} MiB a module may have",
            absolute.display(),
            m.len(),
            MAX_FILE_IMAGE_BYTES >> 20
        ))),
        Ok(_) => Err(fail(format!(
            "image {image}: {} is not a regular file (a device, FIFO, socket or directory); a file: image names a module file",
            absolute.display()
        ))),
        Err(e) => Err(fail(format!("image {image}: {}: {e}", absolute.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_as_people_read_sizes() {
        let p = Progress {
            digest: "sha256:ab".into(),
            what: "layer",
            index: 2,
            count: 3,
            done: 1536 * 1024,
            total: 12 << 20,
        };
        assert_eq!(progress_text(&p), "layer 2/3: 1.5 MiB of 12.0 MiB");
        assert_eq!(size_text(512), "512 B");
        assert_eq!(size_text(3 << 30), "3.00 GiB");
        let received = AtomicU64::new(42);
        let summary = pulled_summary("r/x:1", true, Instant::now(), &received);
        assert!(
            summary.starts_with("Successfully pulled image \"r/x:1\" in 0.")
                && summary.ends_with("s. Image size: 42 bytes."),
            "{summary}"
        );
        assert!(
            pulled_summary("r/x:1", false, Instant::now(), &received).contains("already present")
        );
    }

    #[test]
    fn a_pull_in_flight_shows_its_progress_to_waiting_containers() {
        let (tx, rx) = watch::channel(String::new());
        let received = AtomicU64::new(0);
        let report = progress_reporter("r/x:1", &tx, &received);
        let mut p = Progress {
            digest: "sha256:ab".into(),
            what: "layer",
            index: 1,
            count: 1,
            done: 10,
            total: 100,
        };
        report(&p);
        assert_eq!(*rx.borrow(), "layer 1/1: 10 B of 100 B");
        // Within the interval only the end of a blob is shown.
        p.done = 50;
        report(&p);
        assert_eq!(*rx.borrow(), "layer 1/1: 10 B of 100 B");
        p.done = 100;
        report(&p);
        assert_eq!(*rx.borrow(), "layer 1/1: 100 B of 100 B");
        assert_eq!(received.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn file_images() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.wasm");
        std::fs::write(&f, b"\0asm").unwrap();
        assert_eq!(
            resolve_file(&format!("file:{}", f.display())),
            Ok(f.clone())
        );
        std::fs::remove_file(&f).unwrap();
        let missing = resolve_file(&format!("file:{}", f.display())).unwrap_err();
        assert_eq!(missing.reason, "StartError");
        assert_eq!(missing.retry_at, None);
        assert!(
            missing.message.contains("No such file"),
            "{}",
            missing.message
        );
        let device = resolve_file("file:/dev/zero").unwrap_err();
        assert!(
            device.message.contains("image file:/dev/zero")
                && device.message.contains("not a regular file"),
            "{}",
            device.message
        );
    }

    #[tokio::test]
    async fn failed_pulls_wait_with_err_image_pull_then_back_off() {
        let dir = tempfile::tempdir().unwrap();
        let images = Images::new(dir.path());
        // Nothing listens on this port: the registry is unreachable.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let image = format!("127.0.0.1:{port}/probe:v1");
        let first = images
            .resolve("uid/main", &image, "", &Keyring::default())
            .await
            .unwrap_err();
        assert_eq!(first.reason, "ErrImagePull", "{first:?}");
        assert!(first.message.contains("unreachable"), "{}", first.message);
        let shown = first.retry_at.unwrap();
        assert!(shown <= SystemTime::now() + ERR_SHOWN);

        // Asked again within the back-off: ImagePullBackOff, retry 10 s after the failure.
        let again = images
            .resolve("uid/main", &image, "", &Keyring::default())
            .await
            .unwrap_err();
        assert_eq!(again.reason, "ImagePullBackOff");
        assert!(
            again.message.starts_with(&format!(
                "Back-off pulling image {image:?}: {image}: registry"
            )),
            "{}",
            again.message
        );
        let until = again.retry_at.unwrap();
        let wait = until.duration_since(SystemTime::now()).unwrap();
        assert!(
            wait > Duration::from_secs(8) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );

        // The back-off doubles per failure.
        {
            let mut c = images.containers.lock().unwrap();
            c.get_mut("uid/main").unwrap().retry_at = SystemTime::now();
        }
        images
            .resolve("uid/main", &image, "", &Keyring::default())
            .await
            .unwrap_err();
        let third = images
            .resolve("uid/main", &image, "", &Keyring::default())
            .await
            .unwrap_err();
        assert_eq!(third.reason, "ImagePullBackOff");
        let wait = third
            .retry_at
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(
            wait > Duration::from_secs(18) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );

        // Another container of the same image has its own back-off.
        let other = images
            .resolve("uid2/main", &image, "", &Keyring::default())
            .await
            .unwrap_err();
        assert_eq!(other.reason, "ErrImagePull");

        // Never, and not present: ErrImageNeverPull, kept as the reason during back-off.
        let never = images
            .resolve("uid3/main", &image, "Never", &Keyring::default())
            .await
            .unwrap_err();
        assert_eq!(never.reason, "ErrImageNeverPull");
        let never = images
            .resolve("uid3/main", &image, "Never", &Keyring::default())
            .await
            .unwrap_err();
        assert_eq!(never.reason, "ErrImageNeverPull");

        let bad = images
            .resolve("uid4/main", &image, "Sometimes", &Keyring::default())
            .await
            .unwrap_err();
        assert_eq!(bad.retry_at, None);
    }
}
