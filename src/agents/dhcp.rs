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
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::leases::{Answer, Authorised, Binding, Kind, LeaseBook, Pool, Request};
use super::queue::{dns_failure, DurableQueue, Failure, MAX_BACKLOG};
use super::signaling;
use crate::contract::configs::{DhcpConfig, DnsTarget, Mode, NameSource, RelayConfig};
use crate::contract::published::{format_mac, AttachedFollower};
use crate::dns::update::UpdateTarget;
use crate::events::EventLog;
use crate::journal::Journal;
use crate::protocols::dhcp::{self as wire, client_options, decode, MIN_MESSAGE};
use crate::protocols::gsup::{msg, Message};

/// How often expired leases and those of detached terminals are swept.
const SWEEP: Duration = Duration::from_millis(500);
/// How many changes go to the home network and the visited DNS at once (each subscriber's
/// in order).
const QUEUE_LANES: usize = 32;
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
                    packet_data: t.packet_data,
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
        rapid_commit: kind == Kind::Discover && o.rapid_commit,
    })
}

/// A change the DNS and the HLR must follow, kept in the durable queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum DdnsOp {
    Bind {
        imsi: String,
        host_name: String,
        ip: Ipv4Addr,
        /// The name is the terminal's claim, for its home to verify before anything is
        /// written (a network whose names come from terminals).
        #[serde(default)]
        claimed: bool,
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

/// The lease book on disk: its leases, its declined addresses and the addresses it holds
/// for subscribers, a journal each.
struct BookFiles {
    leases: Journal<Ipv4Addr, super::leases::Lease>,
    probation: Journal<Ipv4Addr, u64>,
    held: Journal<Ipv4Addr, super::leases::Hold>,
}

impl BookFiles {
    fn open(config: &DhcpConfig) -> std::io::Result<Self> {
        Ok(BookFiles {
            leases: Journal::open(&config.leases_file)?,
            probation: Journal::open(&config.probation_file)?,
            held: Journal::open(&config.held_file)?,
        })
    }

    fn book(&self, config: &DhcpConfig) -> LeaseBook {
        let mut book = LeaseBook::restored(
            config.pool_start,
            config.pool_end,
            self.leases.records().clone(),
            self.probation.records().clone(),
            self.held.records().clone(),
        );
        book.name_source = config.name_source;
        book
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
    /// Writes what changed in the book: a line per address whose lease, probation or hold
    /// changed.
    fn save(&self, book: &mut LeaseBook) {
        let mut files = self.files.lock().expect("lock");
        for ip in book.take_dirty() {
            let saved = files
                .leases
                .put(&ip, book.leases.get(&ip))
                .and_then(|_| files.probation.put(&ip, book.probation.get(&ip)))
                .and_then(|_| files.held.put(&ip, book.held.get(&ip)));
            if let Err(e) = saved {
                tracing::error!("cannot save leases: {e}");
            }
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
                    let claimed = self.config.name_source == NameSource::Terminal;
                    if claimed && host_name.is_empty() {
                        // Nothing to verify, and the home's own word is not this
                        // network's source: the terminal has an address and no name.
                        self.events.emit(
                            "no host name",
                            Some(&imsi),
                            json!({"address": ip, "why": "the terminal said none, and this network learns names from its terminals"}),
                        );
                        continue;
                    }
                    self.queue.push(DdnsOp::Bind {
                        imsi,
                        host_name,
                        ip,
                        claimed,
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
        reverse_zone_of(&self.config.reverse_zones, ip)
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
                claimed,
            } => {
                let name = if self.config.mode == Mode::NoUpdate {
                    // The background art ([0011]): the home network is not told.
                    host_name.clone()
                } else {
                    let mut report = Message::new(msg::SESSION_ADDRESS_REQUEST, imsi);
                    report.session_address = Some((*ip).into());
                    // Claim 23: the home verifies the terminal's word before it writes
                    // anything, and nothing is written here unless it did.
                    report.host_name = claimed.then(|| host_name.clone());
                    let answer = self.tell_home(report).await?;
                    // The host name is the home network's word for it (claim 24).
                    answer.host_name.unwrap_or_else(|| host_name.clone())
                };
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
                if self.config.mode == Mode::NoUpdate {
                    return Ok(());
                }
                // The address it ends, so a withdraw that comes late ends no newer session.
                let mut withdraw = Message::new(msg::SESSION_WITHDRAW_REQUEST, imsi);
                withdraw.session_address = Some((*ip).into());
                match self.tell_home(withdraw).await {
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

/// The reverse zone that holds `ip`'s PTR record: the nearest enclosing one, matched label
/// by label (`63.19.18.198.in-addr.arpa` is not in `9.18.198.in-addr.arpa`).
fn reverse_zone_of(zones: &[DnsTarget], ip: Ipv4Addr) -> Option<&DnsTarget> {
    let name = crate::dns::update::reverse_name(ip.into());
    zones
        .iter()
        .filter(|z| crate::dns::zonefile::within(&name, z.zone.trim_end_matches('.')))
        .max_by_key(|z| z.zone.len())
}

/// What the server made of one packet, from the cell or from a relay.
#[derive(Debug)]
pub enum Handled {
    /// Not a client message the server answers (a BOOTREPLY, an unknown type, ...).
    NotARequest,
    Malformed(String),
    /// A request for another hardware address than the frame's source.
    Spoofed {
        claimed: [u8; 6],
    },
    /// A request the segment it came from may not make (a relayed request on the cell, a
    /// relay speaking for another relay's subnet).
    Refused(String),
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

/// A relay agent as the server answers it: where it is, the segment it relays, and what
/// that segment's clients are told.
#[derive(Debug, Clone)]
pub struct RelaySegment {
    pub address: Ipv4Addr,
    pub subnet: Ipv4Net,
    pub pool: Pool,
    pub served: wire::Served,
}

impl RelaySegment {
    fn of(config: &RelayConfig, cell: &wire::Served) -> Self {
        RelaySegment {
            address: config.address,
            subnet: config.subnet,
            pool: Pool {
                start: config.pool_start,
                end: config.pool_end,
            },
            served: wire::Served {
                server_ip: config.local,
                prefix_len: config.subnet.prefix_len(),
                router: config.router,
                ..cell.clone()
            },
        }
    }
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
    load: &Load<'_>,
    now: u64,
) -> Handled {
    let (m, request) = match read(packet) {
        Ok(read) => read,
        Err(handled) => return *handled,
    };
    // chaddr is what the client wrote; the frame's source is who sent it (each terminal's
    // port carries its own address only).
    if request.mac != *source {
        return Handled::Spoofed {
            claimed: request.mac,
        };
    }
    // A terminal is no relay: what it says a relay relayed is its own.
    if !m.giaddr().is_unspecified() {
        return Handled::Refused(format!(
            "a relayed request (giaddr {}) on the cell",
            m.giaddr()
        ));
    }
    let pool = book.cell_pool();
    let to = |kind: MessageType| {
        // Clients without an address get a broadcast; renewing ones a unicast.
        if !m.ciaddr().is_unspecified() && kind == MessageType::Ack {
            SocketAddrV4::new(m.ciaddr(), 68)
        } else {
            SocketAddrV4::new(Ipv4Addr::BROADCAST, 68)
        }
    };
    let segment = Segment {
        served,
        pool,
        to: &to,
    };
    answer(book, &segment, &m, packet, request, authorised, load, now)
}

/// The server's path from one packet that came from `from` on an interface towards
/// `relays` (RFC 2131 §4.1) to its reply, pure. Only a relay's own address speaks for its
/// segment. The relay stands for its segment's clients, so no link-layer address is
/// checked; the hardware address must still be one the VLR authorised. giaddr must be the
/// relay's own address or on the subnet it relays, and the reply goes back to the relay on
/// port 67 (where a relay listens whichever of its addresses giaddr is).
pub fn handle_relayed(
    book: &mut LeaseBook,
    relays: &[RelaySegment],
    from: Ipv4Addr,
    packet: &[u8],
    authorised: &dyn Fn(&[u8; 6]) -> Option<Authorised>,
    load: &Load<'_>,
    now: u64,
) -> Handled {
    let Some(relay) = relays.iter().find(|r| r.address == from) else {
        return Handled::Refused(format!("{from} is not a relay of this server"));
    };
    let (m, request) = match read(packet) {
        Ok(read) => read,
        Err(handled) => return *handled,
    };
    let giaddr = m.giaddr();
    if giaddr != relay.address && !relay.subnet.contains(&giaddr) {
        return Handled::Refused(format!(
            "relay {} sent a request for giaddr {giaddr}, outside its subnet {}",
            relay.address, relay.subnet
        ));
    }
    let to = |_| SocketAddrV4::new(relay.address, 67);
    let segment = Segment {
        served: &relay.served,
        pool: Some(relay.pool),
        to: &to,
    };
    answer(book, &segment, &m, packet, request, authorised, load, now)
}

/// Where a request came from, as the answer needs it: what the server tells that segment's
/// clients, the pool it leases from, and where a reply of each kind goes.
struct Segment<'a> {
    served: &'a wire::Served,
    pool: Option<Pool>,
    to: &'a dyn Fn(MessageType) -> SocketAddrV4,
}

/// Decodes a packet and reads the request in it; what it is instead, if it is none.
fn read(packet: &[u8]) -> Result<(v4::Message, Request), Box<Handled>> {
    let m = decode(packet).map_err(|e| Box::new(Handled::Malformed(e)))?;
    let request = request_of(packet, &m).ok_or(Box::new(Handled::NotARequest))?;
    Ok((m, request))
}

/// How far behind the DNS changes are: how many wait in all, and how many of a subscriber.
pub struct Load<'a> {
    pub backlog: usize,
    pub waiting: &'a dyn Fn(&str) -> usize,
}

/// The changes of one terminal that may wait before it is not answered: however fast it
/// releases and asks again, it cannot fill the queue that every terminal shares.
pub const MAX_WAITING_PER_TERMINAL: usize = 8;

/// The lease book's answer to `request` from `segment`, and the reply. While the DNS
/// changes are behind (`load`: too many waiting in all, or of this terminal), a client is
/// not answered a DISCOVER (when the backlog is the others', only if it holds nothing yet)
/// or a REQUEST of its own backlog: it tries again later (RFC 2131 §4.1), so overload slows
/// clients down instead of losing records.
#[allow(clippy::too_many_arguments)]
fn answer(
    book: &mut LeaseBook,
    segment: &Segment<'_>,
    m: &v4::Message,
    packet: &[u8],
    request: Request,
    authorised: &dyn Fn(&[u8; 6]) -> Option<Authorised>,
    load: &Load<'_>,
    now: u64,
) -> Handled {
    let Segment { served, pool, to } = *segment;
    let who = authorised(&request.mac);
    let own = who.as_ref().map_or(0, |w| (load.waiting)(&w.imsi));
    let busy = if own >= MAX_WAITING_PER_TERMINAL
        && matches!(request.kind, Kind::Discover | Kind::Request)
    {
        Some(format!(
            "busy: {own} DNS changes of this terminal are waiting; the client will try again"
        ))
    } else if load.backlog >= MAX_BACKLOG && request.kind == Kind::Discover && !book.holds(&request)
    {
        Some(format!(
            "busy: {} DNS changes are waiting; the client will try again",
            load.backlog
        ))
    } else {
        None
    };
    if let Some(why) = busy {
        return Handled::Answered {
            request,
            who,
            answer: Answer::Silent(why),
            reply: None,
            changes: Vec::new(),
        };
    }
    let handle = if request.rapid_commit && served.rapid_commit {
        LeaseBook::commit_at_once
    } else {
        LeaseBook::handle_in
    };
    let (answer, changes) = handle(
        book,
        pool,
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
        let bytes = wire::reply(served, m, fqdn, kind, ip).to_vec().ok()?;
        Some((bytes, to(kind)))
    });
    Handled::Answered {
        request,
        who,
        answer,
        reply,
        changes,
    }
}

/// One line (and one event) per source and reason per interval, whatever a source sends:
/// a terminal or relay that floods refused requests costs a line per interval, not disk.
struct Refusals(super::ratelimit::RateLimited<(String, String)>);

impl Refusals {
    fn new() -> Self {
        Refusals(super::ratelimit::RateLimited::new(REFUSAL_LOG_INTERVAL))
    }

    /// Logs `what` unless `from` was refused for `reason` within the interval; says how
    /// many refusals the line stands for, if one was written. Reasons that differ only in
    /// their figures (a backlog's size) are one reason.
    fn note(&mut self, from: &str, reason: &str, what: std::fmt::Arguments<'_>) -> Option<u64> {
        let reason: String = reason.chars().filter(|c| !c.is_ascii_digit()).collect();
        let n = self
            .0
            .note(&(from.to_string(), reason), std::time::Instant::now())?;
        tracing::warn!(%from, count = n, "{what}");
        Some(n)
    }
}

impl Server {
    /// Logs and records what a packet from `from` came to, makes DNS follow its bindings,
    /// and gives back the reply to send.
    fn outcome(
        &self,
        handled: Handled,
        from: &str,
        refusals: &mut Refusals,
    ) -> Option<(Vec<u8>, SocketAddrV4)> {
        let (request, who, answer, reply, changes) = match handled {
            Handled::NotARequest => return None,
            Handled::Malformed(e) => {
                refusals.note(
                    from,
                    "malformed",
                    format_args!("malformed DHCP packet ignored: {e}"),
                );
                return None;
            }
            Handled::Spoofed { claimed } => {
                let claimed = format_mac(&claimed);
                let said = refusals.note(
                    from,
                    "spoofed",
                    format_args!("refused: a request for hardware address {claimed} from another link-layer address"),
                );
                if let Some(count) = said {
                    self.events.emit(
                        "DHCP spoof refused",
                        None,
                        json!({"from": from, "claimed": claimed, "count": count}),
                    );
                }
                return None;
            }
            Handled::Refused(why) => {
                if let Some(count) = refusals.note(from, &why, format_args!("refused: {why}")) {
                    self.events.emit(
                        "DHCP request refused",
                        None,
                        json!({"from": from, "why": why, "count": count}),
                    );
                }
                return None;
            }
            Handled::Answered {
                request,
                who,
                answer,
                reply,
                changes,
            } => (request, who, answer, reply, changes),
        };
        self.follow(changes);
        let mac = format_mac(&request.mac);
        match &answer {
            Answer::Ack(ip) => {
                let sent = request.claimed_name.as_deref().unwrap_or("none");
                tracing::info!(%mac, %ip, "ACK (name sent by the client: {sent})");
            }
            Answer::Nak(why) => {
                refusals.note(&mac, why, format_args!("NAK: {why}"));
            }
            Answer::Silent(why) if why != "released" => {
                let said = refusals.note(&mac, why, format_args!("no answer: {why}"));
                if let (Some(w), Some(count)) = (&who, said) {
                    self.events.emit(
                        "no lease",
                        Some(&w.imsi),
                        json!({"mac": mac, "why": why, "count": count}),
                    );
                }
            }
            _ => {}
        }
        reply
    }

    /// Runs `handle` on the book under its locks, with the VLR's registrations brought up
    /// to date, and saves what changed.
    fn locked(
        &self,
        handle: impl FnOnce(
            &mut LeaseBook,
            &dyn Fn(&[u8; 6]) -> Option<Authorised>,
            &Load<'_>,
        ) -> Handled,
    ) -> Handled {
        let waiting = |imsi: &str| self.queue.waiting(imsi);
        let load = Load {
            backlog: self.queue.len(),
            waiting: &waiting,
        };
        let mut authorisations = self.authorisations.lock().expect("lock");
        authorisations.refresh();
        let mut book = self.book.lock().expect("lock");
        let who = |mac: &[u8; 6]| authorisations.of(mac);
        let handled = handle(&mut book, &who, &load);
        if matches!(handled, Handled::Answered { .. }) {
            self.save(&mut book);
        }
        handled
    }
}

/// Serves the cell: requests read off the link with the frame's source, replies sent from
/// the cell's UDP socket.
async fn serve_cell(
    server: Arc<Server>,
    tap: super::cell_tap::CellTap,
    socket: Arc<tokio::net::UdpSocket>,
) {
    let mut buf = vec![0u8; 4096];
    let mut refusals = Refusals::new();
    loop {
        let received = match tap.recv(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("reading the cell: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let handled = server.locked(|book, who, load| {
            handle_packet(
                book,
                &server.served,
                &received.source,
                &received.payload,
                who,
                load,
                now(),
            )
        });
        let from = format_mac(&received.source);
        let Some((bytes, to)) = server.outcome(handled, &from, &mut refusals) else {
            continue;
        };
        // A broadcast goes to the client's port alone (the request's frame came from the
        // client, whose port is locked to it); the UDP broadcast is what is left if not.
        if *to.ip() == Ipv4Addr::BROADCAST {
            match tap.send_to_link(received.source, server.served.server_ip, &bytes) {
                Ok(()) => continue,
                Err(e) => tracing::warn!("send to {from} on the link: {e}; broadcasting"),
            }
        }
        if let Err(e) = socket.send_to(&bytes, to).await {
            tracing::warn!("send to {to}: {e}");
        }
    }
}

/// Serves the relays on one interface: a request counts only from a relay's own address,
/// and its reply goes back to that relay.
async fn serve_relays(
    server: Arc<Server>,
    socket: tokio::net::UdpSocket,
    relays: Vec<RelaySegment>,
) {
    let mut buf = vec![0u8; 4096];
    let mut refusals = Refusals::new();
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("reading from the relays: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let packet = &buf[..len];
        let source = from.ip().to_string();
        let std::net::IpAddr::V4(from) = from.ip() else {
            continue;
        };
        let handled = server.locked(|book, who, load| {
            handle_relayed(book, &relays, from, packet, who, load, now())
        });
        if let Some((bytes, to)) = server.outcome(handled, &source, &mut refusals) {
            if let Err(e) = socket.send_to(&bytes, to).await {
                tracing::warn!("send to {to}: {e}");
            }
        }
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
    let served = wire::Served {
        server_ip: config.server_ip,
        prefix_len: config.prefix_len,
        router: config.router,
        dns_servers: config.dns_servers.clone(),
        lease_secs: config.lease_secs,
        rapid_commit: config.rapid_commit,
    };
    // One socket per interface towards relays, serving the relays reached through it.
    let mut relay_sockets: Vec<(tokio::net::UdpSocket, Vec<RelaySegment>)> = Vec::new();
    let mut by_interface: Vec<(&str, Ipv4Addr, Vec<RelaySegment>)> = Vec::new();
    for r in &config.relays {
        let segment = RelaySegment::of(r, &served);
        match by_interface
            .iter_mut()
            .find(|(i, l, _)| *i == r.interface && *l == r.local)
        {
            Some((_, _, segments)) => segments.push(segment),
            None => by_interface.push((&r.interface, r.local, vec![segment])),
        }
    }
    for (interface, local, segments) in by_interface {
        let socket = wire::bind_socket_at(interface, local, 67).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot bind udp {local}:67 on {interface} for its relays: {e}"),
            )
        })?;
        relay_sockets.push((socket, segments));
    }
    super::drop_privileges()?;
    let server = Arc::new(Server {
        served,
        queue: DurableQueue::open(config.queue_file.clone(), |op: &DdnsOp| {
            op.imsi().to_string()
        })?,
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
                    QUEUE_LANES,
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
                        s.save(&mut book);
                    }
                    changes
                };
                s.follow(changes);
            }
        });
    }
    let relays = server.config.relays.len();
    tracing::info!(interface = %server.config.interface, pool = %format!("{}-{}", server.config.pool_start, server.config.pool_end), relays, "DHCP server ready");
    super::notify_ready();
    let socket = Arc::new(socket);
    {
        let socket = socket.clone();
        tokio::spawn(async move {
            let mut sink = vec![0u8; 2048];
            while socket.recv_from(&mut sink).await.is_ok() {}
        });
    }
    for (socket, segments) in relay_sockets {
        tokio::spawn(serve_relays(server.clone(), socket, segments));
    }
    tokio::select! {
        _ = serve_cell(server.clone(), tap, socket) => {}
        _ = crate::agents::shutdown_signal() => tracing::info!("DHCP server stopping"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by bench-dhcp.sh: the PTR record of 198.18.19.63 was sent to zone
    /// 9.18.198.in-addr.arpa, which refused it, because the zone was matched as text.
    #[test]
    fn a_reverse_record_goes_to_the_zone_that_holds_it() {
        let zone = |name: &str| DnsTarget {
            server: "198.18.8.53:53".parse().unwrap(),
            zone: name.into(),
            key_name: "k".into(),
            key_file: "/k".into(),
            ttl: 60,
        };
        let zones = [
            zone("9.18.198.in-addr.arpa."),
            zone("19.18.198.in-addr.arpa."),
            zone("18.198.in-addr.arpa"),
        ];
        let of = |ip: [u8; 4]| reverse_zone_of(&zones, ip.into()).map(|z| z.zone.as_str());
        assert_eq!(of([198, 18, 19, 63]), Some("19.18.198.in-addr.arpa."));
        assert_eq!(of([198, 18, 9, 1]), Some("9.18.198.in-addr.arpa."));
        assert_eq!(of([198, 18, 29, 1]), Some("18.198.in-addr.arpa"));
        assert_eq!(of([198, 19, 9, 1]), None);
    }

    /// A relayed DISCOVER (RFC 2131 §4.1) from relay 198.18.0.10 for `mac`, giaddr `giaddr`.
    fn relayed_discover(mac: [u8; 6], giaddr: Ipv4Addr) -> Vec<u8> {
        let mut m = v4::Message::new_with_id(
            9,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            giaddr,
            &mac,
        );
        m.opts_mut()
            .insert(v4::DhcpOption::MessageType(MessageType::Discover));
        m.to_vec().unwrap()
    }

    fn idle() -> Load<'static> {
        behind(0, 0)
    }

    /// `backlog` DNS changes waiting, `own` of them each terminal's.
    fn behind(backlog: usize, own: usize) -> Load<'static> {
        let waiting: &'static dyn Fn(&str) -> usize = Box::leak(Box::new(move |_: &str| own));
        Load { backlog, waiting }
    }

    fn relay() -> RelaySegment {
        RelaySegment {
            address: Ipv4Addr::new(198, 18, 0, 10),
            subnet: "198.18.16.0/20".parse().unwrap(),
            pool: Pool {
                start: Ipv4Addr::new(198, 18, 16, 10),
                end: Ipv4Addr::new(198, 18, 16, 20),
            },
            served: wire::Served {
                server_ip: Ipv4Addr::new(198, 18, 0, 9),
                prefix_len: 20,
                router: Ipv4Addr::new(198, 18, 16, 1),
                dns_servers: vec![],
                lease_secs: 600,
                rapid_commit: true,
            },
        }
    }

    const PHONE: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const RELAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

    /// A relayed DISCOVER for `mac` with `giaddr`, as it came from `from` (only PHONE is
    /// authorised).
    fn relayed(
        book: &mut LeaseBook,
        from: Ipv4Addr,
        mac: [u8; 6],
        giaddr: Ipv4Addr,
        load: &Load<'_>,
    ) -> Handled {
        let who = |m: &[u8; 6]| {
            (*m == PHONE).then(|| Authorised {
                imsi: "001010000000001".into(),
                host_name: "phone1.home.example".into(),
                packet_data: true,
            })
        };
        handle_relayed(
            book,
            &[relay()],
            from,
            &relayed_discover(mac, giaddr),
            &who,
            load,
            1,
        )
    }

    fn answered(h: Handled) -> (Answer, Option<SocketAddrV4>) {
        match h {
            Handled::Answered { answer, reply, .. } => (answer, reply.map(|(_, to)| to)),
            other => panic!("not answered: {other:?}"),
        }
    }

    fn refused(h: Handled) -> String {
        match h {
            Handled::Refused(why) => why,
            other => panic!("not refused: {other:?}"),
        }
    }

    fn cell_book() -> LeaseBook {
        LeaseBook::new(
            Ipv4Addr::new(198, 51, 100, 100),
            Ipv4Addr::new(198, 51, 100, 110),
        )
    }

    /// RFC 4039: a DISCOVER that asks for Rapid Commit, to a server that allows it, is
    /// answered with an ACK that says Rapid Commit, and the binding follows at once; one that
    /// does not ask, or a server that does not allow it, gets the usual OFFER.
    #[test]
    fn a_discover_with_rapid_commit_is_acknowledged_at_once() {
        use dhcproto::Decodable;
        let who = |m: &[u8; 6]| {
            (*m == PHONE).then(|| Authorised {
                imsi: "001010000000001".into(),
                host_name: "phone1.home.example".into(),
                packet_data: true,
            })
        };
        let discover = |rapid: bool| {
            let mut m = v4::Message::decode(&mut dhcproto::Decoder::new(&relayed_discover(
                PHONE,
                Ipv4Addr::UNSPECIFIED,
            )))
            .unwrap();
            if rapid {
                m.opts_mut().insert(v4::DhcpOption::RapidCommit);
            }
            m.to_vec().unwrap()
        };
        let ip = Ipv4Addr::new(198, 51, 100, 100);
        for (asks, allows, committed) in [
            (true, true, true),
            (false, true, false),
            (true, false, false),
        ] {
            let served = wire::Served {
                server_ip: Ipv4Addr::new(198, 51, 100, 1),
                prefix_len: 24,
                rapid_commit: allows,
                ..relay().served
            };
            let mut book = cell_book();
            let handled = handle_packet(
                &mut book,
                &served,
                &PHONE,
                &discover(asks),
                &who,
                &idle(),
                1,
            );
            let Handled::Answered {
                answer,
                reply: Some((bytes, _)),
                changes,
                ..
            } = handled
            else {
                panic!("not answered: {handled:?}");
            };
            let reply = v4::Message::decode(&mut dhcproto::Decoder::new(&bytes)).unwrap();
            let says_rapid = reply.opts().get(v4::OptionCode::RapidCommit).is_some();
            let case = format!("asks {asks}, allows {allows}");
            if committed {
                assert_eq!(answer, Answer::Ack(ip), "{case}");
                assert_eq!(reply.opts().msg_type(), Some(MessageType::Ack), "{case}");
                assert!(says_rapid, "{case}");
                assert!(matches!(&changes[..], [Binding::Bound { ip: bound, .. }] if *bound == ip));
            } else {
                assert_eq!(answer, Answer::Offer(ip), "{case}");
                assert_eq!(reply.opts().msg_type(), Some(MessageType::Offer), "{case}");
                assert!(!says_rapid && changes.is_empty(), "{case}");
            }
        }
    }

    /// A relay's client is leased from the relay's pool and answered at the relay; a request
    /// from anyone else, for another subnet, for an unknown client or with giaddr on the
    /// cell gets nothing.
    #[test]
    fn relayed_requests_are_answered_at_the_relay_and_only_there() {
        let mut book = cell_book();
        let offered = Answer::Offer(Ipv4Addr::new(198, 18, 16, 10));
        let (answer, to) = answered(relayed(&mut book, RELAY, PHONE, RELAY, &idle()));
        assert_eq!(
            (answer, to),
            (offered.clone(), Some(SocketAddrV4::new(RELAY, 67)))
        );
        // giaddr on the relayed subnet (a relay's address there) is the relay's too.
        let on_subnet = Ipv4Addr::new(198, 18, 16, 1);
        let (answer, _) = answered(relayed(&mut book, RELAY, PHONE, on_subnet, &idle()));
        assert_eq!(answer, offered);
        let stranger = [2, 0, 0, 0, 0, 9];
        let (answer, to) = answered(relayed(&mut book, RELAY, stranger, RELAY, &idle()));
        assert!(matches!(answer, Answer::Silent(why) if why.contains("not authorised")));
        assert_eq!(to, None);
        let elsewhere = Ipv4Addr::new(198, 18, 0, 9);
        assert_eq!(
            refused(relayed(&mut book, elsewhere, PHONE, elsewhere, &idle())),
            "198.18.0.9 is not a relay of this server"
        );
        let beyond = Ipv4Addr::new(198, 18, 32, 1);
        assert!(refused(relayed(&mut book, RELAY, PHONE, beyond, &idle()))
            .contains("outside its subnet"));
        // On the cell, a terminal is no relay.
        let cell = wire::Served {
            server_ip: Ipv4Addr::new(198, 51, 100, 1),
            prefix_len: 24,
            ..relay().served
        };
        let who = |_: &[u8; 6]| None;
        let packet = relayed_discover(PHONE, RELAY);
        let why = refused(handle_packet(
            &mut book,
            &cell,
            &PHONE,
            &packet,
            &who,
            &idle(),
            1,
        ));
        assert_eq!(why, "a relayed request (giaddr 198.18.0.10) on the cell");
    }

    /// With the DNS queue full, a client that holds nothing is not answered yet, one that
    /// holds an offer still is; a terminal whose own changes pile up is not answered at all.
    #[test]
    fn a_full_queue_slows_new_clients_and_a_flooding_terminal_down() {
        let mut book = cell_book();
        let full = behind(MAX_BACKLOG, 0);
        let (answer, to) = answered(relayed(&mut book, RELAY, PHONE, RELAY, &full));
        assert!(
            matches!(answer, Answer::Silent(why) if why.starts_with("busy")),
            "busy"
        );
        assert_eq!((to, book.leases.len()), (None, 0));
        answered(relayed(&mut book, RELAY, PHONE, RELAY, &idle()));
        let (answer, _) = answered(relayed(&mut book, RELAY, PHONE, RELAY, &full));
        assert_eq!(answer, Answer::Offer(Ipv4Addr::new(198, 18, 16, 10)));
        let flooding = behind(MAX_WAITING_PER_TERMINAL, MAX_WAITING_PER_TERMINAL);
        let (answer, _) = answered(relayed(&mut book, RELAY, PHONE, RELAY, &flooding));
        assert!(
            matches!(&answer, Answer::Silent(why) if why.contains("of this terminal")),
            "{answer:?}"
        );
    }

    /// A flood of refusals costs one line and one event per source and reason per
    /// interval, even when the reason carries a changing figure.
    #[test]
    fn refusals_are_said_once_per_source_and_reason() {
        let mut r = Refusals::new();
        let said =
            |r: &mut Refusals, from: &str, why: &str| r.note(from, why, format_args!("{why}"));
        assert_eq!(
            said(&mut r, "02:00:00:00:00:01", "busy: 2048 waiting"),
            Some(1)
        );
        for n in 0..100 {
            assert_eq!(
                said(&mut r, "02:00:00:00:00:01", &format!("busy: {n} waiting")),
                None
            );
        }
        assert_eq!(
            said(&mut r, "02:00:00:00:00:02", "busy: 7 waiting"),
            Some(1)
        );
        assert_eq!(said(&mut r, "02:00:00:00:00:01", "malformed"), Some(1));
    }

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
