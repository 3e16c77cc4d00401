//! Watch-fed caches of the ConfigMaps and Secrets this node's pods use, one watch per object
//! (kubelet's `Watch` change-detection strategy): containers' env and volumes read them here, so
//! an update reaches mounted files without polling, and the agent never lists a whole namespace
//! (node restriction will allow it only the objects its pods name).
//!
//! A pod worker asks for an object with its pod's uid; the first ask starts the object's watch
//! and waits for its first answer. When a pod is torn down its worker releases what it used, and
//! an object no pod uses any more has its watch stopped: a Secret's at once (its values leave the
//! agent's memory with its last pod), a ConfigMap's after [`CONFIG_MAP_LINGER`], as kubelet keeps
//! an unused object's watch for a while — the next pod of a namespace (every pod mounts
//! `kube-root-ca.crt`; a function scaled from zero is the common case) then finds it answered.
//! Must not: decide anything about pods.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use skiff_api::ResourceExt;
use skiff_api::client::{Api, ListParams, ResourceClient, Transport};
use skiff_api::v1::{ConfigMap, Secret};
use tokio::sync::watch;
use tokio_stream::StreamExt;

/// How long a first ask waits for the object's first answer.
const FIRST_ANSWER: Duration = Duration::from_secs(10);
/// Pause before a broken watch lists again.
const RELIST: Duration = Duration::from_secs(1);
/// How long a ConfigMap no pod uses stays watched (kubelet keeps an idle object's watch for its
/// resync period, a minute).
pub const CONFIG_MAP_LINGER: Duration = Duration::from_secs(60);

/// What a watch knows of its object: not yet answered, absent, or the object.
#[derive(Debug, Clone, PartialEq)]
enum Known<K> {
    Unknown,
    Absent,
    Present(Box<K>),
}

struct Watched<K> {
    known: watch::Receiver<Known<K>>,
    /// Pod uids using the object.
    users: HashSet<String>,
    /// Since when no pod uses it (kept watched until `linger` has passed).
    idle_since: Option<Instant>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> Drop for Watched<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One kind's watched objects, by (namespace, name).
pub struct Watches<K> {
    transport: Transport,
    objects: Arc<DashMap<(String, String), Watched<K>>>,
    /// How long an object no pod uses stays watched.
    linger: Duration,
}

impl<K> Watches<K>
where
    K: ResourceClient + Clone + PartialEq + Send + Sync + 'static,
{
    /// Objects no pod uses stay watched for `linger` (zero: their watch stops at once).
    pub fn new(transport: Transport, linger: Duration) -> Self {
        Self {
            transport,
            objects: Arc::default(),
            linger,
        }
    }

    /// The object `namespace/name` as last seen, `None` if it does not exist; `user` (a pod
    /// uid) keeps it watched until [`Watches::release`].
    pub async fn get(&self, namespace: &str, name: &str, user: &str) -> Result<Option<K>, String> {
        let key = (namespace.to_string(), name.to_string());
        self.sweep(None);
        let mut known = {
            let mut entry = self.objects.entry(key).or_insert_with(|| {
                let (tx, rx) = watch::channel(Known::Unknown);
                let api: Api<K> = Api::new(self.transport.clone(), namespace);
                Watched {
                    known: rx,
                    users: HashSet::new(),
                    idle_since: None,
                    task: tokio::spawn(follow(api, name.to_string(), tx)),
                }
            });
            entry.users.insert(user.to_string());
            entry.idle_since = None;
            entry.known.clone()
        };
        let answered = tokio::time::timeout(
            FIRST_ANSWER,
            known.wait_for(|k| !matches!(k, Known::Unknown)),
        )
        .await;
        match answered {
            Ok(Ok(k)) => Ok(match &*k {
                Known::Present(object) => Some(object.as_ref().clone()),
                _ => None,
            }),
            Ok(Err(_)) => Err(format!("watch of {namespace}/{name} ended")),
            Err(_) => Err(format!(
                "no answer about {namespace}/{name} within {FIRST_ANSWER:?}"
            )),
        }
    }

    /// `user` (a pod being torn down) no longer uses anything; objects nobody uses stop being
    /// watched.
    pub fn release(&self, user: &str) {
        self.sweep(Some(user));
    }

    /// Drops `user` (if any) from every object, then the watches of objects unused for longer
    /// than the linger.
    fn sweep(&self, user: Option<&str>) {
        let now = Instant::now();
        let linger = self.linger;
        self.objects.retain(|_, watched| {
            if let Some(user) = user {
                watched.users.remove(user);
            }
            if !watched.users.is_empty() {
                return true;
            }
            let since = *watched.idle_since.get_or_insert(now);
            now.saturating_duration_since(since) < linger
        });
    }
}

/// Lists the one object, then follows its watch; lists again whenever the watch breaks.
async fn follow<K>(api: Api<K>, name: String, tx: watch::Sender<Known<K>>)
where
    K: ResourceClient + Clone + PartialEq + Send + Sync + 'static,
{
    let params = ListParams::default().fields(&format!("metadata.name={name}"));
    loop {
        let listed = api.list(params.clone()).await;
        if let Ok((objects, meta)) = listed {
            let now = match objects.into_iter().find(|o| o.name() == name) {
                Some(o) => Known::Present(Box::new(o)),
                None => Known::Absent,
            };
            tx.send_if_modified(|k| replace(k, now));
            if let Ok(mut stream) = api.watch(params.clone(), &meta.resource_version).await {
                while let Some(Ok(event)) = stream.next().await {
                    let now = if event.kind == "DELETED" {
                        Known::Absent
                    } else {
                        Known::Present(Box::new(event.object))
                    };
                    tx.send_if_modified(|k| replace(k, now));
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(RELIST).await;
    }
}

/// Replaces `known` with `now`; whether it changed.
fn replace<K: PartialEq>(known: &mut Known<K>, now: Known<K>) -> bool {
    if *known == now {
        return false;
    }
    *known = now;
    true
}

/// What one pod's volumes are made from: its ConfigMaps and Secrets from the watches (kept
/// watched for `user`, the pod's uid), claims from the API.
pub struct PodSources<'a> {
    pub sources: &'a Sources,
    pub transport: &'a Transport,
    pub user: &'a str,
}

impl super::volumes::VolumeSources for PodSources<'_> {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        let found = self
            .sources
            .config_maps
            .get(namespace, name, self.user)
            .await?;
        Ok(found.map(super::volumes::config_map_bytes))
    }

    async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        let found = self.sources.secrets.get(namespace, name, self.user).await?;
        Ok(found.map(|s| s.data))
    }

    async fn claim_uid(&self, namespace: &str, name: &str) -> Result<Option<String>, String> {
        super::volumes::VolumeSources::claim_uid(self.transport, namespace, name).await
    }

    async fn service_account_token(
        &self,
        namespace: &str,
        account: &str,
        pod: &str,
        uid: &str,
        audience: &str,
        seconds: i32,
    ) -> Result<Vec<u8>, String> {
        let key = TokenKey {
            uid: uid.to_string(),
            account: account.to_string(),
            audience: audience.to_string(),
            seconds,
        };
        if let Some(cached) = self.sources.tokens.get(&key)
            && tokio::time::Instant::now() < cached.renew_at
        {
            return Ok(cached.token.clone().into_bytes());
        }
        let (token, lifetime) = super::volumes::request_token(
            self.transport,
            namespace,
            account,
            pod,
            uid,
            audience,
            seconds,
        )
        .await?;
        let renew_at = tokio::time::Instant::now() + renew_after(lifetime);
        self.sources.tokens.insert(
            key,
            CachedToken {
                token: token.clone(),
                renew_at,
            },
        );
        Ok(token.into_bytes())
    }
}

/// Which token: a pod's, of one ServiceAccount, for one audience and lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    uid: String,
    account: String,
    audience: String,
    seconds: i32,
}

/// A token and when to ask for the next one.
#[derive(Debug, Clone)]
pub struct CachedToken {
    token: String,
    renew_at: tokio::time::Instant,
}

/// When a token of `lifetime` seconds is renewed: at 80% of its life or after 24 hours,
/// whichever comes first (kubelet's rule), so a running pod's file never holds an expired one.
pub fn renew_after(lifetime: i64) -> Duration {
    let seconds = u64::try_from(lifetime.max(0)).unwrap_or(0);
    Duration::from_secs((seconds * 4 / 5).min(24 * 3600))
}

/// The ConfigMaps and Secrets of this node's pods.
pub struct Sources {
    pub config_maps: Watches<ConfigMap>,
    pub secrets: Watches<Secret>,
    /// ServiceAccount tokens of the pods' projected volumes, until they are due for renewal.
    pub tokens: DashMap<TokenKey, CachedToken>,
}

impl Sources {
    pub fn new(transport: &Transport) -> Self {
        Self {
            config_maps: Watches::new(transport.clone(), CONFIG_MAP_LINGER),
            secrets: Watches::new(transport.clone(), Duration::ZERO),
            tokens: DashMap::new(),
        }
    }

    /// The pod `uid` is gone: stop watching what only it used.
    pub fn release(&self, uid: &str) {
        self.config_maps.release(uid);
        self.secrets.release(uid);
        self.tokens.retain(|k, _| k.uid != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_renew_at_four_fifths_of_their_life_or_a_day() {
        assert_eq!(renew_after(3607), Duration::from_secs(2885));
        assert_eq!(renew_after(48 * 3600), Duration::from_secs(24 * 3600));
        assert_eq!(renew_after(-5), Duration::ZERO);
    }

    fn watches(linger: Duration) -> Watches<ConfigMap> {
        // Never answered: a channel that would connect on first use, to a port nobody serves.
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let transport = tonic::service::interceptor::InterceptedService::new(
            channel,
            skiff_api::client::BearerAuth::new("t").unwrap(),
        );
        Watches::new(transport, linger)
    }

    /// Starts watching `ns/name` for `user` without waiting for an answer.
    fn use_object(w: &Watches<ConfigMap>, name: &str, user: &str) {
        let get = w.get("ns", name, user);
        // The first poll registers the user; the answer is never awaited.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut get = std::pin::pin!(get);
        let _ = get.as_mut().poll(&mut cx);
    }

    #[tokio::test]
    async fn an_unused_config_map_stays_watched_for_the_linger_and_a_secret_not_at_all() {
        let lingering = watches(Duration::from_secs(60));
        use_object(&lingering, "kube-root-ca.crt", "pod-1");
        lingering.release("pod-1");
        assert_eq!(lingering.objects.len(), 1, "kept for the next pod");
        // The next pod finds it and uses it again: no longer idle.
        use_object(&lingering, "kube-root-ca.crt", "pod-2");
        assert!(lingering.objects.iter().all(|w| w.idle_since.is_none()));

        let at_once = watches(Duration::ZERO);
        use_object(&at_once, "token", "pod-1");
        use_object(&at_once, "token", "pod-2");
        at_once.release("pod-1");
        assert_eq!(at_once.objects.len(), 1, "pod-2 still uses it");
        at_once.release("pod-2");
        assert_eq!(at_once.objects.len(), 0, "stopped with its last user");

        // Past the linger, the next sweep stops it.
        let short = watches(Duration::from_millis(1));
        use_object(&short, "cm", "pod-1");
        short.release("pod-1");
        std::thread::sleep(Duration::from_millis(5));
        short.release("someone-else");
        assert_eq!(short.objects.len(), 0);
    }

    #[test]
    fn only_a_change_is_published() {
        let mut known: Known<u32> = Known::Unknown;
        assert!(replace(&mut known, Known::Absent));
        assert!(!replace(&mut known, Known::Absent));
        assert!(replace(&mut known, Known::Present(Box::new(1))));
        assert!(!replace(&mut known, Known::Present(Box::new(1))));
        assert!(replace(&mut known, Known::Present(Box::new(2))));
    }
}
