//! The VLR's pure core: one terminal's attach as a state machine ([`Attach`]) and the
//! VLR's book of registrations and attaches under way ([`Registry`]). No sockets and no
//! clocks: the socket loop in [`super`] feeds in what arrives and carries out the
//! [`Action`]s, so every path of an attach is tested without a lab.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use crate::contract::configs::{NameSource, PartnerHlr};
use crate::contract::published::{format_mac, AttachedTerminal};
use crate::protocols::gsup::{cause, msg, Message, UmtsTuple};

/// What the socket loop does next, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write an event for this terminal.
    Emit(&'static str, Value),
    /// Ask the terminal's HLR; its answer (or the cause it failed with) comes back
    /// through [`Attach::home_answered`].
    AskHome(Message),
    /// Send to the terminal and wait for its answer, fed to [`Attach::terminal_answered`].
    Challenge(Message),
    /// The attach failed: tell the terminal, and log why.
    Reject { cause: u8, why: String },
    /// The attach succeeded: record the registration, then send the accept.
    Accept {
        registration: AttachedTerminal,
        accept: Message,
    },
    /// The terminal is gone: nothing to tell it.
    Lost(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// SendAuthInfo sent; a vector expected.
    Vector,
    /// Challenge sent with this vector; RES (or AUTS) expected.
    Response {
        rand: [u8; 16],
        umts: UmtsTuple,
    },
    /// UpdateLocation sent; InsertSubscriberData and the result expected.
    Registration,
    Done,
}

/// One terminal's attach: authentication with one retry after a resynchronisation, then
/// registration at home.
#[derive(Debug, Clone)]
pub struct Attach {
    imsi: String,
    home: String,
    claim: Option<String>,
    names_from: NameSource,
    mac: Option<[u8; 6]>,
    phase: Phase,
    resynchronised: bool,
}

impl Attach {
    /// Starts the attach an ATTACH_REQUEST asks for, at the terminal's home if this VLR
    /// has an agreement with it. `link` is the address of the link the lab made for this
    /// IMSI on the cell, if it made one: the only address the terminal may report (the one
    /// its port is locked to), so that no terminal registers another's link as its own.
    pub fn start(
        request: &Message,
        partners: &[PartnerHlr],
        link: Option<[u8; 6]>,
    ) -> (Option<Self>, Vec<Action>) {
        let imsi = request.imsi.clone();
        let mut actions = vec![Action::Emit(
            "Attach request",
            json!({"claimed_host_name": request.host_name}),
        )];
        if let Some(said) = request.terminal_mac.filter(|said| Some(*said) != link) {
            let why = match link {
                Some(own) => format!(
                    "the terminal reports link-layer address {}, but its link on this cell is {}",
                    format_mac(&said),
                    format_mac(&own)
                ),
                None => format!(
                    "the terminal reports link-layer address {}, but has no link on this cell",
                    format_mac(&said)
                ),
            };
            actions.push(Action::Reject {
                cause: cause::ILLEGAL_MS,
                why,
            });
            return (None, actions);
        }
        let Some(home) = partner_of(partners, &imsi) else {
            actions.push(Action::Reject {
                cause: cause::PLMN_NOT_ALLOWED,
                why: "no roaming agreement with the terminal's home network".into(),
            });
            return (None, actions);
        };
        actions.push(Action::AskHome(Message::new(
            msg::SEND_AUTH_INFO_REQUEST,
            &imsi,
        )));
        let attach = Attach {
            imsi,
            home: home.network.clone(),
            claim: request.host_name.clone(),
            names_from: NameSource::Hlr,
            // The lab's record, whether the terminal reported it or not.
            mac: link,
            phase: Phase::Vector,
            resynchronised: false,
        };
        (Some(attach), actions)
    }

    /// Where the registration's host name comes from (the HLR's, unless told otherwise).
    pub fn names_from(mut self, source: NameSource) -> Self {
        self.names_from = source;
        self
    }

    pub fn imsi(&self) -> &str {
        &self.imsi
    }

    /// The home network this attach registers at.
    pub fn home(&self) -> &str {
        &self.home
    }

    /// The host name the terminal claims, checked against InsertSubscriberData.
    pub fn claim(&self) -> Option<&str> {
        self.claim.as_deref()
    }

    fn reject(&mut self, cause: u8, why: &str) -> Vec<Action> {
        self.phase = Phase::Done;
        vec![Action::Reject {
            cause,
            why: why.into(),
        }]
    }

    /// The HLR answered the last [`Action::AskHome`] (`Err`: the cause it failed with).
    /// After UpdateLocation, `data` is the InsertSubscriberData that came meanwhile.
    pub fn home_answered(
        &mut self,
        answer: Result<Message, u8>,
        data: Option<Message>,
        since: f64,
    ) -> Vec<Action> {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Vector => {
                let answer = match answer {
                    Ok(a) => a,
                    Err(c) => return self.reject(c, "the HLR refused authentication"),
                };
                let vector = answer
                    .auth_tuples
                    .into_iter()
                    .next()
                    .and_then(|t| Some((t.rand, t.umts?)));
                let Some((rand, umts)) = vector else {
                    return self.reject(cause::PROTOCOL_ERROR, "the HLR sent no UMTS vector");
                };
                let mut challenge = Message::new(msg::AUTH_REQUEST, &self.imsi);
                challenge.rand = Some(rand);
                challenge.autn = Some(umts.autn);
                self.phase = Phase::Response { rand, umts };
                vec![
                    Action::Emit("Authentication request", json!({})),
                    Action::Challenge(challenge),
                ]
            }
            Phase::Registration => {
                if let Err(c) = answer {
                    let why = if c == cause::ILLEGAL_MS {
                        "the terminal claims a host name that is not its own"
                    } else {
                        "the HLR refused the registration"
                    };
                    return self.reject(c, why);
                }
                let data =
                    data.unwrap_or_else(|| Message::new(msg::INSERT_DATA_REQUEST, &self.imsi));
                // The subscriber data grants a PDP context or none (claim 13): osmo-hlr, like
                // our HLR, sends PDP info for packet-data subscribers only.
                let packet_data = !data.pdp_infos.is_empty();
                // Claim 23: the terminal's own word (checked against its home's above), or
                // none yet, to be learned from its DHCP client and verified at home then.
                let host_name = match self.names_from {
                    NameSource::Hlr => data.host_name.clone(),
                    NameSource::Terminal => self.claim.clone(),
                };
                let registration = AttachedTerminal {
                    imsi: self.imsi.clone(),
                    mac: self.mac.map(|m| format_mac(&m)),
                    host_name: host_name.clone(),
                    msisdn: data.msisdn(),
                    home: self.home.clone(),
                    since,
                    packet_data,
                };
                let mut accept = Message::new(msg::ATTACH_ACCEPT, &self.imsi);
                accept.host_name = host_name.clone();
                accept.msisdn = data.msisdn.clone();
                accept.pdp_infos = data.pdp_infos.clone();
                accept.pdp_info_complete = data.pdp_info_complete;
                vec![
                    Action::Emit(
                        "Attach accept",
                        json!({"host_name": host_name, "msisdn": data.msisdn(), "name_source": self.names_from}),
                    ),
                    Action::Accept {
                        registration,
                        accept,
                    },
                ]
            }
            other => {
                self.phase = other;
                Vec::new()
            }
        }
    }

    /// The terminal answered the challenge (`None`: it went away, or said nothing in time).
    pub fn terminal_answered(&mut self, answer: Option<Message>) -> Vec<Action> {
        let Phase::Response { rand, umts } = std::mem::replace(&mut self.phase, Phase::Done) else {
            return Vec::new();
        };
        let Some(a) = answer else {
            return vec![
                Action::Emit("terminal lost", json!({"during": "authentication"})),
                Action::Lost("the terminal went away during authentication"),
            ];
        };
        match a.msg_type {
            msg::AUTH_RESPONSE => {
                let mut actions = vec![Action::Emit("Authentication response", json!({}))];
                if a.res.as_deref() != Some(&umts.res[..]) {
                    actions.extend(self.reject(
                        cause::ILLEGAL_MS,
                        "authentication failed: RES does not match",
                    ));
                    return actions;
                }
                let mut ul = Message::new(msg::UPDATE_LOCATION_REQUEST, &self.imsi);
                ul.cn_domain = Some(1);
                self.phase = Phase::Registration;
                actions.push(Action::AskHome(ul));
                actions
            }
            msg::AUTH_FAILURE if a.auts.is_some() => {
                let mut actions = vec![Action::Emit(
                    "Authentication failure",
                    json!({"cause": "synch failure"}),
                )];
                if self.resynchronised {
                    actions.extend(
                        self.reject(cause::SYNCH_FAILURE, "resynchronisation did not converge"),
                    );
                    return actions;
                }
                self.resynchronised = true;
                let mut sai = Message::new(msg::SEND_AUTH_INFO_REQUEST, &self.imsi);
                sai.auts = a.auts;
                sai.rand = Some(rand);
                self.phase = Phase::Vector;
                actions.push(Action::AskHome(sai));
                actions
            }
            msg::AUTH_FAILURE => self.reject(
                cause::MAC_FAILURE,
                "the terminal could not authenticate the network",
            ),
            _ => self.reject(cause::PROTOCOL_ERROR, "unexpected answer to the challenge"),
        }
    }
}

/// The partner whose PLMN an IMSI begins with.
pub fn partner_of<'a>(partners: &'a [PartnerHlr], imsi: &str) -> Option<&'a PartnerHlr> {
    partners.iter().find(|p| imsi.starts_with(&p.plmn))
}

/// What the VLR answers an HLR's request, and what it changed.
#[derive(Debug, Default, PartialEq)]
pub struct HomeRequest {
    pub reply: Option<Message>,
    /// The registration the HLR cancelled (the terminal registered elsewhere).
    pub cancelled: Option<AttachedTerminal>,
    pub events: Vec<(&'static str, Value)>,
}

/// The VLR's registrations, and the attaches waiting for InsertSubscriberData.
#[derive(Debug, Default)]
pub struct Registry {
    registered: BTreeMap<String, AttachedTerminal>,
    /// IMSI → the host name its terminal claimed, and the subscriber data that came.
    awaiting_data: HashMap<String, (Option<String>, Option<Message>)>,
}

impl Registry {
    /// The registrations an earlier run kept.
    pub fn resume(kept: Vec<AttachedTerminal>) -> Self {
        Registry {
            registered: kept.into_iter().map(|r| (r.imsi.clone(), r)).collect(),
            awaiting_data: HashMap::new(),
        }
    }

    pub fn list(&self) -> Vec<AttachedTerminal> {
        self.registered.values().cloned().collect()
    }

    pub fn get(&self, imsi: &str) -> Option<&AttachedTerminal> {
        self.registered.get(imsi)
    }

    pub fn register(&mut self, registration: AttachedTerminal) {
        self.registered
            .insert(registration.imsi.clone(), registration);
    }

    /// Ends a registration; `since` (when given) must match, so that a timer of an earlier
    /// registration never ends a later one.
    pub fn remove(&mut self, imsi: &str, since: Option<f64>) -> Option<AttachedTerminal> {
        match (self.registered.get(imsi), since) {
            (Some(r), Some(s)) if r.since != s => None,
            (Some(_), _) => self.registered.remove(imsi),
            (None, _) => None,
        }
    }

    /// UpdateLocation is about to be sent for `attach`: its InsertSubscriberData is expected.
    pub fn expect_data(&mut self, attach: &Attach) {
        self.awaiting_data.insert(
            attach.imsi().to_string(),
            (attach.claim().map(String::from), None),
        );
    }

    /// The subscriber data that came for an attach (and forgets that it waited).
    pub fn take_data(&mut self, imsi: &str) -> Option<Message> {
        self.awaiting_data.remove(imsi).and_then(|(_, data)| data)
    }

    /// A request from the HLR: InsertSubscriberData or CancelLocation.
    pub fn home_request(&mut self, m: &Message) -> HomeRequest {
        match m.msg_type {
            msg::INSERT_DATA_REQUEST => {
                let Some((claim, data)) = self.awaiting_data.get_mut(&m.imsi) else {
                    return HomeRequest {
                        reply: Some(m.error_reply(cause::IMSI_UNKNOWN)),
                        ..Default::default()
                    };
                };
                // Claim 23: a terminal may say its host name; it must be the one its home holds.
                if let (Some(claim), Some(own)) = (claim.as_deref(), &m.host_name) {
                    if !claim.eq_ignore_ascii_case(own) {
                        return HomeRequest {
                            reply: Some(m.error_reply(cause::ILLEGAL_MS)),
                            events: vec![(
                                "host name refused",
                                json!({"claimed": claim, "own": own}),
                            )],
                            ..Default::default()
                        };
                    }
                }
                *data = Some(m.clone());
                HomeRequest {
                    reply: Some(Message::new(msg::INSERT_DATA_RESULT, &m.imsi)),
                    ..Default::default()
                }
            }
            msg::LOCATION_CANCEL_REQUEST => HomeRequest {
                reply: Some(Message::new(msg::LOCATION_CANCEL_RESULT, &m.imsi)),
                cancelled: self.registered.remove(&m.imsi),
                ..Default::default()
            },
            t if t & 0b11 == 0 => HomeRequest {
                reply: Some(m.error_reply(cause::MSG_TYPE_NOT_IMPLEMENTED)),
                ..Default::default()
            },
            _ => HomeRequest::default(),
        }
    }
}

/// Where the VLR sends a message its node's DHCP agent brought on the local socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalRoute<'a> {
    /// To this partner's HLR.
    Forward(&'a PartnerHlr),
    /// Refused at once with this cause; `unknown_to` names an HLR that is not roamlab's
    /// and does not know roamlab's own messages (0xF0–0xF6).
    Refuse {
        cause: u8,
        unknown_to: Option<&'a PartnerHlr>,
    },
}

pub fn route_local<'a>(partners: &'a [PartnerHlr], m: &Message) -> LocalRoute<'a> {
    let session = matches!(
        m.msg_type,
        msg::SESSION_ADDRESS_REQUEST | msg::SESSION_WITHDRAW_REQUEST
    );
    match (session, partner_of(partners, &m.imsi)) {
        (false, _) => LocalRoute::Refuse {
            cause: cause::MSG_TYPE_NOT_IMPLEMENTED,
            unknown_to: None,
        },
        (true, None) => LocalRoute::Refuse {
            cause: cause::PLMN_NOT_ALLOWED,
            unknown_to: None,
        },
        (true, Some(p)) if p.address.is_some() => LocalRoute::Refuse {
            cause: cause::MSG_TYPE_NOT_IMPLEMENTED,
            unknown_to: Some(p),
        },
        (true, Some(p)) => LocalRoute::Forward(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::hlr::HlrCore;
    use crate::contract::configs::{hex, SubscriberRecord};
    use crate::protocols::milenage::{self, Challenge, Milenage};

    const IMSI: &str = "001010000000001";
    /// The terminal's link on the cell, as the lab made it.
    const LINK: Option<[u8; 6]> = Some([2, 0, 0, 0, 0, 1]);
    const K: [u8; 16] = [0x46; 16];
    const OPC: [u8; 16] = [0xcd; 16];

    fn partners() -> Vec<PartnerHlr> {
        vec![PartnerHlr {
            network: "home".into(),
            plmn: "00101".into(),
            socket: "/run/roamlab/t/signaling/hlr-home/hlr.sock".into(),
            address: None,
        }]
    }

    fn hlr(host_name: &str) -> HlrCore {
        let record = SubscriberRecord {
            name: "phone1".into(),
            imsi: IMSI.into(),
            msisdn: Some("4915100000001".into()),
            host_name: host_name.into(),
            k: hex(&K),
            opc: hex(&OPC),
            roaming: true,
            packet_data: true,
            ttl: None,
        };
        let mut n = 0u8;
        HlrCore::new(
            &[record],
            Default::default(),
            Box::new(move || {
                n = n.wrapping_add(1);
                [n; 16]
            }),
        )
        .unwrap()
    }

    fn attach_request(claim: Option<&str>) -> Message {
        let mut m = Message::new(msg::ATTACH_REQUEST, IMSI);
        m.host_name = claim.map(String::from);
        m.terminal_mac = Some(LINK.unwrap());
        m
    }

    /// Runs an attach between the core and a real HlrCore, the terminal answering as a
    /// USIM with `sqn_ms`: what the terminal would be sent last, and the registry after.
    fn run(claim: Option<&str>, home: &mut HlrCore, sqn_ms: u64) -> (Action, Registry) {
        run_with(&attach_request(claim), home, sqn_ms)
    }

    fn run_with(request: &Message, home: &mut HlrCore, sqn_ms: u64) -> (Action, Registry) {
        run_names_from(NameSource::Hlr, request, home, sqn_ms)
    }

    fn run_names_from(
        source: NameSource,
        request: &Message,
        home: &mut HlrCore,
        mut sqn_ms: u64,
    ) -> (Action, Registry) {
        let usim = Milenage::new(&K, &OPC);
        let mut registry = Registry::default();
        let (attach, mut actions) = Attach::start(request, &partners(), LINK);
        let Some(mut attach) = attach.map(|a| a.names_from(source)) else {
            return (actions.pop().unwrap(), registry);
        };
        loop {
            let action = actions.remove(0);
            match action {
                Action::Emit(..) => continue,
                Action::AskHome(m) => {
                    if m.msg_type == msg::UPDATE_LOCATION_REQUEST {
                        registry.expect_data(&attach);
                    }
                    let mut answer = None;
                    let mut pending = home.handle("visited", &m).send;
                    while !pending.is_empty() {
                        let out = pending.remove(0).message;
                        if out.msg_type == msg::INSERT_DATA_REQUEST {
                            let reply = registry.home_request(&out).reply.unwrap();
                            pending.extend(home.handle("visited", &reply).send);
                        } else {
                            answer = Some(out);
                        }
                    }
                    let answer = answer.expect("the HLR answers");
                    let answer = if answer.msg_type == msg::error_of(m.msg_type) {
                        Err(answer.cause.unwrap())
                    } else {
                        Ok(answer)
                    };
                    let data = registry.take_data(IMSI);
                    actions = attach.home_answered(answer, data, 1.0);
                }
                Action::Challenge(c) => {
                    let (rand, autn) = (c.rand.unwrap(), c.autn.unwrap());
                    let answer = match milenage::check_challenge(
                        &usim,
                        &rand,
                        &autn,
                        &milenage::sqn_bytes(sqn_ms),
                    ) {
                        Challenge::Accept { res, sqn } => {
                            sqn_ms = milenage::sqn_value(&sqn);
                            let mut a = Message::new(msg::AUTH_RESPONSE, IMSI);
                            a.res = Some(res.to_vec());
                            a
                        }
                        Challenge::SyncFailure { auts } => {
                            let mut a = Message::new(msg::AUTH_FAILURE, IMSI);
                            a.auts = Some(auts);
                            a
                        }
                        Challenge::MacFailure => Message::new(msg::AUTH_FAILURE, IMSI),
                    };
                    actions = attach.terminal_answered(Some(answer));
                }
                Action::Accept { registration, .. } => {
                    registry.register(registration.clone());
                    return (action_accept(registration), registry);
                }
                end => return (end, registry),
            }
        }
    }

    fn action_accept(registration: AttachedTerminal) -> Action {
        Action::Accept {
            accept: Message::new(msg::ATTACH_ACCEPT, &registration.imsi),
            registration,
        }
    }

    #[test]
    fn an_attach_registers_the_terminal_with_its_home_host_name() {
        let (end, registry) = run(None, &mut hlr("phone1"), 0);
        let Action::Accept { registration, .. } = end else {
            panic!("{end:?}");
        };
        assert_eq!(registration.host_name.as_deref(), Some("phone1"));
        assert_eq!(registration.mac.as_deref(), Some("02:00:00:00:00:01"));
        assert_eq!(registration.home, "home");
        assert_eq!(registry.list(), vec![registration]);
    }

    /// Claim 23: a network that learns names from its terminals registers the name the
    /// terminal said (once its home's data agrees), or none, never the home's own word.
    #[test]
    fn a_network_that_learns_names_from_terminals_registers_the_terminals_word() {
        for (claim, registered) in [(Some("PHONE1"), Some("PHONE1")), (None, None)] {
            let request = attach_request(claim);
            let (end, _) = run_names_from(NameSource::Terminal, &request, &mut hlr("phone1"), 0);
            let Action::Accept { registration, .. } = end else {
                panic!("{end:?}");
            };
            assert_eq!(registration.host_name.as_deref(), registered);
        }
        let request = attach_request(Some("server1"));
        let (end, _) = run_names_from(NameSource::Terminal, &request, &mut hlr("phone1"), 0);
        assert!(
            matches!(
                end,
                Action::Reject {
                    cause: cause::ILLEGAL_MS,
                    ..
                }
            ),
            "{end:?}"
        );
    }

    #[test]
    fn a_terminal_ahead_of_its_home_resynchronises_once() {
        let (end, _) = run(None, &mut hlr("phone1"), 1 << 40);
        assert!(matches!(end, Action::Accept { .. }), "{end:?}");
    }

    #[test]
    fn a_claimed_host_name_that_is_not_its_own_is_refused() {
        let (end, registry) = run(Some("server1"), &mut hlr("phone1"), 0);
        assert_eq!(
            end,
            Action::Reject {
                cause: cause::ILLEGAL_MS,
                why: "the terminal claims a host name that is not its own".into()
            }
        );
        assert!(registry.list().is_empty());
    }

    /// A terminal reports only the address of its own link: another terminal's, or any on
    /// a cell where the lab made it no link, ends the attach before its home is asked. One
    /// that reports none is registered with the link the lab made for it, if any (without
    /// one, signaling only: no lease follows).
    #[test]
    fn a_terminal_reports_its_own_link_or_none() {
        let request = attach_request(None);
        let other = Some([2, 0, 0, 0, 0, 2]);
        for (link, own) in [
            (other, "but its link on this cell is 02:00:00:00:00:02"),
            (None, "but has no link on this cell"),
        ] {
            let (attach, actions) = Attach::start(&request, &partners(), link);
            assert!(attach.is_none());
            assert!(
                matches!(&actions[..], [Action::Emit(..), Action::Reject { cause: cause::ILLEGAL_MS, why }] if why.ends_with(own)),
                "{actions:?}"
            );
        }
        let mut silent = attach_request(None);
        silent.terminal_mac = None;
        let (attach, actions) = Attach::start(&silent, &partners(), None);
        assert!(attach.is_some());
        assert!(matches!(actions.last(), Some(Action::AskHome(_))));
        let mut home = hlr("phone1");
        let (Action::Accept { registration, .. }, _) = run_with(&silent, &mut home, 0) else {
            panic!("not accepted")
        };
        assert_eq!(registration.mac.as_deref(), Some("02:00:00:00:00:01"));
    }

    #[test]
    fn no_agreement_no_attach_and_nothing_asked_of_any_home() {
        let mut request = attach_request(None);
        request.imsi = "999990000000001".into();
        let (attach, actions) = Attach::start(&request, &partners(), LINK);
        assert!(attach.is_none());
        assert!(!actions.iter().any(|a| matches!(a, Action::AskHome(_))));
        assert!(matches!(
            actions.last(),
            Some(Action::Reject {
                cause: cause::PLMN_NOT_ALLOWED,
                ..
            })
        ));
    }

    #[test]
    fn a_wrong_res_or_a_silent_terminal_ends_the_attach() {
        let (_, mut actions) = Attach::start(&attach_request(None), &partners(), LINK);
        let (mut attach, _) = Attach::start(&attach_request(None), &partners(), LINK);
        let attach = attach.as_mut().unwrap();
        actions.clear();
        let mut home = hlr("phone1");
        let vector = home
            .handle("visited", &Message::new(msg::SEND_AUTH_INFO_REQUEST, IMSI))
            .send
            .remove(0)
            .message;
        let mut second = attach.clone();
        attach.home_answered(Ok(vector.clone()), None, 0.0);
        let mut wrong = Message::new(msg::AUTH_RESPONSE, IMSI);
        wrong.res = Some(vec![0; 8]);
        assert!(matches!(
            attach.terminal_answered(Some(wrong)).last(),
            Some(Action::Reject {
                cause: cause::ILLEGAL_MS,
                ..
            })
        ));
        second.home_answered(Ok(vector), None, 0.0);
        assert!(matches!(
            second.terminal_answered(None).last(),
            Some(Action::Lost(_))
        ));
        // Answers out of turn change nothing.
        assert!(second.terminal_answered(None).is_empty());
        assert!(second
            .home_answered(Err(cause::NETWORK_FAILURE), None, 0.0)
            .is_empty());
    }

    #[test]
    fn subscriber_data_nobody_waits_for_is_refused_and_a_cancel_ends_the_registration() {
        let mut registry = Registry::default();
        let mut isd = Message::new(msg::INSERT_DATA_REQUEST, IMSI);
        isd.host_name = Some("phone1".into());
        assert_eq!(
            registry.home_request(&isd).reply.unwrap().cause,
            Some(cause::IMSI_UNKNOWN)
        );
        let (end, mut registry) = run(None, &mut hlr("phone1"), 0);
        assert!(matches!(end, Action::Accept { .. }));
        let cancel = Message::new(msg::LOCATION_CANCEL_REQUEST, IMSI);
        let answer = registry.home_request(&cancel);
        assert_eq!(answer.reply.unwrap().msg_type, msg::LOCATION_CANCEL_RESULT);
        assert_eq!(answer.cancelled.map(|r| r.imsi).as_deref(), Some(IMSI));
        assert!(registry.list().is_empty());
    }

    #[test]
    fn a_timer_of_an_earlier_registration_never_ends_a_later_one() {
        let mut registry = Registry::default();
        let (end, _) = run(None, &mut hlr("phone1"), 0);
        let Action::Accept {
            mut registration, ..
        } = end
        else {
            panic!()
        };
        registration.since = 2.0;
        registry.register(registration);
        assert!(registry.remove(IMSI, Some(1.0)).is_none());
        assert!(registry.remove(IMSI, Some(2.0)).is_some());
    }

    #[test]
    fn the_local_socket_forwards_only_session_messages_of_partners_that_know_them() {
        let mut ps = partners();
        let m = Message::new(msg::SESSION_ADDRESS_REQUEST, IMSI);
        assert_eq!(route_local(&ps, &m), LocalRoute::Forward(&ps[0]));
        let other = Message::new(msg::UPDATE_LOCATION_REQUEST, IMSI);
        assert!(matches!(
            route_local(&ps, &other),
            LocalRoute::Refuse {
                cause: cause::MSG_TYPE_NOT_IMPLEMENTED,
                unknown_to: None
            }
        ));
        let stranger = Message::new(msg::SESSION_WITHDRAW_REQUEST, "999990000000001");
        assert!(matches!(
            route_local(&ps, &stranger),
            LocalRoute::Refuse {
                cause: cause::PLMN_NOT_ALLOWED,
                ..
            }
        ));
        ps[0].address = Some("192.0.2.1:4222".parse().unwrap());
        assert!(matches!(
            route_local(&ps, &m),
            LocalRoute::Refuse {
                unknown_to: Some(_),
                ..
            }
        ));
    }
}
