//! Image pull Secrets, as Kubernetes validates them: a `kubernetes.io/dockerconfigjson` Secret
//! holds a `.dockerconfigjson` key whose value is a Docker config (`{"auths": {...}}`), a
//! `kubernetes.io/dockercfg` one a `.dockercfg` key with the legacy form (the `auths` object
//! alone). Each entry's `auth`, when given, is base64 of `user:password`.
//!
//! Errors name the key and the registry entry, never a credential.
//!
//! Must not: read the credentials beyond checking their shape (the node agent uses them).

use base64::Engine;

use super::FieldErrors;
use crate::v1::Secret;

/// The Secret type of an image pull secret.
pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// Its one key.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// The legacy type and key.
pub const DOCKERCFG: &str = "kubernetes.io/dockercfg";
pub const DOCKERCFG_KEY: &str = ".dockercfg";

/// The value of `key` in `data`, or in `stringData` (folded into `data` by the server).
fn value<'a>(s: &'a Secret, key: &str) -> Option<&'a [u8]> {
    s.data
        .get(key)
        .map(Vec::as_slice)
        .or_else(|| s.string_data.get(key).map(String::as_bytes))
}

pub fn validate_pull_secret(s: &Secret, errors: &mut FieldErrors) {
    let (key, legacy) = match s.r#type.as_str() {
        DOCKER_CONFIG_JSON => (DOCKER_CONFIG_JSON_KEY, false),
        DOCKERCFG => (DOCKERCFG_KEY, true),
        _ => return,
    };
    let path = format!("data[{key}]");
    let Some(bytes) = value(s, key) else {
        errors.add(path, format!("required for a Secret of type {}", s.r#type));
        return;
    };
    let json: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            // serde_json's message names a line and column, not the content.
            errors.add(path, format!("not valid JSON: {e}"));
            return;
        }
    };
    let auths = if legacy {
        Some(&json)
    } else {
        json.get("auths")
    };
    let Some(auths) = auths.and_then(|a| a.as_object()) else {
        errors.add(
            path,
            if legacy {
                "must be a JSON object of registries"
            } else {
                "must be a JSON object with an \"auths\" object of registries"
            },
        );
        return;
    };
    for (registry, entry) in auths {
        let epath = format!("{path}.auths[{registry}]");
        let Some(entry) = entry.as_object() else {
            errors.add(epath, "must be a JSON object");
            continue;
        };
        for field in [
            "auth",
            "username",
            "password",
            "identitytoken",
            "registrytoken",
        ] {
            if entry.get(field).is_some_and(|v| !v.is_string()) {
                errors.add(format!("{epath}.{field}"), "must be a string");
            }
        }
        if let Some(auth) = entry.get("auth").and_then(|a| a.as_str())
            && !auth.is_empty()
        {
            let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim());
            if !decoded.is_ok_and(|d| d.contains(&b':')) {
                errors.add(
                    format!("{epath}.auth"),
                    "must be base64 of \"username:password\"",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(kind: &str, key: &str, value: &str) -> Secret {
        Secret {
            r#type: kind.into(),
            data: [(key.to_string(), value.as_bytes().to_vec())].into(),
            ..Default::default()
        }
    }

    fn errors_of(s: &Secret) -> String {
        let mut errors = FieldErrors::default();
        validate_pull_secret(s, &mut errors);
        errors.to_string()
    }

    #[test]
    fn docker_config_secrets_are_checked_without_showing_credentials() {
        let good = r#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpzM2NyZXQ="}}}"#;
        assert_eq!(
            errors_of(&secret(DOCKER_CONFIG_JSON, DOCKER_CONFIG_JSON_KEY, good)),
            ""
        );
        assert_eq!(
            errors_of(&secret(
                DOCKERCFG,
                DOCKERCFG_KEY,
                r#"{"r":{"username":"u","password":"p"}}"#
            )),
            ""
        );
        let e = errors_of(&secret(DOCKER_CONFIG_JSON, "other", good));
        assert!(e.contains("data[.dockerconfigjson]: required"), "{e}");
        let e = errors_of(&secret(
            DOCKER_CONFIG_JSON,
            DOCKER_CONFIG_JSON_KEY,
            "{not json s3cret",
        ));
        assert!(
            e.contains("data[.dockerconfigjson]: not valid JSON") && !e.contains("s3cret"),
            "{e}"
        );
        let e = errors_of(&secret(
            DOCKER_CONFIG_JSON,
            DOCKER_CONFIG_JSON_KEY,
            r#"{"r":{}}"#,
        ));
        assert!(e.contains("\"auths\" object"), "{e}");
        let e = errors_of(&secret(
            DOCKER_CONFIG_JSON,
            DOCKER_CONFIG_JSON_KEY,
            r#"{"auths":{"r:5000":{"auth":"bm9jb2xvbg==","password":7}}}"#,
        ));
        assert!(
            e.contains("data[.dockerconfigjson].auths[r:5000].auth: must be base64")
                && e.contains("auths[r:5000].password: must be a string"),
            "{e}"
        );
        // Other types are not looked into.
        assert_eq!(errors_of(&secret("Opaque", "x", "{")), "");
    }
}
