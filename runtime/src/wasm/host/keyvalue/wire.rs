//! The protocol between a guest's host (the shim) and the node agent serving its pod's
//! `wasi:keyvalue`, over a unix socket the agent made for that pod: one [`Request`] and one
//! [`Reply`] at a time, each a frame of a 4-byte big-endian length and a JSON body (values
//! base64). The agent knows the pod by the socket the connection came to; a request names only
//! the bucket and the operation.
//!
//! Owns the message types, the framing ([`read_frame`], [`write_frame`]) and [`Connection`], the
//! client side. Both sides use it (the agent's server is in `skiff-node-agent`). Must not: know
//! where the data is kept.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Largest frame either side accepts: a batch of values near the size limit.
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// How long a client keeps trying to reach an agent that is not listening (restarting).
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

/// Bytes, as base64 text in JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Value(pub Vec<u8>);

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Value)
            .map_err(serde::de::Error::custom)
    }
}

/// One operation on one bucket of the pod's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub bucket: String,
    #[serde(flatten)]
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// Makes the bucket if needed. Reply: [`Reply::Done`].
    Open,
    /// Reply: [`Reply::Value`].
    Get { key: String },
    /// Reply: [`Reply::Done`].
    Set { key: String, value: Value },
    /// Reply: [`Reply::Done`] (also when the key was absent).
    Delete { key: String },
    /// Reply: [`Reply::Exists`].
    Exists { key: String },
    /// Reply: [`Reply::Keys`].
    ListKeys { cursor: Option<u64> },
    /// Reply: [`Reply::Number`].
    Increment { key: String, delta: u64 },
    /// Reply: [`Reply::Values`], one per key, in order.
    GetMany { keys: Vec<String> },
    /// Reply: [`Reply::Done`].
    SetMany { entries: Vec<(String, Value)> },
    /// Reply: [`Reply::Done`].
    DeleteMany { keys: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Reply {
    Done,
    Value {
        value: Option<Value>,
    },
    Exists {
        exists: bool,
    },
    Keys {
        keys: Vec<String>,
        cursor: Option<u64>,
    },
    Number {
        number: u64,
    },
    Values {
        values: Vec<Option<(String, Value)>>,
    },
    Failed {
        failure: Failure,
    },
}

/// What the guest is told when an operation fails (`wasi:keyvalue/store.error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum Failure {
    NoSuchStore,
    AccessDenied,
    Other(String),
}

/// Reads one frame's JSON; `None` at a clean end of stream.
pub async fn read_frame<T, R>(r: &mut R) -> std::io::Result<Option<T>>
where
    T: for<'de> Deserialize<'de>,
    R: tokio::io::AsyncRead + Unpin,
{
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is over the {MAX_FRAME_BYTES} limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Writes one frame.
pub async fn write_frame<T, W>(w: &mut W, message: &T) -> std::io::Result<()>
where
    T: Serialize,
    W: tokio::io::AsyncWrite + Unpin,
{
    let body = serde_json::to_vec(message)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "a request of {} bytes is over the {MAX_FRAME_BYTES} limit",
                body.len()
            ),
        ));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame).await?;
    w.flush().await
}

/// The client side: one connection per call (a few tens of microseconds on a unix socket), so
/// a restarted agent never leaves a stale connection behind, and a request is never sent twice
/// (a retried `increment` could count twice).
pub struct Connection {
    socket: PathBuf,
}

impl Connection {
    pub fn new(socket: PathBuf) -> Self {
        Connection { socket }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends `request` and waits for its reply.
    pub async fn call(&self, request: &Request) -> std::io::Result<Reply> {
        let mut stream = connect(&self.socket).await?;
        write_frame(&mut stream, request).await?;
        match read_frame(&mut stream).await? {
            Some(reply) => Ok(reply),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the agent closed the connection without a reply",
            )),
        }
    }
}

/// Connects, waiting up to [`CONNECT_PATIENCE`] for an agent that is not listening yet.
async fn connect(socket: &Path) -> std::io::Result<UnixStream> {
    let deadline = Instant::now() + CONNECT_PATIENCE;
    loop {
        match UnixStream::connect(socket).await {
            Ok(s) => return Ok(s),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
