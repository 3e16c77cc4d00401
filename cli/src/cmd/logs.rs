//! `skiff logs POD [-c CONTAINER] [-f] [--previous] [--tail N]`: a container's output, relayed
//! by the API server from the pod's node.

use std::io::Write;

use clap::Args;
use skiff_api::client::Transport;
use skiff_api::v1::{PodLogChunk, PodLogRequest, pod_log_api_client::PodLogApiClient};
use tokio_stream::StreamExt;

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct LogsArgs {
    /// The pod (or `pod/NAME`)
    pod: String,
    /// The container (default: the pod's only one)
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Keep streaming until the container stops
    #[arg(short = 'f', long)]
    follow: bool,
    /// The previous (terminated) instance of the container
    #[arg(short = 'p', long)]
    previous: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    tail: Option<i32>,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

/// Writes each chunk to stdout, as kubectl does (both streams interleaved in order).
pub async fn run(transport: &Transport, args: LogsArgs) -> Result<()> {
    let name = args
        .pod
        .strip_prefix("pod/")
        .unwrap_or(&args.pod)
        .to_string();
    let request = PodLogRequest {
        namespace: super::namespace(&args.namespace),
        name,
        container: args.container.unwrap_or_default(),
        follow: args.follow,
        previous: args.previous,
        tail_lines: args.tail,
        ..Default::default()
    };
    stream(transport, request, |chunk| {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&chunk.data);
        let _ = out.flush();
    })
    .await
}

/// Streams a pod's log, calling `sink` for each chunk, until the stream ends.
pub async fn stream(
    transport: &Transport,
    request: PodLogRequest,
    mut sink: impl FnMut(PodLogChunk),
) -> Result<()> {
    let mut client = PodLogApiClient::new(transport.clone());
    let mut chunks = client.logs(request).await?.into_inner();
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(chunk) => sink(chunk),
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                return Err(CliError::failed(format!("error: {}", s.message())));
            }
            Err(s) => return Err(s.into()),
        }
    }
    Ok(())
}
