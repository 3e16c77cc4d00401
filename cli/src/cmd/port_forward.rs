//! `skiff port-forward TYPE/NAME [LOCAL:]REMOTE...`: listens on local ports and relays each
//! connection to a port of a pod through the API server and the pod's node tunnel (the node needs
//! no listening port), as kubectl's. `svc/NAME` and `deployment/NAME` pick one running pod of
//! theirs, and a Service's port is translated to its pod's target port, as kubectl does: the
//! connection goes to that pod, not through the Service's cluster IP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use clap::Args;
use skiff_api::client::{Api, ListParams, Transport};
use skiff_api::selector::LabelSelector;
use skiff_api::v1::{
    Deployment, Pod, PortForwardInput, PortForwardStart, Service,
    pod_port_forward_api_client::PodPortForwardApiClient, port_forward_input,
};
use skiff_api::{IntOrStringValue, ResourceExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct PortForwardArgs {
    /// `pod/NAME` (or `NAME`), `svc/NAME` or `deployment/NAME`
    resource: String,
    /// `[LOCAL:]REMOTE` port pairs (`8080:80`, `80`, `:80` for a random local port; REMOTE may be a port name)
    #[arg(required = true, value_name = "[LOCAL:]REMOTE")]
    ports: Vec<String>,
    /// Addresses to listen on, comma-separated (`localhost` means 127.0.0.1 and ::1)
    #[arg(long, default_value = "localhost")]
    address: String,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

/// One `[LOCAL:]REMOTE` pair as given.
#[derive(Debug, PartialEq)]
struct PortPair {
    /// 0: any free port.
    local: u16,
    /// A number or a port name.
    remote: String,
}

fn parse_pair(text: &str) -> Result<PortPair> {
    let bad = |why: &str| CliError::usage(format!("error: invalid port pair {text:?}: {why}"));
    let (local, remote) = match text.split_once(':') {
        Some((local, remote)) => (local, remote),
        None => (text, text),
    };
    if remote.is_empty() {
        return Err(bad("REMOTE is empty"));
    }
    let local = if local.is_empty() {
        0
    } else {
        match local.parse::<u16>() {
            Ok(port) if port > 0 || text.starts_with("0:") => port,
            _ => return Err(bad("LOCAL must be a port number (1-65535)")),
        }
    };
    if let Some(first) = remote.chars().next()
        && first.is_ascii_digit()
        && !matches!(remote.parse::<u16>(), Ok(1..))
    {
        return Err(bad("REMOTE must be a port number (1-65535) or a port name"));
    }
    Ok(PortPair {
        local,
        remote: remote.to_string(),
    })
}

fn listen_addresses(flag: &str) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for word in flag.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        if word == "localhost" {
            out.extend([
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ]);
        } else {
            out.push(word.parse().map_err(|_| {
                CliError::usage(format!(
                    "error: --address: {word:?} is not an IP address or localhost"
                ))
            })?);
        }
    }
    if out.is_empty() {
        return Err(CliError::usage("error: --address: no address given"));
    }
    Ok(out)
}

pub async fn run(transport: &Transport, args: PortForwardArgs) -> Result<()> {
    let pairs = args
        .ports
        .iter()
        .map(|p| parse_pair(p))
        .collect::<Result<Vec<_>>>()?;
    let addresses = listen_addresses(&args.address)?;
    let namespace = super::namespace(&args.namespace);
    let (pod, service) = target(transport, &namespace, &args.resource).await?;
    let mut listeners = Vec::new();
    for pair in &pairs {
        let remote = remote_port(&pod, service.as_ref(), &pair.remote)?;
        let mut local = pair.local;
        let mut bound_any = false;
        for ip in &addresses {
            let listener = match TcpListener::bind(SocketAddr::new(*ip, local)).await {
                Ok(l) => l,
                // `localhost` may lack ::1 (or 127.0.0.1); one of them is enough, as kubectl.
                Err(e) if args.address == "localhost" && ip.is_ipv6() && bound_any => {
                    tracing::debug!(error = %e, "not listening on ::1");
                    continue;
                }
                Err(e) => {
                    return Err(CliError::failed(format!(
                        "error: unable to listen on {}: {e}",
                        SocketAddr::new(*ip, local)
                    )));
                }
            };
            let addr = listener
                .local_addr()
                .map_err(|e| CliError::failed(e.to_string()))?;
            // A random port, once picked, is the same on every address.
            local = addr.port();
            bound_any = true;
            println!("Forwarding from {addr} -> {remote}");
            listeners.push((listener, remote));
        }
    }
    let pod_name = pod.name().to_string();
    let mut tasks = tokio::task::JoinSet::new();
    for (listener, remote) in listeners {
        let transport = transport.clone();
        let (namespace, pod_name) = (namespace.clone(), pod_name.clone());
        tasks.spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let local = listener.local_addr().map(|a| a.port()).unwrap_or_default();
                println!("Handling connection for {local}");
                let (transport, namespace, pod_name) =
                    (transport.clone(), namespace.clone(), pod_name.clone());
                tokio::spawn(async move {
                    if let Err(e) = relay(&transport, &namespace, &pod_name, remote, conn).await {
                        eprintln!("error: forwarding port {remote} of pod {pod_name}: {e}");
                    }
                });
            }
        });
    }
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| CliError::failed(e.to_string()))?;
    Ok(())
}

/// The pod that `resource` means (and its Service, for `svc/NAME`).
async fn target(
    transport: &Transport,
    namespace: &str,
    resource: &str,
) -> Result<(Pod, Option<Service>)> {
    let (kind, name) = resource.split_once('/').unwrap_or(("pod", resource));
    let not_found = |what: &str| CliError::failed(format!("Error from server (NotFound): {what}"));
    let selector = match kind {
        "pod" | "pods" | "po" => {
            let pod = Api::<Pod>::new(transport.clone(), namespace)
                .get_opt(name)
                .await?
                .ok_or_else(|| not_found(&format!("pods \"{name}\" not found")))?;
            return Ok((pod, None));
        }
        "svc" | "service" | "services" => {
            let svc = Api::<Service>::new(transport.clone(), namespace)
                .get_opt(name)
                .await?
                .ok_or_else(|| not_found(&format!("services \"{name}\" not found")))?;
            let selector = svc.spec.as_ref().map(|s| &s.selector);
            if selector.is_none_or(|s| s.is_empty()) {
                return Err(CliError::failed(format!(
                    "error: service {name} has no selector: no pod to forward to"
                )));
            }
            let selector = LabelSelector::from_map(selector.unwrap_or(&Default::default()));
            let pod = running_pod(transport, namespace, &selector, resource).await?;
            return Ok((pod, Some(svc)));
        }
        "deployment" | "deployments" | "deploy" => {
            let d = Api::<Deployment>::new(transport.clone(), namespace)
                .get_opt(name)
                .await?
                .ok_or_else(|| not_found(&format!("deployments.apps \"{name}\" not found")))?;
            let spec = d.spec.as_ref().and_then(|s| s.selector.as_ref());
            LabelSelector::from_spec(spec.unwrap_or(&Default::default()))
                .map_err(|e| CliError::failed(format!("error: deployment {name}: {e}")))?
        }
        other => {
            return Err(CliError::usage(format!(
                "error: port-forward: unknown resource type {other:?} (pod, svc, deployment)"
            )));
        }
    };
    let pod = running_pod(transport, namespace, &selector, resource).await?;
    Ok((pod, None))
}

/// A running pod matched by `selector` (the oldest, as kubectl prefers a settled one).
async fn running_pod(
    transport: &Transport,
    namespace: &str,
    selector: &LabelSelector,
    resource: &str,
) -> Result<Pod> {
    let (pods, _) = Api::<Pod>::new(transport.clone(), namespace)
        .list(ListParams::default())
        .await?;
    pods.into_iter()
        .filter(|p| selector.matches(&p.meta().labels))
        .filter(|p| p.meta().deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().is_some_and(|s| s.phase == "Running"))
        .min_by_key(|p| p.meta().creation_timestamp.map(|t| (t.seconds, t.nanos)))
        .ok_or_else(|| CliError::failed(format!("error: {resource}: no running pod selected")))
}

/// The pod port `remote` means: a number, a port name of the pod's containers, or for a Service
/// one of its ports translated to the pod's target port.
fn remote_port(pod: &Pod, service: Option<&Service>, remote: &str) -> Result<u16> {
    let named = |name: &str| -> Option<i32> {
        pod.spec.as_ref()?.containers.iter().find_map(|c| {
            c.ports
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.container_port)
        })
    };
    let port = match service {
        None => match remote.parse::<i32>() {
            Ok(n) => Some(n),
            Err(_) => named(remote),
        },
        Some(svc) => {
            let ports = svc.spec.as_ref().map(|s| s.ports.as_slice()).unwrap_or(&[]);
            let port = ports
                .iter()
                .find(|p| p.port.to_string() == remote || p.name == remote)
                .ok_or_else(|| {
                    CliError::failed(format!(
                        "error: Service {} does not have a service port {remote}",
                        svc.name()
                    ))
                })?;
            match port.target_port.as_ref().and_then(|t| t.value.as_ref()) {
                Some(IntOrStringValue::Int(n)) if *n != 0 => Some(*n),
                Some(IntOrStringValue::Str(name)) if !name.is_empty() => named(name),
                _ => Some(port.port),
            }
        }
    };
    port.and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            CliError::failed(format!(
                "error: pod {} does not have a port named {remote}",
                pod.name()
            ))
        })
}

/// Relays one local connection to `port` of the pod until either side closes.
async fn relay(
    transport: &Transport,
    namespace: &str,
    pod: &str,
    port: u16,
    conn: TcpStream,
) -> std::result::Result<(), String> {
    let _ = conn.set_nodelay(true);
    let (tx, rx) = mpsc::channel(16);
    let start = PortForwardInput {
        message: Some(port_forward_input::Message::Start(PortForwardStart {
            namespace: namespace.to_string(),
            name: pod.to_string(),
            port: i32::from(port),
        })),
    };
    let _ = tx.send(start).await;
    let (mut from_local, mut to_local) = conn.into_split();
    let mut answers = PodPortForwardApiClient::new(transport.clone())
        .port_forward(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let send = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let message = match from_local.read(&mut buf).await {
                Ok(0) | Err(_) => port_forward_input::Message::CloseWrite(true),
                Ok(n) => port_forward_input::Message::Data(buf[..n].to_vec()),
            };
            let last = matches!(message, port_forward_input::Message::CloseWrite(_));
            let input = PortForwardInput {
                message: Some(message),
            };
            if tx.send(input).await.is_err() || last {
                // The request stream stays open until the answer ends.
                std::future::pending::<()>().await;
            }
        }
    });
    let result = async {
        while let Some(answer) = answers.next().await {
            let answer = answer.map_err(|s| s.message().to_string())?;
            to_local
                .write_all(&answer.data)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
    .await;
    send.abort();
    let _ = to_local.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_pairs_parse_as_kubectl_reads_them() {
        let pair = |local, remote: &str| PortPair {
            local,
            remote: remote.into(),
        };
        assert_eq!(parse_pair("8080:80").unwrap(), pair(8080, "80"));
        assert_eq!(parse_pair("80").unwrap(), pair(80, "80"));
        assert_eq!(parse_pair(":80").unwrap(), pair(0, "80"));
        assert_eq!(parse_pair("8080:http").unwrap(), pair(8080, "http"));
        for bad in ["8080:", "x:80", "8080:0", "8080:70000", "99999:80"] {
            let err = parse_pair(bad).unwrap_err();
            assert_eq!(err.code, 2, "{bad}");
            assert!(err.message.contains(bad), "{}", err.message);
        }
        assert!(listen_addresses("localhost").unwrap().len() == 2);
        assert_eq!(listen_addresses("nowhere").unwrap_err().code, 2);
    }
}
