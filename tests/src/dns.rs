//! An upstream DNS server for tests: a node's cluster DNS forwards the names outside the cluster
//! domain to it (the agent's `--resolv-conf` names it), so no test asks the host's resolvers.
//!
//! [`Upstream::start`] serves, on UDP port 53 of an address the test owns (resolv.conf has no
//! port), a fixed set of `A` records, NXDOMAIN for any other name, and records every name it
//! was asked. It runs on a thread of its own until dropped.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Header, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};

/// The names an [`Upstream`] answers, and what it was asked.
struct Answers {
    records: BTreeMap<String, Ipv4Addr>,
    asked: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl RequestHandler for Answers {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut header = Header::response_from_request(request.header());
        let Ok(info) = request.request_info() else {
            header.set_response_code(ResponseCode::FormErr);
            return response
                .send_response(builder.build_no_records(header))
                .await
                .unwrap_or_else(|_| header.into());
        };
        let name: Name = info.query.name().into();
        let text = name.to_ascii().to_lowercase();
        self.asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(text.clone());
        let mut records = Vec::new();
        match self.records.get(&text) {
            Some(ip) if info.query.query_type() == RecordType::A => {
                records.push(Record::from_rdata(name, 30, RData::A(A(*ip))));
            }
            Some(_) => {}
            None => {
                header.set_response_code(ResponseCode::NXDomain);
            }
        }
        let message = builder.build(
            header,
            records.iter(),
            std::iter::empty(),
            std::iter::empty(),
            std::iter::empty(),
        );
        response
            .send_response(message)
            .await
            .unwrap_or_else(|_| header.into())
    }
}

/// A running upstream server; stops when dropped.
pub struct Upstream {
    asked: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    addr: SocketAddr,
}

impl Upstream {
    /// Serves `records` (`name.` → address) on UDP and TCP `ip`:53.
    pub fn start(ip: IpAddr, records: &[(&str, Ipv4Addr)]) -> Self {
        Self::start_in(None, ip, records)
    }

    /// [`Upstream::start`] inside the network namespace `netns` (a file such as
    /// `/run/netns/NAME`): its loopback is that namespace's.
    pub fn start_in(
        netns: Option<&std::path::Path>,
        ip: IpAddr,
        records: &[(&str, Ipv4Addr)],
    ) -> Self {
        let netns = netns.map(|p| std::fs::File::open(p).expect("open the network namespace"));
        let addr = SocketAddr::new(ip, 53);
        let asked = Arc::new(Mutex::new(Vec::new()));
        let answers = Answers {
            records: records
                .iter()
                .map(|(n, ip)| (n.to_lowercase(), *ip))
                .collect(),
            asked: asked.clone(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            // Only this thread enters the namespace: its sockets are made there.
            if let Some(ns) = &netns {
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("enter the network namespace");
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let bound = async {
                    let udp = tokio::net::UdpSocket::bind(addr).await?;
                    let tcp = tokio::net::TcpListener::bind(addr).await?;
                    Ok::<_, std::io::Error>((udp, tcp))
                }
                .await;
                let (udp, tcp) = match bound {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let mut server = hickory_server::ServerFuture::new(answers);
                server.register_socket(udp);
                server.register_listener(tcp, std::time::Duration::from_secs(5));
                let _ = ready_tx.send(Ok(()));
                let _ = stopped.await;
                drop(server);
            });
        });
        let ready = ready_rx.recv().expect("the upstream thread answers");
        if let Err(e) = ready {
            panic!("upstream DNS on {addr}: {e}");
        }
        Self {
            asked,
            stop: Some(stop),
            thread: Some(thread),
            addr,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every name asked so far (lower case, with the trailing dot).
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
