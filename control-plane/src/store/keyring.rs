//! The encryption key file of secrets at rest: which keys a server can read with, and the one it
//! writes with.
//!
//! `DIR/encryption-keys` (mode 0600) holds one key a line: `NAME BASE64(32 bytes) [write]`, `#`
//! starts a comment. Exactly one key is marked `write`; every listed key decrypts. Rotation is
//! Kubernetes' two-phase procedure for a shared EncryptionConfiguration: add a key (every server
//! can now read it), then mark it `write` (servers seal new values with it and re-seal old ones at
//! start), then drop the old key. [`Keyring::add`] and [`Keyring::set_write`] edit the file.
//!
//! Must not: know about stores, kinds or values; it only reads and writes the key file.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

/// The length of every key (ChaCha20-Poly1305 takes 256-bit keys).
pub const KEY_LEN: usize = 32;

/// The file name of the key file in a server's data dir.
pub const KEY_FILE: &str = "encryption-keys";

/// One key: its name (stored with every value it seals) and its bytes.
#[derive(Clone)]
pub struct Key {
    pub name: String,
    pub secret: [u8; KEY_LEN],
}

impl fmt::Debug for Key {
    /// The name only: a key's bytes never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The keys of a key file; `write` indexes `keys`.
#[derive(Debug, Clone)]
pub struct Keyring {
    pub keys: Vec<Key>,
    pub write: usize,
}

/// Why a key file cannot be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("encryption key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encryption key file {path}, line {line}: {reason}")]
    Invalid {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("encryption key file {path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl Keyring {
    /// A keyring of one new random key, named `key-1`, used for writes.
    pub fn generate() -> Result<Self, ring::error::Unspecified> {
        Ok(Self {
            keys: vec![Key {
                name: "key-1".into(),
                secret: random_key()?,
            }],
            write: 0,
        })
    }

    /// The key new values are sealed with.
    pub fn write_key(&self) -> &Key {
        &self.keys[self.write]
    }

    pub fn find(&self, name: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.name == name)
    }

    /// Parses a key file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, KeyringError> {
        let invalid = |line: usize, reason: String| KeyringError::Invalid {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut keys: Vec<Key> = Vec::new();
        let mut write = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let (name, encoded, marked) = match fields.as_slice() {
                [name, key] => (*name, *key, false),
                [name, key, "write"] => (*name, *key, true),
                _ => {
                    return Err(invalid(
                        line,
                        "expected `NAME BASE64KEY [write]`".to_string(),
                    ));
                }
            };
            if !valid_name(name) {
                return Err(invalid(
                    line,
                    format!("key name {name:?}: use 1-64 letters, digits, '-', '_' or '.'"),
                ));
            }
            if keys.iter().any(|k| k.name == name) {
                return Err(invalid(line, format!("key {name:?} is listed twice")));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| invalid(line, format!("key {name:?} is not base64")))?;
            let secret: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
                invalid(
                    line,
                    format!("key {name:?} is {} bytes, not {KEY_LEN}", b.len()),
                )
            })?;
            if marked {
                if write.is_some() {
                    return Err(invalid(
                        line,
                        "a second key is marked `write`; exactly one may be".to_string(),
                    ));
                }
                write = Some(keys.len());
            }
            keys.push(Key {
                name: name.to_string(),
                secret,
            });
        }
        let unusable = |reason: &str| KeyringError::Unusable {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if keys.is_empty() {
            return Err(unusable("no keys"));
        }
        let write = write.ok_or_else(|| unusable("no key is marked `write`"))?;
        Ok(Self { keys, write })
    }

    /// The file's text: a comment, then one line a key.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# skiff encryption keys for Secrets at rest: NAME BASE64(32 bytes) [write]\n\
             # Every key listed decrypts; the one marked `write` seals new values. Keep this file\n\
             # secret and identical on every server of a cluster (see docs/security/encryption-at-rest.md).\n",
        );
        for (i, key) in self.keys.iter().enumerate() {
            let encoded = base64::engine::general_purpose::STANDARD.encode(key.secret);
            let mark = if i == self.write { " write" } else { "" };
            out.push_str(&format!("{} {encoded}{mark}\n", key.name));
        }
        out
    }

    /// Reads the key file at `path`; `Ok(None)` if there is none.
    pub fn load(path: &Path) -> Result<Option<Self>, KeyringError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KeyringError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the keyring to `path` (0600, through a temporary file renamed into place).
    pub fn save(&self, path: &Path) -> Result<(), KeyringError> {
        let io = |source| KeyringError::Io {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(self.render().as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Adds a new random key named `name` (phase one of a rotation: readable, not yet written
    /// with). Returns its name.
    pub fn add(&mut self, name: Option<&str>, path: &Path) -> Result<String, KeyringError> {
        let unusable = |reason: String| KeyringError::Unusable {
            path: path.to_path_buf(),
            reason,
        };
        let name = match name {
            Some(n) => n.to_string(),
            None => (1..)
                .map(|i| format!("key-{i}"))
                .find(|n| self.find(n).is_none())
                .unwrap_or_else(|| "key".to_string()),
        };
        if !valid_name(&name) {
            return Err(unusable(format!(
                "key name {name:?}: use 1-64 letters, digits, '-', '_' or '.'"
            )));
        }
        if self.find(&name).is_some() {
            return Err(unusable(format!("a key named {name:?} exists already")));
        }
        let secret = random_key().map_err(|_| unusable("no random bytes".to_string()))?;
        self.keys.push(Key {
            name: name.clone(),
            secret,
        });
        Ok(name)
    }

    /// Marks `name` as the key new values are sealed with (phase two of a rotation).
    pub fn set_write(&mut self, name: &str, path: &Path) -> Result<(), KeyringError> {
        self.write = self
            .keys
            .iter()
            .position(|k| k.name == name)
            .ok_or_else(|| KeyringError::Unusable {
                path: path.to_path_buf(),
                reason: format!("no key named {name:?}"),
            })?;
        Ok(())
    }

    /// Drops key `name` (phase three, once every value is re-sealed); the write key stays.
    pub fn remove(&mut self, name: &str, path: &Path) -> Result<(), KeyringError> {
        let unusable = |reason: String| KeyringError::Unusable {
            path: path.to_path_buf(),
            reason,
        };
        let i = self
            .keys
            .iter()
            .position(|k| k.name == name)
            .ok_or_else(|| unusable(format!("no key named {name:?}")))?;
        if i == self.write {
            return Err(unusable(format!(
                "key {name:?} is the write key; mark another `write` first"
            )));
        }
        self.keys.remove(i);
        if i < self.write {
            self.write -= 1;
        }
        Ok(())
    }
}

fn random_key() -> Result<[u8; KEY_LEN], ring::error::Unspecified> {
    let mut secret = [0u8; KEY_LEN];
    SystemRandom::new().fill(&mut secret)?;
    Ok(secret)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn path() -> &'static Path {
        Path::new("/data/encryption-keys")
    }

    #[test]
    fn a_rendered_keyring_parses_back() {
        let mut ring = Keyring::generate().unwrap();
        let added = ring.add(None, path()).unwrap();
        assert_eq!(added, "key-2");
        ring.set_write("key-2", path()).unwrap();
        let back = Keyring::parse(&ring.render(), path()).unwrap();
        assert_eq!(back.keys.len(), 2);
        assert_eq!(back.write_key().name, "key-2");
        assert_eq!(back.find("key-1").unwrap().secret, ring.keys[0].secret);
    }

    #[test]
    fn bad_key_files_are_refused_naming_file_and_line() {
        let cases = [
            ("", "no keys"),
            ("k1 AAAA write\n", "line 1: key \"k1\" is 3 bytes, not 32"),
            ("k1 !!!\n", "is not base64"),
            (
                "k1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
                "no key is marked `write`",
            ),
            (
                "k1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= write\n\
                 k1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
                "line 2: key \"k1\" is listed twice",
            ),
            ("k/1 AAAA write\n", "key name \"k/1\""),
        ];
        for (text, want) in cases {
            let err = Keyring::parse(text, path()).unwrap_err().to_string();
            assert!(err.contains("/data/encryption-keys"), "{err}");
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_write_key_cannot_be_removed_and_indexes_stay_right() {
        let mut ring = Keyring::generate().unwrap();
        ring.add(Some("new"), path()).unwrap();
        ring.set_write("new", path()).unwrap();
        assert!(ring.remove("new", path()).is_err());
        ring.remove("key-1", path()).unwrap();
        assert_eq!(ring.write_key().name, "new");
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let ring = Keyring::generate().unwrap();
        let text = format!("{ring:?}");
        let encoded = base64::engine::general_purpose::STANDARD.encode(ring.keys[0].secret);
        assert!(!text.contains(&encoded));
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn saved_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(KEY_FILE);
        Keyring::generate().unwrap().save(&file).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(Keyring::load(&file).unwrap().is_some());
        assert!(Keyring::load(&dir.path().join("none")).unwrap().is_none());
    }
}
