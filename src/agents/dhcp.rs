//! The visited network's DHCP server (patent: visited DHCP 122), on dhcproto, listening
//! on the cell bridge. It leases only to terminals the VLR lists as attached (matched by
//! the link-layer address the terminal reported at attach), keeps its leases in a file,
//! and makes DNS follow them through a durable queue: on a new binding it reports the
//! address to the terminal's HLR through the VLR (the HLR writes the home DNS forward
//! record and answers with the host name) and writes the reverse record in the visited
//! DNS; when a binding ends (release, expiry, detach) it undoes both.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dhcproto::v4::{self, MessageType, Opcode};
use dhcproto::Encodable;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::leases::{Answer, Authorised, Binding, Kind, LeaseBook, Request};
use super::queue::{dns_failure, DurableQueue, Failure};
use super::signaling;
use crate::contract::configs::{DhcpConfig, DnsTarget};
use crate::contract::published::{format_mac, AttachedFollower};
use crate::dns::update::UpdateTarget;
use crate::events::EventLog;
use crate::journal::Journal;
use crate::protocols::dhcp::{self as wire, client_options, decode, MIN_MESSAGE};
use crate::protocols::gsup::{msg, Message};

/// How often expired leases and those of detached terminals are swept.
const SWEEP: Duration = Duration::from_millis(500);
/// Refused packets are logged once per source in this time, with a count.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The VLR's registrations as this server follows them (a line of its journal per
/// change): who is registered on which link.
struct Authorisations {
    follower: AttachedFollower,
    /// Link-layer address → the subscriber registered on it.
    by_link: HashMap<String, Authorised>,
}

impl Authorisations {
    fn new(path: &std::path::Path) -> Self {
        Authorisations {
            follower: AttachedFollower::new(path),
            by_link: HashMap::new(),
        }
    }

    /// Takes in what the VLR published since the last call.
    fn refresh(&mut self) {
        let by_link = &mut self.by_link;
        let read = self.follower.refresh(&mut |(imsi, old, new)| {
            if let Some(mac) = old.and_then(|t| t.mac.as_ref()) {
                if by_link.get(mac).is_some_and(|a| &a.imsi == imsi) {
                    by_link.remove(mac);
                }
            }
            if let Some((mac, t)) = new.and_then(|t| Some((t.mac.clone()?, t))) {
                let who = Authorised {
                    imsi: t.imsi.clone(),
                    host_name: t.host_name.clone().unwrap_or_default(),
                };
                by_link.insert(mac, who);
            }
        });
        if let Err(e) = read {
            tracing::warn!("cannot read the VLR's registrations: {e}");
        }
    }

    fn of(&self, mac: &[u8; 6]) -> Option<Authorised> {
        self.by_link.get(&format_mac(mac)).cloned()
    }

    /// Whether `imsi` is registered on link `mac`.
    fn holds(&self, imsi: &str, mac: &[u8; 6]) -> bool {
        self.by_link
            .get(&format_mac(mac))
            .is_some_and(|a| a.imsi == imsi)
    }
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

/// The lease book on disk: its leases and its declined addresses, a journal each.
struct BookFiles {
    leases: Journal<Ipv4Addr, super::leases::Lease>,
    probation: Journal<Ipv4Addr, u64>,
}

impl BookFiles {
    fn open(config: &DhcpConfig) -> std::io::Result<Self> {
        Ok(BookFiles {
            leases: Journal::open(&config.leases_file)?,
            probation: Journal::open(&config.probation_file)?,
        })
    }

    fn book(&self, config: &DhcpConfig) -> LeaseBook {
        LeaseBook {
            leases: self.leases.records().clone(),
            probation: self.probation.records().clone(),
            ..LeaseBook::new(config.pool_start, config.pool_end)
        }
    }
}

struct Server {
    config: DhcpConfig,
    served: wire::Served,
    book: Mutex<LeaseBook>,
    /// Locked after `book`, when both are.
    files: Mutex<BookFiles>,
    authorisations: Mutex<Authorisations>,
    queue: DurableQueue<DdnsOp>,
    events: EventLog,
}

impl Server {
    /// Writes what changed in the book (a line per lease that changed).
    fn save(&self, book: &LeaseBook) {
        let mut files = self.files.lock().expect("lock");
        let saved = files
            .leases
            .sync(&book.leases)
            .and_then(|_| files.probation.sync(&book.probation));
        if let Err(e) = saved {
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
                    let target = UpdateTarget::load(zone).map_err(|e| e.to_string())?;
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
                    let target = UpdateTarget::load(zone).map_err(|e| e.to_string())?;
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

/// What the server made of one packet read off the cell.
#[derive(Debug)]
pub enum Handled {
    /// Not a client message the server answers (a BOOTREPLY, an unknown type, ...).
    NotARequest,
    Malformed(String),
    /// A request for another hardware address than the frame's source.
    Spoofed {
        claimed: [u8; 6],
    },
    /// The lease book's answer, the reply to send (none for a silent answer) and the
    /// bindings that started or ended.
    Answered {
        request: Request,
        who: Option<Authorised>,
        answer: Answer,
        reply: Option<(Vec<u8>, SocketAddrV4)>,
        changes: Vec<Binding>,
    },
}

/// The server's path from one packet off the cell (from link-layer address `source`) to its
/// reply, pure: decoding that trusts nothing, the check that chaddr is the sender's, the
/// lease book (`authorised` says whom the VLR lists), the reply and where it goes.
pub fn handle_packet(
    book: &mut LeaseBook,
    served: &wire::Served,
    source: &[u8; 6],
    packet: &[u8],
    authorised: &dyn Fn(&[u8; 6]) -> Option<Authorised>,
    now: u64,
) -> Handled {
    let m = match decode(packet) {
        Ok(m) => m,
        Err(e) => return Handled::Malformed(e),
    };
    let Some(request) = request_of(packet, &m) else {
        return Handled::NotARequest;
    };
    // chaddr is what the client wrote; the frame's source is who sent it (each terminal's
    // port carries its own address only).
    if request.mac != *source {
        return Handled::Spoofed {
            claimed: request.mac,
        };
    }
    let who = authorised(&request.mac);
    let (answer, changes) = book.handle(
        &request,
        who.as_ref(),
        served.server_ip,
        served.lease_secs,
        now,
    );
    let kind_ip = match &answer {
        Answer::Offer(ip) => Some((MessageType::Offer, *ip)),
        Answer::Ack(ip) => Some((MessageType::Ack, *ip)),
        Answer::InformAck => Some((MessageType::Ack, Ipv4Addr::UNSPECIFIED)),
        Answer::Nak(_) => Some((MessageType::Nak, Ipv4Addr::UNSPECIFIED)),
        Answer::Silent(_) => None,
    };
    let reply = kind_ip.and_then(|(kind, ip)| {
        let fqdn = client_options(packet).fqdn;
        let bytes = wire::reply(served, &m, fqdn, kind, ip).to_vec().ok()?;
        // Clients without an address get a broadcast; renewing ones a unicast.
        let to = if !m.ciaddr().is_unspecified() && kind == MessageType::Ack {
            SocketAddrV4::new(m.ciaddr(), 68)
        } else {
            SocketAddrV4::new(Ipv4Addr::BROADCAST, 68)
        };
        Some((bytes, to))
    });
    Handled::Answered {
        request,
        who,
        answer,
        reply,
        changes,
    }
}

pub async fn run(config: DhcpConfig) -> std::io::Result<()> {
    let events = EventLog::open(&config.events_file, &format!("{}/dhcp", config.name))?;
    let files = BookFiles::open(&config)?;
    let book = files.book(&config);
    let socket = wire::bind_socket(&config.interface, 67).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot bind udp 0.0.0.0:67 on {}: {e}", config.interface),
        )
    })?;
    // Requests are read off the link, with the frame's source; the UDP socket only sends
    // (what it receives too is drained and dropped).
    let tap = super::cell_tap::CellTap::open(&config.interface).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot open a packet socket on {}: {e}", config.interface),
        )
    })?;
    super::drop_privileges()?;
    let served = wire::Served {
        server_ip: config.server_ip,
        prefix_len: config.prefix_len,
        router: config.router,
        dns_servers: config.dns_servers.clone(),
        lease_secs: config.lease_secs,
    };
    let server = Arc::new(Server {
        served,
        queue: DurableQueue::open(config.queue_file.clone()),
        book: Mutex::new(book),
        files: Mutex::new(files),
        authorisations: Mutex::new(Authorisations::new(&config.vlr_attached)),
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
                let changes = {
                    let mut authorisations = s.authorisations.lock().expect("lock");
                    authorisations.refresh();
                    let mut book = s.book.lock().expect("lock");
                    let changes = book.sweep(now(), &|imsi, mac| authorisations.holds(imsi, mac));
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
    super::notify_ready();
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
                let from = format_mac(source);
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
            let handled = {
                let mut authorisations = server.authorisations.lock().expect("lock");
                authorisations.refresh();
                let mut book = server.book.lock().expect("lock");
                let who = |mac: &[u8; 6]| authorisations.of(mac);
                let handled = handle_packet(
                    &mut book,
                    &server.served,
                    &received.source,
                    packet,
                    &who,
                    now(),
                );
                if matches!(handled, Handled::Answered { .. }) {
                    server.save(&book);
                }
                handled
            };
            let (request, who, answer, reply, changes) = match handled {
                Handled::NotARequest => continue,
                Handled::Malformed(e) => {
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
                Handled::Spoofed { claimed } => {
                    let claimed = format_mac(&claimed);
                    refused(
                        &received.source,
                        "spoofed",
                        format_args!("refused: a request for hardware address {claimed} from another link-layer address"),
                    );
                    server.events.emit(
                        "DHCP spoof refused",
                        None,
                        json!({"from": format_mac(&received.source), "claimed": claimed}),
                    );
                    continue;
                }
                Handled::Answered {
                    request,
                    who,
                    answer,
                    reply,
                    changes,
                } => (request, who, answer, reply, changes),
            };
            server.follow(changes);
            let mac = format_mac(&request.mac);
            match &answer {
                Answer::Ack(ip) => {
                    let sent = request.claimed_name.as_deref().unwrap_or("none");
                    tracing::info!(%mac, %ip, "ACK (name sent by the client: {sent})");
                }
                Answer::Nak(why) => refused(&request.mac, why, format_args!("NAK: {why}")),
                Answer::Silent(why) if why != "released" => {
                    refused(&request.mac, why, format_args!("no answer: {why}"));
                    if let Some(w) = &who {
                        server.events.emit(
                            "no lease",
                            Some(&w.imsi),
                            json!({"mac": mac, "why": why}),
                        );
                    }
                }
                _ => {}
            }
            let Some((bytes, to)) = reply else { continue };
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

    #[test]
    fn what_the_lease_book_reads_of_a_mangled_request_never_panics() {
        let good = crate::protocols::dhcp::test_discover();
        let request = request_of(&good, &decode(&good).unwrap()).unwrap();
        assert_eq!(
            (request.kind, request.mac),
            (Kind::Discover, [2, 0, 0, 0, 0, 1])
        );
        // Every byte of a good request set to every value (the codec's own tests feed it
        // random packets): whatever decodes, the lease book's reading of it never panics.
        for at in 0..good.len() {
            for value in [0u8, 1, 6, 7, 16, 17, 53, 61, 81, 0x7f, 0xff] {
                let mut p = good.clone();
                p[at] = value;
                if let Ok(m) = decode(&p) {
                    let _ = request_of(&p, &m);
                }
                if let Ok(m) = decode(&p[..at]) {
                    let _ = request_of(&p[..at], &m);
                }
            }
        }
    }
}
