//! Secret values never printed: [`Redacted`] wraps a value whose `Debug` and `Display` print
//! `<redacted>`, and a [`Secret`]'s `Debug` (written here, not derived) shows its metadata, type
//! and key names with each value's size only, as `kubectl describe secret` does. So a
//! `tracing::debug!(?secret)` or an error that formats a Secret cannot leak its data.
//!
//! Must not: change what a Secret holds or how it encodes; only how it prints.

use std::fmt;

use crate::v1::Secret;

/// A value that prints as `<redacted>` (its `Deref` gives the value to code that needs it).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redacted<T>(pub T);

impl<T> Redacted<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Redacted<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `key: N bytes` for each entry, values left out.
struct Sizes<'a, V: AsRef<[u8]>>(&'a std::collections::BTreeMap<String, V>);

impl<V: AsRef<[u8]>> fmt::Debug for Sizes<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in self.0 {
            map.entry(k, &format_args!("<redacted, {} bytes>", v.as_ref().len()));
        }
        map.finish()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("metadata", &self.metadata)
            .field("data", &Sizes(&self.data))
            .field("string_data", &Sizes(&self.string_data))
            .field("type", &self.r#type)
            .field("immutable", &self.immutable)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::v1::{ObjectMeta, SecretList, SecretWatchEvent};

    const CANARY: &str = "canary-7d1e";

    fn secret() -> Secret {
        Secret {
            metadata: Some(ObjectMeta {
                name: "db".into(),
                ..Default::default()
            }),
            data: [("password".to_string(), CANARY.as_bytes().to_vec())].into(),
            string_data: [("token".to_string(), CANARY.to_string())].into(),
            r#type: "Opaque".into(),
            immutable: None,
        }
    }

    #[test]
    fn a_secret_prints_key_names_and_sizes_never_values() {
        let s = secret();
        for text in [
            format!("{s:?}"),
            format!("{s:#?}"),
            format!(
                "{:?}",
                SecretList {
                    metadata: None,
                    items: vec![s.clone()]
                }
            ),
            format!(
                "{:?}",
                SecretWatchEvent {
                    r#type: "ADDED".into(),
                    object: Some(s.clone())
                }
            ),
        ] {
            assert!(!text.contains(CANARY), "{text}");
            // The bytes as a list of numbers would leak too.
            assert!(!text.contains("99, 97, 110"), "{text}");
            assert!(
                text.contains("password") && text.contains("11 bytes"),
                "{text}"
            );
            assert!(text.contains("\"db\""), "{text}");
        }
    }

    #[test]
    fn redacted_prints_nothing_of_its_value() {
        let r = Redacted(CANARY.to_string());
        assert_eq!(format!("{r:?}"), "<redacted>");
        assert_eq!(format!("{r}"), "<redacted>");
        assert_eq!(r.len(), CANARY.len());
        assert_eq!(r.into_inner(), CANARY);
    }
}
