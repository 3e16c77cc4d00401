//! `wasi:keyvalue/{store,atomics,batch}`, bindings generated from `wit/keyvalue`: every call is
//! a request to the node agent serving the guest's pod ([`wire`]), which keeps the buckets in
//! the cluster's store, scoped to the pod's namespace (see `wit/keyvalue/README.md` for the
//! consistency and the limits, which the control plane enforces).
//!
//! A bucket resource holds only its name: opening one asks the agent (which makes it if
//! needed), then each operation names it. Without an agent ([`super::HostGrants`] gives no
//! socket: a plain containerd), `open` fails with `error::other` saying why. Must not: cache
//! values (another replica may change them at any time).

pub mod wire;

use std::path::PathBuf;

use wasmtime::component::{HasData, Linker, Resource, ResourceTableError};

use super::{HostParts, HostView};
use wire::{Failure, Op, Reply, Request, Value};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: {
            "wasi:keyvalue/store.open": async | trappable,
            "wasi:keyvalue/store.[method]bucket.get": async | trappable,
            "wasi:keyvalue/store.[method]bucket.set": async | trappable,
            "wasi:keyvalue/store.[method]bucket.delete": async | trappable,
            "wasi:keyvalue/store.[method]bucket.exists": async | trappable,
            "wasi:keyvalue/store.[method]bucket.list-keys": async | trappable,
            "wasi:keyvalue/atomics.increment": async | trappable,
            "wasi:keyvalue/batch.get-many": async | trappable,
            "wasi:keyvalue/batch.set-many": async | trappable,
            "wasi:keyvalue/batch.delete-many": async | trappable,
            default: trappable,
        },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::KvError,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// The package and version served, as `wit/keyvalue/world.wit` declares it.
pub const PACKAGE: &str = "wasi:keyvalue@0.2.0-draft";

/// An open bucket: its name.
pub struct Bucket {
    name: String,
}

/// A failed operation, as the guest is told it (or a trap, for a bad resource handle).
#[derive(Debug)]
pub enum KvError {
    NoSuchStore,
    AccessDenied,
    Other(String),
    Trap(wasmtime::Error),
}

impl From<ResourceTableError> for KvError {
    fn from(e: ResourceTableError) -> Self {
        KvError::Trap(e.into())
    }
}

impl From<Failure> for KvError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::NoSuchStore => KvError::NoSuchStore,
            Failure::AccessDenied => KvError::AccessDenied,
            Failure::Other(m) => KvError::Other(m),
        }
    }
}

/// How an instance reaches its agent.
pub struct Client {
    connection: Option<wire::Connection>,
}

impl Client {
    pub(crate) fn new(socket: Option<PathBuf>) -> Self {
        Client {
            connection: socket.map(wire::Connection::new),
        }
    }

    async fn call(&self, bucket: &str, op: Op) -> Result<Reply, KvError> {
        let Some(connection) = &self.connection else {
            return Err(KvError::Other(
                "wasi:keyvalue is not available here: no skiff node agent serves this task \
                 (its bundle names no keyvalue socket)"
                    .to_string(),
            ));
        };
        let request = Request {
            bucket: bucket.to_string(),
            op,
        };
        match connection.call(&request).await {
            Ok(Reply::Failed { failure }) => Err(failure.into()),
            Ok(reply) => Ok(reply),
            Err(e) => Err(KvError::Other(format!(
                "the node agent's keyvalue socket {}: {e}",
                connection.socket().display()
            ))),
        }
    }
}

fn unexpected(reply: Reply) -> KvError {
    KvError::Other(format!("unexpected reply from the node agent: {reply:?}"))
}

fn done(reply: Reply) -> Result<(), KvError> {
    match reply {
        Reply::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}

impl HostParts<'_> {
    fn bucket(&self, bucket: &Resource<Bucket>) -> Result<String, KvError> {
        Ok(self.table.get(bucket)?.name.clone())
    }

    async fn on(&mut self, bucket: &Resource<Bucket>, op: Op) -> Result<Reply, KvError> {
        let name = self.bucket(bucket)?;
        let client: &Client = &self.ctx.keyvalue;
        client.call(&name, op).await
    }
}

impl store::Host for HostParts<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, KvError> {
        let client: &Client = &self.ctx.keyvalue;
        done(client.call(&identifier, Op::Open).await?)?;
        Ok(self.table.push(Bucket { name: identifier })?)
    }

    fn convert_error(&mut self, err: KvError) -> wasmtime::Result<store::Error> {
        match err {
            KvError::NoSuchStore => Ok(store::Error::NoSuchStore),
            KvError::AccessDenied => Ok(store::Error::AccessDenied),
            KvError::Other(m) => Ok(store::Error::Other(m)),
            KvError::Trap(e) => Err(e),
        }
    }
}

impl store::HostBucket for HostParts<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, KvError> {
        match self.on(&bucket, Op::Get { key }).await? {
            Reply::Value { value } => Ok(value.map(|v| v.0)),
            other => Err(unexpected(other)),
        }
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), KvError> {
        let op = Op::Set {
            key,
            value: Value(value),
        };
        done(self.on(&bucket, op).await?)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), KvError> {
        done(self.on(&bucket, Op::Delete { key }).await?)
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, KvError> {
        match self.on(&bucket, Op::Exists { key }).await? {
            Reply::Exists { exists } => Ok(exists),
            other => Err(unexpected(other)),
        }
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, KvError> {
        match self.on(&bucket, Op::ListKeys { cursor }).await? {
            Reply::Keys { keys, cursor } => Ok(store::KeyResponse { keys, cursor }),
            other => Err(unexpected(other)),
        }
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for HostParts<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, KvError> {
        match self.on(&bucket, Op::Increment { key, delta }).await? {
            Reply::Number { number } => Ok(number),
            other => Err(unexpected(other)),
        }
    }
}

impl batch::Host for HostParts<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        match self.on(&bucket, Op::GetMany { keys }).await? {
            Reply::Values { values } => Ok(values
                .into_iter()
                .map(|v| v.map(|(k, v)| (k, v.0)))
                .collect()),
            other => Err(unexpected(other)),
        }
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KvError> {
        let entries = key_values.into_iter().map(|(k, v)| (k, Value(v))).collect();
        done(self.on(&bucket, Op::SetMany { entries }).await?)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), KvError> {
        done(self.on(&bucket, Op::DeleteMany { keys }).await?)
    }
}

struct HasKeyValue;

impl HasData for HasKeyValue {
    type Data<'a> = HostParts<'a>;
}

pub(super) fn add_to_linker<T: HostView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKeyValue>(linker, view::<T>)?;
    atomics::add_to_linker::<T, HasKeyValue>(linker, view::<T>)?;
    batch::add_to_linker::<T, HasKeyValue>(linker, view::<T>)?;
    Ok(())
}

fn view<T: HostView>(data: &mut T) -> HostParts<'_> {
    data.host()
}
