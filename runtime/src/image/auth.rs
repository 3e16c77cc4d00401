//! Registry credentials: Docker config files (`{"auths": {...}}`, what `docker login` writes and
//! what a `kubernetes.io/dockerconfigjson` Secret holds) read into a [`Keyring`], and the
//! credentials a keyring has for an image, most specific first, as kubelet's keyring matches
//! them:
//!
//! - an entry's key is `host[:port][/path]`, with or without `http://` or `https://`;
//! - it matches an image whose registry has the same host (a `*` label matches one label:
//!   `*.example.com`) and the same port (none matches none), and whose repository starts with
//!   the entry's path at a `/` boundary;
//! - entries with longer paths come first; kubelet tries each in turn.
//!
//! Each entry gives a user name and password (`auth`, base64 of `user:password`, or `username`
//! and `password`), or a registry token (`registrytoken`, sent as a bearer token). An
//! `identitytoken` (an OAuth refresh token) is not supported: such an entry is skipped.
//!
//! A [`Credential`]'s `Debug` never shows the secret part; nothing here logs.
//!
//! Must not: read files other than the one it is given, or write anything.

use std::fmt;
use std::path::Path;

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use sha2::{Digest, Sha256};

/// One way to authenticate to a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// HTTP Basic, or the token service's basic auth where the registry asks for a bearer token.
    Basic { username: String, password: String },
    /// A registry token sent as is (`Authorization: Bearer ...`).
    Bearer(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl Credential {
    pub(crate) fn registry_auth(&self) -> RegistryAuth {
        match self {
            Self::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Self::Bearer(token) => RegistryAuth::Bearer(token.clone()),
        }
    }

    /// A short digest that tells credentials apart (for client caches), never the secret.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        match self {
            Self::Basic { username, password } => {
                h.update(b"basic\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(password.as_bytes());
            }
            Self::Bearer(token) => {
                h.update(b"bearer\0");
                h.update(token.as_bytes());
            }
        }
        format!("{:x}", h.finalize())[..16].to_string()
    }

    /// For messages: `user "alice"` or `a registry token`.
    pub fn describe(&self) -> String {
        match self {
            Self::Basic { username, .. } => format!("user {username:?}"),
            Self::Bearer(_) => "a registry token".to_string(),
        }
    }
}

/// Why a Docker config cannot be read. Messages name the source and the entry, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{source_name}: {source}")]
    Read {
        source_name: String,
        source: std::io::Error,
    },
    #[error("{source_name}: not a Docker config: {detail}")]
    Invalid { source_name: String, detail: String },
}

/// One entry of a config: where it applies and the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    host: String,
    port: Option<String>,
    path: String,
    credential: Credential,
}

/// Credentials by registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    entries: Vec<Entry>,
}

/// `host[:port][/path]` of a config key or image, lower-cased host, scheme dropped.
fn split_location(key: &str) -> (String, Option<String>, String) {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (hostport, path) = match key.split_once('/') {
        Some((h, p)) => (h, p.trim_end_matches('/')),
        None => (key, ""),
    };
    // `[::1]:5000` keeps its brackets in the host.
    let split_at = if hostport.starts_with('[') {
        hostport
            .find(']')
            .map(|i| i + 1)
            .filter(|&i| hostport[i..].starts_with(':'))
    } else {
        hostport.rfind(':')
    };
    let (host, port) = match split_at {
        Some(i)
            if hostport[i + 1..].bytes().all(|b| b.is_ascii_digit()) && i + 1 < hostport.len() =>
        {
            (&hostport[..i], Some(hostport[i + 1..].to_string()))
        }
        _ => (hostport, None),
    };
    (host.to_ascii_lowercase(), port, path.to_string())
}

/// Whether `pattern` (labels, `*` matching one label) matches `host`.
fn host_matches(pattern: &str, host: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let h: Vec<&str> = host.split('.').collect();
    p.len() == h.len() && p.iter().zip(&h).all(|(p, h)| *p == "*" || p == h)
}

impl Keyring {
    /// The credentials of a Docker config's JSON text: `{"auths": {...}}`, or with `legacy`
    /// (a `.dockercfg`) the registries' object alone. `source_name` names it in errors.
    pub fn parse(bytes: &[u8], legacy: bool, source_name: &str) -> Result<Self, AuthError> {
        let invalid = |detail: String| AuthError::Invalid {
            source_name: source_name.to_string(),
            detail,
        };
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
        let auths = if legacy {
            json.as_object()
        } else {
            match json.get("auths") {
                // docker's config.json may hold no logins at all.
                None => return Ok(Self::default()),
                Some(a) => a.as_object(),
            }
        }
        .ok_or_else(|| invalid("\"auths\" must be an object".into()))?;
        let mut entries = Vec::new();
        for (key, entry) in auths {
            let text = |f: &str| {
                entry
                    .get(f)
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
            };
            let credential = if let Some(auth) = text("auth") {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok())
                    .ok_or_else(|| invalid(format!("auths[{key}].auth is not base64 text")))?;
                let (username, password) = decoded.split_once(':').ok_or_else(|| {
                    invalid(format!("auths[{key}].auth is not base64 of user:password"))
                })?;
                Credential::Basic {
                    username: username.to_string(),
                    password: password.to_string(),
                }
            } else if let (Some(username), Some(password)) = (text("username"), text("password")) {
                Credential::Basic {
                    username: username.to_string(),
                    password: password.to_string(),
                }
            } else if let Some(token) = text("registrytoken") {
                Credential::Bearer(token.to_string())
            } else {
                // Nothing usable (an identitytoken, or an empty entry docker leaves after a
                // credential helper): skipped, as kubelet skips what it cannot use.
                continue;
            };
            let (host, port, path) = split_location(key);
            entries.push(Entry {
                host,
                port,
                path,
                credential,
            });
        }
        Ok(Self { entries })
    }

    /// The credentials of the Docker config file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let bytes = std::fs::read(path).map_err(|source| AuthError::Read {
            source_name: path.display().to_string(),
            source,
        })?;
        Self::parse(&bytes, false, &path.display().to_string())
    }

    /// This keyring's entries, then `other`'s.
    pub fn merge(mut self, other: &Keyring) -> Self {
        self.entries.extend(other.entries.iter().cloned());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A short digest of every entry (where each applies and its credential), to tell keyrings
    /// apart without showing a secret.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for e in &self.entries {
            h.update(e.host.as_bytes());
            h.update(b"\0");
            h.update(e.port.as_deref().unwrap_or("").as_bytes());
            h.update(b"\0");
            h.update(e.path.as_bytes());
            h.update(b"\0");
            h.update(e.credential.fingerprint().as_bytes());
            h.update(b"\n");
        }
        format!("{:x}", h.finalize())[..16].to_string()
    }

    /// The credentials for `registry` (`host[:port]`, as references spell it) and `repository`
    /// (`team/app`): longest matching path first, entries of equal path in the keyring's order,
    /// each credential once.
    pub fn lookup(&self, registry: &str, repository: &str) -> Vec<Credential> {
        let (host, port, _) = split_location(registry);
        let mut found: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| {
                host_matches(&e.host, &host)
                    && e.port == port
                    && (e.path.is_empty()
                        || repository == e.path
                        || repository.starts_with(&format!("{}/", e.path)))
            })
            .collect();
        found.sort_by_key(|e| std::cmp::Reverse(e.path.len()));
        let mut out: Vec<Credential> = Vec::new();
        for e in found {
            if !out.contains(&e.credential) {
                out.push(e.credential.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> Credential {
        Credential::Basic {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn config_entries_match_by_host_port_and_path() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let json = format!(
            r#"{{"auths": {{
                "https://127.0.0.1:5000": {{"auth": "{auth}"}},
                "127.0.0.1:5000/team": {{"username": "bob", "password": "pw"}},
                "*.registry.test": {{"registrytoken": "tok"}},
                "registry.test": {{"identitytoken": "refresh"}}
            }}}}"#
        );
        let ring = Keyring::parse(json.as_bytes(), false, "config.json").expect("parse");
        assert_eq!(
            ring.lookup("127.0.0.1:5000", "team/app"),
            vec![basic("bob", "pw"), basic("alice", "s3cret")]
        );
        assert_eq!(
            ring.lookup("127.0.0.1:5000", "teamwork/app"),
            vec![basic("alice", "s3cret")]
        );
        assert!(ring.lookup("127.0.0.1:5001", "team/app").is_empty());
        assert!(ring.lookup("127.0.0.1", "team/app").is_empty());
        assert_eq!(
            ring.lookup("eu.registry.test", "x"),
            vec![Credential::Bearer("tok".into())]
        );
        // The identitytoken entry is skipped; the glob covers one label only.
        assert!(ring.lookup("registry.test", "x").is_empty());
        assert!(ring.lookup("a.b.registry.test", "x").is_empty());
        // Debug never shows a secret.
        let shown = format!("{ring:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("tok\""),
            "{shown}"
        );
    }

    #[test]
    fn bad_configs_are_refused_naming_the_entry_not_the_secret() {
        let e = Keyring::parse(
            br#"{"auths": {"r:1": {"auth": "bm9jb2xvbg=="}}}"#,
            false,
            "s",
        )
        .expect_err("no colon");
        assert_eq!(
            e.to_string(),
            "s: not a Docker config: auths[r:1].auth is not base64 of user:password"
        );
        let e = Keyring::parse(b"{", false, "s").expect_err("json");
        assert!(
            e.to_string()
                .starts_with("s: not a Docker config: not valid JSON"),
            "{e}"
        );
        assert!(Keyring::parse(b"{}", false, "s").expect("empty").is_empty());
        let legacy = Keyring::parse(br#"{"r:1": {"username": "u", "password": "p"}}"#, true, "s")
            .expect("legacy");
        assert_eq!(legacy.lookup("r:1", "x"), vec![basic("u", "p")]);
        // Two configs: the first's credentials come first.
        let merged = legacy.clone().merge(
            &Keyring::parse(
                br#"{"auths": {"r:1": {"username": "v", "password": "q"}}}"#,
                false,
                "t",
            )
            .expect("second"),
        );
        assert_eq!(
            merged.lookup("r:1", "x"),
            vec![basic("u", "p"), basic("v", "q")]
        );
        assert_ne!(basic("u", "p").fingerprint(), basic("u", "q").fingerprint());
    }
}
