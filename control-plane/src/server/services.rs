//! The tonic services: one impl per kind, each a thin conversion onto [`Handler`]. Each call is
//! audited here (the object it names and how it ended) and each watch holds a place among its
//! caller's watches ([`super::limits`]).

use std::pin::Pin;

use skiff_api::v1::*;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use skiff_api::ResourceExt;

use super::handler::Handler;
use super::limits::{Call, object_ref};
use crate::auth::identity;
use crate::auth::revocation::{Revocable, end_when_revoked};
use crate::registry::warnings;

type EventStream<E> = Pin<Box<dyn Stream<Item = Result<E, Status>> + Send>>;

macro_rules! serve_kinds {
    ($( $ty:ident => $module:ident :: $service:ident, $list:ident, $event:ident; )*) => {$(
        #[tonic::async_trait]
        impl $module::$service for Handler<$ty> {
            async fn create(&self, req: Request<$ty>) -> Result<Response<$ty>, Status> {
                let who = identity(&req)?;
                let call = Call::of(&req);
                let (ns, name) = (req.get_ref().namespace().to_string(), req.get_ref().name().to_string());
                let (created, warned) = warnings::collect(Handler::create(self, &who, req.into_inner())).await;
                let created = created.map_err(Status::from);
                let name = created.as_ref().map(|o| o.name().to_string()).unwrap_or(name);
                call.done(&who, "create", object_ref::<$ty>(&ns, &name, "", false), &created);
                Ok(warnings::into_response(created?, warned))
            }

            async fn get(&self, req: Request<GetRequest>) -> Result<Response<$ty>, Status> {
                let who = identity(&req)?;
                let call = Call::of(&req);
                let r = req.into_inner();
                let got = Handler::get(self, &who, &r.namespace, &r.name).await.map_err(Status::from);
                call.done(&who, "get", object_ref::<$ty>(&r.namespace, &r.name, "", false), &got);
                Ok(Response::new(got?))
            }

            async fn list(&self, req: Request<ListRequest>) -> Result<Response<$list>, Status> {
                let who = identity(&req)?;
                let call = Call::of(&req);
                let listed = Handler::list(self, &who, req.get_ref()).await.map_err(Status::from);
                call.done(&who, "list", object_ref::<$ty>(&req.get_ref().namespace, "", "", true), &listed);
                let (items, metadata) = listed?;
                Ok(Response::new($list { metadata: Some(metadata), items }))
            }

            async fn update(&self, req: Request<$ty>) -> Result<Response<$ty>, Status> {
                let who = identity(&req)?;
                let call = Call::of(&req);
                let object = object_ref::<$ty>(req.get_ref().namespace(), req.get_ref().name(), "", false);
                let (updated, warned) = warnings::collect(Handler::update(self, &who, req.into_inner())).await;
                let updated = updated.map_err(Status::from);
                call.done(&who, "update", object, &updated);
                Ok(warnings::into_response(updated?, warned))
            }

            async fn update_status(&self, req: Request<$ty>) -> Result<Response<$ty>, Status> {
                let who = identity(&req)?;
                let call = Call::of(&req);
                let object = object_ref::<$ty>(req.get_ref().namespace(), req.get_ref().name(), "status", false);
                let updated = Handler::update_status(self, &who, req.into_inner()).await.map_err(Status::from);
                call.done(&who, "update", object, &updated);
                Ok(Response::new(updated?))
            }

            async fn delete(&self, req: Request<DeleteRequest>) -> Result<Response<$ty>, Status> {
                let who = identity(&req)?;
                let call = Call::of(&req);
                let r = req.get_ref();
                let deleted = Handler::delete(self, &who, r).await.map_err(Status::from);
                call.done(&who, "delete", object_ref::<$ty>(&r.namespace, &r.name, "", false), &deleted);
                Ok(Response::new(deleted?))
            }

            type WatchStream = EventStream<$event>;

            async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
                use tokio_stream::StreamExt;
                let who = identity(&req)?;
                let call = Call::of(&req);
                let object = object_ref::<$ty>(&req.get_ref().namespace, "", "", true);
                // The caller's place among its watches, held as long as the stream lives.
                let permit = match call.watch(&who) {
                    Ok(p) => p,
                    Err(refused) => {
                        call.done::<()>(&who, "watch", object, &Err(refused.clone()));
                        return Err(refused);
                    }
                };
                // A node's watch ends when its certificate is revoked.
                let revocable = Revocable::of(&req);
                let rx = Handler::<$ty>::watch(self, &who, req.get_ref()).await.map_err(Status::from);
                call.done(&who, "watch", object, &rx);
                let stream = tokio_stream::wrappers::ReceiverStream::new(rx?).map(move |item| {
                    let _held = &permit;
                    match item {
                        Ok((kind, object)) => Ok($event { r#type: kind.to_string(), object: Some(object) }),
                        Err(e) => Err(Status::from(e)),
                    }
                });
                Ok(Response::new(end_when_revoked(revocable, stream)))
            }
        }
    )*};
}

serve_kinds! {
    Namespace => namespace_api_server::NamespaceApi, NamespaceList, NamespaceWatchEvent;
    Pod => pod_api_server::PodApi, PodList, PodWatchEvent;
    Deployment => deployment_api_server::DeploymentApi, DeploymentList, DeploymentWatchEvent;
    ReplicaSet => replica_set_api_server::ReplicaSetApi, ReplicaSetList, ReplicaSetWatchEvent;
    Service => service_api_server::ServiceApi, ServiceList, ServiceWatchEvent;
    Endpoints => endpoints_api_server::EndpointsApi, EndpointsList, EndpointsWatchEvent;
    Secret => secret_api_server::SecretApi, SecretList, SecretWatchEvent;
    ConfigMap => config_map_api_server::ConfigMapApi, ConfigMapList, ConfigMapWatchEvent;
    PersistentVolumeClaim => persistent_volume_claim_api_server::PersistentVolumeClaimApi, PersistentVolumeClaimList, PersistentVolumeClaimWatchEvent;
    Node => node_api_server::NodeApi, NodeList, NodeWatchEvent;
    Event => event_api_server::EventApi, EventList, EventWatchEvent;
    Lease => lease_api_server::LeaseApi, LeaseList, LeaseWatchEvent;
    Ingress => ingress_api_server::IngressApi, IngressList, IngressWatchEvent;
    IngressClass => ingress_class_api_server::IngressClassApi, IngressClassList, IngressClassWatchEvent;
    HorizontalPodAutoscaler => horizontal_pod_autoscaler_api_server::HorizontalPodAutoscalerApi, HorizontalPodAutoscalerList, HorizontalPodAutoscalerWatchEvent;
    LimitRange => limit_range_api_server::LimitRangeApi, LimitRangeList, LimitRangeWatchEvent;
    ServiceAccount => service_account_api_server::ServiceAccountApi, ServiceAccountList, ServiceAccountWatchEvent;
    Role => role_api_server::RoleApi, RoleList, RoleWatchEvent;
    ClusterRole => cluster_role_api_server::ClusterRoleApi, ClusterRoleList, ClusterRoleWatchEvent;
    RoleBinding => role_binding_api_server::RoleBindingApi, RoleBindingList, RoleBindingWatchEvent;
    ClusterRoleBinding => cluster_role_binding_api_server::ClusterRoleBindingApi, ClusterRoleBindingList, ClusterRoleBindingWatchEvent;
    PodDisruptionBudget => pod_disruption_budget_api_server::PodDisruptionBudgetApi, PodDisruptionBudgetList, PodDisruptionBudgetWatchEvent;
}
