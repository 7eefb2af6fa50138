//! A plain A-record query through a resolver, made from inside a node: what `attach` uses
//! to wait until a terminal's name resolves from a fixed host.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

/// How long one query waits for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// Asks DNS servers from inside one namespace: one thread that entered it once, and a
/// plain blocking socket per address family, made there, for as many queries as the
/// caller makes (a wait polls several times).
pub struct Asker {
    sockets: std::cell::RefCell<[Option<UdpSocket>; 2]>,
    next_id: std::cell::Cell<u16>,
}

/// Runs `work` with an [`Asker`] inside `namespace`.
pub fn from_namespace<T: Send + 'static>(
    namespace: &str,
    work: impl FnOnce(&Asker) -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    crate::kernel::netns::run_in(namespace, move || {
        let mut seed = [0u8; 2];
        // SAFETY: getrandom writes at most `seed.len()` bytes into our buffer.
        unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
        work(&Asker {
            sockets: Default::default(),
            next_id: u16::from_ne_bytes(seed).into(),
        })
    })
}

impl Asker {
    /// The A records `server` returns for `name`; `recurse` asks a resolver to recurse
    /// (off for an authoritative server). An answer must come from `server`, to this
    /// query's ID; anything else that arrives meanwhile is passed over.
    pub fn query_a(
        &self,
        server: IpAddr,
        name: &str,
        recurse: bool,
    ) -> std::io::Result<Vec<Ipv4Addr>> {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let qname = Name::from_ascii(name).map_err(std::io::Error::other)?;
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = recurse;
        query.add_query(Query::query(qname, RecordType::A));
        let bytes = query.to_vec().map_err(std::io::Error::other)?;
        let server = SocketAddr::new(server, 53);
        let mut sockets = self.sockets.borrow_mut();
        let slot = &mut sockets[usize::from(server.is_ipv6())];
        let socket = match slot {
            Some(socket) => socket,
            None => slot.insert(UdpSocket::bind(match server {
                SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
            })?),
        };
        socket.send_to(&bytes, server)?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer from {server} within {ANSWER_TIMEOUT:?}"),
                ));
            }
            socket.set_read_timeout(Some(left))?;
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if let Some(addresses) = addresses_in(id, server, from, &buf[..n]) {
                return Ok(addresses);
            }
        }
    }
}

/// The A records of the answer to query `id` sent to `server`, if the datagram `bytes`
/// from `from` is that answer (anything else is no answer: the wait goes on).
fn addresses_in(
    id: u16,
    server: SocketAddr,
    from: SocketAddr,
    bytes: &[u8],
) -> Option<Vec<Ipv4Addr>> {
    if !super::from_server_to(id, server, from, bytes) {
        return None;
    }
    let answer = Message::from_vec(bytes).ok()?;
    if answer.metadata.message_type != MessageType::Response {
        return None;
    }
    Some(
        answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::Record;

    fn answer(id: u16, address: Ipv4Addr) -> Vec<u8> {
        let name = Name::from_ascii("t1.home.example.").unwrap();
        let mut m = Message::new(id, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(name.clone(), RecordType::A));
        m.add_answer(Record::from_rdata(name, 10, RData::A(A(address))));
        m.to_vec().unwrap()
    }

    /// Only the server's answer to this query counts: another source, another ID, a query
    /// or garbage is passed over.
    #[test]
    fn only_the_servers_answer_to_this_query_counts() {
        let server: SocketAddr = "192.0.2.53:53".parse().unwrap();
        let other: SocketAddr = "192.0.2.54:53".parse().unwrap();
        let address = Ipv4Addr::new(198, 18, 8, 100);
        let good = answer(7, address);
        assert_eq!(addresses_in(7, server, server, &good), Some(vec![address]));
        assert_eq!(addresses_in(7, server, other, &good), None);
        assert_eq!(addresses_in(8, server, server, &good), None);
        assert_eq!(addresses_in(7, server, server, b"\x00\x07garbage"), None);
        let mut query = Message::new(7, MessageType::Query, OpCode::Query);
        query.add_query(Query::query(
            Name::from_ascii("t1.home.example.").unwrap(),
            RecordType::A,
        ));
        assert_eq!(
            addresses_in(7, server, server, &query.to_vec().unwrap()),
            None
        );
    }
}
