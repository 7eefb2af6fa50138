//! A plain A-record query through a resolver, made from inside a node: what `attach` uses
//! to wait until a terminal's name resolves from a fixed host.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use futures::StreamExt;
use hickory_net::client::Client;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_net::DnsHandle;
use hickory_proto::op::{DnsRequest, Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};

/// Asks DNS servers from inside one namespace: one thread that entered it once, with one
/// runtime, for as many queries as the caller makes (a wait polls several times).
pub struct Asker {
    runtime: tokio::runtime::Runtime,
}

/// Runs `work` with an [`Asker`] inside `namespace`.
pub fn from_namespace<T: Send + 'static>(
    namespace: &str,
    work: impl FnOnce(&Asker) -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    crate::kernel::netns::run_in(namespace, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        work(&Asker { runtime })
    })
}

impl Asker {
    /// The A records `server` returns for `name`; `recurse` asks a resolver to recurse
    /// (off for an authoritative server).
    pub fn query_a(
        &self,
        server: IpAddr,
        name: &str,
        recurse: bool,
    ) -> std::io::Result<Vec<Ipv4Addr>> {
        self.runtime.block_on(async move {
            let stream = UdpClientStream::builder(
                SocketAddr::new(server, 53),
                TokioRuntimeProvider::default(),
            )
            .with_timeout(Some(Duration::from_secs(1)))
            .build();
            let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
            let bg = tokio::spawn(background);
            let mut msg = Message::query();
            msg.metadata.recursion_desired = recurse;
            let qname = Name::from_str(name).map_err(std::io::Error::other)?;
            msg.add_query(Query::query(qname, RecordType::A));
            let answer = client.send(DnsRequest::from(msg)).next().await;
            bg.abort();
            let response = match answer {
                Some(Ok(r)) => r,
                Some(Err(e)) => return Err(std::io::Error::other(e.to_string())),
                None => return Ok(Vec::new()),
            };
            Ok(response
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect())
        })
    }
}
