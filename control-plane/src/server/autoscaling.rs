//! The agents' side of autoscaling: `NodeMetricsApi.Report` (each node's pods' latest figures,
//! into [`PodMetrics`](crate::pod_metrics::PodMetrics)) and `ScaleFromZeroApi` (the Services a
//! node's proxy holds, streamed whole on every change, and `Wake`). Both thin: the HPA
//! controller's [`Autoscaling`] does the work.
//!
//! Must not: write objects itself (a wake goes through the registry in
//! [`Autoscaling::wake`]).

use std::pin::Pin;

use skiff_api::v1::*;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::auth::{Attributes, Chain, Verb, identity};
use crate::controllers::hpa::Autoscaling;
use crate::controllers::hpa::state::WakeError;
use crate::pod_metrics::ReportError;

/// Serves both services over the shared state.
#[derive(Clone)]
pub struct AutoscalingService {
    pub shared: Autoscaling,
    pub authz: Chain,
    /// `ListNodes` and `ListPods` (metrics.k8s.io for `skiff top`).
    pub resource_metrics: crate::resource_metrics::ResourceMetrics,
    /// In HA, what this server received, shared with the others (the leader's HPA needs every
    /// node's figures).
    pub shared_figures: Option<std::sync::Arc<super::ha_metrics::SharedFigures>>,
}

#[tonic::async_trait]
impl node_metrics_api_server::NodeMetricsApi for AutoscalingService {
    async fn report(
        &self,
        req: Request<NodeMetricsReport>,
    ) -> Result<Response<NodeMetricsAck>, Status> {
        let who = identity(&req)?;
        let report = Attributes::new(Verb::Create, "Node", "")
            .name(&req.get_ref().node_name)
            .subresource("metrics");
        self.authz.check(&who, &report)?;
        self.shared
            .metrics()
            .report(req.get_ref())
            .map_err(|e| match e {
                ReportError::Invalid(m) => Status::invalid_argument(m),
                ReportError::Full(m) => Status::resource_exhausted(m),
            })?;
        if let Some(shared) = &self.shared_figures {
            shared.received(req.get_ref());
        }
        Ok(Response::new(NodeMetricsAck {}))
    }

    async fn list_nodes(
        &self,
        req: Request<MetricsListRequest>,
    ) -> Result<Response<NodeMetricsList>, Status> {
        let who = identity(&req)?;
        let items = self.resource_metrics.nodes(&who, req.get_ref()).await?;
        Ok(Response::new(NodeMetricsList { items }))
    }

    async fn list_pods(
        &self,
        req: Request<MetricsListRequest>,
    ) -> Result<Response<PodMetricsList>, Status> {
        let who = identity(&req)?;
        let items = self.resource_metrics.pods(&who, req.get_ref()).await?;
        Ok(Response::new(PodMetricsList { items }))
    }
}

type HoldStream = Pin<Box<dyn Stream<Item = Result<HeldServices, Status>> + Send>>;

#[tonic::async_trait]
impl scale_from_zero_api_server::ScaleFromZeroApi for AutoscalingService {
    type WatchHoldsStream = HoldStream;

    async fn watch_holds(
        &self,
        req: Request<WatchHoldsRequest>,
    ) -> Result<Response<HoldStream>, Status> {
        let who = identity(&req)?;
        self.authz
            .check(&who, &Attributes::new(Verb::Watch, "ScaleFromZero", ""))?;
        let holds = tokio_stream::wrappers::WatchStream::new(self.shared.holds());
        let stream = tokio_stream::StreamExt::map(holds, |set| {
            Ok(HeldServices {
                services: set
                    .keys()
                    .map(|(namespace, name)| ServiceRef {
                        namespace: namespace.clone(),
                        name: name.clone(),
                    })
                    .collect(),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn wake(&self, req: Request<WakeRequest>) -> Result<Response<WakeResponse>, Status> {
        let who = identity(&req)?;
        let r = req.get_ref();
        let wake = Attributes::new(Verb::Update, "ScaleFromZero", &r.namespace).name(&r.name);
        self.authz.check(&who, &wake)?;
        let started = std::time::Instant::now();
        match self.shared.wake(&r.namespace, &r.name).await {
            Ok((target, replicas)) => {
                tracing::debug!(service = %r.name, namespace = %r.namespace, node = %r.node_name, %target, replicas, took = ?started.elapsed(), "woken");
                Ok(Response::new(WakeResponse {
                    target: format!("{}/{target}", r.namespace),
                    replicas,
                }))
            }
            Err(e @ WakeError::NotHeld(..)) => Err(Status::failed_precondition(e.to_string())),
            Err(WakeError::Api(e)) => Err(e.into()),
        }
    }
}
