//! Secrets at rest: a [`Store`] wrapper that seals the values of chosen key prefixes with an AEAD
//! before any backend sees them, so the backend's files, its history (the embedded store's event
//! log, etcd's revisions) and its deleted values hold only ciphertext.
//!
//! A sealed value is `skiff:enc:chacha20poly1305:v1:NAME:` + a random 96-bit nonce + the
//! ChaCha20-Poly1305 ciphertext and tag (ring's, the AEAD already built for TLS), with the store
//! key as associated data: a value copied under another key does not open. NAME is the
//! [`Keyring`] key that sealed it, so old values still open after a rotation. A value under a
//! sealed prefix that is not sealed (written before encryption was turned on) is read as it is and
//! sealed by [`open`]'s pass; nothing is ever written unsealed.
//!
//! [`open`] is the start-up path: it loads or makes the key file, refuses to start when the key
//! file is missing but sealed values exist or when a value does not open with the listed keys
//! (naming the file), and re-seals every value not sealed with the write key.
//!
//! Must not: know kinds or encodings (the caller names the prefixes), log or return a value's
//! bytes in an error, or fall back to writing plaintext.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use tokio_stream::StreamExt;

use super::keyring::{Keyring, KeyringError};
use super::{Event, EventStream, KeyValue, ListPage, Revision, Store, StoreError};

/// The prefix of every sealed value.
const MAGIC: &[u8] = b"skiff:enc:chacha20poly1305:v1:";

/// Why the encrypted store cannot start. Every message names the key file.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(
        "encryption key file {path} is missing, but the store holds values sealed with key {key:?} (at {store_key}): restore the key file; skiff never falls back to plaintext"
    )]
    MissingKeyFile {
        path: PathBuf,
        key: String,
        store_key: String,
    },
    #[error(
        "encryption key file {path}: {store_key} was sealed with key {key:?}, which the file does not list"
    )]
    UnknownKey {
        path: PathBuf,
        key: String,
        store_key: String,
    },
    #[error(
        "encryption key file {path}: {store_key} does not decrypt with key {key:?} (a wrong key of that name?)"
    )]
    WrongKey {
        path: PathBuf,
        key: String,
        store_key: String,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What [`open`]'s pass found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resealed {
    /// Values sealed with the write key already.
    pub current: usize,
    /// Values sealed with an older key, re-sealed with the write key.
    pub rotated: usize,
    /// Values found unsealed, sealed now.
    pub sealed: usize,
}

/// The store with the values under `prefixes` sealed. Cheap to clone (two `Arc`s).
#[derive(Clone)]
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    codec: Arc<Codec>,
}

/// Seals and opens values: the keys and the prefixes they cover.
struct Codec {
    prefixes: Vec<String>,
    /// (name, cipher) per key of the keyring, in its order.
    keys: Vec<(String, LessSafeKey)>,
    write: usize,
    rng: SystemRandom,
}

/// The parts of a sealed value.
struct Sealed<'a> {
    key: &'a str,
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
}

fn parse(value: &[u8]) -> Option<Result<Sealed<'_>, ()>> {
    let rest = value.strip_prefix(MAGIC)?;
    let parsed = (|| {
        let colon = rest.iter().position(|&b| b == b':').ok_or(())?;
        let key = std::str::from_utf8(&rest[..colon]).map_err(|_| ())?;
        let body = &rest[colon + 1..];
        if body.len() < NONCE_LEN {
            return Err(());
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| ())?;
        Ok(Sealed {
            key,
            nonce,
            ciphertext,
        })
    })();
    Some(parsed)
}

/// The name of the key `value` is sealed with, if it is sealed.
fn sealed_with(value: &[u8]) -> Option<String> {
    match parse(value)? {
        Ok(s) => Some(s.key.to_string()),
        Err(()) => Some(String::new()),
    }
}

impl EncryptedStore {
    /// Wraps `inner`, sealing values under `prefixes` with `keyring`'s write key.
    pub fn new(inner: Arc<dyn Store>, keyring: &Keyring, prefixes: Vec<String>) -> Self {
        Self {
            inner,
            codec: Arc::new(Codec::new(keyring, prefixes)),
        }
    }
}

impl Codec {
    fn new(keyring: &Keyring, prefixes: Vec<String>) -> Self {
        let keys = keyring
            .keys
            .iter()
            .map(|k| {
                let unbound = match UnboundKey::new(&CHACHA20_POLY1305, &k.secret) {
                    Ok(u) => u,
                    // The key length is fixed by the keyring's type; ring refuses only other lengths.
                    Err(_) => unreachable!("a 32-byte ChaCha20-Poly1305 key"),
                };
                (k.name.clone(), LessSafeKey::new(unbound))
            })
            .collect();
        Self {
            prefixes,
            keys,
            write: keyring.write,
            rng: SystemRandom::new(),
        }
    }

    fn sealed_key(&self, key: &str) -> bool {
        self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }

    fn seal(&self, key: &str, value: &[u8]) -> Result<Bytes, StoreError> {
        let (name, cipher) = &self.keys[self.write];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| StoreError::Backend("no random bytes for a nonce".into()))?;
        let mut body = value.to_vec();
        cipher
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.as_bytes()),
                &mut body,
            )
            .map_err(|_| StoreError::Backend(format!("sealing the value of {key} failed")))?;
        let mut out = Vec::with_capacity(MAGIC.len() + name.len() + 1 + NONCE_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out.into())
    }

    fn seal_if(&self, key: &str, value: Bytes) -> Result<Bytes, StoreError> {
        if self.sealed_key(key) {
            self.seal(key, &value)
        } else {
            Ok(value)
        }
    }

    /// Opens a value of `key`; an unsealed value is returned as it is.
    fn open_value(&self, key: &str, value: Bytes) -> Result<Bytes, OpenError> {
        if !self.sealed_key(key) {
            return Ok(value);
        }
        let sealed = match parse(&value) {
            None => return Ok(value),
            Some(Ok(s)) => s,
            Some(Err(())) => return Err(OpenError::Wrong(String::new())),
        };
        let cipher = self
            .keys
            .iter()
            .find(|(name, _)| name == sealed.key)
            .map(|(_, c)| c)
            .ok_or_else(|| OpenError::Unknown(sealed.key.to_string()))?;
        let mut body = sealed.ciphertext.to_vec();
        let plain = cipher
            .open_in_place(
                Nonce::assume_unique_for_key(sealed.nonce),
                Aad::from(key.as_bytes()),
                &mut body,
            )
            .map_err(|_| OpenError::Wrong(sealed.key.to_string()))?;
        Ok(Bytes::copy_from_slice(plain))
    }

    fn open_kv(&self, mut kv: KeyValue) -> Result<KeyValue, StoreError> {
        kv.value = self
            .open_value(&kv.key, kv.value)
            .map_err(|e| e.into_store(&kv.key))?;
        Ok(kv)
    }

    fn open_event(&self, mut event: Event) -> Result<Event, StoreError> {
        event.kv = self.open_kv(event.kv)?;
        event.prev = event.prev.map(|p| self.open_kv(p)).transpose()?;
        Ok(event)
    }
}

impl EncryptedStore {
    /// The same sealing (keys, prefixes) over another handle of the same data, such as a fenced
    /// etcd handle the controllers write through: every handle of a store must seal alike.
    pub fn over(&self, inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            codec: self.codec.clone(),
        }
    }

    /// Re-seals every value under the sealed prefixes that is unsealed or sealed with a key other
    /// than the write key; checks that every sealed value opens. A value changed meanwhile (a
    /// conflict) is left: its writer sealed it with the write key.
    pub async fn reseal(&self, key_file: &Path) -> Result<Resealed, EncryptError> {
        let mut report = Resealed::default();
        let codec = &self.codec;
        let write_name = codec.keys[codec.write].0.clone();
        for prefix in &codec.prefixes {
            let mut after: Option<String> = None;
            loop {
                let page = self.inner.list(prefix, after.as_deref(), 500).await?;
                for kv in &page.items {
                    let sealed = sealed_with(&kv.value);
                    let plain = codec
                        .open_value(&kv.key, kv.value.clone())
                        .map_err(|e| e.into_start(key_file, &kv.key))?;
                    match sealed {
                        Some(name) if name == write_name => {
                            report.current += 1;
                            continue;
                        }
                        Some(_) => report.rotated += 1,
                        None => report.sealed += 1,
                    }
                    let value = codec.seal(&kv.key, &plain)?;
                    match self
                        .inner
                        .update(&kv.key, value, Some(kv.mod_revision))
                        .await
                    {
                        Ok(_) | Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound(_)) => {
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                if !page.more {
                    break;
                }
                after = page.items.last().map(|kv| kv.key.clone());
            }
        }
        Ok(report)
    }
}

enum OpenError {
    Unknown(String),
    Wrong(String),
}

impl OpenError {
    fn into_store(self, store_key: &str) -> StoreError {
        match self {
            OpenError::Unknown(k) => StoreError::Backend(format!(
                "the value of {store_key} is sealed with encryption key {k:?}, which this server does not have"
            )),
            OpenError::Wrong(k) => StoreError::Backend(format!(
                "the value of {store_key} does not decrypt with encryption key {k:?}"
            )),
        }
    }

    fn into_start(self, path: &Path, store_key: &str) -> EncryptError {
        let path = path.to_path_buf();
        let store_key = store_key.to_string();
        match self {
            OpenError::Unknown(key) => EncryptError::UnknownKey {
                path,
                key,
                store_key,
            },
            OpenError::Wrong(key) => EncryptError::WrongKey {
                path,
                key,
                store_key,
            },
        }
    }
}

/// The first sealed value under `prefixes`: (store key, the name of its key).
async fn first_sealed(
    store: &dyn Store,
    prefixes: &[String],
) -> Result<Option<(String, String)>, StoreError> {
    for prefix in prefixes {
        let mut after: Option<String> = None;
        loop {
            let page = store.list(prefix, after.as_deref(), 500).await?;
            if let Some((kv, name)) = page
                .items
                .iter()
                .find_map(|kv| sealed_with(&kv.value).map(|n| (kv, n)))
            {
                return Ok(Some((kv.key.clone(), name)));
            }
            if !page.more {
                break;
            }
            after = page.items.last().map(|kv| kv.key.clone());
        }
    }
    Ok(None)
}

/// The start-up path: loads `key_file` (making one with a new key when there is none and nothing
/// is sealed yet), checks that every sealed value opens, and re-seals what the write key did not
/// seal. Refuses (naming the file) rather than ever serving or writing plaintext.
pub async fn open(
    inner: Arc<dyn Store>,
    key_file: &Path,
    prefixes: Vec<String>,
) -> Result<(EncryptedStore, Resealed), EncryptError> {
    let keyring = match Keyring::load(key_file)? {
        Some(k) => k,
        None => {
            if let Some((store_key, key)) = first_sealed(inner.as_ref(), &prefixes).await? {
                return Err(EncryptError::MissingKeyFile {
                    path: key_file.to_path_buf(),
                    key,
                    store_key,
                });
            }
            let made = Keyring::generate().map_err(|_| KeyringError::Unusable {
                path: key_file.to_path_buf(),
                reason: "no random bytes for a new key".into(),
            })?;
            made.save(key_file)?;
            tracing::info!(file = %key_file.display(), "made a new encryption key for Secrets at rest");
            made
        }
    };
    let store = EncryptedStore::new(inner, &keyring, prefixes);
    let report = store.reseal(key_file).await?;
    Ok((store, report))
}

#[async_trait::async_trait]
impl Store for EncryptedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner
            .get(key)
            .await?
            .map(|kv| self.codec.open_kv(kv))
            .transpose()
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StoreError> {
        let mut page = self.inner.list(prefix, start_after, limit).await?;
        page.items = std::mem::take(&mut page.items)
            .into_iter()
            .map(|kv| self.codec.open_kv(kv))
            .collect::<Result<_, _>>()?;
        Ok(page)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        let sealed = self.codec.seal_if(key, value.clone())?;
        let mut kv = self.inner.create(key, sealed).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let sealed = self.codec.seal_if(key, value.clone())?;
        let mut kv = self.inner.update(key, sealed, expected).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let kv = self.inner.delete(key, expected).await?;
        self.codec.open_kv(kv)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream, StoreError> {
        let inner = self.inner.watch(prefix, after).await?;
        let codec = self.codec.clone();
        Ok(Box::pin(
            inner.map(move |event| event.and_then(|e| codec.open_event(e))),
        ))
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision().await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};

    const CANARY: &str = "canary-3f9a1c";

    fn embedded(dir: &Path) -> Arc<dyn Store> {
        Arc::new(EmbeddedStore::open(&dir.join("store.redb"), EmbeddedOptions::default()).unwrap())
    }

    fn prefixes() -> Vec<String> {
        vec!["/secrets/".to_string()]
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[tokio::test]
    async fn sealed_values_round_trip_and_the_backend_sees_only_ciphertext() {
        let dir = tempfile::tempdir().unwrap();
        let inner = embedded(dir.path());
        let key_file = dir.path().join("encryption-keys");
        let (store, report) = open(inner.clone(), &key_file, prefixes()).await.unwrap();
        assert_eq!(report, Resealed::default());
        let mut watch = store.watch("/secrets/", 0).await.unwrap();
        let v = Bytes::from(format!("value {CANARY}"));
        let created = store.create("/secrets/ns/a", v.clone()).await.unwrap();
        assert_eq!(created.value, v);
        // A key outside the sealed prefixes is stored as it is.
        let plain = "plain-4e2b77";
        store
            .create("/configmaps/ns/a", Bytes::from(plain))
            .await
            .unwrap();
        let v2 = Bytes::from(format!("second {CANARY}"));
        store
            .update("/secrets/ns/a", v2.clone(), None)
            .await
            .unwrap();
        assert_eq!(store.get("/secrets/ns/a").await.unwrap().unwrap().value, v2);
        let listed = store.list("/secrets/", None, 0).await.unwrap();
        assert_eq!(listed.items[0].value, v2);
        let deleted = store.delete("/secrets/ns/a", None).await.unwrap();
        assert_eq!(deleted.value, v2);
        // The watch opens values and previous values.
        let first = watch.next().await.unwrap().unwrap();
        assert_eq!(first.kv.value, v);
        let second = watch.next().await.unwrap().unwrap();
        assert_eq!(second.prev.unwrap().value, v);
        // The backend's history holds ciphertext only for the secret.
        let mut raw = inner.watch("/", 0).await.unwrap();
        for _ in 0..4 {
            let e = raw.next().await.unwrap().unwrap();
            assert!(!contains(&e.kv.value, CANARY), "{}", e.kv.key);
            if let Some(prev) = e.prev {
                assert!(!contains(&prev.value, CANARY), "{}", prev.key);
            }
        }
        drop((store, inner, raw, watch));
        let file = std::fs::read(dir.path().join("store.redb")).unwrap();
        assert!(contains(&file, plain), "the file check sees plaintext");
        assert!(
            !contains(&file, CANARY),
            "the secret is in the file in plaintext"
        );
    }

    #[tokio::test]
    async fn a_value_moved_to_another_key_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let inner = embedded(dir.path());
        let (store, _) = open(inner.clone(), &dir.path().join("k"), prefixes())
            .await
            .unwrap();
        store
            .create("/secrets/ns/a", Bytes::from("x"))
            .await
            .unwrap();
        let raw = inner.get("/secrets/ns/a").await.unwrap().unwrap();
        inner.create("/secrets/ns/b", raw.value).await.unwrap();
        let err = store.get("/secrets/ns/b").await.unwrap_err().to_string();
        assert!(err.contains("does not decrypt"), "{err}");
        assert!(!err.contains('x'.to_string().repeat(2).as_str()));
    }

    #[tokio::test]
    async fn rotation_keeps_old_values_readable_and_reseals_them() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("encryption-keys");
        let inner = embedded(dir.path());
        let (store, _) = open(inner.clone(), &key_file, prefixes()).await.unwrap();
        store
            .create("/secrets/ns/old", Bytes::from("old"))
            .await
            .unwrap();
        // Phase one: a new key every server can read; writes still use key-1.
        let mut ring = Keyring::load(&key_file).unwrap().unwrap();
        let new = ring.add(None, &key_file).unwrap();
        ring.save(&key_file).unwrap();
        let (store, report) = open(inner.clone(), &key_file, prefixes()).await.unwrap();
        assert_eq!(report.current, 1);
        store
            .create("/secrets/ns/mid", Bytes::from("mid"))
            .await
            .unwrap();
        assert_eq!(
            sealed_with(&inner.get("/secrets/ns/mid").await.unwrap().unwrap().value).unwrap(),
            "key-1"
        );
        // Phase two: the new key writes; the pass re-seals the old values.
        ring.set_write(&new, &key_file).unwrap();
        ring.save(&key_file).unwrap();
        let (store, report) = open(inner.clone(), &key_file, prefixes()).await.unwrap();
        assert_eq!(report.rotated, 2);
        for name in ["old", "mid"] {
            let raw = inner
                .get(&format!("/secrets/ns/{name}"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(sealed_with(&raw.value).unwrap(), new);
            let read = store
                .get(&format!("/secrets/ns/{name}"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(read.value, Bytes::from(name));
        }
        // Phase three: the old key goes; everything still opens.
        ring.remove("key-1", &key_file).unwrap();
        ring.save(&key_file).unwrap();
        let (_, report) = open(inner, &key_file, prefixes()).await.unwrap();
        assert_eq!(report.current, 2);
    }

    #[tokio::test]
    async fn a_missing_or_wrong_key_file_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("encryption-keys");
        let inner = embedded(dir.path());
        let (store, _) = open(inner.clone(), &key_file, prefixes()).await.unwrap();
        store
            .create("/secrets/ns/a", Bytes::from("a"))
            .await
            .unwrap();
        drop(store);
        let good = std::fs::read(&key_file).unwrap();
        std::fs::remove_file(&key_file).unwrap();
        let err = open(inner.clone(), &key_file, prefixes())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("is missing") && err.contains("encryption-keys"),
            "{err}"
        );
        assert!(!key_file.exists(), "no new key is made over sealed data");
        // Same name, other bytes.
        Keyring::generate().unwrap().save(&key_file).unwrap();
        let err = open(inner.clone(), &key_file, prefixes())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("does not decrypt with key \"key-1\""), "{err}");
        // Another name.
        let mut other = Keyring::generate().unwrap();
        other.keys[0].name = "other".into();
        other.save(&key_file).unwrap();
        let err = open(inner.clone(), &key_file, prefixes())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("does not list"), "{err}");
        std::fs::write(&key_file, good).unwrap();
        assert!(open(inner, &key_file, prefixes()).await.is_ok());
    }

    #[tokio::test]
    async fn plaintext_written_before_encryption_is_sealed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let inner = embedded(dir.path());
        inner
            .create("/secrets/ns/a", Bytes::from("legacy"))
            .await
            .unwrap();
        let (store, report) = open(inner.clone(), &dir.path().join("k"), prefixes())
            .await
            .unwrap();
        assert_eq!(report.sealed, 1);
        let raw = inner.get("/secrets/ns/a").await.unwrap().unwrap();
        assert!(raw.value.starts_with(MAGIC));
        assert_eq!(
            store.get("/secrets/ns/a").await.unwrap().unwrap().value,
            "legacy"
        );
    }
}
