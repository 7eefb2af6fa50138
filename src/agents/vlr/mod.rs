//! The VLR (patent: VLR 116): serves the visited network's cell. Terminals attach over
//! the cell's air-interface socket; the VLR checks the roaming agreement, asks the home
//! HLR for a vector over GSUP (the private network), challenges the terminal, registers
//! it with UpdateLocation (receiving InsertSubscriberData: the profile and the host name,
//! claim 24) and keeps the list of attached terminals. Detach purges the registration;
//! a CancelLocation from the HLR drops the terminal.
//!
//! [`core`] decides (the attach state machine, the registrations); this module is the
//! socket loop around it: the cell, the local socket, the links to partners' HLRs.

pub mod core;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use self::core::{route_local, Action, Attach, LocalRoute, Registry};
use super::signaling::{self, Sender, REQUEST_TIMEOUT};
use crate::contract::configs::{NameSource, PartnerHlr, VlrConfig};
use crate::contract::published::{
    read_cell_link, write_attached, AttachedJournal, AttachedTerminal,
};
use crate::contract::AgentKind;
use crate::events::EventLog;
use crate::protocols::gsup::{cause, msg, Message};

/// After a restart, the least time the terminals of the last run have to come back, even
/// when the implicit-detach time is shorter: they all reconnect at once.
const RESUME_AT_LEAST: std::time::Duration = std::time::Duration::from_secs(5);
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
    /// The registrations as published (its DHCP agent follows them).
    attached: Mutex<AttachedJournal>,
    cell_links: std::path::PathBuf,
    partners: Vec<PartnerHlr>,
    /// How long a terminal whose radio link is lost stays registered: if it shows up at
    /// another network meanwhile, its home cancels it here.
    implicit_detach: std::time::Duration,
    /// Where a registration's host name comes from.
    name_source: NameSource,
    links: Vec<Arc<HlrLink>>,
    registry: Mutex<Registry>,
    /// Tells an attached terminal's task that its home cancelled it.
    cancels: Mutex<HashMap<String, mpsc::UnboundedSender<()>>>,
    /// One procedure at a time per IMSI: GSUP has no transaction ids, so answers are
    /// matched by IMSI and message type, and two attaches of one IMSI must not overlap.
    procedures: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Refused peers of the local socket, logged once per peer per interval.
    local_refusals: Mutex<super::ratelimit::RateLimited<i32>>,
    /// Copies of the messages on its links to HLRs, for `roamlab capture signaling`.
    tap: signaling::Tap,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Vlr {
    fn emit(&self, event: &str, imsi: &str, fields: serde_json::Value) {
        self.events.emit(event, Some(imsi), fields);
    }

    /// Publishes the registration of `imsi` as it is now: one line, however many there are.
    fn save_attached_of(&self, imsi: &str) {
        // Held while the registration is read, so a later one is never overwritten by an
        // earlier one.
        let mut journal = self.attached.lock().expect("lock");
        let now = self.registry.lock().expect("lock").get(imsi).cloned();
        if let Err(e) = journal.put(&imsi.to_string(), now.as_ref()) {
            tracing::error!("cannot write the attached list: {e}");
        }
    }

    fn save_attached(&self) {
        // The journal is held while the list is taken, so a later list is never
        // overwritten by an earlier one.
        let mut journal = self.attached.lock().expect("lock");
        let list = self.registry.lock().expect("lock").list();
        if let Err(e) = write_attached(&mut journal, &list) {
            tracing::error!("cannot write the attached list: {e}");
        }
    }

    fn link_to(&self, network: &str) -> Option<Arc<HlrLink>> {
        self.links
            .iter()
            .find(|l| l.partner.network == network)
            .cloned()
    }

    /// Takes up the registrations an earlier run of this VLR kept. Their radio links went
    /// with that run: each terminal has the implicit-detach time to come back (a terminal
    /// agent re-attaches at once), after which it is detached and purged at home as if its
    /// link had just been lost.
    fn resume_registrations(self: &Arc<Self>, kept: Vec<AttachedTerminal>) {
        self.save_attached();
        if !kept.is_empty() {
            tracing::info!(
                count = kept.len(),
                "resumed the registrations of the last run"
            );
        }
        let grace = self.implicit_detach.max(RESUME_AT_LEAST);
        for info in kept {
            let vlr = self.clone();
            tokio::spawn(async move {
                vlr.emit(
                    "registration resumed",
                    &info.imsi,
                    json!({"implicit_detach_s": grace.as_secs()}),
                );
                tokio::time::sleep(grace).await;
                let why = "implicit detach after a restart";
                detach(&vlr, &info.home, &info.imsi, Some(info.since), why).await;
            });
        }
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
            Some(s) => {
                self.tap.message(true, &link.partner.network, &m);
                s.gsup(&m).await.is_ok()
            }
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
    fn answer_home(&self, link: &HlrLink, m: Message) -> Option<Message> {
        self.emit(
            msg::name(m.msg_type),
            &m.imsi,
            json!({"from": link.partner.network}),
        );
        let answer = self.registry.lock().expect("lock").home_request(&m);
        for (event, fields) in answer.events {
            tracing::warn!(imsi = %m.imsi, %fields, "refused: the terminal claims a host name that is not its own");
            self.emit(event, &m.imsi, fields);
        }
        if answer.cancelled.is_some() {
            if let Some(cancel) = self.cancels.lock().expect("lock").remove(&m.imsi) {
                let _ = cancel.send(());
            }
            self.save_attached_of(&m.imsi);
            tracing::info!(imsi = %m.imsi, "cancelled by the HLR: registered elsewhere; dropped");
        }
        answer.reply
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
            vlr.tap.bytes(false, &link.partner.network, &bytes);
            let m = match Message::decode(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(hlr = %link.partner.network, "malformed GSUP message ({e}); reconnecting");
                    break;
                }
            };
            if m.msg_type & 0b11 == 0 {
                if let Some(answer) = vlr.answer_home(&link, m) {
                    vlr.emit(
                        msg::name(answer.msg_type),
                        &answer.imsi,
                        json!({"to": link.partner.network}),
                    );
                    vlr.tap.message(true, &link.partner.network, &answer);
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
    let (cancel_tx, mut cancelled) = mpsc::unbounded_channel();
    let Some(registration) = attach(&vlr, &request, &mut reader, &air, cancel_tx).await else {
        return;
    };
    drop(serialised);
    let (home, since) = (registration.home.as_str(), Some(registration.since));

    // Attached: until the terminal detaches, its link drops, or its home cancels it.
    tokio::select! {
        next = signaling::next_gsup(&mut reader, &air) => {
            match next.map(|b| Message::decode(&b)) {
                Ok(Ok(m)) if m.msg_type == msg::DETACH_REQUEST => {
                    vlr.emit("Detach request", &imsi, json!({}));
                    detach(&vlr, home, &imsi, since, "detach").await;
                    let _ = air.gsup(&Message::new(msg::DETACH_ACCEPT, &imsi)).await;
                    vlr.emit("Detach accept", &imsi, json!({}));
                }
                _ => {
                    // Out of coverage: the registration stands until the implicit detach
                    // timer runs out, or the terminal's home cancels it.
                    // The link goes now: held open it would keep the lost terminal's
                    // socket, and so its network namespace, alive until the timer ends.
                    drop((reader, air));
                    let after = vlr.implicit_detach;
                    tracing::info!(imsi = %imsi, "radio link lost; implicit detach in {after:?}");
                    vlr.emit("radio link lost", &imsi, json!({"implicit_detach_s": after.as_secs()}));
                    // A home that cancels the registration meanwhile (the terminal turned
                    // up elsewhere) ends the wait: nothing is left to detach.
                    tokio::select! {
                        _ = tokio::time::sleep(after) => {
                            // Not when the terminal came back meanwhile: that is a new
                            // registration.
                            if detach(&vlr, home, &imsi, since, "implicit detach").await {
                                vlr.emit("implicit detach", &imsi, json!({"after_s": after.as_secs()}));
                            }
                        }
                        _ = cancelled.recv() => {}
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

/// Carries out the core's attach on the sockets: the registration it ended with, if any.
async fn attach<R: tokio::io::AsyncRead + Unpin>(
    vlr: &Arc<Vlr>,
    request: &Message,
    reader: &mut R,
    air: &Sender,
    cancel: mpsc::UnboundedSender<()>,
) -> Option<AttachedTerminal> {
    let imsi = request.imsi.as_str();
    let (attach, actions) = Attach::start(
        request,
        &vlr.partners,
        read_cell_link(&vlr.cell_links, imsi),
    );
    let mut attach = attach.map(|a| a.names_from(vlr.name_source));
    let mut queue: VecDeque<Action> = actions.into();
    while let Some(action) = queue.pop_front() {
        match action {
            Action::Emit(event, fields) => vlr.emit(event, imsi, fields),
            Action::AskHome(m) => {
                let a = attach.as_mut()?;
                let link = vlr.link_to(a.home())?;
                let registering = m.msg_type == msg::UPDATE_LOCATION_REQUEST;
                if registering {
                    vlr.registry.lock().expect("lock").expect_data(a);
                }
                let answer = vlr.request(&link, m).await;
                let data = registering
                    .then(|| vlr.registry.lock().expect("lock").take_data(imsi))
                    .flatten();
                queue.extend(a.home_answered(answer, data, now()));
            }
            Action::Challenge(m) => {
                if air.gsup(&m).await.is_err() {
                    return None;
                }
                let answer =
                    tokio::time::timeout(REQUEST_TIMEOUT, signaling::next_gsup(reader, air)).await;
                // A malformed answer is an answer of no known type (type 0): refused.
                let answer = match answer {
                    Ok(Ok(bytes)) => Some(Message::decode(&bytes).unwrap_or_default()),
                    _ => None,
                };
                queue.extend(attach.as_mut()?.terminal_answered(answer));
            }
            Action::Reject { cause: c, why } => {
                tracing::warn!(
                    imsi,
                    "attach rejected: {why} ({}, GMM cause {c})",
                    cause::name(c)
                );
                vlr.emit(
                    "Attach reject",
                    imsi,
                    json!({"cause": cause::name(c), "code": c, "why": why}),
                );
                let mut r = Message::new(msg::ATTACH_REJECT, imsi);
                r.cause = Some(c);
                let _ = air.gsup(&r).await;
                return None;
            }
            Action::Accept {
                registration,
                accept,
            } => {
                vlr.registry
                    .lock()
                    .expect("lock")
                    .register(registration.clone());
                vlr.cancels
                    .lock()
                    .expect("lock")
                    .insert(imsi.to_string(), cancel);
                vlr.save_attached_of(imsi);
                tracing::info!(imsi, host_name = ?registration.host_name, "attached");
                if air.gsup(&accept).await.is_err() {
                    let why = "the terminal went away before the accept";
                    detach(vlr, &registration.home, imsi, Some(registration.since), why).await;
                    return None;
                }
                return Some(registration);
            }
            Action::Lost(why) => {
                tracing::warn!(imsi, "{why}");
                return None;
            }
        }
    }
    None
}

/// The visited network's own DHCP agent reports and withdraws session addresses through
/// the VLR, which forwards them to the terminal's HLR (the private network stays the
/// VLR's).
async fn serve_local(vlr: Arc<Vlr>, stream: UnixStream) {
    let peer = signaling::peer_agent(&stream, AgentKind::Dhcp).and_then(|node| {
        (node == vlr.name)
            .then_some(())
            .ok_or(format!("the DHCP agent of {node}, not of {}", vlr.name))
    });
    if let Err(why) = peer {
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
        let answer = match route_local(&vlr.partners, &m) {
            LocalRoute::Forward(partner) => match vlr.link_to(&partner.network) {
                Some(link) => match vlr.request(&link, m.clone()).await {
                    Ok(answer) => answer,
                    Err(c) => m.error_reply(c),
                },
                None => m.error_reply(cause::NETWORK_FAILURE),
            },
            LocalRoute::Refuse {
                cause: c,
                unknown_to,
            } => {
                // roamlab's own messages (0xF0–0xF6) mean nothing to another HLR (osmo-hlr
                // drops them unanswered): say so once.
                let first = unknown_to
                    .and_then(|p| vlr.link_to(&p.network))
                    .is_some_and(|l| {
                        !l.told_no_extensions
                            .swap(true, std::sync::atomic::Ordering::SeqCst)
                    });
                if let (true, Some(p)) = (first, unknown_to) {
                    tracing::warn!(
                        hlr = %p.network,
                        "the HLR of {} is not roamlab's and does not know roamlab's session-address messages (0xF0-0xF6): addresses are not reported there, and its DNS does not follow its subscribers",
                        p.network
                    );
                    vlr.emit(
                        "session addresses not reported",
                        &m.imsi,
                        json!({"hlr": p.network, "why": "an HLR that does not know roamlab's messages 0xF0-0xF6"}),
                    );
                }
                m.error_reply(c)
            }
        };
        if peer.gsup(&answer).await.is_err() {
            return;
        }
    }
}

/// Ends a registration (`since`: only that one, not a later one of the same IMSI) and
/// purges it at home.
/// Ends the registration of `imsi` that began at `since` (any, if none) and purges it at
/// home; whether there was one.
async fn detach(vlr: &Arc<Vlr>, home: &str, imsi: &str, since: Option<f64>, why: &str) -> bool {
    let removed = vlr.registry.lock().expect("lock").remove(imsi, since);
    if removed.is_none() {
        return false;
    }
    vlr.cancels.lock().expect("lock").remove(imsi);
    vlr.save_attached_of(imsi);
    tracing::info!(imsi, "detached: {why}");
    let Some(link) = vlr.link_to(home) else {
        return true;
    };
    if let Err(c) = vlr
        .request(&link, Message::new(msg::PURGE_MS_REQUEST, imsi))
        .await
    {
        tracing::warn!(imsi, "purge failed: {}", cause::name(c));
    }
    true
}

/// Runs the VLR until SIGTERM.
pub async fn run(config: VlrConfig) -> std::io::Result<()> {
    let agent = format!("{}/vlr", config.name);
    let journal = AttachedJournal::open(&config.attached_file)?;
    let kept: Vec<AttachedTerminal> = journal.records().values().cloned().collect();
    let vlr = Arc::new(Vlr {
        name: config.name.clone(),
        events: EventLog::open(&config.events_file, &agent)?,
        attached: Mutex::new(journal),
        cell_links: config.cell_links.clone(),
        partners: config.partners.clone(),
        implicit_detach: std::time::Duration::from_secs(config.implicit_detach_s),
        name_source: config.name_source,
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
        registry: Mutex::new(Registry::resume(kept.clone())),
        cancels: Mutex::new(HashMap::new()),
        procedures: Mutex::new(HashMap::new()),
        local_refusals: Mutex::new(super::ratelimit::RateLimited::new(
            std::time::Duration::from_secs(10),
        )),
        tap: signaling::Tap::new(config.gsup_tap.clone()),
    });
    vlr.resume_registrations(kept);
    let listener = signaling::bind_private(&config.cell_socket)?;
    let local = signaling::bind_private(&config.local_socket)?;
    super::drop_privileges()?;
    for link in &vlr.links {
        tokio::spawn(hold_link(vlr.clone(), link.clone()));
    }
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
    super::notify_ready();
    let accept = {
        let vlr = vlr.clone();
        signaling::serve_connections(listener, "cell", CELL_LIMITS, move |stream| {
            serve_terminal(vlr.clone(), stream)
        })
    };
    tokio::select! {
        _ = accept => {}
        _ = super::shutdown_signal() => tracing::info!("VLR stopping"),
    }
    let _ = std::fs::remove_file(&config.cell_socket);
    let _ = std::fs::remove_file(&config.local_socket);
    Ok(())
}
