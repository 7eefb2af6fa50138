//! The HLR (patent: HLR 108): the home network's subscriber database, authentication
//! centre and location register, answering VLRs over GSUP on the private network.
//!
//! [`HlrCore`] is the pure state machine (what to answer, what to send to which VLR);
//! [`run`] is the socket loop around it. Sequence numbers, locations and session
//! addresses are kept in a state file and survive a restart.

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use super::queue::{dns_failure, DurableQueue, Failure};
use super::signaling::{self, Sender};
use crate::contract::configs::{hex_key, DnsTarget, HlrConfig, PartnerPool, SubscriberRecord};
use crate::contract::AgentKind;
use crate::events::EventLog;
use crate::protocols::gsup::{
    cause, encode_msisdn, msg, AuthTuple, CancelType, Message, UmtsTuple,
};
use crate::protocols::ipa::{self, Frame};
use crate::protocols::milenage::{self, Milenage};

/// AMF of the vectors we generate (separation bit set, as for E-UTRAN/UMTS).
const AMF: [u8; 2] = [0x80, 0x00];
/// CN domain: packet switched.
const CN_DOMAIN_PS: u8 = 1;
/// PDP type IPv4 (0x0121) with the spare bits set, and the wildcard APN "*".
const PDP_INFO_IPV4_ANY_APN: [u8; 11] = [
    0x10, 0x01, 0x01, 0x11, 0x02, 0xf1, 0x21, 0x12, 0x02, 0x01, b'*',
];

/// VLR links: one per partner, and unidentified connections are dropped after the
/// identity exchange's timeout.
const VLR_LIMITS: signaling::Limits = signaling::Limits {
    total: 256,
    per_peer: 16,
};

/// What the HLR remembers of a subscriber between restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberState {
    /// The last sequence number used.
    pub sqn: u64,
    /// The VLR the subscriber is registered at.
    pub vlr: Option<String>,
    /// The terminal's session address, as its visited network reported it.
    pub address: Option<IpAddr>,
    /// The network that reported `address` (none in state written before moves kept the
    /// old address: then it is the registered network's).
    #[serde(default)]
    pub address_from: Option<String>,
    /// The VLR the last authentication vectors went to: only it may register the
    /// subscriber (it is the one that can have authenticated the terminal).
    #[serde(default)]
    pub challenged_by: Option<String>,
}

/// A message for a VLR.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub to: String,
    pub message: Message,
}

/// A change to the home DNS that follows a terminal's session address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DnsOp {
    /// host name → address (replacing any other address of the name), with the
    /// subscriber's own TTL if it has one (else the zone's).
    Set {
        host_name: String,
        address: IpAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl: Option<u32>,
    },
    /// The name has no address any more.
    Clear { host_name: String },
}

impl DnsOp {
    pub fn host_name(&self) -> &str {
        match self {
            DnsOp::Set { host_name, .. } | DnsOp::Clear { host_name } => host_name,
        }
    }
}

/// How many updates go to the home DNS at once (each name's in order).
const DNS_LANES: usize = 32;

/// How many sweeps (one a second) a moving terminal's old address stays at home while the
/// new network has not reported one: past that the name is cleared. Longer than a DHCP
/// client's first exchange takes, even with retries.
const MOVE_GRACE_SWEEPS: u32 = super::MOVE_GRACE_SECS as u32;
/// How often [`HlrCore::sweep`] runs (one sweep a second, as the grace counts them).
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The outcome of one message: what to send, and whether the state must be saved.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub send: Vec<Outgoing>,
    pub changed: bool,
    /// Changes the home DNS must follow (queued durably).
    pub dns: Vec<DnsOp>,
    /// A line for the event log, when the message was refused.
    pub refusal: Option<String>,
}

struct Subscriber {
    record: SubscriberRecord,
    milenage: Milenage,
}

pub struct HlrCore {
    subscribers: HashMap<String, Subscriber>,
    pub state: HashMap<String, SubscriberState>,
    /// UpdateLocation requests waiting for the VLR's InsertSubscriberData answer.
    pending: HashMap<String, String>,
    random: Box<dyn FnMut() -> [u8; 16] + Send>,
    /// The address pools of each partner network.
    pools: Vec<PartnerPool>,
    /// Subscribers that moved and whose home record still holds the old network's address,
    /// with the sweeps since: make-before-break, the new address replaces it in one update.
    moving: HashMap<String, u32>,
    /// This home network's own name: a terminal on its own cell (Fig. 2) is not roaming.
    network: Option<String>,
}

impl HlrCore {
    pub fn new(
        records: &[SubscriberRecord],
        state: HashMap<String, SubscriberState>,
        random: Box<dyn FnMut() -> [u8; 16] + Send>,
    ) -> std::io::Result<Self> {
        let mut subscribers = HashMap::new();
        for r in records {
            let milenage = Milenage::new(&hex_key(&r.k)?, &hex_key(&r.opc)?);
            subscribers.insert(
                r.imsi.clone(),
                Subscriber {
                    record: r.clone(),
                    milenage,
                },
            );
        }
        // A move under way when the HLR stopped goes on: its grace starts again.
        let moving = state
            .iter()
            .filter(|(_, s)| s.address.is_some() && s.address_from.is_some())
            .filter(|(_, s)| s.address_from != s.vlr)
            .map(|(imsi, _)| (imsi.clone(), 0))
            .collect();
        Ok(HlrCore {
            subscribers,
            state,
            pending: HashMap::new(),
            random,
            pools: Vec::new(),
            moving,
            network: None,
        })
    }

    /// The pools partner networks lease from; a session address outside its reporter's
    /// pools is refused.
    pub fn with_pools(mut self, pools: Vec<PartnerPool>) -> Self {
        self.pools = pools;
        self
    }

    /// Names this home network, whose own VLR (a cell at home, Fig. 2) serves subscribers
    /// whose profile forbids roaming.
    pub fn at(mut self, network: &str) -> Self {
        self.network = Some(network.to_string());
        self
    }

    fn in_pools_of(&self, network: &str, address: IpAddr) -> bool {
        self.pools
            .iter()
            .any(|p| p.network == network && p.start <= address && address <= p.end)
    }

    pub fn name_of(&self, imsi: &str) -> Option<&str> {
        self.subscribers.get(imsi).map(|s| s.record.name.as_str())
    }

    /// Handles one message from VLR `from`.
    pub fn handle(&mut self, from: &str, m: &Message) -> Outcome {
        let reply = |message: Message| Outcome {
            send: vec![Outgoing {
                to: from.to_string(),
                message,
            }],
            ..Default::default()
        };
        let refuse = |c: u8, why: String| Outcome {
            send: vec![Outgoing {
                to: from.to_string(),
                message: m.error_reply(c),
            }],
            refusal: Some(why),
            ..Default::default()
        };
        let is_request = m.msg_type & 0b11 == 0;
        let Some(sub) = self.subscribers.get(&m.imsi) else {
            if is_request {
                return refuse(cause::IMSI_UNKNOWN, format!("IMSI {} unknown", m.imsi));
            }
            return Outcome::default();
        };
        match m.msg_type {
            msg::SEND_AUTH_INFO_REQUEST => {
                let state = self.state.entry(m.imsi.clone()).or_default();
                if let (Some(auts), Some(rand)) = (m.auts, m.rand) {
                    match milenage::resync(&sub.milenage, &rand, &auts) {
                        Some(sqn_ms) => state.sqn = milenage::sqn_value(&sqn_ms),
                        None => {
                            return refuse(cause::MAC_FAILURE, "AUTS does not verify".to_string())
                        }
                    }
                }
                state.sqn += 1;
                state.challenged_by = Some(from.to_string());
                let rand = (self.random)();
                let v =
                    milenage::vector(&sub.milenage, &rand, &milenage::sqn_bytes(state.sqn), &AMF);
                let mut result = Message::new(msg::SEND_AUTH_INFO_RESULT, &m.imsi);
                result.auth_tuples.push(AuthTuple {
                    rand: v.rand,
                    sres: v.sres,
                    kc: v.kc,
                    umts: Some(UmtsTuple {
                        ik: v.ik,
                        ck: v.ck,
                        autn: v.autn,
                        res: v.xres.to_vec(),
                    }),
                });
                Outcome {
                    changed: true,
                    ..reply(result)
                }
            }
            msg::UPDATE_LOCATION_REQUEST => {
                if !sub.record.roaming && self.network.as_deref() != Some(from) {
                    return refuse(
                        cause::ROAMING_NOT_ALLOWED,
                        format!("{}: roaming is not in the profile", sub.record.name),
                    );
                }
                let challenged = self
                    .state
                    .get(&m.imsi)
                    .and_then(|s| s.challenged_by.as_deref());
                if challenged != Some(from) {
                    return refuse(
                        cause::ILLEGAL_MS,
                        format!(
                            "{}: {from} asked to register a subscriber it was given no \
                             authentication vectors for",
                            sub.record.name
                        ),
                    );
                }
                let mut out = Outcome::default();
                let old = self.state.get(&m.imsi).and_then(|s| s.vlr.clone());
                if let Some(old) = old.filter(|old| old != from) {
                    let mut cancel = Message::new(msg::LOCATION_CANCEL_REQUEST, &m.imsi);
                    cancel.cancel_type = Some(CancelType::Update);
                    out.send.push(Outgoing {
                        to: old,
                        message: cancel,
                    });
                }
                let mut isd = Message::new(msg::INSERT_DATA_REQUEST, &m.imsi);
                isd.msisdn = sub.record.msisdn.as_deref().map(encode_msisdn);
                isd.host_name = Some(sub.record.host_name.clone());
                isd.cn_domain = Some(CN_DOMAIN_PS);
                if sub.record.packet_data {
                    isd.pdp_info_complete = true;
                    isd.pdp_infos.push(PDP_INFO_IPV4_ANY_APN.to_vec());
                }
                out.send.push(Outgoing {
                    to: from.to_string(),
                    message: isd,
                });
                self.pending.insert(m.imsi.clone(), from.to_string());
                out
            }
            msg::INSERT_DATA_RESULT | msg::INSERT_DATA_ERROR => {
                if self.pending.get(&m.imsi).map(String::as_str) != Some(from) {
                    return Outcome::default();
                }
                self.pending.remove(&m.imsi);
                if m.msg_type == msg::INSERT_DATA_ERROR {
                    let c = m.cause.unwrap_or(cause::PROTOCOL_ERROR);
                    let mut err = Message::new(msg::UPDATE_LOCATION_ERROR, &m.imsi);
                    err.cause = Some(c);
                    return Outcome {
                        refusal: Some(format!(
                            "{} refused the subscriber data: {}",
                            from,
                            cause::name(c)
                        )),
                        ..reply(err)
                    };
                }
                let host_name = sub.record.host_name.clone();
                let packet_data = sub.record.packet_data;
                let state = self.state.entry(m.imsi.clone()).or_default();
                let mut dns = Vec::new();
                let old = state.vlr.replace(from.to_string());
                if old.as_deref() != Some(from) && state.address.is_some() {
                    // The address belonged to the old visited network. Make before break:
                    // it stays until the new network reports the terminal's new address,
                    // which replaces it in one update, so the home DNS never denies the
                    // name of a registered terminal. No address will come without packet
                    // data, and the name goes now.
                    if packet_data {
                        if state.address_from.is_none() {
                            state.address_from = old;
                        }
                        self.moving.insert(m.imsi.clone(), 0);
                    } else {
                        state.address = None;
                        state.address_from = None;
                        dns.push(DnsOp::Clear { host_name });
                    }
                }
                Outcome {
                    changed: true,
                    dns,
                    ..reply(Message::new(msg::UPDATE_LOCATION_RESULT, &m.imsi))
                }
            }
            msg::PURGE_MS_REQUEST => {
                let host_name = sub.record.host_name.clone();
                let state = self.state.entry(m.imsi.clone()).or_default();
                let mut changed = false;
                let mut dns = Vec::new();
                // Only the VLR the subscriber is registered at can purge it.
                if state.vlr.as_deref() == Some(from) {
                    state.vlr = None;
                    state.address_from = None;
                    self.moving.remove(&m.imsi);
                    if state.address.take().is_some() {
                        dns.push(DnsOp::Clear { host_name });
                    }
                    changed = true;
                }
                let mut result = Message::new(msg::PURGE_MS_RESULT, &m.imsi);
                result.freeze_ptmsi = true;
                Outcome {
                    changed,
                    dns,
                    ..reply(result)
                }
            }
            msg::SESSION_ADDRESS_REQUEST | msg::SESSION_WITHDRAW_REQUEST => {
                let state = self.state.entry(m.imsi.clone()).or_default();
                if state.vlr.as_deref() != Some(from) {
                    return refuse(
                        cause::ILLEGAL_MS,
                        format!("{} is not registered at {from}", sub.record.name),
                    );
                }
                let mut result = Message::new(msg::result_of(m.msg_type), &m.imsi);
                let host_name = sub.record.host_name.clone();
                let mut dns = Vec::new();
                if m.msg_type == msg::SESSION_ADDRESS_REQUEST {
                    let Some(address) = m.session_address else {
                        return refuse(
                            cause::INVALID_MANDATORY_INFO,
                            "no session address".to_string(),
                        );
                    };
                    // Claim 23: a network that learned the name from the terminal asks
                    // whether it is the subscriber's; nothing is written if it is not.
                    if let Some(claim) = &m.host_name {
                        if !super::names_the_same(claim, &host_name) {
                            return refuse(
                                cause::ILLEGAL_MS,
                                format!(
                                    "{}: the terminal claims host name {claim}, and its home \
                                     holds {host_name}",
                                    sub.record.name
                                ),
                            );
                        }
                    }
                    if !self.pools.iter().any(|p| p.network == from)
                        || !self.in_pools_of(from, address)
                    {
                        return refuse(
                            cause::INVALID_MANDATORY_INFO,
                            format!(
                                "{}: session address {address} is not from a pool of {from}",
                                sub.record.name
                            ),
                        );
                    }
                    self.moving.remove(&m.imsi);
                    let state = self.state.entry(m.imsi.clone()).or_default();
                    // A report of the same address again writes nothing new.
                    if state.address != Some(address) {
                        dns.push(DnsOp::Set {
                            host_name: host_name.clone(),
                            address,
                            ttl: sub.record.ttl,
                        });
                    }
                    state.address = Some(address);
                    state.address_from = Some(from.to_string());
                    result.host_name = Some(host_name);
                } else {
                    // A withdraw that names its address ends only that session: one that
                    // ends an older session here, delivered after the terminal moved away
                    // and came back, must not clear the address the home now holds.
                    let stale = m.session_address.is_some_and(|a| {
                        state.address != Some(a) || state.address_from.as_deref() != Some(from)
                    });
                    if stale {
                        return Outcome {
                            changed: false,
                            ..reply(result)
                        };
                    }
                    self.moving.remove(&m.imsi);
                    state.address_from = None;
                    if state.address.take().is_some() {
                        dns.push(DnsOp::Clear { host_name });
                    }
                }
                Outcome {
                    changed: true,
                    dns,
                    ..reply(result)
                }
            }
            msg::LOCATION_CANCEL_RESULT | msg::LOCATION_CANCEL_ERROR => Outcome::default(),
            other if other & 0b11 == 0 => refuse(
                cause::MSG_TYPE_NOT_IMPLEMENTED,
                format!("message type 0x{other:02x} is not served"),
            ),
            _ => Outcome::default(),
        }
    }
}

impl HlrCore {
    /// One tick of the move timer: the subscribers whose new network reported no address
    /// within the grace lose their old one (the IMSI, to save, and the change).
    pub fn sweep(&mut self) -> Vec<(String, DnsOp)> {
        let mut expired = Vec::new();
        self.moving.retain(|imsi, sweeps| {
            *sweeps += 1;
            let keep = *sweeps < MOVE_GRACE_SWEEPS;
            if !keep {
                expired.push(imsi.clone());
            }
            keep
        });
        let mut cleared = Vec::new();
        for imsi in expired {
            let (Some(state), Some(sub)) = (self.state.get_mut(&imsi), self.subscribers.get(&imsi))
            else {
                continue;
            };
            state.address_from = None;
            if state.address.take().is_some() {
                let host_name = sub.record.host_name.clone();
                cleared.push((imsi, DnsOp::Clear { host_name }));
            }
        }
        cleared
    }
}

/// The subscribers' state on disk: a journal, a line per subscriber that changed.
type StateJournal = crate::journal::Journal<String, SubscriberState>;

/// Runs the HLR until SIGTERM.
pub async fn run(config: HlrConfig) -> std::io::Result<()> {
    let agent = format!("{}/hlr", config.name);
    let events = std::sync::Arc::new(EventLog::open(&config.events_file, &agent)?);
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    let random = Box::new(move || {
        let mut r = [0u8; 16];
        let _ = urandom.read_exact(&mut r);
        r
    });
    let mut state_journal = StateJournal::open(&config.state_file)?;
    let state = state_journal.records().clone().into_iter().collect();
    let core = HlrCore::new(&config.subscribers, state, random)?
        .with_pools(config.partner_pools.clone())
        .at(&config.name);
    let dns_queue = std::sync::Arc::new(DurableQueue::<DnsOp>::open(
        config.state_file.with_extension("dnsqueue.jsonl"),
        |op| op.host_name().to_string(),
    )?);
    if let Some(target) = config.dns.clone() {
        let queue = dns_queue.clone();
        let events = events.clone();
        tokio::spawn(async move {
            queue
                .run(
                    DNS_LANES,
                    |op| update_home_dns(target.clone(), op, events.clone()),
                    |op, why| {
                        events.emit(
                            "home DNS change dropped",
                            None,
                            json!({"change": format!("{op:?}"), "why": why}),
                        )
                    },
                )
                .await
        });
    }
    let listener = signaling::bind_private(&config.socket)?;
    super::drop_privileges()?;
    tracing::info!(socket = %config.socket.display(), subscribers = config.subscribers.len(), "HLR ready");
    super::notify_ready();

    // One task owns the core; connections hand it messages and it answers through the
    // VLRs' senders (a VLR may be sent to from another VLR's request: CancelLocation).
    let (to_core, mut inbox) = mpsc::unbounded_channel::<CoreInput>();
    let core_events = events.clone();
    let mut congestion = super::ratelimit::RateLimited::new(std::time::Duration::from_secs(1));
    let core_task = tokio::spawn(async move {
        let mut core = core;
        let mut links: HashMap<String, Sender> = HashMap::new();
        let mut sweeps = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            let input = tokio::select! {
                input = inbox.recv() => match input {
                    Some(input) => input,
                    None => break,
                },
                _ = sweeps.tick() => {
                    for (imsi, op) in core.sweep() {
                        let who = core.name_of(&imsi).unwrap_or(&imsi).to_string();
                        core_events.emit("moved without a new address", Some(&who), json!({"imsi": imsi}));
                        if let Err(e) = state_journal.put(&imsi, core.state.get(&imsi)) {
                            tracing::error!("cannot save state: {e}");
                        }
                        dns_queue.push(op);
                    }
                    continue;
                }
            };
            match input {
                CoreInput::Connected(name, sender) => {
                    links.insert(name, sender);
                }
                CoreInput::Gone(name) => {
                    links.remove(&name);
                }
                CoreInput::Message(from, m) => {
                    let who = core
                        .name_of(&m.imsi)
                        .map(String::from)
                        .unwrap_or_else(|| m.imsi.clone());
                    core_events.emit(
                        msg::name(m.msg_type),
                        Some(&who),
                        json!({"from": from, "imsi": m.imsi}),
                    );
                    let backlog = dns_queue.len();
                    let outcome = if m.msg_type == msg::SESSION_ADDRESS_REQUEST
                        && backlog >= super::queue::MAX_BACKLOG
                    {
                        // The home DNS is behind: the visited network tries again later,
                        // and its DHCP server slows its clients down meanwhile.
                        if let Some(n) = congestion.note(&from, std::time::Instant::now()) {
                            tracing::warn!(vlr = %from, count = n, "{backlog} home DNS updates are waiting; answering congestion");
                        }
                        Outcome {
                            send: vec![Outgoing {
                                to: from.clone(),
                                message: m.error_reply(cause::CONGESTION),
                            }],
                            ..Default::default()
                        }
                    } else {
                        core.handle(&from, &m)
                    };
                    if let Some(why) = &outcome.refusal {
                        tracing::warn!(vlr = %from, "refused: {why}");
                        core_events.emit("refused", Some(&who), json!({"vlr": from, "cause": why}));
                    }
                    if outcome.changed {
                        if let Err(e) = state_journal.put(&m.imsi, core.state.get(&m.imsi)) {
                            tracing::error!("cannot save state: {e}");
                        }
                    }
                    for op in outcome.dns {
                        dns_queue.push(op);
                    }
                    for s in outcome.send {
                        core_events.emit(
                            msg::name(s.message.msg_type),
                            Some(&who),
                            json!({"to": s.to, "imsi": s.message.imsi}),
                        );
                        match links.get(&s.to) {
                            Some(link) => {
                                if let Err(e) = link.gsup(&s.message).await {
                                    tracing::warn!(vlr = %s.to, "send failed: {e}");
                                }
                            }
                            None => {
                                tracing::warn!(vlr = %s.to, "not connected; {} dropped", msg::name(s.message.msg_type))
                            }
                        }
                    }
                }
            }
        }
    });

    let partners = std::sync::Arc::new(config.partners.clone());
    let live = LiveLinks::default();
    let accept = {
        let events = events.clone();
        signaling::serve_connections(listener, "HLR socket", VLR_LIMITS, move |stream| {
            let to_core = to_core.clone();
            let partners = partners.clone();
            let events = events.clone();
            let live = live.clone();
            async move { serve_vlr(stream, &partners, &live, to_core, &events).await }
        })
    };
    tokio::select! {
        _ = accept => {}
        _ = crate::agents::shutdown_signal() => tracing::info!("HLR stopping"),
    }
    core_task.abort();
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}

/// Applies one change to the home DNS (a replace keeps exactly one address per name).
async fn update_home_dns(
    target: DnsTarget,
    op: DnsOp,
    events: std::sync::Arc<EventLog>,
) -> Result<(), Failure> {
    use crate::dns::update::{self, Change, RecordData, RecordKind};
    let mut t = crate::dns::update::UpdateTarget::load(&target).map_err(|e| e.to_string())?;
    if let DnsOp::Set { ttl: Some(ttl), .. } = op {
        t.ttl = ttl;
    }
    let (change, what) = match &op {
        DnsOp::Set {
            host_name, address, ..
        } => (
            Change::Replace {
                name: host_name.clone(),
                data: RecordData::Address(*address),
            },
            json!({"host_name": host_name, "address": address}),
        ),
        DnsOp::Clear { host_name } => (
            Change::Delete {
                name: host_name.clone(),
                rtype: RecordKind::A,
                data: None,
            },
            json!({"host_name": host_name}),
        ),
    };
    update::send(&t, &change).await.map_err(dns_failure)?;
    let event = if matches!(op, DnsOp::Set { .. }) {
        "home DNS record set"
    } else {
        "home DNS record removed"
    };
    events.emit(event, None, what);
    Ok(())
}

/// The identities with a link up: a second connection claiming one of them is refused
/// and never displaces the live link. Also the refused peers, logged once per interval.
#[derive(Clone)]
struct LiveLinks {
    names: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    refusals: std::sync::Arc<std::sync::Mutex<super::ratelimit::RateLimited<i32>>>,
}

impl Default for LiveLinks {
    fn default() -> Self {
        LiveLinks {
            names: Default::default(),
            refusals: std::sync::Arc::new(std::sync::Mutex::new(
                super::ratelimit::RateLimited::new(std::time::Duration::from_secs(10)),
            )),
        }
    }
}

impl LiveLinks {
    fn claim(&self, name: &str) -> bool {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string())
    }

    fn release(&self, name: &str) {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

enum CoreInput {
    Connected(String, Sender),
    Gone(String),
    Message(String, Box<Message>),
}

/// One VLR connection: identity exchange (partners only), then GSUP messages to the core.
async fn serve_vlr(
    stream: tokio::net::UnixStream,
    partners: &[String],
    live: &LiveLinks,
    to_core: mpsc::UnboundedSender<CoreInput>,
    events: &EventLog,
) {
    // Only a VLR agent of this lab reaches this socket, and the kernel says which one.
    let peer_network = match signaling::peer_agent(&stream, AgentKind::Vlr) {
        Ok(network) => Some(network),
        Err(why) => {
            let pid = stream.peer_cred().ok().and_then(|c| c.pid()).unwrap_or(0);
            if let Some(n) = live
                .refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .note(&pid, std::time::Instant::now())
            {
                tracing::warn!(
                    peer_pid = pid,
                    count = n,
                    "refused a peer that is not a VLR agent: {why}"
                );
                events.emit("VLR refused", None, json!({"cause": why}));
            }
            return;
        }
    };
    let (mut reader, writer) = stream.into_split();
    let sender = Sender::new(writer);
    if sender
        .frame(&Frame::IdGet(vec![
            ipa::TAG_UNIT_NAME,
            ipa::TAG_SERIAL,
            ipa::TAG_UNIT_ID,
        ]))
        .await
        .is_err()
    {
        return;
    }
    let hello = tokio::time::timeout(
        signaling::HELLO_TIMEOUT,
        signaling::claimed_identity(&mut reader),
    )
    .await;
    let name = match hello {
        Ok(Some(name)) => name,
        Ok(None) => {
            tracing::warn!("a peer closed or sent garbage before identifying itself");
            return;
        }
        Err(_) => {
            tracing::warn!(
                "a peer did not identify itself within {:?}; dropped",
                signaling::HELLO_TIMEOUT
            );
            return;
        }
    };
    if !partners.contains(&name) {
        tracing::warn!(vlr = %name, "refused: no roaming agreement with this network");
        events.emit(
            "VLR refused",
            None,
            json!({"vlr": name, "cause": "no roaming agreement"}),
        );
        let _ = sender.frame(&Frame::IdNack).await;
        return;
    }
    // The identity it claims must be the one the kernel vouches for: the VLR agent whose
    // configuration is that network's.
    if let Some(expected) = &peer_network {
        if expected != &name {
            tracing::warn!(vlr = %name, "refused: the peer is the VLR of {expected}, not of {name}");
            events.emit(
                "VLR refused",
                None,
                json!({"vlr": name, "cause": format!("the peer is the VLR of {expected}")}),
            );
            let _ = sender.frame(&Frame::IdNack).await;
            return;
        }
    }
    if !live.claim(&name) {
        tracing::warn!(vlr = %name, "refused: a second connection claims an identity whose link is up");
        events.emit(
            "VLR refused",
            None,
            json!({"vlr": name, "cause": "identity already connected"}),
        );
        let _ = sender.frame(&Frame::IdNack).await;
        return;
    }
    if sender.frame(&Frame::IdAck).await.is_err() {
        live.release(&name);
        return;
    }
    tracing::info!(vlr = %name, "VLR connected");
    let _ = to_core.send(CoreInput::Connected(name.clone(), sender.clone()));
    loop {
        match signaling::next_gsup(&mut reader, &sender).await {
            Ok(bytes) => match Message::decode(&bytes) {
                Ok(m) => {
                    let _ = to_core.send(CoreInput::Message(name.clone(), Box::new(m)));
                }
                Err(e) => {
                    // The peer's framing can no longer be trusted: close; a VLR reconnects.
                    tracing::warn!(vlr = %name, "malformed GSUP message ({e}); link closed");
                    break;
                }
            },
            Err(e) => {
                tracing::info!(vlr = %name, "link closed: {e}");
                break;
            }
        }
    }
    // Gone goes to the core before the name is free, so a new link's Connected follows it.
    let _ = to_core.send(CoreInput::Gone(name.clone()));
    live.release(&name);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> HlrCore {
        core_with(HashMap::new())
    }

    fn core_with(state: HashMap<String, SubscriberState>) -> HlrCore {
        let sub = |name: &str, imsi: &str, roaming| SubscriberRecord {
            name: name.into(),
            imsi: imsi.into(),
            msisdn: Some("15550000001".into()),
            host_name: format!("{name}.home.example"),
            k: "465b5ce8b199b49faa5f0a2ee238a6bc".into(),
            opc: "cd63cb71954a9f4e48a5994e37a02baf".into(),
            roaming,
            packet_data: true,
            ttl: None,
        };
        let mut n = 0u8;
        HlrCore::new(
            &[
                sub("phone1", "001010000000001", true),
                sub("homebound1", "001010000000003", false),
                SubscriberRecord {
                    packet_data: false,
                    ..sub("voice1", "001010000000004", true)
                },
                SubscriberRecord {
                    ttl: Some(0),
                    ..sub("fast1", "001010000000005", true)
                },
            ],
            state,
            Box::new(move || {
                n += 1;
                [n; 16]
            }),
        )
        .unwrap()
        .with_pools(vec![
            PartnerPool {
                network: "visited".into(),
                start: "198.51.100.100".parse().unwrap(),
                end: "198.51.100.199".parse().unwrap(),
            },
            PartnerPool {
                network: "visited2".into(),
                start: "203.0.113.100".parse().unwrap(),
                end: "203.0.113.199".parse().unwrap(),
            },
        ])
    }

    /// phone1 with an address at visited, then registered at visited2 (no address yet).
    fn moved_to_visited2() -> HlrCore {
        let (mut hlr, imsi) = (core(), "001010000000001");
        register(&mut hlr, "visited", imsi);
        report(&mut hlr, "visited", imsi, "198.51.100.100");
        register(&mut hlr, "visited2", imsi);
        hlr
    }

    fn report(hlr: &mut HlrCore, vlr: &str, imsi: &str, address: &str) -> Outcome {
        let mut report = req(msg::SESSION_ADDRESS_REQUEST, imsi);
        report.session_address = Some(address.parse().unwrap());
        hlr.handle(vlr, &report)
    }

    /// Finding of issue 10: a move cleared the home record at the new registration, and
    /// the home DNS denied the name until the new address came.
    #[test]
    fn a_move_replaces_the_home_record_and_never_clears_it() {
        let mut hlr = core();
        let imsi = "001010000000001";
        register(&mut hlr, "visited", imsi);
        report(&mut hlr, "visited", imsi, "198.51.100.100");
        let moved = register(&mut hlr, "visited2", imsi);
        assert_eq!(moved.send[0].message.msg_type, msg::UPDATE_LOCATION_RESULT);
        assert!(
            moved.dns.is_empty(),
            "the move cleared the name: {:?}",
            moved.dns
        );
        // The old network's withdrawal after its cancellation changes nothing at home.
        let late = hlr.handle("visited", &req(msg::SESSION_WITHDRAW_REQUEST, imsi));
        assert!(late.dns.is_empty());
        let new = report(&mut hlr, "visited2", imsi, "203.0.113.100");
        assert_eq!(
            new.dns,
            [DnsOp::Set {
                host_name: "phone1.home.example".into(),
                address: "203.0.113.100".parse().unwrap(),
                ttl: None,
            }]
        );
        for _ in 0..MOVE_GRACE_SWEEPS * 2 {
            assert!(hlr.sweep().is_empty(), "a reported address was cleared");
        }
        assert_eq!(hlr.state[imsi].address_from.as_deref(), Some("visited2"));
    }

    #[test]
    fn a_move_with_no_new_address_clears_the_old_one_after_the_grace() {
        let (mut hlr, imsi) = (moved_to_visited2(), "001010000000001");
        for _ in 1..MOVE_GRACE_SWEEPS {
            assert!(hlr.sweep().is_empty());
        }
        assert_eq!(
            hlr.sweep(),
            [(
                imsi.to_string(),
                DnsOp::Clear {
                    host_name: "phone1.home.example".into()
                }
            )]
        );
        assert_eq!(hlr.state[imsi].address, None);
        assert!(hlr.sweep().is_empty());
    }

    #[test]
    fn a_move_under_way_when_the_hlr_stopped_goes_on_after_its_restart() {
        let (hlr, imsi) = (moved_to_visited2(), "001010000000001");
        let mut restarted = core_with(hlr.state.clone());
        for _ in 1..MOVE_GRACE_SWEEPS {
            assert!(restarted.sweep().is_empty());
        }
        assert_eq!(restarted.sweep().len(), 1);
        // A settled registration is not a move.
        let mut settled = core();
        register(&mut settled, "visited", imsi);
        report(&mut settled, "visited", imsi, "198.51.100.100");
        let mut settled = core_with(settled.state.clone());
        for _ in 0..MOVE_GRACE_SWEEPS {
            assert!(settled.sweep().is_empty());
        }
    }

    /// Claim 13: without packet data in the profile there is no address to wait for.
    #[test]
    fn a_subscriber_without_packet_data_gets_no_pdp_context_and_its_old_name_goes() {
        let mut hlr = core();
        let imsi = "001010000000004";
        hlr.handle("visited", &req(msg::SEND_AUTH_INFO_REQUEST, imsi));
        let ul = hlr.handle("visited", &req(msg::UPDATE_LOCATION_REQUEST, imsi));
        assert!(ul.send[0].message.pdp_infos.is_empty());
        assert!(!ul.send[0].message.pdp_info_complete);
        // An address from an earlier profile, then a move: cleared at once.
        hlr.handle("visited", &req(msg::INSERT_DATA_RESULT, imsi));
        hlr.state.get_mut(imsi).unwrap().address = Some("198.51.100.100".parse().unwrap());
        let moved = register(&mut hlr, "visited2", imsi);
        assert_eq!(
            moved.dns,
            [DnsOp::Clear {
                host_name: "voice1.home.example".into()
            }]
        );
    }

    /// A VLR's attach: vectors, then UpdateLocation and the subscriber data answered.
    fn register(hlr: &mut HlrCore, vlr: &str, imsi: &str) -> Outcome {
        hlr.handle(vlr, &req(msg::SEND_AUTH_INFO_REQUEST, imsi));
        hlr.handle(vlr, &req(msg::UPDATE_LOCATION_REQUEST, imsi));
        hlr.handle(vlr, &req(msg::INSERT_DATA_RESULT, imsi))
    }

    fn req(t: u8, imsi: &str) -> Message {
        Message::new(t, imsi)
    }

    #[test]
    fn authentication_vectors_verify_at_the_terminal_and_advance_the_sequence_number() {
        let mut hlr = core();
        let out = hlr.handle(
            "visited",
            &req(msg::SEND_AUTH_INFO_REQUEST, "001010000000001"),
        );
        let tuple = &out.send[0].message.auth_tuples[0];
        let m = Milenage::new(
            &hex_key("465b5ce8b199b49faa5f0a2ee238a6bc").unwrap(),
            &hex_key("cd63cb71954a9f4e48a5994e37a02baf").unwrap(),
        );
        let umts = tuple.umts.as_ref().unwrap();
        match milenage::check_challenge(&m, &tuple.rand, &umts.autn, &milenage::sqn_bytes(0)) {
            milenage::Challenge::Accept { res, .. } => assert_eq!(res.to_vec(), umts.res),
            other => panic!("{other:?}"),
        }
        hlr.handle(
            "visited",
            &req(msg::SEND_AUTH_INFO_REQUEST, "001010000000001"),
        );
        assert_eq!(hlr.state["001010000000001"].sqn, 2);
    }

    #[test]
    fn update_location_inserts_data_then_registers_and_cancels_the_old_vlr() {
        let mut hlr = core();
        hlr.handle(
            "visited",
            &req(msg::SEND_AUTH_INFO_REQUEST, "001010000000001"),
        );
        let out = hlr.handle(
            "visited",
            &req(msg::UPDATE_LOCATION_REQUEST, "001010000000001"),
        );
        assert_eq!(out.send.len(), 1);
        let isd = &out.send[0].message;
        assert_eq!(isd.msg_type, msg::INSERT_DATA_REQUEST);
        assert_eq!(isd.host_name.as_deref(), Some("phone1.home.example"));
        assert_eq!(isd.msisdn().as_deref(), Some("15550000001"));
        let done = hlr.handle("visited", &req(msg::INSERT_DATA_RESULT, "001010000000001"));
        assert_eq!(done.send[0].message.msg_type, msg::UPDATE_LOCATION_RESULT);
        assert_eq!(hlr.state["001010000000001"].vlr.as_deref(), Some("visited"));

        hlr.handle(
            "visited2",
            &req(msg::SEND_AUTH_INFO_REQUEST, "001010000000001"),
        );
        let moved = hlr.handle(
            "visited2",
            &req(msg::UPDATE_LOCATION_REQUEST, "001010000000001"),
        );
        assert_eq!(moved.send[0].to, "visited");
        assert_eq!(moved.send[0].message.msg_type, msg::LOCATION_CANCEL_REQUEST);
        assert_eq!(moved.send[1].to, "visited2");
    }

    /// Fig. 2: the home network's own VLR (its own cell) serves a subscriber whose profile
    /// forbids roaming; a visited network still may not.
    #[test]
    fn a_non_roaming_subscriber_registers_at_its_own_networks_cell_only() {
        let mut hlr = core().at("home");
        let imsi = "001010000000003";
        let abroad = hlr.handle("visited", &req(msg::UPDATE_LOCATION_REQUEST, imsi));
        assert_eq!(
            abroad.send[0].message.cause,
            Some(cause::ROAMING_NOT_ALLOWED)
        );
        register(&mut hlr, "home", imsi);
        assert_eq!(hlr.state[imsi].vlr.as_deref(), Some("home"));
    }

    #[test]
    fn refusals_carry_their_causes() {
        let mut hlr = core();
        let unknown = hlr.handle(
            "visited",
            &req(msg::SEND_AUTH_INFO_REQUEST, "001019999999999"),
        );
        assert_eq!(unknown.send[0].message.cause, Some(cause::IMSI_UNKNOWN));
        let homebound = hlr.handle(
            "visited",
            &req(msg::UPDATE_LOCATION_REQUEST, "001010000000003"),
        );
        assert_eq!(
            homebound.send[0].message.msg_type,
            msg::UPDATE_LOCATION_ERROR
        );
        assert_eq!(
            homebound.send[0].message.cause,
            Some(cause::ROAMING_NOT_ALLOWED)
        );
        let not_here = hlr.handle(
            "visited",
            &req(msg::SESSION_ADDRESS_REQUEST, "001010000000001"),
        );
        assert_eq!(not_here.send[0].message.cause, Some(cause::ILLEGAL_MS));
        let odd = hlr.handle("visited", &req(0x40, "001010000000001"));
        assert_eq!(
            odd.send[0].message.cause,
            Some(cause::MSG_TYPE_NOT_IMPLEMENTED)
        );
    }

    /// A second link for a connected identity is refused until the first is gone.
    #[test]
    fn one_live_link_per_identity() {
        let live = LiveLinks::default();
        assert!(live.claim("visited"));
        assert!(!live.claim("visited"), "a second link took the identity");
        assert!(live.claim("visited2"));
        live.release("visited");
        assert!(live.claim("visited"));
    }

    /// Finding 3 of the issue on the private network: a link that never asked for vectors
    /// registered a subscriber and reported addresses for it.
    #[test]
    fn only_the_vlr_that_was_given_vectors_registers_and_reports() {
        let mut hlr = core();
        let unasked = hlr.handle(
            "visited",
            &req(msg::UPDATE_LOCATION_REQUEST, "001010000000001"),
        );
        assert_eq!(unasked.send[0].message.msg_type, msg::UPDATE_LOCATION_ERROR);
        assert_eq!(unasked.send[0].message.cause, Some(cause::ILLEGAL_MS));
        assert!(unasked
            .refusal
            .unwrap()
            .contains("no authentication vectors"));
        assert_eq!(
            hlr.state.get("001010000000001").and_then(|s| s.vlr.clone()),
            None
        );

        // Vectors went to visited; visited2 cannot use them to register the subscriber.
        hlr.handle(
            "visited",
            &req(msg::SEND_AUTH_INFO_REQUEST, "001010000000001"),
        );
        let other = hlr.handle(
            "visited2",
            &req(msg::UPDATE_LOCATION_REQUEST, "001010000000001"),
        );
        assert_eq!(other.send[0].message.cause, Some(cause::ILLEGAL_MS));
        assert_eq!(other.send.len(), 1, "no CancelLocation, no subscriber data");
    }

    /// Finding 2: an IPv6 address in a forged report wrote an AAAA record that no
    /// withdrawal removed; any address was taken.
    #[test]
    fn session_addresses_outside_the_reporters_pools_are_refused() {
        let mut hlr = core();
        register(&mut hlr, "visited", "001010000000001");
        for address in [
            "2001:db8::1",
            "192.0.2.80",
            "198.51.100.200",
            "198.51.100.1",
        ] {
            let mut report = req(msg::SESSION_ADDRESS_REQUEST, "001010000000001");
            report.session_address = Some(address.parse().unwrap());
            let out = hlr.handle("visited", &report);
            assert_eq!(
                out.send[0].message.cause,
                Some(cause::INVALID_MANDATORY_INFO),
                "{address}"
            );
            assert!(out.dns.is_empty(), "{address} reached DNS");
            assert!(out
                .refusal
                .unwrap()
                .contains("is not from a pool of visited"));
        }
        assert_eq!(hlr.state["001010000000001"].address, None);
    }

    #[test]
    fn the_session_address_pair_records_and_withdraws_the_address() {
        let mut hlr = core();
        register(&mut hlr, "visited", "001010000000001");
        let mut report = req(msg::SESSION_ADDRESS_REQUEST, "001010000000001");
        report.session_address = Some("198.51.100.100".parse().unwrap());
        let out = hlr.handle("visited", &report);
        assert_eq!(out.send[0].message.msg_type, msg::SESSION_ADDRESS_RESULT);
        assert_eq!(
            out.send[0].message.host_name.as_deref(),
            Some("phone1.home.example")
        );
        assert_eq!(hlr.state["001010000000001"].address, report.session_address);
        assert_eq!(
            out.dns,
            [DnsOp::Set {
                host_name: "phone1.home.example".into(),
                address: report.session_address.unwrap(),
                ttl: None,
            }]
        );
        assert!(
            hlr.handle("visited", &report).dns.is_empty(),
            "the same address again writes nothing"
        );
        let withdrawn = hlr.handle(
            "visited",
            &req(msg::SESSION_WITHDRAW_REQUEST, "001010000000001"),
        );
        assert_eq!(
            withdrawn.dns,
            [DnsOp::Clear {
                host_name: "phone1.home.example".into()
            }]
        );
        assert_eq!(hlr.state["001010000000001"].address, None);
    }

    /// Finding of the move test's flake: visited's withdraw of phone1's old session arrived
    /// after phone1 had moved to visited2 and come back, and cleared the home record the
    /// make-before-break kept (NXDOMAIN during the move). A withdraw naming an address the
    /// home no longer holds from that network changes nothing; one naming it still clears it.
    #[test]
    fn a_late_withdraw_of_an_older_session_leaves_the_current_address() {
        let (mut hlr, imsi) = (moved_to_visited2(), "001010000000001");
        report(&mut hlr, "visited2", imsi, "203.0.113.100");
        register(&mut hlr, "visited", imsi);
        let mut late = req(msg::SESSION_WITHDRAW_REQUEST, imsi);
        late.session_address = Some("198.51.100.100".parse().unwrap());
        let out = hlr.handle("visited", &late);
        assert_eq!(out.send[0].message.msg_type, msg::SESSION_WITHDRAW_RESULT);
        assert!(out.dns.is_empty(), "{:?}", out.dns);
        assert_eq!(
            hlr.state[imsi].address,
            Some("203.0.113.100".parse().unwrap())
        );
        report(&mut hlr, "visited", imsi, "198.51.100.100");
        let out = hlr.handle("visited", &late);
        assert_eq!(
            out.dns,
            [DnsOp::Clear {
                host_name: "phone1.home.example".into()
            }]
        );
    }

    /// A subscriber's own TTL goes with its record; the others take their zone's.
    #[test]
    fn a_subscribers_own_ttl_goes_with_its_home_record() {
        let mut hlr = core();
        for (imsi, address, ttl) in [
            ("001010000000005", "198.51.100.100", Some(0)),
            ("001010000000001", "198.51.100.101", None),
        ] {
            register(&mut hlr, "visited", imsi);
            let out = report(&mut hlr, "visited", imsi, address);
            assert!(
                matches!(&out.dns[..], [DnsOp::Set { ttl: t, .. }] if *t == ttl),
                "{imsi}: {:?}",
                out.dns
            );
        }
    }

    /// Claim 23: a network that learned the name from the terminal reports it with the
    /// address; the home writes the record only if it is the subscriber's own name.
    #[test]
    fn a_claimed_host_name_is_verified_before_anything_is_written() {
        let mut hlr = core();
        let imsi = "001010000000001";
        register(&mut hlr, "visited", imsi);
        let claiming = |claim: &str| {
            let mut report = req(msg::SESSION_ADDRESS_REQUEST, imsi);
            report.session_address = Some("198.51.100.100".parse().unwrap());
            report.host_name = Some(claim.into());
            report
        };
        let refused = hlr.handle("visited", &claiming("homebound1.home.example"));
        assert_eq!(refused.send[0].message.cause, Some(cause::ILLEGAL_MS));
        assert_eq!(
            refused.refusal.as_deref(),
            Some("phone1: the terminal claims host name homebound1.home.example, and its home holds phone1.home.example")
        );
        assert!(refused.dns.is_empty());
        assert_eq!(hlr.state[imsi].address, None);
        for own in ["PHONE1.home.example.", "phone1"] {
            let out = hlr.handle("visited", &claiming(own));
            assert_eq!(
                out.send[0].message.msg_type,
                msg::SESSION_ADDRESS_RESULT,
                "{own}"
            );
            assert_eq!(
                out.send[0].message.host_name.as_deref(),
                Some("phone1.home.example"),
                "the home's answer is the whole name"
            );
        }
        assert_eq!(
            hlr.state[imsi].address,
            Some("198.51.100.100".parse().unwrap())
        );
    }

    #[test]
    fn resynchronisation_adopts_the_terminals_sequence_number() {
        let mut hlr = core();
        let m = Milenage::new(
            &hex_key("465b5ce8b199b49faa5f0a2ee238a6bc").unwrap(),
            &hex_key("cd63cb71954a9f4e48a5994e37a02baf").unwrap(),
        );
        let rand = [9u8; 16];
        let mut sai = req(msg::SEND_AUTH_INFO_REQUEST, "001010000000001");
        sai.rand = Some(rand);
        sai.auts = Some(milenage::auts(&m, &rand, &milenage::sqn_bytes(500)));
        hlr.handle("visited", &sai);
        assert_eq!(hlr.state["001010000000001"].sqn, 501);
        sai.auts = Some([0; 14]);
        assert_eq!(
            hlr.handle("visited", &sai).send[0].message.cause,
            Some(cause::MAC_FAILURE)
        );
    }
}
