//! The API server: TLS-only gRPC over the generic [`handler::Handler`] (authorization, then the
//! kind's [`Registry`](crate::registry::Registry)), with authentication on every call and
//! request size limits.
//!
//! [`ControlPlane::start`] prepares the data dir (store, PKI, tokens, client config) and serves
//! until the shutdown future completes; `skiff server` and `skiff up` are thin shells over it.

pub(crate) mod access_review;
mod autoscaling;
pub mod certificates;
pub mod eviction;
mod ha;
mod ha_metrics;
pub mod handler;
pub mod join_token;
mod keyvalue;
pub mod limits;
pub mod node_config;
mod port_forward;
mod services;
pub mod tokens;
pub mod tunnel;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use skiff_api::client::ClientConfig;
use skiff_api::v1::*;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;

use crate::auth::{Authenticator, Identity, new_token};
use crate::pki::{Pki, PkiError, write_private};
use crate::store::Store;
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};
use handler::Handler;

/// Largest gRPC message the server accepts (a little over the largest object).
pub const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    #[error("secrets at rest: {0}")]
    Encryption(#[from] crate::store::encrypt::EncryptError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// Options of one control-plane instance.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub data_dir: PathBuf,
    pub listen: String,
    /// Node grace period and pod eviction timeout of the node lifecycle controller.
    pub lifecycle: crate::controllers::node_lifecycle::LifecycleOptions,
    /// The cluster CIDR the node IPAM controller hands node blocks out of.
    pub ipam: crate::controllers::node_ipam::NodeIpamOptions,
    /// Where Services get cluster IPs and node ports (`--service-cidr`,
    /// `--service-node-port-range`), checked by the caller.
    pub services: crate::registry::allocator::ServiceRanges,
    /// `--cluster-domain`, checked by the caller; published for the agents
    /// ([`skiff_api::cluster_dns`]).
    pub cluster_domain: String,
    /// `--horizontal-pod-autoscaler-sync-period`.
    pub hpa: crate::controllers::hpa::HpaOptions,
    /// `--token-auth-file`: users by static bearer token (Kubernetes' CSV format).
    pub token_auth_file: Option<PathBuf>,
    /// `--etcd`: the store is etcd, shared with other API servers, and the controllers run
    /// only while this server holds the leader lease (docs/ha.md). None: the embedded store.
    pub ha: Option<crate::leader::HaOptions>,
    /// API limits, the audit log and Event TTL.
    pub security: limits::SecurityOptions,
}

/// A prepared control plane: store open, PKI ready, listener bound.
pub struct ControlPlane {
    pub store: Arc<dyn Store>,
    pub addr: SocketAddr,
    pub client_config: ClientConfig,
    pub join_token: String,
    /// Keeps the bootstrap token index in step with the store; aborted when serving ends.
    bootstrap_feed: tokio::task::JoinHandle<()>,
    /// Keeps the revoked node and user certificates in step with the store; aborted when serving ends.
    revocation_feed: tokio::task::JoinHandle<()>,
    certificate_lifetime: certificates::NodeCertificateLifetime,
    node_graph: Arc<crate::auth::node_graph::NodeGraph>,
    /// Keep [`Self::node_graph`] in step with the store; aborted when serving ends.
    node_graph_feeds: Vec<tokio::task::JoinHandle<()>>,
    listener: TcpListener,
    pki: Pki,
    auth: Authenticator,
    lifecycle: crate::controllers::node_lifecycle::LifecycleOptions,
    ipam: crate::controllers::node_ipam::NodeIpamOptions,
    hpa: crate::controllers::hpa::HpaOptions,
    /// RBAC over its watch-fed index, and ServiceAccount tokens.
    rbac: crate::auth::rbac::RbacAuthorizer,
    sa_tokens: crate::auth::service_account::ServiceAccountTokens,
    ha: Option<ha::Ha>,
    limits: Arc<limits::Limits>,
    audit: Option<Arc<crate::audit::AuditLog>>,
    event_ttl: std::time::Duration,
    /// A second address of the same API and dashboard (`--dashboard-addr`), when given.
    dashboard: Option<TcpListener>,
}

fn read_or_create_token(path: &Path) -> Result<String, ServerError> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ServerError::DataDir {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    let token = new_token();
    write_private(path, format!("{token}\n").as_bytes(), 0o600)?;
    Ok(token)
}

/// Normalises `:7443` to `127.0.0.1:7443`.
fn listen_addr(listen: &str) -> String {
    if listen.starts_with(':') {
        format!("127.0.0.1{listen}")
    } else {
        listen.to_string()
    }
}

impl ControlPlane {
    /// Opens the data dir and binds the listener; nothing is served until [`ControlPlane::serve`].
    pub async fn start(options: &ServerOptions) -> Result<Self, ServerError> {
        let dir = &options.data_dir;
        let io = |source| ServerError::DataDir {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        let pki = Pki::load_or_create_naming(&dir.join("pki"), &kubernetes_service_names(options))?;
        let admin_token = read_or_create_token(&dir.join("pki").join("admin-token"))?;
        let etcd = match &options.ha {
            Some(ha) => Some(crate::store::etcd::EtcdStore::connect(ha.etcd.clone()).await?),
            None => None,
        };
        // On etcd, reads and watches come from this server's watch cache (one etcd watch).
        let cache = match (&etcd, options.ha.as_ref().and_then(|ha| ha.watch_cache)) {
            (Some(etcd), Some(cache)) => Some(
                crate::store::cache::WatchCache::start(
                    Arc::new(etcd.clone()),
                    Arc::new(etcd.clone()),
                    cache,
                )
                .await?,
            ),
            _ => None,
        };
        let store: Arc<dyn Store> = match (&etcd, &cache) {
            (_, Some(cache)) => Arc::new(cache.clone()),
            (Some(etcd), None) => Arc::new(etcd.clone()),
            (None, None) => {
                let path = dir.join("store.redb");
                let opened = tokio::task::spawn_blocking(move || {
                    EmbeddedStore::open(&path, EmbeddedOptions::default())
                })
                .await
                .map_err(|e| ServerError::Bootstrap(e.to_string()))??;
                Arc::new(opened)
            }
        };
        // Every store call is timed (`skiff_store_request_duration_seconds`).
        let store: Arc<dyn Store> = Arc::new(crate::metrics::store::Instrumented(store));
        // Secrets are sealed before any backend sees them (its history included); a missing or
        // wrong key file stops the start here.
        let sealed = {
            let (sealed, resealed) = crate::store::encrypt::open(
                store,
                &dir.join(crate::store::keyring::KEY_FILE),
                vec![crate::registry::prefix::<Secret>("")],
            )
            .await?;
            if resealed.rotated + resealed.sealed > 0 {
                tracing::info!(
                    rotated = resealed.rotated,
                    sealed = resealed.sealed,
                    "secrets re-sealed with the write key"
                );
            }
            sealed
        };
        let store: Arc<dyn Store> = Arc::new(sealed.clone());
        let audit = crate::audit::AuditLog::open(&options.security.audit(dir))?;
        ensure_default_namespaces(&store).await?;
        // Bootstrap tokens (the join token among them), known from their Secrets.
        let secrets = crate::registry::Registry::<Secret>::new(store.clone());
        let join_token =
            join_token::ensure(&secrets, &dir.join("join-token"), &pki.ca_cert_pem).await?;
        let bootstrap_tokens = Arc::new(crate::auth::bootstrap::BootstrapTokens::default());
        let bootstrap_feed = bootstrap_tokens
            .start(secrets)
            .await
            .map_err(|e| ServerError::Bootstrap(format!("bootstrap tokens: {e}")))?;
        // Revoked node and user certificates (`skiff node|user revoke`), refused at authentication.
        let revoked_nodes = Arc::new(crate::auth::revocation::RevokedNodes::default());
        let revoked_users = Arc::new(crate::auth::revocation::RevokedCertificates::of(
            crate::auth::revocation::Holder::User,
        ));
        let revocation_feed = crate::auth::revocation::start_all(
            &[&revoked_nodes, &revoked_users],
            crate::registry::Registry::<ConfigMap>::new(store.clone()),
        )
        .await
        .map_err(|e| ServerError::Bootstrap(format!("revoked client certificates: {e}")))?;
        // What each node's pods use, for the node authorizer.
        let node_graph = Arc::new(crate::auth::node_graph::NodeGraph::default());
        let node_graph_feeds = node_graph
            .start(
                crate::registry::Registry::<Pod>::new(store.clone()),
                crate::registry::Registry::<Ingress>::new(store.clone()),
            )
            .await
            .map_err(|e| ServerError::Bootstrap(format!("node authorizer: {e}")))?;
        let bootstrap = |e: crate::error::ApiError| ServerError::Bootstrap(e.to_string());
        crate::auth::rbac::defaults::ensure(&store)
            .await
            .map_err(bootstrap)?;
        let policy = Arc::new(crate::auth::rbac::index::PolicyIndex::default());
        policy.start(store.clone()).await.map_err(bootstrap)?;
        let sa_tokens = {
            use crate::auth::service_account::{Bindings, ServiceAccountTokens, token::Signer};
            let signer = Signer::load_or_create(&dir.join("pki").join("sa.key"))
                .map_err(|e| ServerError::Bootstrap(e.to_string()))?;
            let bindings = Arc::new(Bindings::default());
            bindings.start(store.clone()).await.map_err(bootstrap)?;
            ServiceAccountTokens::new(signer, bindings)
        };
        let token_file = match &options.token_auth_file {
            Some(path) => Some(
                crate::auth::token_file::TokenFile::read(path)
                    .map_err(|e| ServerError::Bootstrap(e.to_string()))?,
            ),
            None => None,
        };
        ensure_default_ingress_class(&store).await?;
        publish_cluster_domain(&store, &options.cluster_domain).await?;
        prepare_service_allocation(&store, options.services).await?;
        node_config::publish(
            &store,
            [
                (
                    node_config::SERVICE_CIDR_KEY.to_string(),
                    options.services.cidr().to_string(),
                ),
                (
                    node_config::CLUSTER_CIDR_KEY.to_string(),
                    options.ipam.cluster_cidr().to_string(),
                ),
            ]
            .into(),
        )
        .await?;
        let addr_text = listen_addr(&options.listen);
        let listener =
            TcpListener::bind(&addr_text)
                .await
                .map_err(|source| ServerError::Listen {
                    addr: addr_text.clone(),
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: addr_text,
                source,
            })?;
        let dial = if addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        };
        let client_config = ClientConfig {
            server: format!("https://{dial}"),
            certificate_authority_data: pki.ca_cert_pem.clone(),
            token: admin_token.clone(),
        };
        write_private(
            &dir.join("config.yaml"),
            client_config.to_yaml().as_bytes(),
            0o600,
        )?;
        write_private(
            &dir.join(crate::rest::kubeconfig::FILE),
            crate::rest::kubeconfig::render(&client_config).as_bytes(),
            0o600,
        )?;
        let mut auth = Authenticator::new(&admin_token, bootstrap_tokens)
            .with(Arc::new(sa_tokens.clone()))
            .with_revocations(revoked_nodes)
            .with_user_revocations(revoked_users);
        if let Some(users) = token_file {
            auth = auth.with(Arc::new(users));
        }
        let ha = match (&options.ha, etcd) {
            (Some(o), Some(etcd)) => Some(ha::Ha::new(etcd, cache, o.lease, addr, sealed)),
            _ => None,
        };
        // A node's rate grows with the pods bound to it.
        let limits = limits::Limits::with_pods(
            options.security.limits,
            Some(Arc::new({
                let graph = node_graph.clone();
                move |node: &str| graph.pods_on(node)
            })),
        );
        Ok(Self {
            store,
            addr,
            client_config,
            join_token,
            bootstrap_feed,
            revocation_feed,
            certificate_lifetime: Default::default(),
            node_graph,
            node_graph_feeds,
            listener,
            pki,
            auth,
            lifecycle: options.lifecycle,
            ipam: options.ipam,
            hpa: options.hpa,
            rbac: crate::auth::rbac::RbacAuthorizer::new(policy),
            sa_tokens,
            ha,
            limits,
            audit: Some(audit),
            event_ttl: options.security.event_ttl,
            dashboard: None,
        })
    }

    /// How long the node client certificates this server signs are valid (a day unless set).
    pub fn set_node_certificate_lifetime(&mut self, lifetime: std::time::Duration) {
        self.certificate_lifetime = certificates::NodeCertificateLifetime(lifetime);
    }

    /// Also serves the API, and so the dashboard (`/dashboard/`), on `addr` (`--dashboard-addr`):
    /// the same TLS certificate and router as the API address. Returns the address bound.
    pub async fn listen_dashboard(&mut self, addr: &str) -> Result<SocketAddr, ServerError> {
        let text = listen_addr(addr);
        let listen = |source| ServerError::Listen {
            addr: text.clone(),
            source,
        };
        let listener = TcpListener::bind(&text).await.map_err(listen)?;
        let bound = listener.local_addr().map_err(listen)?;
        self.dashboard = Some(listener);
        Ok(bound)
    }

    /// Serves the API until `shutdown` completes, running the control-plane controllers alongside.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        // The chain carries the CA so that a joining agent can pin it by the token's fingerprint.
        // Client certificates of the cluster CA (nodes', users') are checked in the handshake;
        // callers without one authenticate with a bearer token. TLS is the REST listener's, for
        // both protocols on the one port (crate::rest).
        let chain = format!("{}\n{}", self.pki.server_cert_pem, self.pki.ca_cert_pem);
        let tls = crate::rest::listener::tls_config(
            &chain,
            &self.pki.server_key_pem,
            &self.pki.ca_cert_pem,
        )
        .map_err(|e| ServerError::Bootstrap(e.to_string()))?;
        let store = self.store.clone();
        let bootstrap_feed = self.bootstrap_feed;
        let revocation_feed = self.revocation_feed;
        let node_graph_feeds = self.node_graph_feeds;
        // Every service's interceptor: authentication, then rate limits and the audit context.
        let auth = limits::Gate::new(self.auth.clone(), self.limits.clone(), self.audit.clone());
        let request_timeout = self.limits.options().request_timeout;
        let event_ttl = tokio::spawn(crate::controllers::event_ttl::run(
            store.clone(),
            self.event_ttl,
        ));
        let autoscaling = crate::controllers::hpa::Autoscaling::new(store.clone());
        crate::metrics::pods::watch(autoscaling.clone());
        // The controllers' and the scheduler's writes are audited as theirs (on etcd, over the
        // fenced handle each term gets).
        let audited = {
            let log = self.audit.clone();
            move |inner: Arc<dyn Store>| -> Arc<dyn Store> {
                match &log {
                    Some(log) => {
                        Arc::new(crate::audit::store::AuditedStore::new(inner, log.clone()))
                    }
                    None => inner,
                }
            }
        };
        // In HA, every server shares the agents' figures it receives (the leader's HPA needs all).
        let shared_figures = self.ha.as_ref().map(|_| {
            let shared = ha_metrics::SharedFigures::new(&self.addr.to_string());
            let task = shared.clone().spawn(store.clone(), autoscaling.clone());
            (shared, task)
        });
        let mut ha = self.ha;
        if let Some(ha) = &mut ha {
            let (wrap, audited) = (ha.wrap.clone(), audited.clone());
            ha.wrap = Arc::new(move |fenced| audited(wrap(fenced)));
        }
        let controllers = ha::Controllers::spawn(
            ha,
            audited(store.clone()),
            ha::ControllerOptions {
                lifecycle: self.lifecycle,
                ipam: self.ipam,
                autoscaling: autoscaling.clone(),
                hpa: self.hpa,
            },
        );
        // Who may do what: the admin, then the node authorizer (RBAC joins the chain here).
        let authz = crate::auth::Chain::new(vec![
            Arc::new(crate::auth::AdminAuthorizer),
            Arc::new(crate::auth::node::NodeAuthorizer::new(
                self.node_graph.clone(),
            )),
            Arc::new(self.rbac.clone()),
        ]);
        // metrics.k8s.io (gRPC for `skiff top`, REST for `kubectl top`) over the agents' figures.
        let resource_metrics = crate::resource_metrics::ResourceMetrics::new(
            Arc::new(autoscaling.clone()),
            store.clone(),
            authz.clone(),
        );
        let autoscaling = autoscaling::AutoscalingService {
            shared: autoscaling,
            authz: authz.clone(),
            resource_metrics: resource_metrics.clone(),
            shared_figures: shared_figures.as_ref().map(|(shared, _)| shared.clone()),
        };
        let repair = tokio::spawn(crate::registry::allocator::repair::run(store.clone()));
        // Every server (not only the leader) keeps its own address in default/kubernetes.
        let kubernetes_service = tokio::spawn(crate::controllers::kubernetes_service::run(
            store.clone(),
            self.addr,
        ));
        let service_accounts = tokio::spawn(crate::audit::store::as_controller(
            "serviceaccount-controller",
            crate::controllers::service_accounts::run(
                audited(store.clone()),
                self.pki.ca_cert_pem.clone(),
            ),
        ));
        let tunnels = tunnel::TunnelService::new(
            tunnel::Tunnels::default(),
            crate::registry::Registry::<Pod>::new(store.clone()),
            authz.clone(),
        );

        let rest = crate::rest::Rest::new(
            crate::rest::Routes::new(&crate::rest::Context {
                store: store.clone(),
                authz: authz.clone(),
                tunnels: tunnels.clone(),
                metrics: resource_metrics.clone(),
                tokens: self.sa_tokens.clone(),
            }),
            auth.clone(),
            crate::rest::Context {
                store: store.clone(),
                authz: authz.clone(),
                tunnels: tunnels.clone(),
                metrics: resource_metrics,
                tokens: self.sa_tokens.clone(),
            },
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (h2, h2_connections) = tokio::sync::mpsc::channel(64);
        let dashboard = self.dashboard.map(|listener| {
            tokio::spawn(crate::rest::listener::accept(
                listener,
                tls.clone(),
                h2.clone(),
                rest.clone(),
                stopped.clone(),
            ))
        });
        let accept = tokio::spawn(crate::rest::listener::accept(
            self.listener,
            tls,
            h2,
            rest.clone(),
            stopped.clone(),
        ));
        let stop_on_shutdown = tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });

        macro_rules! svc {
            ($module:ident :: $server:ident, $ty:ty) => {
                InterceptedService::new(
                    $module::$server::new(Handler::<$ty>::with_chain(store.clone(), authz.clone()))
                        .max_decoding_message_size(MAX_REQUEST_BYTES)
                        .max_encoding_message_size(64 * 1024 * 1024),
                    auth.clone(),
                )
            };
        }

        let result = Server::builder()
            .tcp_nodelay(true)
            // A client's grpc-timeout is honoured (the shorter wins); this is the default.
            .timeout(request_timeout)
            .layer(limits::RecordPath)
            // Requests that are not gRPC go to the REST API.
            .layer(crate::rest::split::SplitLayer(rest))
            // A span per gRPC call (REST requests have theirs from the router).
            .layer(crate::telemetry::grpc::SpanLayer)
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .add_service(svc!(namespace_api_server::NamespaceApiServer, Namespace))
            .add_service(svc!(pod_api_server::PodApiServer, Pod))
            .add_service(svc!(deployment_api_server::DeploymentApiServer, Deployment))
            .add_service(svc!(
                replica_set_api_server::ReplicaSetApiServer,
                ReplicaSet
            ))
            .add_service(svc!(service_api_server::ServiceApiServer, Service))
            .add_service(svc!(endpoints_api_server::EndpointsApiServer, Endpoints))
            .add_service(svc!(secret_api_server::SecretApiServer, Secret))
            .add_service(svc!(config_map_api_server::ConfigMapApiServer, ConfigMap))
            .add_service(svc!(
                persistent_volume_claim_api_server::PersistentVolumeClaimApiServer,
                PersistentVolumeClaim
            ))
            .add_service(svc!(node_api_server::NodeApiServer, Node))
            .add_service(svc!(event_api_server::EventApiServer, Event))
            .add_service(svc!(lease_api_server::LeaseApiServer, Lease))
            .add_service(svc!(ingress_api_server::IngressApiServer, Ingress))
            .add_service(svc!(
                ingress_class_api_server::IngressClassApiServer,
                IngressClass
            ))
            .add_service(svc!(
                horizontal_pod_autoscaler_api_server::HorizontalPodAutoscalerApiServer,
                HorizontalPodAutoscaler
            ))
            .add_service(svc!(
                limit_range_api_server::LimitRangeApiServer,
                LimitRange
            ))
            .add_service(svc!(
                service_account_api_server::ServiceAccountApiServer,
                ServiceAccount
            ))
            .add_service(svc!(role_api_server::RoleApiServer, Role))
            .add_service(svc!(
                cluster_role_api_server::ClusterRoleApiServer,
                ClusterRole
            ))
            .add_service(svc!(
                role_binding_api_server::RoleBindingApiServer,
                RoleBinding
            ))
            .add_service(svc!(
                cluster_role_binding_api_server::ClusterRoleBindingApiServer,
                ClusterRoleBinding
            ))
            .add_service(svc!(
                pod_disruption_budget_api_server::PodDisruptionBudgetApiServer,
                PodDisruptionBudget
            ))
            .add_service(InterceptedService::new(
                node_metrics_api_server::NodeMetricsApiServer::new(autoscaling.clone()),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                scale_from_zero_api_server::ScaleFromZeroApiServer::new(autoscaling),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                node_tunnel_api_server::NodeTunnelApiServer::new(tunnels.clone()),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                pod_log_api_server::PodLogApiServer::new(tunnels.clone()),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                pod_exec_api_server::PodExecApiServer::new(tunnels.clone()),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                pod_port_forward_api_server::PodPortForwardApiServer::new(tunnels),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                key_value_api_server::KeyValueApiServer::new(keyvalue::KeyValueService {
                    pods: crate::registry::Registry::<Pod>::new(store.clone()),
                    buckets: crate::registry::keyvalue::Buckets::new(store.clone()),
                    authz: authz.clone(),
                }),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                pod_eviction_api_server::PodEvictionApiServer::new(eviction::EvictionService::new(
                    store.clone(),
                    authz.clone(),
                )),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                access_review_api_server::AccessReviewApiServer::new(
                    access_review::AccessReviewService {
                        authz: authz.clone(),
                    },
                ),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                service_account_token_api_server::ServiceAccountTokenApiServer::new(
                    tokens::TokenService {
                        tokens: self.sa_tokens.clone(),
                        authz: authz.clone(),
                    },
                ),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                certificate_api_server::CertificateApiServer::new(
                    certificates::CertificateService {
                        pki: self.pki.clone(),
                        authz: authz.clone(),
                        lifetime: self.certificate_lifetime,
                        leases: crate::registry::Registry::new(store.clone()),
                    },
                ),
                auth.clone(),
            ))
            .serve_with_incoming_shutdown(
                // HTTP/2 connections, TLS done, from the listener (crate::rest::listener).
                tokio_stream::StreamExt::map(
                    tokio_stream::wrappers::ReceiverStream::new(h2_connections),
                    Ok::<_, std::io::Error>,
                ),
                async move {
                    let mut stopped = stopped;
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            )
            .await;
        accept.abort();
        if let Some(dashboard) = dashboard {
            dashboard.abort();
        }
        stop_on_shutdown.abort();
        controllers.stop().await;
        repair.abort();
        kubernetes_service.abort();
        if let Some((_, task)) = shared_figures {
            task.abort();
        }
        bootstrap_feed.abort();
        revocation_feed.abort();
        for feed in node_graph_feeds {
            feed.abort();
        }
        service_accounts.abort();
        event_ttl.abort();
        Ok(result?)
    }
}

/// Writes the service ranges for every registry on the store and repairs the allocations once,
/// before anything is served (as Kubernetes runs its repair controllers at start).
async fn prepare_service_allocation(
    store: &Arc<dyn Store>,
    ranges: crate::registry::allocator::ServiceRanges,
) -> Result<(), ServerError> {
    use crate::registry::allocator::repair;
    if let Some(before) = ranges.save(store.as_ref()).await? {
        tracing::warn!(
            service_cidr = %ranges.cidr(),
            node_ports = %ranges.node_ports(),
            was_service_cidr = %before.cidr(),
            was_node_ports = %before.node_ports(),
            "the service ranges changed: Services keep what they hold (those outside the new ranges get a warning event)"
        );
    }
    let now = skiff_api::time::now().seconds;
    match repair::repair_once(store, now).await {
        Ok(report) => tracing::debug!(?report, "service allocation repaired at start"),
        Err(e) => {
            return Err(ServerError::Bootstrap(format!(
                "service allocation repair: {e}"
            )));
        }
    }
    Ok(())
}

/// `default` exists in every cluster, as in Kubernetes, and `kube-node-lease` for the nodes'
/// heartbeat Leases.
async fn ensure_default_namespaces(store: &Arc<dyn Store>) -> Result<(), ServerError> {
    let handler = Handler::<Namespace>::new(store.clone());
    for name in [
        "default",
        // Bootstrap tokens' Secrets live here, as in Kubernetes.
        skiff_api::join::BOOTSTRAP_NAMESPACE,
        "skiff-system",
        skiff_api::validation::NODE_LEASE_NAMESPACE,
    ] {
        let ns = Namespace {
            metadata: Some(ObjectMeta {
                name: name.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        };
        match handler.create(&Identity::Admin, ns).await {
            Ok(_) | Err(crate::error::ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(ServerError::Bootstrap(e.to_string())),
        }
    }
    Ok(())
}

/// The `skiff` IngressClass (controller `skiff.dev/ingress`), marked default, unless some
/// IngressClass exists already: a cluster whose admin chose its classes keeps them.
async fn ensure_default_ingress_class(store: &Arc<dyn Store>) -> Result<(), ServerError> {
    use skiff_api::validation::{DEFAULT_CLASS_ANNOTATION, INGRESS_CLASS, INGRESS_CONTROLLER};
    let handler = Handler::<IngressClass>::new(store.clone());
    let (existing, _) = handler
        .list(&Identity::Admin, &ListRequest::default())
        .await
        .map_err(|e| ServerError::Bootstrap(e.to_string()))?;
    if !existing.is_empty() {
        return Ok(());
    }
    let class = IngressClass {
        metadata: Some(ObjectMeta {
            name: INGRESS_CLASS.to_string(),
            annotations: [(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(IngressClassSpec {
            controller: INGRESS_CONTROLLER.to_string(),
            parameters: None,
        }),
    };
    match handler.create(&Identity::Admin, class).await {
        Ok(_) | Err(crate::error::ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(ServerError::Bootstrap(e.to_string())),
    }
}

/// Publishes `--cluster-domain` in the ConfigMap agents read when they start
/// ([`skiff_api::cluster_dns`]); a server started with another domain replaces it.
/// The names and address of the `default/kubernetes` Service, which clients in pods dial and
/// verify (client-go takes `KUBERNETES_SERVICE_HOST`, the cluster IP), as Kubernetes' API server
/// certificate carries them.
fn kubernetes_service_names(options: &ServerOptions) -> Vec<String> {
    let mut names: Vec<String> = ["kubernetes", "kubernetes.default", "kubernetes.default.svc"]
        .into_iter()
        .map(String::from)
        .collect();
    names.push(format!("kubernetes.default.svc.{}", options.cluster_domain));
    if let Some(ip) = options.services.cidr().nth(1) {
        names.push(ip.to_string());
    }
    names
}

async fn publish_cluster_domain(store: &Arc<dyn Store>, domain: &str) -> Result<(), ServerError> {
    use skiff_api::cluster_dns::{CLUSTER_DOMAIN_KEY, CONFIG_NAME, CONFIG_NAMESPACE};
    let handler = Handler::<ConfigMap>::new(store.clone());
    let bootstrap = |e: crate::error::ApiError| ServerError::Bootstrap(e.to_string());
    let data = [(CLUSTER_DOMAIN_KEY.to_string(), domain.to_string())];
    let existing = match handler
        .get(&Identity::Admin, CONFIG_NAMESPACE, CONFIG_NAME)
        .await
    {
        Ok(existing) => Some(existing),
        Err(crate::error::ApiError::NotFound { .. }) => None,
        Err(e) => return Err(bootstrap(e)),
    };
    match existing {
        Some(existing)
            if existing.data.get(CLUSTER_DOMAIN_KEY).map(String::as_str) == Some(domain) =>
        {
            Ok(())
        }
        Some(mut existing) => {
            tracing::warn!(cluster_domain = %domain, "the cluster domain changed: agents learn it when they restart");
            existing.data.extend(data);
            handler
                .update(&Identity::Admin, existing)
                .await
                .map(|_| ())
                .map_err(bootstrap)
        }
        None => {
            let config = ConfigMap {
                metadata: Some(ObjectMeta {
                    name: CONFIG_NAME.to_string(),
                    namespace: CONFIG_NAMESPACE.to_string(),
                    ..Default::default()
                }),
                data: data.into(),
                ..Default::default()
            };
            match handler.create(&Identity::Admin, config).await {
                Ok(_) | Err(crate::error::ApiError::AlreadyExists { .. }) => Ok(()),
                Err(e) => Err(bootstrap(e)),
            }
        }
    }
}
