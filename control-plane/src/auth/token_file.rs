//! Users by static bearer token: `skiff server --token-auth-file FILE`, Kubernetes' CSV format,
//! one user a line: `token,user,uid,"group1,group2"` (groups optional; `#` lines and blank lines
//! skipped). The file is read at start; changing it needs a restart, as in Kubernetes.
//!
//! Tokens are kept as SHA-256 digests and looked up by digest, so a guess's timing tells nothing
//! about a real token. Must not: decide what a user may do (RBAC does).

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::Identity;

/// A token file that cannot be used: the server refuses to start, naming the file and line.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("token auth file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("token auth file {path} line {line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
}

/// The users of a token file.
#[derive(Debug, Clone, Default)]
pub struct TokenFile {
    users: HashMap<[u8; 32], Identity>,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Splits one CSV line: fields separated by commas, a field in double quotes may hold commas
/// (and `""` for a quote).
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) if field.is_empty() => quoted = true,
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => {
                quoted = false;
                if !matches!(chars.peek(), None | Some(',')) {
                    return Err("text after a closing quote".into());
                }
            }
            (',', false) => out.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    out.push(field);
    Ok(out)
}

impl TokenFile {
    pub fn parse(path: &str, text: &str) -> Result<Self, TokenFileError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let bad = |message: String| TokenFileError::Line {
                path: path.to_string(),
                line: i + 1,
                message,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f = fields(line).map_err(bad)?;
            if f.len() < 3 {
                return Err(bad(
                    "expected token,user,uid[,\"group1,group2\"]".to_string()
                ));
            }
            let (token, name) = (f[0].trim(), f[1].trim());
            if token.is_empty() || name.is_empty() {
                return Err(bad("the token and the user name are required".into()));
            }
            if name == "admin" || name.starts_with("system:") {
                return Err(bad(format!(
                    "user name {name:?} is reserved (admin and system: names are the server's)"
                )));
            }
            let groups: Vec<String> = f
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            let user = Identity::User {
                name: name.to_string(),
                groups,
            };
            if users.insert(digest(token.as_bytes()), user).is_some() {
                return Err(bad("the token is given twice".into()));
            }
        }
        Ok(Self { users })
    }

    pub fn read(path: &Path) -> Result<Self, TokenFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&shown, &text)
    }

    /// The user a token names.
    pub fn user(&self, token: &[u8]) -> Option<Identity> {
        self.users.get(&digest(token)).cloned()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

impl super::authn::TokenAuthenticator for TokenFile {
    fn authenticate_token(&self, token: &[u8]) -> Option<Result<Identity, String>> {
        self.user(token).map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_csv_lines() {
        let text = "# users\n\nt0k3n-jane,jane,1001,\"dev,ops\"\nt0k3n-bob,bob,1002\n\"tok,en\",carol,1003,\n";
        let file = TokenFile::parse("tokens.csv", text).unwrap();
        assert_eq!(file.len(), 3);
        assert_eq!(
            file.user(b"t0k3n-jane"),
            Some(Identity::User {
                name: "jane".into(),
                groups: vec!["dev".into(), "ops".into()]
            })
        );
        assert_eq!(
            file.user(b"t0k3n-bob"),
            Some(Identity::User {
                name: "bob".into(),
                groups: vec![]
            })
        );
        assert!(file.user(b"tok,en").is_some());
        assert_eq!(file.user(b"t0k3n"), None);
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        for (text, message) in [
            ("tok,jane\n", "line 1: expected token,user,uid"),
            ("a,jane,1\na,bob,2\n", "line 2: the token is given twice"),
            (
                "a,system:masters,1\n",
                "line 1: user name \"system:masters\" is reserved",
            ),
            ("\"a,jane,1\n", "line 1: unterminated quote"),
            (
                ",jane,1\n",
                "line 1: the token and the user name are required",
            ),
        ] {
            let e = TokenFile::parse("t.csv", text).unwrap_err().to_string();
            assert!(e.starts_with("token auth file t.csv "), "{e}");
            assert!(e.contains(message), "{e}");
        }
    }
}
