//! The visited network's DHCP server (patent: visited DHCP 122), on dhcproto, listening
//! on the cell bridge. It leases only to terminals the VLR lists as attached (matched by
//! the link-layer address the terminal reported at attach), keeps its leases in a file,
//! and makes DNS follow them through a durable queue: on a new binding it reports the
//! address to the terminal's HLR through the VLR (the HLR writes the home DNS forward
//! record and answers with the host name) and writes the reverse record in the visited
//! DNS; when a binding ends (release, expiry, detach) it undoes both.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dhcproto::v4::{self, DhcpOption, MessageType, Opcode};
use dhcproto::{Decodable, Encodable};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::leases::{Answer, Authorised, Binding, Kind, LeaseBook, Request};
use super::queue::{dns_failure, DurableQueue, Failure};
use super::signaling::{self, DnsTarget};
use crate::events::EventLog;
use crate::json_file;
use crate::protocols::gsup::{msg, Message};

/// How often expired leases and those of detached terminals are swept.
const SWEEP: Duration = Duration::from_millis(500);
/// Refused packets are logged once per source in this time, with a count.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpConfig {
    /// The visited network's node name.
    pub name: String,
    /// The cell bridge it serves.
    pub interface: String,
    pub server_ip: Ipv4Addr,
    pub prefix_len: u8,
    pub pool_start: Ipv4Addr,
    pub pool_end: Ipv4Addr,
    pub router: Ipv4Addr,
    pub dns_servers: Vec<Ipv4Addr>,
    pub lease_secs: u64,
    pub vlr_attached: PathBuf,
    pub vlr_local_socket: PathBuf,
    pub leases_file: PathBuf,
    pub queue_file: PathBuf,
    /// Reverse zones of the pool, served by the visited DNS.
    pub reverse_zones: Vec<DnsTarget>,
    pub events_file: PathBuf,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Binds UDP port `port` on all addresses of one interface, able to broadcast.
pub fn bind_dhcp_socket(interface: &str, port: u16) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    socket.bind_device(Some(interface.as_bytes()))?;
    socket.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// The terminals the VLR lists, by link-layer address.
fn authorised(path: &std::path::Path, mac: &[u8; 6]) -> Option<Authorised> {
    let want = super::vlr::format_mac(mac);
    super::vlr::read_attached(path)
        .into_iter()
        .find(|t| t.mac.as_deref() == Some(want.as_str()))
        .map(|t| Authorised {
            imsi: t.imsi,
            host_name: t.host_name.unwrap_or_default(),
        })
}

/// (IMSI, MAC) of every terminal the VLR lists.
fn attached_links(path: &std::path::Path) -> Vec<(String, String)> {
    super::vlr::read_attached(path)
        .into_iter()
        .filter_map(|t| Some((t.imsi, t.mac?)))
        .collect()
}

/// The smallest BOOTP message: the fixed header and the magic cookie.
const MIN_MESSAGE: usize = 240;

/// Decodes a client packet, refusing what dhcproto cannot be trusted with: its `chaddr()`
/// slices by the header's hardware-address length and panics past 16 bytes, and some
/// option decoders assert on their length.
pub fn decode(packet: &[u8]) -> Result<v4::Message, String> {
    if packet.len() < MIN_MESSAGE {
        return Err(format!(
            "{} bytes is shorter than a DHCP message",
            packet.len()
        ));
    }
    if packet[2] as usize > 16 {
        return Err(format!(
            "hardware address length {} is more than 16",
            packet[2]
        ));
    }
    // dhcproto asserts on some malformed option lengths instead of failing: a panic in its
    // decoder is a malformed packet, not the end of the server.
    std::panic::catch_unwind(|| v4::Message::from_bytes(packet))
        .map_err(|_| "the DHCP decoder gave up on a malformed option".to_string())?
        .map_err(|e| e.to_string())
}

/// The options the server reads, parsed from the packet itself. dhcproto stops at the
/// first option it cannot decode (stock clients encode option 81 in ways it refuses), and
/// everything after it would be lost; this reads each option on its own.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    pub msg_type: Option<u8>,
    pub requested: Option<Ipv4Addr>,
    pub server: Option<Ipv4Addr>,
    pub host_name: Option<String>,
    /// Option 61.
    pub client_id: Option<Vec<u8>>,
    /// Option 81: its flags and the name, whether sent in wire format (E=1) or as ASCII.
    pub fqdn: Option<(u8, String)>,
}

/// RFC 4702 flag bits of option 81.
const FQDN_S: u8 = 0x01;
const FQDN_O: u8 = 0x02;
const FQDN_E: u8 = 0x04;

pub fn client_options(packet: &[u8]) -> ClientOptions {
    let mut out = ClientOptions::default();
    let Some(mut at) = packet.get(MIN_MESSAGE..) else {
        return out;
    };
    let ip = |v: &[u8]| <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from);
    while let Some((&code, rest)) = at.split_first() {
        match code {
            0 => {
                at = rest;
                continue;
            }
            255 => break,
            _ => {}
        }
        let Some((&len, rest)) = rest.split_first() else {
            break;
        };
        let Some(value) = rest.get(..len as usize) else {
            break;
        };
        at = &rest[len as usize..];
        match code {
            53 => out.msg_type = value.first().copied(),
            50 => out.requested = ip(value),
            54 => out.server = ip(value),
            61 if !value.is_empty() => out.client_id = Some(value.to_vec()),
            12 => {
                out.host_name = std::str::from_utf8(value)
                    .ok()
                    .map(|s| s.trim_end_matches('\0').to_string())
            }
            81 if value.len() >= 3 => {
                let (flags, name) = (value[0], &value[3..]);
                let text = if flags & FQDN_E != 0 {
                    wire_name(name)
                } else {
                    std::str::from_utf8(name).ok().map(String::from)
                };
                if let Some(text) = text
                    .map(|t| t.trim_end_matches('.').to_string())
                    .filter(|t| !t.is_empty())
                {
                    out.fqdn = Some((flags, text));
                }
            }
            _ => {}
        }
    }
    out
}

/// A DNS name in wire format (labels with length octets), as text.
fn wire_name(mut bytes: &[u8]) -> Option<String> {
    let mut labels = Vec::new();
    while let Some((&len, rest)) = bytes.split_first() {
        if len == 0 {
            break;
        }
        let label = rest.get(..len as usize)?;
        labels.push(std::str::from_utf8(label).ok()?.to_string());
        bytes = &rest[len as usize..];
    }
    Some(labels.join("."))
}

/// Reads what the lease book needs from a client packet.
pub fn request_of(packet: &[u8], m: &v4::Message) -> Option<Request> {
    if m.opcode() != Opcode::BootRequest || packet.len() < MIN_MESSAGE || packet[2] < 6 {
        return None;
    }
    let o = client_options(packet);
    let kind = match o.msg_type? {
        1 => Kind::Discover,
        3 => Kind::Request,
        4 => Kind::Decline,
        7 => Kind::Release,
        8 => Kind::Inform,
        _ => return None,
    };
    let requested = o
        .requested
        .or_else(|| Some(m.ciaddr()).filter(|ip| !ip.is_unspecified()));
    Some(Request {
        kind,
        mac: packet[28..34].try_into().ok()?,
        client_id: o.client_id,
        requested,
        server: o.server,
        claimed_name: o.fqdn.map(|(_, name)| name).or(o.host_name),
    })
}

fn reply(
    config: &DhcpConfig,
    m: &v4::Message,
    fqdn: Option<(u8, String)>,
    kind: MessageType,
    yiaddr: Ipv4Addr,
) -> v4::Message {
    let mut r = v4::Message::new_with_id(
        m.xid(),
        Ipv4Addr::UNSPECIFIED,
        yiaddr,
        config.server_ip,
        m.giaddr(),
        m.chaddr(),
    );
    r.set_opcode(Opcode::BootReply)
        .set_flags(m.flags())
        .set_htype(m.htype());
    if kind == MessageType::Ack && !m.ciaddr().is_unspecified() {
        r.set_ciaddr(m.ciaddr());
    }
    let o = r.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ServerIdentifier(config.server_ip));
    if kind != MessageType::Nak {
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::from(
            u32::MAX << (32 - config.prefix_len),
        )));
        o.insert(DhcpOption::Router(vec![config.router]));
        o.insert(DhcpOption::DomainNameServer(config.dns_servers.clone()));
        if kind != MessageType::Ack || !yiaddr.is_unspecified() {
            o.insert(DhcpOption::AddressLeaseTime(config.lease_secs as u32));
            o.insert(DhcpOption::Renewal((config.lease_secs / 2) as u32));
            o.insert(DhcpOption::Rebinding((config.lease_secs * 7 / 8) as u32));
        }
    }
    // RFC 4702: answer a client FQDN option; the server does the forward update (S=1),
    // overriding the client's choice if it wanted to do it itself (O=1).
    if let Some((flags, name)) = fqdn {
        let o_bit = if flags & FQDN_S == 0 { FQDN_O } else { 0 };
        let flags = v4::fqdn::FqdnFlags::new(FQDN_S | o_bit | FQDN_E);
        if let Ok(domain) = format!("{name}.").parse::<hickory_proto::rr::Name>() {
            o.insert(DhcpOption::ClientFQDN(v4::fqdn::ClientFQDN::new(
                flags, domain,
            )));
        }
    }
    r
}

/// A change the DNS and the HLR must follow, kept in the durable queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum DdnsOp {
    Bind {
        imsi: String,
        host_name: String,
        ip: Ipv4Addr,
    },
    Unbind {
        imsi: String,
        host_name: String,
        ip: Ipv4Addr,
    },
}

impl DdnsOp {
    fn imsi(&self) -> &str {
        match self {
            DdnsOp::Bind { imsi, .. } | DdnsOp::Unbind { imsi, .. } => imsi,
        }
    }
}

struct Server {
    config: DhcpConfig,
    book: Mutex<LeaseBook>,
    queue: DurableQueue<DdnsOp>,
    events: EventLog,
}

impl Server {
    fn save(&self, book: &LeaseBook) {
        if let Err(e) = json_file::write_private_json(&self.config.leases_file, book) {
            tracing::error!("cannot save leases: {e}");
        }
    }

    fn follow(&self, changes: Vec<Binding>) {
        for change in changes {
            match change {
                Binding::Bound {
                    imsi,
                    host_name,
                    ip,
                } => {
                    self.events.emit(
                        "lease bound",
                        Some(&imsi),
                        json!({"address": ip, "host_name": host_name}),
                    );
                    self.queue.push(DdnsOp::Bind {
                        imsi,
                        host_name,
                        ip,
                    });
                }
                Binding::Unbound {
                    imsi,
                    host_name,
                    ip,
                    why,
                } => {
                    self.events.emit(
                        "lease ended",
                        Some(&imsi),
                        json!({"address": ip, "host_name": host_name, "why": why}),
                    );
                    self.queue.push(DdnsOp::Unbind {
                        imsi,
                        host_name,
                        ip,
                    });
                }
            }
        }
    }

    fn reverse_target(&self, ip: Ipv4Addr) -> Option<&DnsTarget> {
        let name = crate::dns::update::reverse_name(ip.into());
        self.config
            .reverse_zones
            .iter()
            .find(|z| name.ends_with(&z.zone))
    }

    /// Asks the HLR, through the VLR, to record or withdraw a session address.
    /// Sends a report to the home network through the VLR. A GSUP error answer is a
    /// refusal for good; no answer may be temporary.
    async fn tell_home(&self, request: Message) -> Result<Message, Failure> {
        let stream = tokio::net::UnixStream::connect(&self.config.vlr_local_socket)
            .await
            .map_err(|e| format!("VLR: {e}"))?;
        let (mut reader, writer) = stream.into_split();
        let sender = signaling::Sender::new(writer);
        sender.gsup(&request).await.map_err(|e| e.to_string())?;
        let bytes = tokio::time::timeout(
            signaling::REQUEST_TIMEOUT * 2,
            signaling::next_gsup(&mut reader, &sender),
        )
        .await
        .map_err(|_| "no answer from the VLR".to_string())?
        .map_err(|e| e.to_string())?;
        let answer = Message::decode(&bytes).map_err(|e| e.to_string())?;
        if answer.msg_type == msg::result_of(request.msg_type) {
            Ok(answer)
        } else {
            use crate::protocols::gsup::cause;
            let c = answer.cause.unwrap_or(0);
            let why = format!("refused: {}", cause::name(c));
            // The home network's word on the subscriber is final; a network that cannot
            // answer now (failure, congestion) may answer later.
            Err(match c {
                cause::NETWORK_FAILURE | cause::CONGESTION => Failure::Retry(why),
                _ => Failure::Refused(why),
            })
        }
    }

    async fn apply(&self, op: DdnsOp) -> Result<(), Failure> {
        use crate::dns::update::{self, Change, RecordData, RecordKind};
        match &op {
            DdnsOp::Bind {
                imsi,
                host_name,
                ip,
            } => {
                let mut report = Message::new(msg::SESSION_ADDRESS_REQUEST, imsi);
                report.session_address = Some((*ip).into());
                let answer = self.tell_home(report).await?;
                // The host name is the home network's word for it (claim 24).
                let name = answer.host_name.unwrap_or_else(|| host_name.clone());
                if let Some(zone) = self.reverse_target(*ip) {
                    let target = zone.update_target().map_err(|e| e.to_string())?;
                    let change = Change::Replace {
                        name: update::reverse_name((*ip).into()),
                        data: RecordData::Pointer(name.clone()),
                    };
                    update::send(&target, &change).await.map_err(dns_failure)?;
                }
                self.events.emit(
                    "visited DNS reverse record set",
                    Some(imsi),
                    json!({"address": ip, "host_name": name}),
                );
            }
            DdnsOp::Unbind { imsi, ip, .. } => {
                if let Some(zone) = self.reverse_target(*ip) {
                    let target = zone.update_target().map_err(|e| e.to_string())?;
                    let change = Change::Delete {
                        name: update::reverse_name((*ip).into()),
                        rtype: RecordKind::Ptr,
                        data: None,
                    };
                    update::send(&target, &change).await.map_err(dns_failure)?;
                }
                self.events.emit(
                    "visited DNS reverse record removed",
                    Some(imsi),
                    json!({"address": ip}),
                );
                match self
                    .tell_home(Message::new(msg::SESSION_WITHDRAW_REQUEST, imsi))
                    .await
                {
                    Ok(_) => {}
                    // A terminal no longer registered there has nothing left to withdraw.
                    Err(Failure::Refused(why)) if why.contains("illegal MS") => {}
                    Err(why) => return Err(why),
                }
            }
        }
        Ok(())
    }
}

pub async fn run(config: DhcpConfig) -> std::io::Result<()> {
    let events = EventLog::open(&config.events_file, &format!("{}/dhcp", config.name))?;
    let book: LeaseBook = json_file::read_json(&config.leases_file)
        .unwrap_or_else(|_| LeaseBook::new(config.pool_start, config.pool_end));
    let socket = bind_dhcp_socket(&config.interface, 67).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot bind udp 0.0.0.0:67 on {}: {e}", config.interface),
        )
    })?;
    let server = Arc::new(Server {
        queue: DurableQueue::open(config.queue_file.clone()),
        book: Mutex::new(book),
        events,
        config,
    });
    {
        let s = server.clone();
        tokio::spawn(async move {
            s.queue
                .run(
                    |op| {
                        let s = s.clone();
                        async move { s.apply(op).await }
                    },
                    |op, why| {
                        s.events.emit(
                            "DNS change dropped",
                            Some(op.imsi()),
                            json!({"change": format!("{op:?}"), "why": why}),
                        )
                    },
                )
                .await
        });
    }
    {
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP).await;
                let attached = attached_links(&s.config.vlr_attached);
                let changes = {
                    let mut book = s.book.lock().expect("lock");
                    let changes = book.sweep(now(), &|imsi, mac| {
                        let mac = super::vlr::format_mac(mac);
                        attached.iter().any(|(i, m)| i == imsi && *m == mac)
                    });
                    if !changes.is_empty() {
                        s.save(&book);
                    }
                    changes
                };
                s.follow(changes);
            }
        });
    }
    tracing::info!(interface = %server.config.interface, pool = %format!("{}-{}", server.config.pool_start, server.config.pool_end), "DHCP server ready");
    crate::agents::notify_ready();
    // Requests are read off the link, with the frame's source; the UDP socket only sends
    // (what it receives too is drained and dropped).
    let tap = super::cell_tap::CellTap::open(&server.config.interface).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot open a packet socket on {}: {e}",
                server.config.interface
            ),
        )
    })?;
    let socket = Arc::new(socket);
    {
        let socket = socket.clone();
        tokio::spawn(async move {
            let mut sink = vec![0u8; 2048];
            while socket.recv_from(&mut sink).await.is_ok() {}
        });
    }
    let serve = async {
        let mut buf = vec![0u8; 4096];
        // One line per source and reason per interval, whatever a source sends.
        let mut refusals = super::ratelimit::RateLimited::new(REFUSAL_LOG_INTERVAL);
        let mut refused = |source: &[u8; 6], reason: &str, what: std::fmt::Arguments<'_>| {
            if let Some(n) =
                refusals.note(&(*source, reason.to_string()), std::time::Instant::now())
            {
                let from = super::vlr::format_mac(source);
                tracing::warn!(%from, count = n, "{what}");
            }
        };
        loop {
            let received = match tap.recv(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("reading the cell: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let packet = &received.payload[..];
            let m = match decode(packet) {
                Ok(m) => m,
                Err(e) => {
                    refused(
                        &received.source,
                        "malformed",
                        format_args!(
                            "malformed DHCP packet ({} bytes) ignored: {e}",
                            packet.len()
                        ),
                    );
                    continue;
                }
            };
            let Some(request) = request_of(packet, &m) else {
                continue;
            };
            // chaddr is what the client wrote; the frame's source is who sent it (each
            // terminal's port carries its own address only).
            if request.mac != received.source {
                let claimed = super::vlr::format_mac(&request.mac);
                refused(
                    &received.source,
                    "spoofed",
                    format_args!("refused: a request for hardware address {claimed} from another link-layer address"),
                );
                server.events.emit(
                    "DHCP spoof refused",
                    None,
                    json!({"from": super::vlr::format_mac(&received.source), "claimed": claimed}),
                );
                continue;
            }
            let fqdn = client_options(packet).fqdn;
            let who = authorised(&server.config.vlr_attached, &request.mac);
            let (answer, changes) = {
                let mut book = server.book.lock().expect("lock");
                let out = book.handle(
                    &request,
                    who.as_ref(),
                    server.config.server_ip,
                    server.config.lease_secs,
                    now(),
                );
                server.save(&book);
                out
            };
            server.follow(changes);
            let mac = super::vlr::format_mac(&request.mac);
            let (kind, ip) = match answer {
                Answer::Offer(ip) => (MessageType::Offer, ip),
                Answer::Ack(ip) => {
                    let sent = request.claimed_name.as_deref().unwrap_or("none");
                    tracing::info!(%mac, %ip, "ACK (name sent by the client: {sent})");
                    (MessageType::Ack, ip)
                }
                Answer::InformAck => (MessageType::Ack, Ipv4Addr::UNSPECIFIED),
                Answer::Nak(why) => {
                    refused(&request.mac, &why, format_args!("NAK: {why}"));
                    (MessageType::Nak, Ipv4Addr::UNSPECIFIED)
                }
                Answer::Silent(why) => {
                    if why != "released" {
                        refused(&request.mac, &why, format_args!("no answer: {why}"));
                        if who.is_some() {
                            server.events.emit(
                                "no lease",
                                who.as_ref().map(|w| w.imsi.as_str()),
                                json!({"mac": mac, "why": why}),
                            );
                        }
                    }
                    continue;
                }
            };
            let r = reply(&server.config, &m, fqdn, kind, ip);
            let Ok(bytes) = r.to_vec() else { continue };
            // Clients without an address get a broadcast; renewing ones a unicast.
            let to = if !m.ciaddr().is_unspecified() && kind == MessageType::Ack {
                SocketAddrV4::new(m.ciaddr(), 68)
            } else {
                SocketAddrV4::new(Ipv4Addr::BROADCAST, 68)
            };
            if let Err(e) = socket.send_to(&bytes, to).await {
                tracing::warn!("send to {to}: {e}");
            }
        }
    };
    tokio::select! {
        _ = serve => {}
        _ = crate::agents::shutdown_signal() => tracing::info!("DHCP server stopping"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discover() -> Vec<u8> {
        let mut m = v4::Message::new_with_id(
            7,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &[2, 0, 0, 0, 0, 1],
        );
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Discover));
        m.to_vec().unwrap()
    }

    #[test]
    fn garbage_truncations_and_lying_headers_never_panic() {
        let good = discover();
        assert!(decode(&good)
            .ok()
            .and_then(|m| request_of(&good, &m))
            .is_some());
        for cut in 0..good.len() {
            if let Ok(m) = decode(&good[..cut]) {
                let _ = request_of(&good[..cut], &m);
            }
        }
        let mut seed = 0x9e37_79b9_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..20_000 {
            let mut p: Vec<u8> = (0..(next() % 600) as usize).map(|_| next() as u8).collect();
            if p.len() >= 240 && round % 2 == 0 {
                p[0] = 1;
                p[236..240].copy_from_slice(&[99, 130, 83, 99]);
            }
            let _ = client_options(&p);
            if let Ok(m) = decode(&p) {
                let _ = request_of(&p, &m);
            }
        }
        let mut liar = good.clone();
        liar[2] = 200;
        assert!(decode(&liar).is_err());
        let mut bad_fqdn = good[..240].to_vec();
        bad_fqdn.extend([53, 1, 1, 81, 250, 0xff, 0, 0, 7, b'b', b'a', b'd', 255]);
        if let Ok(m) = decode(&bad_fqdn) {
            let _ = request_of(&bad_fqdn, &m);
        }
    }

    #[test]
    fn option_81_in_both_encodings_and_after_a_bad_option() {
        let base = discover()[..240].to_vec();
        let with = |opts: &[u8]| {
            let mut p = base.clone();
            p.extend_from_slice(opts);
            client_options(&p)
        };
        // Wire format (E=1), as the built-in client and dhcpcd send it.
        let wire = with(&[
            53, 1, 1, 81, 24, 0x05, 0, 0, 6, b'p', b'h', b'o', b'n', b'e', b'1', 4, b'h', b'o',
            b'm', b'e', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 255,
        ]);
        assert_eq!(wire.fqdn, Some((0x05, "phone1.home.example".to_string())));
        // ASCII (E=0), as dhclient sends it by default.
        let mut opts = vec![53, 1, 3, 81, 22, 0x01, 0, 0];
        opts.extend_from_slice(b"phone1.home.example");
        opts.extend([50, 4, 198, 51, 100, 100, 255]);
        let ascii = with(&opts);
        assert_eq!(ascii.fqdn, Some((0x01, "phone1.home.example".to_string())));
        assert_eq!(
            ascii.requested,
            Some(Ipv4Addr::new(198, 51, 100, 100)),
            "options after option 81 are read"
        );
        // A malformed option does not hide the ones after it.
        let after_bad = with(&[
            53, 1, 1, 81, 2, 0xff, 0, 12, 6, b'p', b'h', b'o', b'n', b'e', b'1', 255,
        ]);
        assert_eq!(
            (after_bad.msg_type, after_bad.host_name.as_deref()),
            (Some(1), Some("phone1"))
        );
    }
}
