//! The terminal's built-in DHCP client (RFC 2131, on dhcproto): DISCOVER, OFFER, REQUEST,
//! ACK over a UDP socket bound to the terminal's interface, retransmitting until an
//! answer comes; RELEASE at detach. Its DISCOVER asks for Rapid Commit (RFC 4039), so a
//! server that allows it answers with a committed ACK at once. It sends its host name as a
//! client FQDN (option 81), which the server checks against the one the home network holds.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dhcproto::v4::{self, DhcpOption, MessageType, Opcode, OptionCode};
use dhcproto::Encodable;

use super::place::Link;
use crate::protocols::dhcp::decode;

const RETRANSMIT: Duration = Duration::from_millis(500);
/// For a lease whose time is not known (a stock client took it): renew after half of this;
/// the first renewal's answer then tells the real lease time.
pub const UNKNOWN_LEASE_SECS: u32 = 2;

/// What the server granted.
#[derive(Debug, Clone)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub router: Option<Ipv4Addr>,
    pub server: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: u32,
}

fn message(kind: MessageType, xid: u32, mac: &[u8; 6], host_name: Option<&str>) -> v4::Message {
    let mut m = v4::Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        mac,
    );
    m.set_opcode(Opcode::BootRequest)
        .set_flags(v4::Flags::default().set_broadcast());
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    let mut client_id = vec![1u8];
    client_id.extend_from_slice(mac);
    o.insert(DhcpOption::ClientIdentifier(client_id));
    o.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
    ]));
    if let Some(name) = host_name {
        if let Ok(domain) = name.parse::<hickory_proto::rr::Name>() {
            // S=1: the server is to update the forward record.
            let flags = v4::fqdn::FqdnFlags::default().set_s(true).set_e(true);
            o.insert(DhcpOption::ClientFQDN(v4::fqdn::ClientFQDN::new(
                flags, domain,
            )));
        }
    }
    m
}

/// What answers a DISCOVER: an OFFER, or an ACK that commits at once (RFC 4039).
const ANSWERS_TO_DISCOVER: [MessageType; 2] = [MessageType::Offer, MessageType::Ack];

/// What the client makes of one datagram on port 68: the server's answer to exchange
/// `xid` if it is one of `want`, else nothing. An ACK to a DISCOVER counts only if it says
/// Rapid Commit (RFC 4039 §3: the client asked for it, and takes no other ACK then).
/// Anything on the cell can send the client a datagram, so it goes through the server's
/// guarded decoder (dhcproto asserts on some option lengths).
pub fn accept(datagram: &[u8], xid: u32, want: &[MessageType]) -> Option<v4::Message> {
    let answer = decode(datagram).ok()?;
    if answer.xid() != xid || answer.opcode() != Opcode::BootReply {
        return None;
    }
    let kind = answer.opts().msg_type().filter(|t| want.contains(t))?;
    let committed = answer.opts().get(OptionCode::RapidCommit).is_some();
    if kind == MessageType::Ack && want.contains(&MessageType::Offer) && !committed {
        return None;
    }
    Some(answer)
}

/// Sends `m` (broadcast) until an answer of `want` with our xid arrives, or `deadline`.
async fn exchange(
    socket: &tokio::net::UdpSocket,
    m: &v4::Message,
    want: &[MessageType],
    deadline: Instant,
) -> Result<v4::Message, String> {
    let bytes = m.to_vec().map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 2048];
    loop {
        if Instant::now() >= deadline {
            return Err(format!("no {want:?} from a DHCP server"));
        }
        socket
            .send_to(&bytes, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67))
            .await
            .map_err(|e| format!("send: {e}"))?;
        let until = (Instant::now() + RETRANSMIT).min(deadline);
        while let Ok(got) = tokio::time::timeout_at(until.into(), socket.recv_from(&mut buf)).await
        {
            let Ok((n, _)) = got else { break };
            if let Some(answer) = accept(&buf[..n], m.xid(), want) {
                return Ok(answer);
            }
        }
    }
}

/// The lease an ACK grants.
pub fn lease_of(ack: &v4::Message) -> Lease {
    let o = ack.opts();
    let prefix_len = match o.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(mask)) => u32::from(*mask).count_ones() as u8,
        _ => 24,
    };
    Lease {
        address: ack.yiaddr(),
        prefix_len,
        router: match o.get(OptionCode::Router) {
            Some(DhcpOption::Router(r)) => r.first().copied(),
            _ => None,
        },
        server: match o.get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(s)) => *s,
            _ => ack.siaddr(),
        },
        dns: match o.get(OptionCode::DomainNameServer) {
            Some(DhcpOption::DomainNameServer(d)) => d.clone(),
            _ => Vec::new(),
        },
        lease_secs: match o.get(OptionCode::AddressLeaseTime) {
            Some(DhcpOption::AddressLeaseTime(t)) => *t,
            _ => 0,
        },
    }
}

/// Acquires a lease on `link`.
pub async fn acquire(
    link: &Link,
    mac: [u8; 6],
    host_name: Option<&str>,
    timeout: Duration,
) -> Result<Lease, String> {
    let socket = link
        .udp(68)
        .map_err(|e| format!("cannot bind udp 0.0.0.0:68 on {}: {e}", link.interface))?;
    let deadline = Instant::now() + timeout;
    let xid: u32 = rand_xid();
    let mut discover = message(MessageType::Discover, xid, &mac, host_name);
    discover.opts_mut().insert(DhcpOption::RapidCommit);
    let offer = exchange(&socket, &discover, &ANSWERS_TO_DISCOVER, deadline).await?;
    if offer.opts().msg_type() == Some(MessageType::Ack) {
        return Ok(lease_of(&offer));
    }
    let server = lease_of(&offer).server;
    let mut request = message(MessageType::Request, xid, &mac, host_name);
    request
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    request
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(server));
    let ack = exchange(
        &socket,
        &request,
        &[MessageType::Ack, MessageType::Nak],
        deadline,
    )
    .await?;
    if ack.opts().msg_type() == Some(MessageType::Nak) {
        return Err("the DHCP server refused the request (NAK)".into());
    }
    Ok(lease_of(&ack))
}

/// Gives the lease back.
pub async fn release(link: &Link, mac: [u8; 6], lease: &Lease) -> Result<(), String> {
    let socket = link.udp(68).map_err(|e| e.to_string())?;
    let mut m = message(MessageType::Release, rand_xid(), &mac, None);
    m.set_ciaddr(lease.address).set_flags(v4::Flags::default());
    m.opts_mut()
        .insert(DhcpOption::ServerIdentifier(lease.server));
    let bytes = m.to_vec().map_err(|e| e.to_string())?;
    socket
        .send_to(&bytes, SocketAddrV4::new(lease.server, 67))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn rand_xid() -> u32 {
    use std::io::Read;
    let mut b = [0u8; 4];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    u32::from_ne_bytes(b)
}

/// Renews a lease: RENEWING (a unicast REQUEST to its server), or with `rebind` REBINDING
/// (the same REQUEST broadcast, for any server, after T2).
pub async fn renew(
    link: &Link,
    mac: [u8; 6],
    lease: &Lease,
    rebind: bool,
    timeout: Duration,
) -> Result<Lease, RenewError> {
    let failed = |e: &dyn std::fmt::Display| RenewError::Socket(e.to_string());
    let socket = link.udp(68).map_err(|e| failed(&e))?;
    let mut m = message(MessageType::Request, rand_xid(), &mac, None);
    m.set_ciaddr(lease.address).set_flags(v4::Flags::default());
    let bytes = m.to_vec().map_err(|e| failed(&e))?;
    let to = if rebind {
        Ipv4Addr::BROADCAST
    } else {
        lease.server
    };
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 2048];
    while Instant::now() < deadline {
        socket
            .send_to(&bytes, SocketAddrV4::new(to, 67))
            .await
            .map_err(|e| failed(&e))?;
        let until = (Instant::now() + RETRANSMIT).min(deadline);
        while let Ok(Ok((n, _))) =
            tokio::time::timeout_at(until.into(), socket.recv_from(&mut buf)).await
        {
            let want = [MessageType::Ack, MessageType::Nak];
            match accept(&buf[..n], m.xid(), &want) {
                Some(a) if a.opts().msg_type() == Some(MessageType::Ack) => {
                    return Ok(lease_of(&a))
                }
                Some(_) => return Err(RenewError::Nak),
                None => continue,
            }
        }
    }
    Err(RenewError::NoAnswer)
}

/// Why a renewal did not renew.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenewError {
    #[error("the server refused the renewal (NAK)")]
    Nak,
    #[error("no answer to the renewal")]
    NoAnswer,
    #[error("{0}")]
    Socket(String),
}

/// How a kept lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The server said NAK: the address is not ours any more.
    Refused,
    /// The lease time ran out without a renewal.
    Expired,
}

/// Keeps a lease: renews it from T1 (half the lease time) with its server, and from T2
/// (seven eighths) rebinds with any server, until the server refuses it (NAK) or the lease
/// time passes without a renewal; then says which, and the caller must drop the address.
pub async fn keep(link: &Link, mac: [u8; 6], mut lease: Lease) -> Lost {
    let mut granted = Instant::now();
    loop {
        let secs = (lease.lease_secs as u64).max(2);
        let (t1, t2) = (
            Duration::from_secs(secs / 2),
            Duration::from_millis(secs * 875),
        );
        let elapsed = granted.elapsed();
        if elapsed < t1 {
            tokio::time::sleep(t1 - elapsed).await;
        }
        let rebind = granted.elapsed() >= t2;
        let expiry = granted + Duration::from_secs(secs);
        let patience = expiry
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(200), Duration::from_secs(2));
        match renew(link, mac, &lease, rebind, patience).await {
            Ok(renewed) => {
                tracing::info!(address = %renewed.address, rebind, "lease renewed");
                lease = renewed;
                granted = Instant::now();
            }
            Err(RenewError::Nak) => {
                tracing::warn!(address = %lease.address, "the server refused the lease (NAK)");
                return Lost::Refused;
            }
            Err(e) => {
                if Instant::now() >= expiry {
                    tracing::warn!(address = %lease.address, "the lease expired ({e})");
                    return Lost::Expired;
                }
                tracing::warn!(rebind, "renewal failed: {e}");
                tokio::time::sleep(Duration::from_millis(500).min(patience)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(kind: MessageType, xid: u32, rapid: bool) -> Vec<u8> {
        let mut m = message(kind, xid, &[2, 0, 0, 0, 0, 1], None);
        m.set_opcode(Opcode::BootReply);
        if rapid {
            m.opts_mut().insert(DhcpOption::RapidCommit);
        }
        m.to_vec().unwrap()
    }

    /// RFC 4039 §3: a client that asked for Rapid Commit takes an OFFER, or an ACK that
    /// says Rapid Commit; an ACK that does not is no answer to its DISCOVER. To its
    /// REQUEST, any ACK of its exchange counts.
    #[test]
    fn a_discover_is_answered_by_an_offer_or_a_committed_ack_only() {
        let on_discover = |bytes: &[u8]| accept(bytes, 7, &ANSWERS_TO_DISCOVER).is_some();
        assert!(on_discover(&answer(MessageType::Offer, 7, false)));
        assert!(on_discover(&answer(MessageType::Ack, 7, true)));
        assert!(!on_discover(&answer(MessageType::Ack, 7, false)));
        assert!(!on_discover(&answer(MessageType::Ack, 8, true)));
        assert!(!on_discover(&answer(MessageType::Nak, 7, false)));
        let on_request = [MessageType::Ack, MessageType::Nak];
        assert!(accept(&answer(MessageType::Ack, 7, false), 7, &on_request).is_some());
    }
}
