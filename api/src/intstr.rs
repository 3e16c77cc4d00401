//! `IntOrString`: a port number or name, a count or a percentage — a bare `8080` or `"http"` in YAML.
//!
//! Hand-written (the proto declares the same message) because the proto3 JSON mapping of a oneof
//! would be `{intVal: 8080}`, which no Kubernetes manifest looks like.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An integer or a string, as Kubernetes' `intstr.IntOrString`.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct IntOrString {
    #[prost(oneof = "IntOrStringValue", tags = "1, 2")]
    pub value: Option<IntOrStringValue>,
}

/// The two forms of [`IntOrString`].
#[derive(Clone, PartialEq, Eq, Hash, prost::Oneof)]
pub enum IntOrStringValue {
    #[prost(int32, tag = "1")]
    Int(i32),
    #[prost(string, tag = "2")]
    Str(String),
}

impl IntOrString {
    pub fn int(value: i32) -> Self {
        Self {
            value: Some(IntOrStringValue::Int(value)),
        }
    }

    pub fn string(value: impl Into<String>) -> Self {
        Self {
            value: Some(IntOrStringValue::Str(value.into())),
        }
    }

    /// Resolves a count or a percentage (`"25%"`) of `total`, rounding up when `round_up`.
    pub fn scaled_value(&self, total: i32, round_up: bool) -> Option<i32> {
        match &self.value {
            Some(IntOrStringValue::Int(n)) => Some(*n),
            Some(IntOrStringValue::Str(s)) => {
                let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
                let scaled = pct * i64::from(total);
                let v = if round_up {
                    (scaled + 99) / 100
                } else {
                    scaled / 100
                };
                i32::try_from(v).ok()
            }
            None => None,
        }
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(IntOrStringValue::Int(n)) => write!(f, "{n}"),
            Some(IntOrStringValue::Str(s)) => f.write_str(s),
            None => Ok(()),
        }
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.value {
            Some(IntOrStringValue::Int(n)) => serializer.serialize_i32(*n),
            Some(IntOrStringValue::Str(s)) => serializer.serialize_str(s),
            None => serializer.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                i32::try_from(v)
                    .map(IntOrString::int)
                    .map_err(|_| E::custom(format!("integer {v} out of range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i32::try_from(v)
                    .map(IntOrString::int)
                    .map_err(|_| E::custom(format!("integer {v} out of range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IntOrString::string(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(IntOrString::default())
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_forms() {
        let n: IntOrString = serde_json::from_str("8080").unwrap();
        assert_eq!(n, IntOrString::int(8080));
        let s: IntOrString = serde_json::from_str("\"http\"").unwrap();
        assert_eq!(s, IntOrString::string("http"));
        assert_eq!(serde_json::to_string(&n).unwrap(), "8080");
        assert!(serde_json::from_str::<IntOrString>("[1]").is_err());
    }

    #[test]
    fn percentages() {
        assert_eq!(IntOrString::string("25%").scaled_value(10, true), Some(3));
        assert_eq!(IntOrString::string("25%").scaled_value(10, false), Some(2));
        assert_eq!(IntOrString::int(4).scaled_value(10, true), Some(4));
        assert_eq!(IntOrString::string("x").scaled_value(10, true), None);
    }
}
