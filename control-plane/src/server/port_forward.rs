//! `PodPortForwardApi`: one client TCP connection to a port of a pod, relayed down the pod's
//! node tunnel ([`super::tunnel`]); the node makes the connection from inside the pod's network.
//!
//! Owns: checking the request (a running pod, a port in range) and pumping the client's bytes
//! down the tunnel. Must not: connect anywhere itself (the API server never reaches pods).

use std::pin::Pin;

use skiff_api::v1::*;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::tunnel::{Sink, TunnelService, relay_session, uid_of};
use crate::auth::{Attributes, Verb, identity};

type ForwardStream = Pin<Box<dyn Stream<Item = Result<PortForwardOutput, Status>> + Send>>;

#[tonic::async_trait]
impl pod_port_forward_api_server::PodPortForwardApi for TunnelService {
    type PortForwardStream = ForwardStream;

    async fn port_forward(
        &self,
        req: Request<Streaming<PortForwardInput>>,
    ) -> Result<Response<ForwardStream>, Status> {
        let who = identity(&req)?;
        let mut input = req.into_inner();
        let start = match input.message().await? {
            Some(PortForwardInput {
                message: Some(port_forward_input::Message::Start(start)),
            }) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "port-forward: the first message must be `start`",
                ));
            }
        };
        let forward = Attributes::new(Verb::Create, "Pod", &start.namespace)
            .name(&start.name)
            .subresource("portforward");
        self.authz.check(&who, &forward)?;
        if !(1..=65535).contains(&start.port) {
            return Err(Status::invalid_argument(format!(
                "port: {} is not a valid port number (1-65535)",
                start.port
            )));
        }
        let pod = self.pods.get(&start.namespace, &start.name).await?;
        let phase = pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("");
        if phase != "Running" {
            return Err(Status::failed_precondition(format!(
                "unable to forward port because pod is not running. Current status={phase}"
            )));
        }
        let (tx, rx) = mpsc::channel(64);
        let open = tunnel_down::Message::OpenForward(TunnelForwardOpen {
            uid: uid_of(&pod),
            namespace: start.namespace,
            name: start.name,
            port: start.port,
        });
        let session = self
            .open(&pod, "nothing runs yet", Sink::Forward(tx), open)
            .await?;
        // The client's bytes, down the same tunnel; their end half-closes the pod side.
        let close = PortForwardInput {
            message: Some(port_forward_input::Message::CloseWrite(true)),
        };
        let to_down = |m: PortForwardInput| match m.message {
            Some(port_forward_input::Message::Start(_)) => None,
            _ => Some(tunnel_down::Message::ForwardInput(m)),
        };
        Ok(Response::new(relay_session(
            session, input, to_down, close, rx,
        )))
    }
}
