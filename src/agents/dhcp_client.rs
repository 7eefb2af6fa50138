//! The terminal's built-in DHCP client (RFC 2131, on dhcproto): DISCOVER, OFFER, REQUEST,
//! ACK over a UDP socket bound to the terminal's interface, retransmitting until an
//! answer comes; RELEASE at detach. It sends its host name as a client FQDN (option 81),
//! which the server checks against the one the home network holds.

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

/// What the client makes of one datagram on port 68: the server's answer to exchange
/// `xid` if it is one of `want`, else nothing. Anything on the cell can send the client a
/// datagram, so it goes through the server's guarded decoder (dhcproto asserts on some
/// option lengths).
pub fn accept(datagram: &[u8], xid: u32, want: &[MessageType]) -> Option<v4::Message> {
    let answer = decode(datagram).ok()?;
    if answer.xid() != xid || answer.opcode() != Opcode::BootReply {
        return None;
    }
    answer
        .opts()
        .msg_type()
        .filter(|t| want.contains(t))
        .map(|_| answer)
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
    let discover = message(MessageType::Discover, xid, &mac, host_name);
    let offer = exchange(&socket, &discover, &[MessageType::Offer], deadline).await?;
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
