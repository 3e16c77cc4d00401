//! The client side of a connection to the API server: the config file (`~/.skiff/config.yaml`),
//! TLS pinned to the cluster CA, a bearer token on every call, and [`Api`], one typed handle per kind.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use tokio_stream::Stream;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::resource::Resource;
use crate::v1::{DeleteRequest, GetRequest, ListMeta, ListRequest, WatchRequest};

/// The name the server certificate is issued for, whatever address the client dials.
pub const SERVER_NAME: &str = "skiff-apiserver";

/// The response metadata key of a server's warnings (Kubernetes' `Warning` header): one value
/// per warning, such as `would violate PodSecurity "restricted:latest": ...`.
pub const WARNING_METADATA: &str = "warning";

type WarningHandler = Box<dyn Fn(&str) + Send + Sync>;
static WARNING_HANDLER: std::sync::OnceLock<WarningHandler> = std::sync::OnceLock::new();

/// Sets what the process does with the warnings servers return (client-go's
/// `SetDefaultWarningHandler`); the CLI prints `Warning: ...`. Without one they are dropped.
/// The first handler set stays: returns false if one was set already.
pub fn set_warning_handler(handler: impl Fn(&str) + Send + Sync + 'static) -> bool {
    WARNING_HANDLER.set(Box::new(handler)).is_ok()
}

/// The response's value, its warnings handed to the warning handler.
pub(crate) fn with_warnings<T>(response: tonic::Response<T>) -> T {
    if let Some(handler) = WARNING_HANDLER.get() {
        for value in response.metadata().get_all(WARNING_METADATA) {
            if let Ok(text) = value.to_str() {
                handler(text);
            }
        }
    }
    response.into_inner()
}

/// `config.yaml`: where the API server is, the CA to trust, and the credentials to present.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConfig {
    /// `https://127.0.0.1:7443`; several, comma-separated, for an HA control plane.
    pub server: String,
    /// PEM of the cluster CA.
    pub certificate_authority_data: String,
    /// Bearer token.
    pub token: String,
}

/// Errors reading a config or connecting.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading client config {path}: {source}")]
    ReadConfig {
        path: String,
        source: std::io::Error,
    },
    #[error("client config {path}: {message}")]
    ParseConfig { path: String, message: String },
    #[error("server address {0:?}: {1}")]
    Address(String, String),
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
}

impl ClientConfig {
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClientError::ReadConfig {
            path: path.display().to_string(),
            source,
        })?;
        serde_yaml_ng::from_str(&text).map_err(|e| ClientError::ParseConfig {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).unwrap_or_default()
    }

    /// Opens a TLS channel (lazily: the first call connects) to the server(s) in this config.
    pub fn connect(&self) -> Result<Transport, ClientError> {
        let endpoints = self.endpoints(None)?;
        let channel = Channel::balance_list(endpoints.into_iter());
        Ok(InterceptedService::new(
            channel,
            BearerAuth::new(&self.token)?,
        ))
    }

    /// Opens a channel presenting `identity` (mutual TLS), whose certificate [`Renewer::renew`]
    /// replaces later: calls after a renewal go over new connections with the new certificate,
    /// while streams already open on the old ones go on.
    pub fn connect_renewable(
        &self,
        identity: &ClientIdentity,
    ) -> Result<(Transport, Renewer), ClientError> {
        let (channel, changes) = Channel::balance_channel(16);
        let renewer = Renewer {
            config: self.clone(),
            changes,
            current: std::sync::Mutex::new((0, Vec::new())),
        };
        renewer.install(identity)?;
        let transport = InterceptedService::new(channel, BearerAuth::new(&self.token)?);
        Ok((transport, renewer))
    }

    /// One endpoint per server, TLS with the cluster CA (and `identity`, if any).
    fn endpoints(&self, identity: Option<&ClientIdentity>) -> Result<Vec<Endpoint>, ClientError> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.certificate_authority_data))
            .domain_name(SERVER_NAME);
        if let Some(id) = identity {
            tls = tls.identity(tonic::transport::Identity::from_pem(
                &id.certificate_pem,
                &id.key_pem,
            ));
        }
        let mut endpoints = Vec::new();
        for server in self
            .server
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let endpoint = Endpoint::from_shared(server.to_string())
                .map_err(|e| ClientError::Address(server.to_string(), e.to_string()))?
                .tls_config(tls.clone())
                .map_err(|e| ClientError::Address(server.to_string(), e.to_string()))?
                .connect_timeout(std::time::Duration::from_secs(5))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(std::time::Duration::from_secs(20))
                .keep_alive_while_idle(true);
            endpoints.push(endpoint);
        }
        if endpoints.is_empty() {
            return Err(ClientError::Address(
                self.server.clone(),
                "no server address".into(),
            ));
        }
        Ok(endpoints)
    }
}

/// A client certificate and its key, PEM, for mutual TLS (a node's `system:node:NAME`).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub certificate_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

type EndpointChanges =
    tokio::sync::mpsc::Sender<tonic::transport::channel::Change<(u64, usize), Endpoint>>;

/// Replaces the client certificate of a [`ClientConfig::connect_renewable`] channel.
pub struct Renewer {
    config: ClientConfig,
    changes: EndpointChanges,
    /// The generation in use and its endpoints' keys.
    current: std::sync::Mutex<(u64, Vec<(u64, usize)>)>,
}

impl Renewer {
    /// Puts endpoints presenting `identity` in, then takes the previous ones out.
    pub fn renew(&self, identity: &ClientIdentity) -> Result<(), ClientError> {
        self.install(identity)
    }

    fn install(&self, identity: &ClientIdentity) -> Result<(), ClientError> {
        use tonic::transport::channel::Change;
        let endpoints = self.config.endpoints(Some(identity))?;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let generation = current.0 + 1;
        let closed = |_| ClientError::Connect(self.config.server.clone(), "channel closed".into());
        let mut keys = Vec::new();
        for (i, endpoint) in endpoints.into_iter().enumerate() {
            self.changes
                .try_send(Change::Insert((generation, i), endpoint))
                .map_err(closed)?;
            keys.push((generation, i));
        }
        for key in std::mem::replace(&mut current.1, keys) {
            self.changes.try_send(Change::Remove(key)).map_err(closed)?;
        }
        current.0 = generation;
        Ok(())
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct BearerAuth {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl BearerAuth {
    pub fn new(token: &str) -> Result<Self, ClientError> {
        if token.is_empty() {
            return Ok(Self { header: None });
        }
        let header = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::ParseConfig {
                path: "token".into(),
                message: "token is not ASCII".into(),
            })?;
        Ok(Self {
            header: Some(header),
        })
    }
}

impl Interceptor for BearerAuth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.header {
            request.metadata_mut().insert("authorization", h.clone());
        }
        Ok(request)
    }
}

/// The channel every typed client runs over.
pub type Transport = InterceptedService<Channel, BearerAuth>;

/// One event of a watch: `ADDED`, `MODIFIED` or `DELETED` and the object.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent<K> {
    pub kind: String,
    pub object: K,
}

pub type WatchStream<K> = Pin<Box<dyn Stream<Item = Result<WatchEvent<K>, tonic::Status>> + Send>>;

/// The generated `XWatchEvent` message of kind `K` (used by the server to build its stream).
pub trait WatchEventMessage<K>: Send + 'static {
    fn new(kind: &str, object: K) -> Self;
}

/// The gRPC verbs of a kind, implemented for every kind in [`crate::kinds`].
pub trait ResourceClient: Resource {
    fn create(t: &Transport, obj: Self)
    -> impl Future<Output = Result<Self, tonic::Status>> + Send;
    fn get(
        t: &Transport,
        req: GetRequest,
    ) -> impl Future<Output = Result<Self, tonic::Status>> + Send;
    fn list(
        t: &Transport,
        req: ListRequest,
    ) -> impl Future<Output = Result<(Vec<Self>, ListMeta), tonic::Status>> + Send;
    fn update(t: &Transport, obj: Self)
    -> impl Future<Output = Result<Self, tonic::Status>> + Send;
    fn update_status(
        t: &Transport,
        obj: Self,
    ) -> impl Future<Output = Result<Self, tonic::Status>> + Send;
    fn delete(
        t: &Transport,
        req: DeleteRequest,
    ) -> impl Future<Output = Result<Self, tonic::Status>> + Send;
    fn watch(
        t: &Transport,
        req: WatchRequest,
    ) -> impl Future<Output = Result<WatchStream<Self>, tonic::Status>> + Send;
}

/// A typed handle on one kind, optionally scoped to a namespace (kube-rs' `Api<K>` habit).
pub struct Api<K> {
    transport: Transport,
    namespace: String,
    _kind: std::marker::PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Self {
            transport: self.transport.clone(),
            namespace: self.namespace.clone(),
            _kind: Default::default(),
        }
    }
}

impl<K: ResourceClient> Api<K> {
    /// Objects of `namespace` (ignored for cluster-scoped kinds); `""` means all namespaces for lists.
    pub fn new(transport: Transport, namespace: &str) -> Self {
        let namespace = if K::NAMESPACED {
            namespace.to_string()
        } else {
            String::new()
        };
        Self {
            transport,
            namespace,
            _kind: Default::default(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub async fn create(&self, obj: K) -> Result<K, tonic::Status> {
        K::create(&self.transport, self.with_namespace(obj)).await
    }

    pub async fn get(&self, name: &str) -> Result<K, tonic::Status> {
        K::get(
            &self.transport,
            GetRequest {
                namespace: self.namespace.clone(),
                name: name.to_string(),
            },
        )
        .await
    }

    pub async fn get_opt(&self, name: &str) -> Result<Option<K>, tonic::Status> {
        match self.get(name).await {
            Ok(obj) => Ok(Some(obj)),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    pub async fn list(&self, params: ListParams) -> Result<(Vec<K>, ListMeta), tonic::Status> {
        K::list(
            &self.transport,
            ListRequest {
                namespace: self.namespace.clone(),
                label_selector: params.label_selector,
                field_selector: params.field_selector,
                limit: params.limit,
                r#continue: params.continue_token,
                ..Default::default()
            },
        )
        .await
    }

    /// Every object, read `page_size` at a time (one message per page, whatever the number of
    /// objects). The returned meta's resourceVersion is the first page's: a watch from it sees
    /// every change made since, including those made while paging.
    pub async fn list_paged(
        &self,
        params: ListParams,
        page_size: i32,
    ) -> Result<(Vec<K>, ListMeta), tonic::Status> {
        let mut params = ListParams {
            limit: page_size.max(1),
            continue_token: String::new(),
            ..params
        };
        let mut all = Vec::new();
        loop {
            let (items, meta) = self.list(params.clone()).await?;
            all.extend(items);
            if meta.r#continue.is_empty() {
                return Ok((all, meta));
            }
            params.continue_token = meta.r#continue;
        }
    }

    pub async fn update(&self, obj: K) -> Result<K, tonic::Status> {
        K::update(&self.transport, self.with_namespace(obj)).await
    }

    pub async fn update_status(&self, obj: K) -> Result<K, tonic::Status> {
        K::update_status(&self.transport, self.with_namespace(obj)).await
    }

    pub async fn delete(&self, name: &str) -> Result<K, tonic::Status> {
        K::delete(
            &self.transport,
            DeleteRequest {
                namespace: self.namespace.clone(),
                name: name.to_string(),
                ..Default::default()
            },
        )
        .await
    }

    pub async fn delete_with(&self, req: DeleteRequest) -> Result<K, tonic::Status> {
        K::delete(
            &self.transport,
            DeleteRequest {
                namespace: self.namespace.clone(),
                ..req
            },
        )
        .await
    }

    /// Watches from `resource_version` (empty: current objects as ADDED, then changes).
    pub async fn watch(
        &self,
        params: ListParams,
        resource_version: &str,
    ) -> Result<WatchStream<K>, tonic::Status> {
        K::watch(
            &self.transport,
            WatchRequest {
                namespace: self.namespace.clone(),
                label_selector: params.label_selector,
                field_selector: params.field_selector,
                resource_version: resource_version.to_string(),
            },
        )
        .await
    }

    fn with_namespace(&self, mut obj: K) -> K {
        if K::NAMESPACED && !self.namespace.is_empty() && obj.metadata_mut().namespace.is_empty() {
            obj.metadata_mut().namespace = self.namespace.clone();
        }
        obj
    }
}

/// Selectors and paging for list and watch.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub label_selector: String,
    pub field_selector: String,
    pub limit: i32,
    pub continue_token: String,
}

impl ListParams {
    pub fn labels(mut self, selector: &str) -> Self {
        self.label_selector = selector.to_string();
        self
    }

    pub fn fields(mut self, selector: &str) -> Self {
        self.field_selector = selector.to_string();
        self
    }
}
