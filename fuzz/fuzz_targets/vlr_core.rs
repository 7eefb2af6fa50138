//! The VLR's pure core (one attach's state machine and the registry) between the real
//! HLR core and a terminal that is either honest (a USIM with the subscriber's keys) or the
//! fuzzer, with messages from the HLR's side fuzzed too. Invariants: whatever the VLR sends
//! encodes; it accepts a terminal only after that terminal's RES matched the vector; the
//! registration carries its home's host name for that subscriber, and a claimed host name
//! that is not the terminal's own never gets through.
#![no_main]

mod common;

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use roamlab::agents::hlr::HlrCore;
use roamlab::agents::vlr::core::{Action, Attach, Registry};
use roamlab::contract::configs::{hex_key, PartnerHlr};
use roamlab::protocols::gsup::{msg, Message};
use roamlab::protocols::milenage::{self, Challenge, Milenage};

fn partners() -> Vec<PartnerHlr> {
    vec![PartnerHlr {
        network: "home".into(),
        plmn: "00101".into(),
        socket: "/nonexistent/hlr.sock".into(),
        address: None,
    }]
}

struct Run {
    hlr: HlrCore,
    registry: Registry,
    attach: Option<Attach>,
    /// The last AskHome not yet delivered, and the last challenge not yet answered.
    ask: Option<Message>,
    challenge: Option<Message>,
    /// Whether the last answer to a challenge came from the honest USIM.
    honest_answer: bool,
    /// Whether forged messages stood for the HLR in this attach (a forged vector can be
    /// answered by a forged terminal; the private network keeps such messages out).
    home_forged: bool,
    sqn_ms: HashMap<String, u64>,
}

impl Run {
    fn carry_out(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::AskHome(m) => {
                    m.try_encode().expect("the VLR's requests encode");
                    self.ask = Some(m);
                }
                Action::Challenge(m) => {
                    m.try_encode().expect("the VLR's challenges encode");
                    self.challenge = Some(m);
                }
                Action::Accept {
                    registration,
                    accept,
                } => {
                    accept.try_encode().expect("the accept encodes");
                    let attach = self.attach.as_ref().expect("an attach under way");
                    assert_eq!(registration.imsi, attach.imsi());
                    if let (Some(name), Some(claim)) = (&registration.host_name, attach.claim()) {
                        assert!(
                            claim.eq_ignore_ascii_case(name),
                            "a false claim got through"
                        );
                    }
                    if !self.home_forged {
                        assert!(
                            self.honest_answer,
                            "accepted a terminal whose RES was not checked"
                        );
                        let own = common::subscribers()
                            .into_iter()
                            .find(|s| s.imsi == registration.imsi)
                            .map(|s| s.host_name);
                        assert_eq!(registration.host_name, own, "another's host name");
                    }
                    self.registry.register(registration);
                }
                Action::Reject { .. } | Action::Lost(_) | Action::Emit(..) => {}
            }
        }
    }

    /// The HLR answers the pending request, with the VLR's registry answering its
    /// InsertSubscriberData on the way.
    fn deliver_to_home(&mut self, since: f64) {
        let (Some(ask), Some(attach)) = (self.ask.take(), self.attach.as_ref()) else {
            return;
        };
        if ask.msg_type == msg::UPDATE_LOCATION_REQUEST {
            self.registry.expect_data(attach);
        }
        let mut pending = vec![ask.clone()];
        let mut answer = None;
        while let Some(m) = pending.pop() {
            for out in self.hlr.handle("visited", &m).send {
                let t = out.message.msg_type;
                if t == msg::INSERT_DATA_REQUEST || t == msg::LOCATION_CANCEL_REQUEST {
                    if let Some(reply) = self.registry.home_request(&out.message).reply {
                        pending.push(reply);
                    }
                } else if t == msg::result_of(ask.msg_type) || t == msg::error_of(ask.msg_type) {
                    answer = Some(out.message);
                }
            }
        }
        let Some(answer) = answer else { return };
        let answer = if answer.msg_type == msg::error_of(ask.msg_type) {
            Err(answer.cause.unwrap_or(0))
        } else {
            Ok(answer)
        };
        let data = self.registry.take_data(&ask.imsi);
        let actions = self
            .attach
            .as_mut()
            .unwrap()
            .home_answered(answer, data, since);
        self.carry_out(actions);
    }

    /// A USIM with the subscriber's keys answers the pending challenge.
    fn honest_terminal(&mut self) {
        let (Some(c), Some(attach)) = (self.challenge.take(), self.attach.as_mut()) else {
            return;
        };
        let subscriber = common::subscribers()
            .into_iter()
            .find(|s| s.imsi == c.imsi)
            .expect("challenges go to subscribers");
        let usim = Milenage::new(
            &hex_key(&subscriber.k).unwrap(),
            &hex_key(&subscriber.opc).unwrap(),
        );
        let sqn_ms = self.sqn_ms.entry(c.imsi.clone()).or_insert(0);
        let (Some(rand), Some(autn)) = (c.rand, c.autn) else {
            return;
        };
        let answer =
            match milenage::check_challenge(&usim, &rand, &autn, &milenage::sqn_bytes(*sqn_ms)) {
                Challenge::Accept { res, sqn } => {
                    *sqn_ms = milenage::sqn_value(&sqn);
                    let mut a = Message::new(msg::AUTH_RESPONSE, &c.imsi);
                    a.res = Some(res.to_vec());
                    a
                }
                Challenge::SyncFailure { auts } => {
                    let mut a = Message::new(msg::AUTH_FAILURE, &c.imsi);
                    a.auts = Some(auts);
                    a
                }
                Challenge::MacFailure => Message::new(msg::AUTH_FAILURE, &c.imsi),
            };
        self.honest_answer = answer.msg_type == msg::AUTH_RESPONSE;
        let actions = attach.terminal_answered(Some(answer));
        self.carry_out(actions);
    }
}

fuzz_target!(|data: &[u8]| {
    let hlr = common::hlr_core();
    let partners = partners();
    let mut run = Run {
        hlr,
        registry: Registry::default(),
        attach: None,
        ask: None,
        challenge: None,
        honest_answer: false,
        home_forged: false,
        sqn_ms: HashMap::new(),
    };
    for (i, chunk) in common::chunks(data).into_iter().enumerate() {
        let Some((&op, rest)) = chunk.split_first() else {
            continue;
        };
        let since = i as f64;
        let fuzzed = Message::decode(rest).ok();
        match op % 6 {
            0 => {
                // An ATTACH_REQUEST: built (subscriber, claimed name, MAC) or off the wire.
                let request = match (rest, fuzzed) {
                    ([0xff, ..], Some(m)) => m,
                    ([pick, claim, mac @ ..], _) => {
                        let mut m = Message::new(msg::ATTACH_REQUEST, common::imsi(*pick));
                        m.host_name = match claim % 3 {
                            0 => None,
                            1 => Some(format!("phone{}.home.example", pick % 3 + 1)),
                            _ => Some(format!("PHONE{}.home.example", claim % 4)),
                        };
                        m.terminal_mac = mac.get(..6).map(|b| b.try_into().unwrap());
                        m
                    }
                    _ => continue,
                };
                // The lab made subscriber n the link 02:00:00:00:00:0n (none for the third).
                let n = common::IMSIS.iter().position(|i| *i == request.imsi);
                let link = n.filter(|n| *n < 2).map(|n| [2, 0, 0, 0, 0, n as u8 + 1]);
                let (attach, actions) = Attach::start(&request, &partners, link);
                if let Some(mac) = request.terminal_mac {
                    assert!(
                        attach.is_none() || Some(mac) == link,
                        "went on with another's link"
                    );
                }
                run.attach = attach;
                run.ask = None;
                run.challenge = None;
                run.honest_answer = false;
                run.home_forged = false;
                run.carry_out(actions);
            }
            1 => run.deliver_to_home(since),
            2 => {
                // The home's answer, forged.
                let Some(attach) = run.attach.as_mut() else {
                    continue;
                };
                let answer = match fuzzed {
                    Some(m) => Ok(m),
                    None => Err(rest.first().copied().unwrap_or(0)),
                };
                run.home_forged = true;
                let data = run.registry.take_data(attach.imsi());
                let actions = attach.home_answered(answer, data, since);
                run.carry_out(actions);
            }
            3 => run.honest_terminal(),
            4 => {
                // The terminal's answer, forged (or none: it went away).
                let Some(attach) = run.attach.as_mut() else {
                    continue;
                };
                if run.challenge.take().is_some() {
                    run.honest_answer = false;
                }
                let actions = attach.terminal_answered(fuzzed);
                run.carry_out(actions);
            }
            _ => {
                // A request from the HLR's side, forged.
                if let Some(m) = fuzzed {
                    run.home_forged = true;
                    let out = run.registry.home_request(&m);
                    if let Some(reply) = out.reply {
                        reply.try_encode().expect("the VLR's replies encode");
                    }
                }
            }
        }
    }
});
