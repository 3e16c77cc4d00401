//! Reads a Kubernetes protobuf message into the JSON Kubernetes would write for it, by the
//! message's table in [`super::schema`]: field numbers to JSON names and types (strings, bytes
//! of maps as base64, integers, booleans, maps, `Quantity`, `IntOrString`, `Time`, nested and inlined
//! messages).
//!
//! Go's generated code writes every non-pointer field, even when empty (an empty string, a 0,
//! an empty struct); Kubernetes' JSON leaves those out, and so does this reader: a zero value
//! is dropped unless the field is a pointer in Go (its presence is then the value, as
//! `replicas: 0`). A field number the table lacks is accepted only when it holds nothing;
//! otherwise the body is refused naming the message and field (skiff never drops a field it
//! cannot read).
//!
//! Must not: know any kind (the tables do) or validate objects (the registry does).

use base64::Engine;
use prost::encoding::{WireType, decode_key, decode_varint};
use serde_json::{Map, Value, json};

use super::schema::{Field, Message, Ty};

/// Why a protobuf body cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("{message}: {why}")]
    Malformed { message: &'static str, why: String },
    #[error(
        "{message} field {number} is not read by skiff from protobuf (send the object as JSON or YAML)"
    )]
    UnknownField { message: &'static str, number: u32 },
}

/// One field's raw value on the wire.
enum Raw<'a> {
    Varint(u64),
    Fixed(u64),
    Bytes(&'a [u8]),
}

impl Raw<'_> {
    fn is_zero(&self) -> bool {
        match self {
            Raw::Varint(v) | Raw::Fixed(v) => *v == 0,
            Raw::Bytes(b) => b.is_empty() || all_zero(b),
        }
    }
}

/// The next field of `buf`: its number and raw value.
fn next<'a>(buf: &mut &'a [u8]) -> Result<(u32, Raw<'a>), String> {
    let (number, wire) = decode_key(buf).map_err(|e| e.to_string())?;
    let raw = match wire {
        WireType::Varint => Raw::Varint(decode_varint(buf).map_err(|e| e.to_string())?),
        WireType::SixtyFourBit => Raw::Fixed(take_fixed(buf, 8)?),
        WireType::ThirtyTwoBit => Raw::Fixed(take_fixed(buf, 4)?),
        WireType::LengthDelimited => {
            let len = decode_varint(buf).map_err(|e| e.to_string())?;
            let len = usize::try_from(len).map_err(|_| "a length past memory".to_string())?;
            if len > buf.len() {
                return Err(format!("field {number} runs past the end of the body"));
            }
            let (value, rest) = buf.split_at(len);
            *buf = rest;
            Raw::Bytes(value)
        }
        WireType::StartGroup | WireType::EndGroup => {
            return Err(format!(
                "field {number} is a group (not used by Kubernetes)"
            ));
        }
    };
    Ok((number, raw))
}

fn take_fixed(buf: &mut &[u8], n: usize) -> Result<u64, String> {
    if buf.len() < n {
        return Err("a fixed-size field runs past the end of the body".into());
    }
    let (value, rest) = buf.split_at(n);
    *buf = rest;
    Ok(value
        .iter()
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Whether `bytes`, read as a message, holds only zero values (Go's empty struct of a field
/// the table does not name). A string that happens to read as such a message is vanishingly
/// unlikely (it would be made of 0x08 0x00-like pairs).
fn all_zero(bytes: &[u8]) -> bool {
    let mut buf = bytes;
    while !buf.is_empty() {
        match next(&mut buf) {
            Ok((_, raw)) if raw.is_zero() => {}
            _ => return false,
        }
    }
    true
}

fn malformed(message: &'static Message, why: impl Into<String>) -> WireError {
    WireError::Malformed {
        message: message.name,
        why: why.into(),
    }
}

fn bytes_of<'a>(
    message: &'static Message,
    field: &Field,
    raw: &Raw<'a>,
) -> Result<&'a [u8], WireError> {
    match raw {
        Raw::Bytes(b) => Ok(b),
        _ => Err(malformed(
            message,
            format!("{} is not length-delimited", field.name),
        )),
    }
}

fn varint_of(message: &'static Message, field: &Field, raw: &Raw<'_>) -> Result<u64, WireError> {
    match raw {
        Raw::Varint(v) => Ok(*v),
        _ => Err(malformed(
            message,
            format!("{} is not a varint", field.name),
        )),
    }
}

fn text(message: &'static Message, what: &str, b: &[u8]) -> Result<String, WireError> {
    String::from_utf8(b.to_vec()).map_err(|_| malformed(message, format!("{what} is not UTF-8")))
}

/// Reads `bytes` as `message` into a JSON object.
pub fn decode(message: &'static Message, bytes: &[u8]) -> Result<Map<String, Value>, WireError> {
    let mut out = Map::new();
    let mut buf = bytes;
    while !buf.is_empty() {
        let (number, raw) = next(&mut buf).map_err(|why| malformed(message, why))?;
        let Some(field) = message.fields.iter().find(|f| f.number == number) else {
            if raw.is_zero() {
                continue;
            }
            return Err(WireError::UnknownField {
                message: message.name,
                number,
            });
        };
        if let Ty::Skip = field.ty {
            continue;
        }
        if let Ty::Inline(inner) = field.ty {
            out.extend(decode(inner, bytes_of(message, field, &raw)?)?);
            continue;
        }
        if let Ty::MapStr | Ty::MapBytes | Ty::MapQuantity = field.ty {
            let (key, value) = map_entry(message, field, bytes_of(message, field, &raw)?)?;
            let map = out
                .entry(field.name)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = map {
                map.insert(key, value);
            }
            continue;
        }
        let Some(value) = scalar(message, field, &raw)? else {
            continue;
        };
        if field.repeated {
            let list = out.entry(field.name).or_insert_with(|| json!([]));
            if let Value::Array(list) = list {
                list.push(value);
            }
        } else if field.pointer || !is_empty(&value) {
            out.insert(field.name.to_string(), value);
        }
    }
    Ok(out)
}

/// A JSON value Kubernetes' `omitempty` leaves out.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// One value of a non-map field (`None`: nothing to write, as an unset `IntOrString`).
fn scalar(
    message: &'static Message,
    field: &Field,
    raw: &Raw<'_>,
) -> Result<Option<Value>, WireError> {
    Ok(Some(match field.ty {
        Ty::Str => json!(text(message, field.name, bytes_of(message, field, raw)?)?),
        // Go's int32 travels as a sign-extended varint.
        Ty::I32 => json!(varint_of(message, field, raw)? as i64 as i32),
        Ty::I64 => json!(varint_of(message, field, raw)? as i64),
        Ty::Bool => json!(varint_of(message, field, raw)? != 0),
        Ty::Msg(inner) => Value::Object(decode(inner, bytes_of(message, field, raw)?)?),
        Ty::IntOrString => return int_or_string(bytes_of(message, field, raw)?, field.pointer),
        Ty::Time => return time(bytes_of(message, field, raw)?),
        Ty::Skip | Ty::Inline(_) | Ty::MapStr | Ty::MapBytes | Ty::MapQuantity => return Ok(None),
    }))
}

/// A map entry (a message of key 1 and value 2).
fn map_entry(
    message: &'static Message,
    field: &Field,
    bytes: &[u8],
) -> Result<(String, Value), WireError> {
    let mut buf = bytes;
    let (mut key, mut value) = (String::new(), None);
    while !buf.is_empty() {
        let (number, raw) = next(&mut buf).map_err(|why| malformed(message, why))?;
        let b = bytes_of(message, field, &raw)?;
        match number {
            1 => key = text(message, field.name, b)?,
            2 => {
                value = Some(match field.ty {
                    Ty::MapBytes => json!(base64::engine::general_purpose::STANDARD.encode(b)),
                    Ty::MapQuantity => quantity(b)?,
                    _ => json!(text(message, field.name, b)?),
                })
            }
            _ => {
                return Err(malformed(
                    message,
                    format!("{} has an odd map entry", field.name),
                ));
            }
        }
    }
    let value = value.unwrap_or_else(|| match field.ty {
        Ty::MapQuantity => json!("0"),
        _ => json!(""),
    });
    Ok((key, value))
}

static QUANTITY: Message = Message {
    name: "Quantity",
    fields: &[],
};
static INT_OR_STRING: Message = Message {
    name: "IntOrString",
    fields: &[],
};
static TIME: Message = Message {
    name: "Time",
    fields: &[],
};

/// `resource.Quantity`: `{1: string}`.
fn quantity(bytes: &[u8]) -> Result<Value, WireError> {
    let mut buf = bytes;
    let mut s = String::new();
    while !buf.is_empty() {
        match next(&mut buf).map_err(|why| malformed(&QUANTITY, why))? {
            (1, Raw::Bytes(b)) => s = text(&QUANTITY, "string", b)?,
            (number, _) => {
                return Err(WireError::UnknownField {
                    message: QUANTITY.name,
                    number,
                });
            }
        }
    }
    Ok(json!(s))
}

/// `intstr.IntOrString`: `{1: type (0 int, 1 string), 2: intVal, 3: strVal}`; an unset one
/// (int 0) is left out unless the field is a pointer.
fn int_or_string(bytes: &[u8], pointer: bool) -> Result<Option<Value>, WireError> {
    let mut buf = bytes;
    let (mut kind, mut int, mut string) = (0u64, 0i32, String::new());
    while !buf.is_empty() {
        match next(&mut buf).map_err(|why| malformed(&INT_OR_STRING, why))? {
            (1, Raw::Varint(v)) => kind = v,
            (2, Raw::Varint(v)) => int = v as i64 as i32,
            (3, Raw::Bytes(b)) => string = text(&INT_OR_STRING, "strVal", b)?,
            (number, _) => {
                return Err(WireError::UnknownField {
                    message: INT_OR_STRING.name,
                    number,
                });
            }
        }
    }
    Ok(match kind {
        1 => Some(json!(string)),
        _ if int == 0 && !pointer => None,
        _ => Some(json!(int)),
    })
}

/// `metav1.Time`: `{1: seconds, 2: nanos}` as RFC 3339 in UTC; the zero time is left out.
fn time(bytes: &[u8]) -> Result<Option<Value>, WireError> {
    let mut buf = bytes;
    let mut seconds = 0i64;
    while !buf.is_empty() {
        match next(&mut buf).map_err(|why| malformed(&TIME, why))? {
            (1, Raw::Varint(v)) => seconds = v as i64,
            (2, Raw::Varint(_)) => {}
            (number, _) => {
                return Err(WireError::UnknownField {
                    message: TIME.name,
                    number,
                });
            }
        }
    }
    if seconds == 0 {
        return Ok(None);
    }
    let at = time::OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|e| malformed(&TIME, e.to_string()))?;
    let text = at
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| malformed(&TIME, e.to_string()))?;
    Ok(Some(json!(text)))
}
