//! The VLR (patent: VLR 116): serves the visited network's cell. Terminals attach over
//! the cell's air-interface socket; the VLR checks the roaming agreement, asks the home
//! HLR for a vector over GSUP (the private network), challenges the terminal, registers
//! it with UpdateLocation (receiving InsertSubscriberData: the profile and the host name,
//! claim 24) and keeps the list of attached terminals. Detach purges the registration;
//! a CancelLocation from the HLR drops the terminal.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use super::signaling::{self, PartnerHlr, Sender, VlrConfig, REQUEST_TIMEOUT};
use crate::events::EventLog;
use crate::json_file;
use crate::protocols::gsup::{cause, msg, Message};

/// How long a terminal whose radio link is lost stays registered (its implicit detach
/// timer): if it shows up at another network meanwhile, its home cancels it here.
const IMPLICIT_DETACH: std::time::Duration = std::time::Duration::from_secs(30);
/// Terminals on the cell: one link each while attached, and a process hosting many
/// terminals may hold many.
const CELL_LIMITS: signaling::Limits = signaling::Limits {
    total: 8192,
    per_peer: 1024,
};
/// The local socket serves the node's own DHCP agent, one short exchange at a time.
const LOCAL_LIMITS: signaling::Limits = signaling::Limits {
    total: 256,
    per_peer: 64,
};
/// A local connection with nothing to say for this long is closed.
const LOCAL_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a request waits for a link to an HLR that is reconnecting.
const RECONNECT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// How long to wait between attempts to reach an HLR that is down.
const RECONNECT: std::time::Duration = std::time::Duration::from_millis(200);
const RECONNECT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// A terminal in the VLR's list: its registration, kept on disk so that a restarted VLR
/// resumes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachedTerminal {
    pub imsi: String,
    /// The terminal's link-layer address on the cell, as it reported it.
    pub mac: Option<String>,
    pub host_name: Option<String>,
    pub msisdn: Option<String>,
    pub home: String,
    pub since: f64,
}

struct Registered {
    info: AttachedTerminal,
    /// Tells the terminal's task that the HLR cancelled it.
    cancel: mpsc::UnboundedSender<()>,
}

/// An attach between UpdateLocation and its result: what the terminal claimed, what
/// InsertSubscriberData brought.
#[derive(Default)]
struct Pending {
    claim: Option<String>,
    data: Option<Message>,
}

struct HlrLink {
    partner: PartnerHlr,
    /// Whether the log was told this HLR does not know roamlab's own messages.
    told_no_extensions: std::sync::atomic::AtomicBool,
    sender: tokio::sync::Mutex<Option<Sender>>,
    waiting: Mutex<HashMap<(String, u8), oneshot::Sender<Message>>>,
}

struct Vlr {
    name: String,
    events: EventLog,
    attached_file: std::path::PathBuf,
    links: Vec<Arc<HlrLink>>,
    attached: Mutex<BTreeMap<String, Registered>>,
    pending: Mutex<HashMap<String, Pending>>,
    /// One procedure at a time per IMSI: GSUP has no transaction ids, so answers are
    /// matched by IMSI and message type, and two attaches of one IMSI must not overlap.
    procedures: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Refused peers of the local socket, logged once per peer per interval.
    local_refusals: Mutex<super::ratelimit::RateLimited<i32>>,
}

impl Vlr {
    fn emit(&self, event: &str, imsi: &str, fields: serde_json::Value) {
        self.events.emit(event, Some(imsi), fields);
    }

    fn save_attached(&self) {
        let list: Vec<AttachedTerminal> = self
            .attached
            .lock()
            .expect("lock")
            .values()
            .map(|r| r.info.clone())
            .collect();
        if let Err(e) = json_file::write_private_json(&self.attached_file, &list) {
            tracing::error!("cannot write the attached list: {e}");
        }
    }

    /// Takes up the registrations an earlier run of this VLR kept. Their radio links went
    /// with that run: each terminal has the implicit-detach time to come back (a terminal
    /// agent re-attaches at once), after which it is detached and purged at home as if its
    /// link had just been lost.
    fn resume_registrations(self: &Arc<Self>) {
        let kept = read_attached(&self.attached_file);
        {
            let mut attached = self.attached.lock().expect("lock");
            for info in &kept {
                // Nobody listens on this channel: a cancel just removes the registration.
                let (cancel, _) = mpsc::unbounded_channel();
                attached.insert(
                    info.imsi.clone(),
                    Registered {
                        info: info.clone(),
                        cancel,
                    },
                );
            }
        }
        self.save_attached();
        if !kept.is_empty() {
            tracing::info!(
                count = kept.len(),
                "resumed the registrations of the last run"
            );
        }
        for info in kept {
            let vlr = self.clone();
            tokio::spawn(async move {
                vlr.emit(
                    "registration resumed",
                    &info.imsi,
                    json!({"implicit_detach_s": IMPLICIT_DETACH.as_secs()}),
                );
                tokio::time::sleep(IMPLICIT_DETACH).await;
                let same = vlr
                    .attached
                    .lock()
                    .expect("lock")
                    .get(&info.imsi)
                    .is_some_and(|r| r.info.since == info.since);
                if let (true, Some(link)) = (same, vlr.partner_of(&info.imsi)) {
                    detach(&vlr, &link, &info.imsi, "implicit detach after a restart").await;
                }
            });
        }
    }

    fn partner_of(&self, imsi: &str) -> Option<Arc<HlrLink>> {
        self.links
            .iter()
            .find(|l| imsi.starts_with(&l.partner.plmn))
            .cloned()
    }

    /// Sends a request to the HLR and waits for its result; an error answer, a dead link
    /// or a timeout comes back as a cause.
    async fn request(&self, link: &HlrLink, m: Message) -> Result<Message, u8> {
        let (tx, rx) = oneshot::channel();
        let key = (m.imsi.clone(), m.msg_type);
        link.waiting.lock().expect("lock").insert(key.clone(), tx);
        // Logged before it leaves, so the log never shows the answer before the question.
        self.emit(
            msg::name(m.msg_type),
            &m.imsi,
            json!({"to": link.partner.network}),
        );
        // A link that is being re-established (the HLR restarted) gets a moment.
        let mut sender = link.sender.lock().await.clone();
        let waited = std::time::Instant::now();
        while sender.is_none() && waited.elapsed() < RECONNECT_GRACE {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            sender = link.sender.lock().await.clone();
        }
        let sent = match sender {
            Some(s) => s.gsup(&m).await.is_ok(),
            None => false,
        };
        if !sent {
            link.waiting.lock().expect("lock").remove(&key);
            tracing::warn!(hlr = %link.partner.network, "HLR unreachable; {} not sent", msg::name(m.msg_type));
            return Err(cause::NETWORK_FAILURE);
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(answer)) => {
                self.emit(
                    msg::name(answer.msg_type),
                    &answer.imsi,
                    json!({"from": link.partner.network, "cause": answer.cause.map(cause::name)}),
                );
                if answer.msg_type == msg::error_of(m.msg_type) {
                    Err(answer.cause.unwrap_or(cause::PROTOCOL_ERROR))
                } else {
                    Ok(answer)
                }
            }
            _ => {
                link.waiting.lock().expect("lock").remove(&key);
                tracing::warn!(hlr = %link.partner.network, "no answer to {} within {:?}", msg::name(m.msg_type), REQUEST_TIMEOUT);
                Err(cause::NETWORK_FAILURE)
            }
        }
    }

    /// A request from the HLR: InsertSubscriberData or CancelLocation.
    fn answer_hlr(&self, link: &HlrLink, m: Message) -> Option<Message> {
        self.emit(
            msg::name(m.msg_type),
            &m.imsi,
            json!({"from": link.partner.network}),
        );
        match m.msg_type {
            msg::INSERT_DATA_REQUEST => {
                let mut pending = self.pending.lock().expect("lock");
                let Some(p) = pending.get_mut(&m.imsi) else {
                    return Some(m.error_reply(cause::IMSI_UNKNOWN));
                };
                // Claim 23: a terminal may say its host name; it must be the one its home holds.
                if let (Some(claim), Some(own)) = (&p.claim, &m.host_name) {
                    if !claim.eq_ignore_ascii_case(own) {
                        tracing::warn!(imsi = %m.imsi, claim, own, "refused: the terminal claims a host name that is not its own");
                        self.emit(
                            "host name refused",
                            &m.imsi,
                            json!({"claimed": claim, "own": own}),
                        );
                        return Some(m.error_reply(cause::ILLEGAL_MS));
                    }
                }
                p.data = Some(m.clone());
                Some(Message::new(msg::INSERT_DATA_RESULT, &m.imsi))
            }
            msg::LOCATION_CANCEL_REQUEST => {
                let removed = self.attached.lock().expect("lock").remove(&m.imsi);
                if let Some(r) = removed {
                    let _ = r.cancel.send(());
                    self.save_attached();
                    tracing::info!(imsi = %m.imsi, "cancelled by the HLR: registered elsewhere; dropped");
                }
                Some(Message::new(msg::LOCATION_CANCEL_RESULT, &m.imsi))
            }
            t if t & 0b11 == 0 => Some(m.error_reply(cause::MSG_TYPE_NOT_IMPLEMENTED)),
            _ => None,
        }
    }
}

/// The reconnect policy of one HLR link.
struct Reconnect {
    network: String,
    socket: std::path::PathBuf,
    last_failure: String,
    wait: std::time::Duration,
}

impl Reconnect {
    fn new(link: &HlrLink) -> Self {
        Reconnect {
            network: link.partner.network.clone(),
            socket: link.partner.socket.clone(),
            last_failure: String::new(),
            wait: RECONNECT,
        }
    }

    /// Logs `why` if it is news, then waits before the next try.
    async fn failed(&mut self, why: String) {
        if why != self.last_failure {
            tracing::warn!(
                hlr = %self.network,
                socket = %self.socket.display(),
                "{why}; trying again, backing off up to {:?}",
                RECONNECT_MAX
            );
            self.last_failure = why;
        }
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(RECONNECT_MAX);
    }
}

/// Keeps the link to one HLR up: connect, identify, read; on loss, fail what waits and
/// retry, waiting longer after each failed try (up to [`RECONNECT_MAX`]). A line is logged
/// when the reason a try fails changes, not on every try.
async fn hold_link(vlr: Arc<Vlr>, link: Arc<HlrLink>) {
    let mut retry = Reconnect::new(&link);
    loop {
        let connected: std::io::Result<(Box<dyn tokio::io::AsyncRead + Send + Unpin>, Sender)> =
            match link.partner.address {
                Some(address) => tokio::net::TcpStream::connect(address).await.map(|s| {
                    let _ = s.set_nodelay(true);
                    let (r, w) = s.into_split();
                    (
                        Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                        Sender::new(w),
                    )
                }),
                None => UnixStream::connect(&link.partner.socket).await.map(|s| {
                    let (r, w) = s.into_split();
                    (
                        Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                        Sender::new(w),
                    )
                }),
            };
        let (mut reader, sender) = match connected {
            Ok(pair) => pair,
            Err(e) => {
                retry.failed(format!("cannot reach the HLR: {e}")).await;
                continue;
            }
        };
        if let Err(why) = signaling::identify(&mut reader, &sender, &vlr.name).await {
            retry.failed(why).await;
            continue;
        }
        retry = Reconnect::new(&link);
        tracing::info!(hlr = %link.partner.network, "connected to the HLR");
        *link.sender.lock().await = Some(sender.clone());
        loop {
            let bytes = match signaling::next_gsup(&mut reader, &sender).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(hlr = %link.partner.network, "link to the HLR lost: {e}");
                    break;
                }
            };
            let m = match Message::decode(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(hlr = %link.partner.network, "malformed GSUP message ({e}); reconnecting");
                    break;
                }
            };
            if m.msg_type & 0b11 == 0 {
                if let Some(answer) = vlr.answer_hlr(&link, m) {
                    vlr.emit(
                        msg::name(answer.msg_type),
                        &answer.imsi,
                        json!({"to": link.partner.network}),
                    );
                    let _ = sender.gsup(&answer).await;
                }
                continue;
            }
            let request = m.msg_type & 0b1111_1100;
            let waiter = link
                .waiting
                .lock()
                .expect("lock")
                .remove(&(m.imsi.clone(), request));
            match waiter {
                Some(w) => {
                    let _ = w.send(m);
                }
                None => {
                    tracing::warn!(imsi = %m.imsi, "unexpected {} ignored", msg::name(m.msg_type))
                }
            }
        }
        *link.sender.lock().await = None;
        // Whatever waited on this link fails now (the senders are dropped).
        link.waiting.lock().expect("lock").clear();
        tokio::time::sleep(RECONNECT).await;
    }
}

/// One terminal on the cell: the attach procedure, then the attached state until detach.
async fn serve_terminal(vlr: Arc<Vlr>, stream: UnixStream) {
    let (mut reader, writer) = stream.into_split();
    let air = Sender::new(writer);
    let first = tokio::time::timeout(
        signaling::HELLO_TIMEOUT,
        signaling::next_gsup(&mut reader, &air),
    )
    .await;
    let request = match first {
        Ok(Ok(bytes)) => match Message::decode(&bytes) {
            Ok(m) if m.msg_type == msg::ATTACH_REQUEST => m,
            Ok(m) => {
                tracing::warn!(
                    "a terminal began with {}, not an attach; dropped",
                    msg::name(m.msg_type)
                );
                return;
            }
            Err(e) => {
                tracing::warn!("a terminal sent a malformed message ({e}); dropped");
                return;
            }
        },
        Ok(Err(e)) => {
            tracing::warn!("a terminal's link failed before it spoke: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!("a terminal connected and never spoke; dropped");
            return;
        }
    };
    let imsi = request.imsi.clone();
    let procedure = vlr
        .procedures
        .lock()
        .expect("lock")
        .entry(imsi.clone())
        .or_default()
        .clone();
    let serialised = procedure.lock().await;
    vlr.emit(
        "Attach request",
        &imsi,
        json!({"claimed_host_name": request.host_name}),
    );
    let reject = |c: u8, why: &str| {
        let vlr = vlr.clone();
        let air = air.clone();
        let imsi = imsi.clone();
        let why = why.to_string();
        async move {
            tracing::warn!(imsi = %imsi, "attach rejected: {why} ({}, GMM cause {c})", cause::name(c));
            vlr.emit(
                "Attach reject",
                &imsi,
                json!({"cause": cause::name(c), "code": c, "why": why}),
            );
            let mut r = Message::new(msg::ATTACH_REJECT, &imsi);
            r.cause = Some(c);
            let _ = air.gsup(&r).await;
        }
    };
    let Some(link) = vlr.partner_of(&imsi) else {
        return reject(
            cause::PLMN_NOT_ALLOWED,
            "no roaming agreement with the terminal's home network",
        )
        .await;
    };
    let home = link.partner.network.clone();

    // Authentication: one retry after a resynchronisation.
    let mut sai = Message::new(msg::SEND_AUTH_INFO_REQUEST, &imsi);
    let mut authenticated = false;
    for _ in 0..2 {
        let vector = match vlr.request(&link, sai.clone()).await {
            Ok(answer) => match answer
                .auth_tuples
                .into_iter()
                .next()
                .and_then(|t| Some((t.rand, t.umts?)))
            {
                Some(v) => v,
                None => return reject(cause::PROTOCOL_ERROR, "the HLR sent no UMTS vector").await,
            },
            Err(c) => return reject(c, "the HLR refused authentication").await,
        };
        let (rand, umts) = vector;
        let mut challenge = Message::new(msg::AUTH_REQUEST, &imsi);
        challenge.rand = Some(rand);
        challenge.autn = Some(umts.autn);
        vlr.emit("Authentication request", &imsi, json!({}));
        if air.gsup(&challenge).await.is_err() {
            return;
        }
        let answer =
            tokio::time::timeout(REQUEST_TIMEOUT, signaling::next_gsup(&mut reader, &air)).await;
        let answer = match answer {
            Ok(Ok(bytes)) => Message::decode(&bytes),
            _ => {
                tracing::warn!(imsi = %imsi, "the terminal went away during authentication");
                vlr.emit("terminal lost", &imsi, json!({"during": "authentication"}));
                return;
            }
        };
        match answer {
            Ok(a) if a.msg_type == msg::AUTH_RESPONSE => {
                vlr.emit("Authentication response", &imsi, json!({}));
                if a.res.as_deref() != Some(&umts.res[..]) {
                    return reject(
                        cause::ILLEGAL_MS,
                        "authentication failed: RES does not match",
                    )
                    .await;
                }
                authenticated = true;
                break;
            }
            Ok(a) if a.msg_type == msg::AUTH_FAILURE && a.auts.is_some() => {
                vlr.emit(
                    "Authentication failure",
                    &imsi,
                    json!({"cause": "synch failure"}),
                );
                sai = Message::new(msg::SEND_AUTH_INFO_REQUEST, &imsi);
                sai.auts = a.auts;
                sai.rand = Some(rand);
            }
            Ok(a) if a.msg_type == msg::AUTH_FAILURE => {
                return reject(
                    cause::MAC_FAILURE,
                    "the terminal could not authenticate the network",
                )
                .await;
            }
            _ => return reject(cause::PROTOCOL_ERROR, "unexpected answer to the challenge").await,
        }
    }
    if !authenticated {
        return reject(cause::SYNCH_FAILURE, "resynchronisation did not converge").await;
    }

    // Registration at home; InsertSubscriberData arrives in between.
    vlr.pending.lock().expect("lock").insert(
        imsi.clone(),
        Pending {
            claim: request.host_name.clone(),
            data: None,
        },
    );
    let mut ul = Message::new(msg::UPDATE_LOCATION_REQUEST, &imsi);
    ul.cn_domain = Some(1);
    let registered = vlr.request(&link, ul).await;
    let data = vlr
        .pending
        .lock()
        .expect("lock")
        .remove(&imsi)
        .and_then(|p| p.data);
    if let Err(c) = registered {
        let why = if c == cause::ILLEGAL_MS {
            "the terminal claims a host name that is not its own"
        } else {
            "the HLR refused the registration"
        };
        return reject(c, why).await;
    }
    let data = data.unwrap_or_else(|| Message::new(msg::INSERT_DATA_REQUEST, &imsi));
    let (cancel_tx, mut cancelled) = mpsc::unbounded_channel();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let info = AttachedTerminal {
        imsi: imsi.clone(),
        mac: request.terminal_mac.map(|m| format_mac(&m)),
        host_name: data.host_name.clone(),
        msisdn: data.msisdn(),
        home: home.clone(),
        since,
    };
    vlr.attached.lock().expect("lock").insert(
        imsi.clone(),
        Registered {
            info,
            cancel: cancel_tx,
        },
    );
    vlr.save_attached();
    let mut accept = Message::new(msg::ATTACH_ACCEPT, &imsi);
    accept.host_name = data.host_name.clone();
    accept.msisdn = data.msisdn.clone();
    vlr.emit(
        "Attach accept",
        &imsi,
        json!({"host_name": data.host_name, "msisdn": data.msisdn()}),
    );
    tracing::info!(imsi = %imsi, host_name = ?data.host_name, "attached");
    if air.gsup(&accept).await.is_err() {
        return detach(
            &vlr,
            &link,
            &imsi,
            "the terminal went away before the accept",
        )
        .await;
    }
    drop(serialised);

    // Attached: until the terminal detaches, its link drops, or its home cancels it.
    tokio::select! {
        next = signaling::next_gsup(&mut reader, &air) => {
            match next.map(|b| Message::decode(&b)) {
                Ok(Ok(m)) if m.msg_type == msg::DETACH_REQUEST => {
                    vlr.emit("Detach request", &imsi, json!({}));
                    detach(&vlr, &link, &imsi, "detach").await;
                    let _ = air.gsup(&Message::new(msg::DETACH_ACCEPT, &imsi)).await;
                    vlr.emit("Detach accept", &imsi, json!({}));
                }
                _ => {
                    // Out of coverage: the registration stands until the implicit detach
                    // timer runs out, or the terminal's home cancels it.
                    tracing::info!(imsi = %imsi, "radio link lost; implicit detach in {IMPLICIT_DETACH:?}");
                    vlr.emit("radio link lost", &imsi, json!({"implicit_detach_s": IMPLICIT_DETACH.as_secs()}));
                    tokio::time::sleep(IMPLICIT_DETACH).await;
                    let same = vlr.attached.lock().expect("lock").get(&imsi).is_some_and(|r| r.info.since == since);
                    if same {
                        detach(&vlr, &link, &imsi, "implicit detach").await;
                    }
                }
            }
        }
        _ = cancelled.recv() => {
            let _ = air.gsup(&Message::new(msg::DETACH_INDICATION, &imsi)).await;
            vlr.emit("Detach indication", &imsi, json!({"why": "registered at another network"}));
        }
    }
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The visited network's own DHCP agent reports and withdraws session addresses through
/// the VLR, which forwards them to the terminal's HLR (the private network stays the
/// VLR's).
async fn serve_local(vlr: Arc<Vlr>, stream: UnixStream) {
    if let Err(why) = signaling::peer_is_agent(&stream, "dhcp") {
        let pid = stream.peer_cred().ok().and_then(|c| c.pid()).unwrap_or(0);
        let logged = vlr
            .local_refusals
            .lock()
            .expect("lock")
            .note(&pid, std::time::Instant::now());
        if let Some(n) = logged {
            tracing::warn!(peer_pid = pid, count = n, "local socket: refused: {why}");
            vlr.events.emit(
                "local peer refused",
                None,
                json!({"peer_pid": pid, "why": why}),
            );
        }
        return;
    }
    let (mut reader, writer) = stream.into_split();
    let peer = Sender::new(writer);
    while let Ok(Ok(bytes)) =
        tokio::time::timeout(LOCAL_IDLE, signaling::next_gsup(&mut reader, &peer)).await
    {
        let Ok(m) = Message::decode(&bytes) else {
            tracing::warn!("malformed message on the local socket; closed");
            return;
        };
        let answer = match (m.msg_type, vlr.partner_of(&m.imsi)) {
            // roamlab's own messages (0xF0–0xF6) mean nothing to another HLR (osmo-hlr drops
            // them unanswered): say so once, and refuse for good at once.
            (msg::SESSION_ADDRESS_REQUEST | msg::SESSION_WITHDRAW_REQUEST, Some(link))
                if link.partner.address.is_some() =>
            {
                if !link
                    .told_no_extensions
                    .swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    tracing::warn!(
                        hlr = %link.partner.network,
                        "the HLR of {} is not roamlab's and does not know roamlab's session-address messages (0xF0-0xF6): addresses are not reported there, and its DNS does not follow its subscribers",
                        link.partner.network
                    );
                    vlr.emit(
                        "session addresses not reported",
                        &m.imsi,
                        json!({"hlr": link.partner.network, "why": "an HLR that does not know roamlab's messages 0xF0-0xF6"}),
                    );
                }
                m.error_reply(cause::MSG_TYPE_NOT_IMPLEMENTED)
            }
            (msg::SESSION_ADDRESS_REQUEST | msg::SESSION_WITHDRAW_REQUEST, Some(link)) => {
                match vlr.request(&link, m.clone()).await {
                    Ok(answer) => answer,
                    Err(c) => m.error_reply(c),
                }
            }
            (msg::SESSION_ADDRESS_REQUEST | msg::SESSION_WITHDRAW_REQUEST, None) => {
                m.error_reply(cause::PLMN_NOT_ALLOWED)
            }
            _ => m.error_reply(cause::MSG_TYPE_NOT_IMPLEMENTED),
        };
        if peer.gsup(&answer).await.is_err() {
            return;
        }
    }
}

/// Removes a terminal and purges its registration at home.
async fn detach(vlr: &Arc<Vlr>, link: &HlrLink, imsi: &str, why: &str) {
    let removed = vlr.attached.lock().expect("lock").remove(imsi).is_some();
    if removed {
        vlr.save_attached();
        tracing::info!(imsi, "detached: {why}");
        if let Err(c) = vlr
            .request(link, Message::new(msg::PURGE_MS_REQUEST, imsi))
            .await
        {
            tracing::warn!(imsi, "purge failed: {}", cause::name(c));
        }
    }
}

/// Runs the VLR until SIGTERM.
pub async fn run(config: VlrConfig) -> std::io::Result<()> {
    let agent = format!("{}/vlr", config.name);
    let vlr = Arc::new(Vlr {
        name: config.name.clone(),
        events: EventLog::open(&config.events_file, &agent)?,
        attached_file: config.attached_file.clone(),
        links: config
            .partners
            .iter()
            .map(|p| {
                Arc::new(HlrLink {
                    partner: p.clone(),
                    told_no_extensions: Default::default(),
                    sender: tokio::sync::Mutex::new(None),
                    waiting: Mutex::new(HashMap::new()),
                })
            })
            .collect(),
        attached: Mutex::new(BTreeMap::new()),
        pending: Mutex::new(HashMap::new()),
        procedures: Mutex::new(HashMap::new()),
        local_refusals: Mutex::new(super::ratelimit::RateLimited::new(
            std::time::Duration::from_secs(10),
        )),
    });
    vlr.resume_registrations();
    for link in &vlr.links {
        tokio::spawn(hold_link(vlr.clone(), link.clone()));
    }
    let listener = signaling::bind_private(&config.cell_socket)?;
    let local = signaling::bind_private(&config.local_socket)?;
    {
        let vlr = vlr.clone();
        tokio::spawn(signaling::serve_connections(
            local,
            "local socket",
            LOCAL_LIMITS,
            move |stream| serve_local(vlr.clone(), stream),
        ));
    }
    tracing::info!(cell = %config.cell_socket.display(), partners = ?config.partners.iter().map(|p| &p.network).collect::<Vec<_>>(), "VLR ready");
    crate::agents::notify_ready();
    let accept = {
        let vlr = vlr.clone();
        signaling::serve_connections(listener, "cell", CELL_LIMITS, move |stream| {
            serve_terminal(vlr.clone(), stream)
        })
    };
    tokio::select! {
        _ = accept => {}
        _ = crate::agents::shutdown_signal() => tracing::info!("VLR stopping"),
    }
    let _ = std::fs::remove_file(&config.cell_socket);
    let _ = std::fs::remove_file(&config.local_socket);
    Ok(())
}

/// Reads a VLR's list of attached terminals (the one reader of that file).
pub fn read_attached(path: &std::path::Path) -> Vec<AttachedTerminal> {
    json_file::read_json(path).unwrap_or_default()
}

/// The list of the VLR of network `visited` in a lab.
pub fn attached(lab_dir: &std::path::Path, visited: &str) -> Vec<AttachedTerminal> {
    read_attached(&signaling::vlr_attached_path(lab_dir, visited))
}
