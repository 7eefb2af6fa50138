//! The DHCP server's lease book (RFC 2131), pure: DISCOVER/OFFER/REQUEST/ACK/NAK, RELEASE,
//! DECLINE (the address goes on probation), INFORM, expiry. It hands out addresses only
//! to terminals the VLR has authorised, and reports every binding that starts or ends so
//! that DNS follows the leases. A bound address that ends is held for its subscriber a
//! while, since its home may still name it (make before break): nobody else gets it then.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::contract::configs::NameSource;

/// How long a declined address stays out of the pool.
pub const PROBATION_SECS: u64 = 600;
/// How long an offer is held for the client that was offered it.
pub const OFFER_HOLD_SECS: u64 = 30;
/// How long a subscriber's address stays its own after its lease ended: its home goes on
/// naming that address while the subscriber moves, for the HLR's grace at the most, and
/// its DNS queue may retry a while past that.
pub const HOLD_SECS: u64 = 3 * super::MOVE_GRACE_SECS;

/// An address that only one subscriber may be given, until `until` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub imsi: String,
    pub until: u64,
}

/// A terminal the VLR lists as attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorised {
    pub imsi: String,
    pub host_name: String,
    /// Whether the subscriber's profile has packet-data service (claim 13): without it the
    /// terminal is registered but gets no address.
    pub packet_data: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub mac: [u8; 6],
    /// Option 61, when the client sent one: RFC 2131 identifies the client by it.
    #[serde(default)]
    pub client_id: Option<Vec<u8>>,
    pub imsi: String,
    pub host_name: String,
    pub ip: Ipv4Addr,
    /// Unix seconds.
    pub expires: u64,
    /// Offered, not yet requested.
    pub offered: bool,
}

impl Lease {
    fn new(r: &Request, who: &Authorised, ip: Ipv4Addr, expires: u64, offered: bool) -> Self {
        Lease {
            mac: r.mac,
            client_id: r.client_id.clone(),
            imsi: who.imsi.clone(),
            host_name: who.host_name.clone(),
            ip,
            expires,
            offered,
        }
    }

    /// Whether this lease is `r`'s client's: the hardware address the VLR authorised must
    /// be the same (a client identifier is the client's own choice, so it never identifies
    /// a client alone), and so must the client identifier when both have one.
    fn is_of(&self, r: &Request) -> bool {
        self.mac == r.mac
            && match (&self.client_id, &r.client_id) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// The end of this lease, for DNS to follow (nothing, if it was only offered).
    fn ended(self, why: &str) -> Option<Binding> {
        (!self.offered).then(|| Binding::Unbound {
            imsi: self.imsi,
            host_name: self.host_name,
            ip: self.ip,
            why: why.into(),
        })
    }
}

/// A change of binding that DNS and the HLR must follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Binding {
    Bound {
        imsi: String,
        host_name: String,
        ip: Ipv4Addr,
    },
    Unbound {
        imsi: String,
        host_name: String,
        ip: Ipv4Addr,
        why: String,
    },
}

/// A range of addresses the server leases from: the cell's, or a relay's segment's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

impl Pool {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.start <= ip && ip <= self.end
    }
}

/// What the server should answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Offer(Ipv4Addr),
    Ack(Ipv4Addr),
    /// INFORM: configuration only, no address.
    InformAck,
    Nak(String),
    /// No answer (unauthorised, pool exhausted, a DECLINE or RELEASE): the reason is logged.
    Silent(String),
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct LeaseBook {
    pub start: Option<Ipv4Addr>,
    pub end: Option<Ipv4Addr>,
    pub leases: BTreeMap<Ipv4Addr, Lease>,
    /// Declined addresses and when they come back.
    pub probation: BTreeMap<Ipv4Addr, u64>,
    /// Where the network takes a terminal's host name from: with `Terminal`, a client the
    /// VLR knows no name for is bound under the name it claims (its home verifies it).
    pub name_source: NameSource,
    /// Addresses whose lease ended, kept for their subscriber (see [`HOLD_SECS`]).
    pub held: BTreeMap<Ipv4Addr, Hold>,
    /// The addresses whose lease, probation or hold changed since [`LeaseBook::take_dirty`]: what
    /// the server writes down, instead of comparing every lease after every packet.
    #[serde(skip)]
    dirty: BTreeSet<Ipv4Addr>,
    /// Which address each link and each subscriber holds (one lease each at most), so that
    /// a request costs the same however many leases there are.
    #[serde(skip)]
    by_link: HashMap<[u8; 6], Ipv4Addr>,
    #[serde(skip)]
    by_subscriber: HashMap<String, Ipv4Addr>,
    /// Which address is held for each subscriber (the newest, if several).
    #[serde(skip)]
    held_for: HashMap<String, Ipv4Addr>,
}

/// What a client asked, reduced to what the lease book needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: Kind,
    pub mac: [u8; 6],
    /// Option 61.
    pub client_id: Option<Vec<u8>>,
    /// Option 50, or ciaddr when renewing.
    pub requested: Option<Ipv4Addr>,
    /// Option 54: the server the client selected, if it says.
    pub server: Option<Ipv4Addr>,
    /// The name the client says is its own (option 81's FQDN, or option 12 for a host).
    pub claimed_name: Option<String>,
    /// A DISCOVER that takes a committed ACK at once (option 80, RFC 4039).
    pub rapid_commit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Discover,
    Request,
    Release,
    Decline,
    Inform,
}

impl LeaseBook {
    pub fn new(start: Ipv4Addr, end: Ipv4Addr) -> Self {
        LeaseBook {
            start: Some(start),
            end: Some(end),
            ..Default::default()
        }
    }

    /// A book holding `leases`, `probation` and `held` (as read back from disk).
    pub fn restored(
        start: Ipv4Addr,
        end: Ipv4Addr,
        leases: BTreeMap<Ipv4Addr, Lease>,
        probation: BTreeMap<Ipv4Addr, u64>,
        held: BTreeMap<Ipv4Addr, Hold>,
    ) -> Self {
        let mut book = LeaseBook::new(start, end);
        for (ip, lease) in leases {
            book.put(ip, lease);
        }
        book.probation = probation;
        for (ip, hold) in held {
            book.hold(ip, hold);
        }
        book.dirty.clear();
        book
    }

    /// Ends each lease among `candidates` that `ends` picks, with the binding changes DNS
    /// must follow.
    fn end_where(
        &mut self,
        candidates: &[Option<Ipv4Addr>],
        ends: impl Fn(&Lease) -> bool,
        why: &str,
        now: u64,
    ) -> Vec<Binding> {
        let mut picked: Vec<Ipv4Addr> = candidates
            .iter()
            .flatten()
            .filter(|ip| self.leases.get(ip).is_some_and(&ends))
            .copied()
            .collect();
        picked.dedup();
        picked
            .into_iter()
            .filter_map(|ip| self.end(ip, why, now))
            .collect()
    }

    /// Ends the lease on `ip`: a bound one is held for its subscriber, who may still be
    /// named by it at home.
    fn end(&mut self, ip: Ipv4Addr, why: &str, now: u64) -> Option<Binding> {
        let lease = self.take(ip)?;
        if !lease.offered {
            let hold = Hold {
                imsi: lease.imsi.clone(),
                until: now + HOLD_SECS,
            };
            self.hold(ip, hold);
        }
        lease.ended(why)
    }

    /// Holds `ip` for one subscriber, and only it: a subscriber's home names one address at
    /// a time, so its older hold ends (a terminal cycling through addresses holds no more).
    fn hold(&mut self, ip: Ipv4Addr, hold: Hold) {
        if let Some(older) = self.held_for.get(&hold.imsi).copied() {
            self.unhold(older);
        }
        self.unhold(ip);
        self.dirty.insert(ip);
        self.held_for.insert(hold.imsi.clone(), ip);
        self.held.insert(ip, hold);
    }

    fn unhold(&mut self, ip: Ipv4Addr) {
        if let Some(old) = self.held.remove(&ip) {
            self.dirty.insert(ip);
            if self.held_for.get(&old.imsi) == Some(&ip) {
                self.held_for.remove(&old.imsi);
            }
        }
    }

    /// Whether `ip` may be given to subscriber `imsi`: it is held for nobody else.
    fn open_to(&self, ip: &Ipv4Addr, imsi: &str, now: u64) -> bool {
        self.held
            .get(ip)
            .is_none_or(|h| h.until <= now || h.imsi == imsi)
    }

    /// The address held for `imsi` in `pool`, if one is.
    fn held_in(&self, pool: Option<Pool>, imsi: &str, now: u64) -> Option<Ipv4Addr> {
        let ip = *self.held_for.get(imsi)?;
        (pool?.contains(ip)
            && !self.leases.contains_key(&ip)
            && self.held.get(&ip).is_some_and(|h| h.until > now))
        .then_some(ip)
    }

    /// The lease on link `mac`, and the lease of subscriber `imsi` (one each at most).
    fn on_link(&self, mac: &[u8; 6]) -> Option<Ipv4Addr> {
        self.by_link.get(mac).copied()
    }

    fn of_subscriber(&self, imsi: &str) -> Option<Ipv4Addr> {
        self.by_subscriber.get(imsi).copied()
    }

    /// Every change of a lease goes through `put` and `take`, which keep the indices and
    /// mark the address changed.
    fn put(&mut self, ip: Ipv4Addr, lease: Lease) {
        self.take(ip);
        self.by_link.insert(lease.mac, ip);
        self.by_subscriber.insert(lease.imsi.clone(), ip);
        self.leases.insert(ip, lease);
    }

    fn take(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        self.dirty.insert(ip);
        let lease = self.leases.remove(&ip)?;
        // Its index entries, unless they already point at another address.
        if self.by_link.get(&lease.mac) == Some(&ip) {
            self.by_link.remove(&lease.mac);
        }
        if self.by_subscriber.get(&lease.imsi) == Some(&ip) {
            self.by_subscriber.remove(&lease.imsi);
        }
        Some(lease)
    }

    /// The addresses whose lease or probation changed since the last call.
    pub fn take_dirty(&mut self) -> BTreeSet<Ipv4Addr> {
        std::mem::take(&mut self.dirty)
    }

    /// Whether the indices are exactly the leases' links and subscribers (for the fuzz
    /// targets and tests).
    pub fn indices_agree(&self) -> bool {
        let links: HashMap<[u8; 6], Ipv4Addr> =
            self.leases.values().map(|l| (l.mac, l.ip)).collect();
        let subscribers: HashMap<String, Ipv4Addr> = self
            .leases
            .values()
            .map(|l| (l.imsi.clone(), l.ip))
            .collect();
        links == self.by_link
            && subscribers == self.by_subscriber
            && (self.held_for.iter())
                .all(|(imsi, ip)| self.held.get(ip).is_some_and(|h| &h.imsi == imsi))
    }

    /// Whether `r`'s client holds a lease (offered or bound).
    pub fn holds(&self, r: &Request) -> bool {
        self.lease_of(r).is_some()
    }

    fn lease_of(&self, r: &Request) -> Option<&Lease> {
        self.leases
            .get(&self.on_link(&r.mac)?)
            .filter(|l| l.is_of(r))
    }

    fn free_address(&self, pool: Pool, imsi: &str, now: u64) -> Option<Ipv4Addr> {
        let (start, end) = (u32::from(pool.start), u32::from(pool.end));
        (start..=end).map(Ipv4Addr::from).find(|ip| {
            !self.leases.contains_key(ip)
                && self.probation.get(ip).is_none_or(|until| *until <= now)
                && self.open_to(ip, imsi, now)
        })
    }

    /// How many addresses of `pool` are held for subscribers whose leases ended.
    fn held_count(&self, pool: Pool, now: u64) -> usize {
        self.held
            .range(pool.start..=pool.end)
            .filter(|(ip, h)| h.until > now && !self.leases.contains_key(ip))
            .count()
    }

    /// The cell's pool.
    pub fn cell_pool(&self) -> Option<Pool> {
        Some(Pool {
            start: self.start?,
            end: self.end?,
        })
    }

    /// Handles one client message from the cell. `me` is this server's identifier;
    /// `lease_secs` the lease time granted.
    pub fn handle(
        &mut self,
        r: &Request,
        authorised: Option<&Authorised>,
        me: Ipv4Addr,
        lease_secs: u64,
        now: u64,
    ) -> (Answer, Vec<Binding>) {
        let pool = self.cell_pool();
        self.handle_in(pool, r, authorised, me, lease_secs, now)
    }

    /// Handles one client message from the segment whose addresses are `pool` (the cell's,
    /// or a relay's): what it is offered or granted comes from that pool, and an address
    /// it holds elsewhere is not its address here.
    pub fn handle_in(
        &mut self,
        pool: Option<Pool>,
        r: &Request,
        authorised: Option<&Authorised>,
        me: Ipv4Addr,
        lease_secs: u64,
        now: u64,
    ) -> (Answer, Vec<Binding>) {
        let in_pool = |ip: Ipv4Addr| pool.is_some_and(|p| p.contains(ip));
        let mut changes = Vec::new();
        match r.kind {
            Kind::Release => {
                if let Some(ip) = self.lease_of(r).map(|l| l.ip) {
                    changes.extend(self.end(ip, "released", now));
                }
                return (Answer::Silent("released".into()), changes);
            }
            Kind::Decline => {
                if let Some(ip) = r
                    .requested
                    .filter(|ip| self.leases.get(ip).is_some_and(|l| l.is_of(r)))
                {
                    let l = self.take(ip).expect("present");
                    self.probation.insert(ip, now + PROBATION_SECS);
                    changes.extend(l.ended("declined"));
                }
                return (
                    Answer::Silent("declined: address on probation".into()),
                    changes,
                );
            }
            _ => {}
        }
        let Some(who) = authorised else {
            return (Answer::Silent("not authorised by the VLR".into()), changes);
        };
        if !who.packet_data {
            let why = "no packet-data service in the subscriber's profile";
            return (Answer::Silent(why.into()), changes);
        }
        let claim = (r.claimed_name.as_deref())
            .map(|c| c.trim_end_matches('.').to_ascii_lowercase())
            .filter(|c| !c.is_empty());
        let learned;
        let learns = who.host_name.is_empty() && self.name_source == NameSource::Terminal;
        let who = match claim {
            // Claim 23: the name is the terminal's word, for its home to verify; a client
            // that says nothing this time keeps the name its lease has.
            claim if learns => {
                let kept = || {
                    let ip = self.lease_of(r).map(|l| l.ip)?;
                    Some(self.leases[&ip].host_name.clone())
                };
                learned = Authorised {
                    host_name: claim.or_else(kept).unwrap_or_default(),
                    ..who.clone()
                };
                &learned
            }
            // A name the home gave (or the terminal said at attach): the client says the
            // same, or gets nothing.
            Some(claim) if !who.host_name.is_empty() => {
                if !super::names_the_same(&claim, &who.host_name) {
                    let own = who.host_name.to_ascii_lowercase();
                    return (
                        Answer::Silent(format!(
                            "the client claims `{claim}`, not its own host name {own}"
                        )),
                        changes,
                    );
                }
                who
            }
            _ => who,
        };
        // A link the VLR now lists for another subscriber: what it held was the other's.
        changes.extend(self.end_where(
            &[self.on_link(&r.mac)],
            |l| l.mac == r.mac && l.imsi != who.imsi,
            "the link is another subscriber's",
            now,
        ));
        match r.kind {
            Kind::Inform => (Answer::InformAck, changes),
            Kind::Discover => {
                // One lease per terminal, offered or bound: a terminal that discovers again
                // (with another client identifier, say) is offered the same address, so
                // that it can never hold more than one.
                let mut current = self
                    .lease_of(r)
                    .map(|l| l.ip)
                    .or_else(|| self.of_subscriber(&who.imsi));
                // A terminal that turns up on another segment no longer holds the address
                // of the one it left.
                if let Some(old) = current.filter(|ip| !in_pool(*ip)) {
                    changes.extend(self.end_where(
                        &[Some(old)],
                        |_| true,
                        "moved to another network segment",
                        now,
                    ));
                    current = None;
                }
                // Its own address back, if it is held for it; else the lowest free one.
                let ip = current
                    .or_else(|| self.held_in(pool, &who.imsi, now))
                    .or_else(|| self.free_address(pool?, &who.imsi, now));
                let Some(ip) = ip else {
                    let why = match pool {
                        Some(p) => match self.held_count(p, now) {
                            0 => format!("pool {}-{} exhausted", p.start, p.end),
                            held => format!(
                                "pool {}-{} exhausted ({held} held for terminals that left, \
                                 for {HOLD_SECS} s at the most)",
                                p.start, p.end
                            ),
                        },
                        None => "no pool on this segment".to_string(),
                    };
                    return (Answer::Silent(why), changes);
                };
                if current.is_none() {
                    self.put(ip, Lease::new(r, who, ip, now + OFFER_HOLD_SECS, true));
                }
                (Answer::Offer(ip), changes)
            }
            Kind::Request => {
                if r.server.is_some_and(|s| s != me) {
                    // The client chose another server's offer: release ours.
                    if let Some(ip) = self.lease_of(r).filter(|l| l.offered).map(|l| l.ip) {
                        self.take(ip);
                    }
                    return (
                        Answer::Silent("the client chose another server".into()),
                        changes,
                    );
                }
                let Some(ip) = r.requested.or_else(|| self.lease_of(r).map(|l| l.ip)) else {
                    return (Answer::Nak("no address requested".into()), changes);
                };
                if !in_pool(ip) && self.leases.contains_key(&ip) {
                    // RFC 2131 §4.3.2: the client's notion of its address is wrong for the
                    // network it is on.
                    return (
                        Answer::Nak(format!("{ip} is not on the client's network")),
                        changes,
                    );
                }
                match self.leases.get(&ip) {
                    // Its own lease, or the same subscriber's from an earlier link (the VLR
                    // has authorised this link for it since).
                    Some(l) if l.is_of(r) || l.imsi == who.imsi => {}
                    Some(_) => {
                        return (
                            Answer::Nak(format!("{ip} is leased to another client")),
                            changes,
                        )
                    }
                    None if !self.open_to(&ip, &who.imsi, now) => {
                        return (
                            Answer::Nak(format!("{ip} is held for the terminal that had it")),
                            changes,
                        )
                    }
                    None if in_pool(ip) && self.probation.get(&ip).is_none_or(|u| *u <= now) => {}
                    None => return (Answer::Nak(format!("{ip} is not ours to give")), changes),
                }
                // One address per terminal: its other bindings (an old address, or an old
                // link after it moved cells) end here, before the new one starts.
                changes.extend(self.end_where(
                    &[self.on_link(&r.mac), self.of_subscriber(&who.imsi)],
                    |l| l.ip != ip && (l.is_of(r) || l.imsi == who.imsi),
                    "replaced",
                    now,
                ));
                let previous = self.leases.get(&ip).cloned();
                // A lease taken over from the subscriber's earlier link is bound afresh: its
                // home may have cleared the name when that link went.
                let fresh = previous.as_ref().is_none_or(|p| {
                    p.offered
                        || p.imsi != who.imsi
                        || p.host_name != who.host_name
                        || p.mac != r.mac
                });
                self.put(ip, Lease::new(r, who, ip, now + lease_secs, false));
                // Bound again by its own subscriber: nothing is held for it now.
                self.unhold(ip);
                // A renewal with nothing changed writes nothing new.
                if fresh {
                    changes.push(Binding::Bound {
                        imsi: who.imsi.clone(),
                        host_name: who.host_name.clone(),
                        ip,
                    });
                }
                (Answer::Ack(ip), changes)
            }
            Kind::Release | Kind::Decline => unreachable!("handled above"),
        }
    }

    /// A DISCOVER with Rapid Commit (RFC 4039) to a server that allows it: the offer and the
    /// client's request for it in one, so the address is bound at once (ACK) or the client
    /// gets nothing, as for any DISCOVER it cannot be offered (never a NAK).
    pub fn commit_at_once(
        &mut self,
        pool: Option<Pool>,
        r: &Request,
        authorised: Option<&Authorised>,
        me: Ipv4Addr,
        lease_secs: u64,
        now: u64,
    ) -> (Answer, Vec<Binding>) {
        let (offer, mut changes) = self.handle_in(pool, r, authorised, me, lease_secs, now);
        let Answer::Offer(ip) = offer else {
            return (offer, changes);
        };
        let request = Request {
            kind: Kind::Request,
            requested: Some(ip),
            server: Some(me),
            ..r.clone()
        };
        let (answer, bound) = self.handle_in(pool, &request, authorised, me, lease_secs, now);
        changes.extend(bound);
        match answer {
            // Not the case for an address just offered; a DISCOVER is never refused aloud.
            Answer::Nak(why) => (Answer::Silent(why), changes),
            answer => (answer, changes),
        }
    }

    /// Ends leases that expired, and those of terminals the VLR no longer lists on that
    /// link (`still_attached(imsi, mac)`).
    pub fn sweep(
        &mut self,
        now: u64,
        still_attached: &dyn Fn(&str, &[u8; 6]) -> bool,
    ) -> Vec<Binding> {
        let ended: Vec<Ipv4Addr> = self
            .leases
            .values()
            .filter(|l| l.expires <= now || !still_attached(&l.imsi, &l.mac))
            .map(|l| l.ip)
            .collect();
        let mut changes = Vec::new();
        for ip in ended {
            let why = if self.leases[&ip].expires <= now {
                "lease expired"
            } else {
                "detached"
            };
            changes.extend(self.end(ip, why, now));
        }
        let dirty = &mut self.dirty;
        self.probation.retain(|ip, until| {
            let keep = *until > now;
            if !keep {
                dirty.insert(*ip);
            }
            keep
        });
        let over: Vec<Ipv4Addr> = (self.held.iter())
            .filter(|(_, h)| h.until <= now)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in over {
            self.unhold(ip);
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

    fn book() -> LeaseBook {
        LeaseBook::new(
            Ipv4Addr::new(198, 51, 100, 100),
            Ipv4Addr::new(198, 51, 100, 101),
        )
    }

    fn who(n: u8) -> Authorised {
        Authorised {
            imsi: format!("00101000000000{n}"),
            host_name: format!("phone{n}.home.example"),
            packet_data: true,
        }
    }

    /// Found in review of make-before-break: the HLR keeps a moving terminal's old address at
    /// home until its new network reports one (up to its grace), and the old network handed
    /// that address to the next client at once, so the name could point at another terminal.
    /// The address is held for its subscriber alone: a terminal that comes back gets it
    /// again (holding it from everyone kept udhcpc from getting its address back).
    #[test]
    fn an_ended_lease_is_held_for_its_subscriber_and_nobody_else() {
        let mut b = book();
        let ip = Ipv4Addr::new(198, 51, 100, 100);
        let other = Ipv4Addr::new(198, 51, 100, 101);
        b.handle(&req(Kind::Request, 1, Some(ip)), Some(&who(1)), ME, 600, 0);
        b.sweep(1, &|imsi, _| imsi != who(1).imsi);
        assert_eq!(b.held[&ip].imsi, who(1).imsi);
        let discover = |b: &mut LeaseBook, mac: u8, n: u8, now| {
            b.handle(&req(Kind::Discover, mac, None), Some(&who(n)), ME, 600, now)
                .0
        };
        assert_eq!(discover(&mut b, 2, 2, 2), Answer::Offer(other));
        let asked = b.handle(&req(Kind::Request, 3, Some(ip)), Some(&who(3)), ME, 600, 2);
        assert_eq!(
            asked.0,
            Answer::Nak(format!("{ip} is held for the terminal that had it"))
        );
        // Its subscriber, back on another link: offered it, and granted it.
        assert_eq!(discover(&mut b, 4, 1, 3), Answer::Offer(ip));
        let again = b.handle(&req(Kind::Request, 4, Some(ip)), Some(&who(1)), ME, 600, 3);
        assert_eq!(again.0, Answer::Ack(ip));
        assert!(b.held.is_empty(), "bound again, nothing is held");
        assert!(b.indices_agree());
        // Once the hold is over, the address is anyone's.
        b.sweep(4, &|imsi, _| imsi != who(1).imsi);
        b.sweep(4 + HOLD_SECS, &|_, _| true);
        assert!(b.held.is_empty());
        assert_eq!(discover(&mut b, 3, 3, 4 + HOLD_SECS), Answer::Offer(ip));
    }

    /// Claim 23: where names come from terminals, a client the VLR knows no name for is
    /// bound under the name it says (option 81 or 12), kept while it renews without saying
    /// it again; a name the VLR knows is checked as always. Where names come from the HLR,
    /// a claim the home gave no name to check against is not taken.
    #[test]
    fn a_network_that_learns_names_from_terminals_binds_the_claimed_name() {
        let ip = Ipv4Addr::new(198, 51, 100, 100);
        let nameless = Authorised {
            host_name: String::new(),
            ..who(1)
        };
        let claiming = |kind, claim: Option<&str>| Request {
            claimed_name: claim.map(String::from),
            ..req(kind, 1, Some(ip))
        };
        for (source, bound_as) in [
            (NameSource::Terminal, "phone1.home.example"),
            (NameSource::Hlr, ""),
        ] {
            let mut b = book();
            b.name_source = source;
            let (ack, bound) = b.handle(
                &claiming(Kind::Request, Some("Phone1.home.example.")),
                Some(&nameless),
                ME,
                600,
                0,
            );
            assert_eq!(ack, Answer::Ack(ip), "{source:?}");
            assert!(
                matches!(&bound[..], [Binding::Bound { host_name, .. }] if host_name == bound_as),
                "{source:?}: {bound:?}"
            );
            let (_, renewed) =
                b.handle(&claiming(Kind::Request, None), Some(&nameless), ME, 600, 1);
            assert!(renewed.is_empty(), "{source:?}: {renewed:?}");
            assert_eq!(b.leases[&ip].host_name, bound_as);
        }
        let mut b = book();
        b.name_source = NameSource::Terminal;
        let (answer, _) = b.handle(
            &claiming(Kind::Request, Some("server1")),
            Some(&who(1)),
            ME,
            600,
            0,
        );
        assert!(matches!(answer, Answer::Silent(_)), "{answer:?}");
    }

    /// A terminal that releases and takes another address again and again holds one address
    /// at a time, not the pool.
    #[test]
    fn a_subscriber_holds_one_address_at_the_most() {
        let mut b = LeaseBook::new(
            Ipv4Addr::new(198, 51, 100, 100),
            Ipv4Addr::new(198, 51, 100, 109),
        );
        for n in 100..110 {
            let ip = Ipv4Addr::new(198, 51, 100, n);
            let (ack, _) = b.handle(&req(Kind::Request, 1, Some(ip)), Some(&who(1)), ME, 600, 0);
            assert_eq!(ack, Answer::Ack(ip));
            b.handle(&req(Kind::Release, 1, None), Some(&who(1)), ME, 600, 0);
        }
        assert_eq!(b.held.len(), 1, "{:?}", b.held);
        assert!(b.indices_agree());
        let (offer, _) = b.handle(&req(Kind::Discover, 2, None), Some(&who(2)), ME, 600, 1);
        assert_eq!(offer, Answer::Offer(Ipv4Addr::new(198, 51, 100, 100)));
    }

    /// Claim 13: a subscriber registered without packet-data service gets no lease.
    #[test]
    fn a_subscriber_without_packet_data_gets_no_lease() {
        let voice = Authorised {
            packet_data: false,
            ..who(1)
        };
        let (answer, changes) =
            book().handle(&req(Kind::Discover, 1, None), Some(&voice), ME, 600, 0);
        assert!(
            matches!(&answer, Answer::Silent(why) if why.contains("no packet-data service")),
            "{answer:?}"
        );
        assert!(changes.is_empty());
    }

    fn req(kind: Kind, mac: u8, requested: Option<Ipv4Addr>) -> Request {
        Request {
            kind,
            mac: [2, 0, 0, 0, 0, mac],
            client_id: None,
            requested,
            server: None,
            claimed_name: None,
            rapid_commit: false,
        }
    }

    /// Rapid Commit (RFC 4039): the offer and its request in one. The address is bound at
    /// once, a second DISCOVER of the same client gets the same lease without a new
    /// binding, and what a DISCOVER cannot be offered it is not acknowledged either.
    #[test]
    fn a_rapid_commit_binds_at_once_or_not_at_all() {
        let mut b = book();
        let pool = b.cell_pool();
        let rapid = |mac| Request {
            rapid_commit: true,
            ..req(Kind::Discover, mac, None)
        };
        let ip = Ipv4Addr::new(198, 51, 100, 100);
        let (ack, bound) = b.commit_at_once(pool, &rapid(1), Some(&who(1)), ME, 600, 0);
        assert_eq!(ack, Answer::Ack(ip));
        assert_eq!(
            bound,
            [Binding::Bound {
                imsi: who(1).imsi,
                host_name: who(1).host_name,
                ip
            }]
        );
        assert!(!b.leases[&ip].offered);
        let (again, nothing) = b.commit_at_once(pool, &rapid(1), Some(&who(1)), ME, 600, 1);
        assert_eq!((again, nothing.len()), (Answer::Ack(ip), 0));
        let (unknown, none) = b.commit_at_once(pool, &rapid(2), None, ME, 600, 2);
        assert!(matches!(unknown, Answer::Silent(_)) && none.is_empty());
        // The pool (two addresses) runs out: silence, as for a plain DISCOVER.
        b.commit_at_once(pool, &rapid(2), Some(&who(2)), ME, 600, 3);
        let (full, none) = b.commit_at_once(pool, &rapid(3), Some(&who(3)), ME, 600, 4);
        assert!(matches!(full, Answer::Silent(why) if why.contains("exhausted")));
        assert!(none.is_empty());
    }

    #[test]
    fn discover_request_ack_binds_once_and_renewals_write_nothing() {
        let mut b = book();
        let (offer, none) = b.handle(&req(Kind::Discover, 1, None), Some(&who(1)), ME, 600, 0);
        assert_eq!(
            (offer, none.len()),
            (Answer::Offer(Ipv4Addr::new(198, 51, 100, 100)), 0)
        );
        let ip = Ipv4Addr::new(198, 51, 100, 100);
        let (ack, bound) = b.handle(&req(Kind::Request, 1, Some(ip)), Some(&who(1)), ME, 600, 1);
        assert_eq!(ack, Answer::Ack(ip));
        assert_eq!(
            bound,
            [Binding::Bound {
                imsi: who(1).imsi,
                host_name: who(1).host_name,
                ip
            }]
        );
        let (renew, nothing) = b.handle(
            &req(Kind::Request, 1, Some(ip)),
            Some(&who(1)),
            ME,
            600,
            300,
        );
        assert_eq!((renew, nothing.len()), (Answer::Ack(ip), 0));
    }

    /// Found by the lease_book fuzz target: a link the VLR lists for another subscriber
    /// than the one its lease was bound to, asking with another client identifier, was
    /// given a second lease while the first stayed bound.
    #[test]
    fn a_link_that_changes_subscriber_ends_the_old_binding_first() {
        let mut b = book();
        let ip = Ipv4Addr::new(198, 51, 100, 100);
        let mut first = req(Kind::Request, 1, Some(ip));
        first.client_id = Some(vec![1, 2, 0, 0, 0, 0, 4]);
        assert_eq!(
            b.handle(&first, Some(&who(1)), ME, 600, 0).0,
            Answer::Ack(ip)
        );
        let (answer, changes) = b.handle(&req(Kind::Discover, 1, None), Some(&who(2)), ME, 600, 1);
        assert!(matches!(answer, Answer::Offer(_)));
        assert_eq!(
            changes,
            [Binding::Unbound {
                imsi: who(1).imsi,
                host_name: who(1).host_name,
                ip,
                why: "the link is another subscriber's".into()
            }]
        );
        assert_eq!(b.leases.len(), 1);
        assert_eq!(b.leases.values().next().unwrap().imsi, who(2).imsi);
    }

    #[test]
    fn unauthorised_clients_get_nothing_and_claims_must_match() {
        let mut b = book();
        assert!(matches!(
            b.handle(&req(Kind::Discover, 1, None), None, ME, 600, 0).0,
            Answer::Silent(_)
        ));
        let mut claim = req(Kind::Discover, 1, None);
        claim.claimed_name = Some("server1.home.example".into());
        assert!(
            matches!(b.handle(&claim, Some(&who(1)), ME, 600, 0).0, Answer::Silent(why) if why.contains("not its own"))
        );
        claim.claimed_name = Some("phone1".into());
        assert!(matches!(
            b.handle(&claim, Some(&who(1)), ME, 600, 0).0,
            Answer::Offer(_)
        ));
        assert!(b.leases.values().all(|l| l.offered));
    }

    #[test]
    fn exhaustion_decline_release_and_sweep() {
        let mut b = book();
        for n in 1..=2 {
            let (Answer::Offer(ip), _) =
                b.handle(&req(Kind::Discover, n, None), Some(&who(n)), ME, 600, 0)
            else {
                panic!()
            };
            b.handle(&req(Kind::Request, n, Some(ip)), Some(&who(n)), ME, 600, 0);
        }
        assert!(
            matches!(b.handle(&req(Kind::Discover, 3, None), Some(&who(3)), ME, 600, 0).0, Answer::Silent(why) if why == "pool 198.51.100.100-198.51.100.101 exhausted")
        );
        let first = Ipv4Addr::new(198, 51, 100, 100);
        let (_, unbound) = b.handle(
            &req(Kind::Decline, 1, Some(first)),
            Some(&who(1)),
            ME,
            600,
            10,
        );
        assert!(matches!(&unbound[..], [Binding::Unbound { why, .. }] if why == "declined"));
        assert!(
            matches!(
                b.handle(&req(Kind::Discover, 3, None), Some(&who(3)), ME, 600, 20)
                    .0,
                Answer::Silent(_)
            ),
            "a declined address is on probation"
        );
        let (_, released) = b.handle(&req(Kind::Release, 2, None), Some(&who(2)), ME, 600, 30);
        assert_eq!(released.len(), 1);
        assert!(
            matches!(b.handle(&req(Kind::Discover, 3, None), Some(&who(3)), ME, 600, 31).0, Answer::Silent(why) if why.ends_with("exhausted (1 held for terminals that left, for 30 s at the most)")),
            "the released address is held for its subscriber"
        );
        let gone = b.sweep(10_000, &|_, _| true);
        assert!(gone.is_empty());
        assert!(b.probation.is_empty(), "probation ends");
        assert!(b.held.is_empty(), "holds end");
    }

    /// A relay's segment leases from its own pool; a terminal that turns up there loses the
    /// cell's address, and asking for it there is NAKed (RFC 2131 §4.3.2).
    #[test]
    fn a_relayed_segment_leases_from_its_own_pool() {
        let mut b = book();
        let relayed = Some(Pool {
            start: Ipv4Addr::new(198, 18, 16, 10),
            end: Ipv4Addr::new(198, 18, 16, 10),
        });
        let cell = Ipv4Addr::new(198, 51, 100, 100);
        b.handle(
            &req(Kind::Request, 1, Some(cell)),
            Some(&who(1)),
            ME,
            600,
            0,
        );
        let (nak, none) = b.handle_in(
            relayed,
            &req(Kind::Request, 1, Some(cell)),
            Some(&who(1)),
            ME,
            600,
            1,
        );
        assert_eq!(
            (nak, none.len()),
            (
                Answer::Nak("198.51.100.100 is not on the client's network".into()),
                0
            )
        );
        let (offer, moved) = b.handle_in(
            relayed,
            &req(Kind::Discover, 1, None),
            Some(&who(1)),
            ME,
            600,
            2,
        );
        assert_eq!(offer, Answer::Offer(Ipv4Addr::new(198, 18, 16, 10)));
        assert!(
            matches!(&moved[..], [Binding::Unbound { ip, why, .. }] if *ip == cell && why == "moved to another network segment")
        );
        let (exhausted, _) = b.handle_in(
            relayed,
            &req(Kind::Discover, 2, None),
            Some(&who(2)),
            ME,
            600,
            3,
        );
        assert_eq!(
            exhausted,
            Answer::Silent("pool 198.18.16.10-198.18.16.10 exhausted".into())
        );
        let (nak, _) = b.handle_in(
            relayed,
            &req(Kind::Request, 2, Some(Ipv4Addr::new(198, 51, 100, 101))),
            Some(&who(2)),
            ME,
            600,
            3,
        );
        assert!(matches!(nak, Answer::Nak(why) if why.contains("not ours")));
    }

    /// The server writes down only the addresses the book says changed: a copy kept that
    /// way stays the book, whatever happens to it.
    #[test]
    fn what_is_marked_changed_is_all_that_changed() {
        let mut b = book();
        let mut copy: (BTreeMap<Ipv4Addr, Lease>, BTreeMap<Ipv4Addr, u64>) = Default::default();
        let ip = |n| Ipv4Addr::new(198, 51, 100, n);
        let steps: Vec<(Request, u64)> = vec![
            (req(Kind::Discover, 1, None), 0),
            (req(Kind::Request, 1, Some(ip(100))), 1),
            (req(Kind::Request, 2, Some(ip(101))), 2),
            (req(Kind::Request, 1, Some(ip(100))), 300),
            (req(Kind::Decline, 2, Some(ip(101))), 301),
            (req(Kind::Discover, 3, None), 302),
            (req(Kind::Release, 1, None), 303),
        ];
        let mut sync = |b: &mut LeaseBook| {
            for a in b.take_dirty() {
                match b.leases.get(&a) {
                    Some(l) => copy.0.insert(a, l.clone()),
                    None => copy.0.remove(&a),
                };
                match b.probation.get(&a) {
                    Some(u) => copy.1.insert(a, *u),
                    None => copy.1.remove(&a),
                };
            }
            assert_eq!((&copy.0, &copy.1), (&b.leases, &b.probation));
            assert!(b.indices_agree());
        };
        for (r, now) in steps {
            let n = r.mac[5];
            b.handle(&r, Some(&who(n)), ME, 600, now);
            sync(&mut b);
        }
        b.sweep(10_000, &|_, _| false);
        sync(&mut b);
        assert!(b.leases.is_empty() && b.probation.is_empty());
    }

    #[test]
    fn the_client_identifier_names_the_client_when_it_is_sent() {
        let mut b = book();
        let mut first = req(Kind::Request, 1, Some(Ipv4Addr::new(198, 51, 100, 100)));
        first.client_id = Some(vec![1, 2, 3]);
        assert!(matches!(
            b.handle(&first, Some(&who(1)), ME, 600, 0).0,
            Answer::Ack(_)
        ));
        // Same client identifier from another interface: the same client.
        let mut moved = req(Kind::Discover, 9, None);
        moved.client_id = Some(vec![1, 2, 3]);
        assert_eq!(
            b.handle(&moved, Some(&who(1)), ME, 600, 1).0,
            Answer::Offer(Ipv4Addr::new(198, 51, 100, 100))
        );
        // Same hardware address, another identifier, and the VLR now lists the link for
        // another subscriber: the old binding ends before the new client is offered one
        // (not the old subscriber's address, which is held for it).
        let mut other = req(Kind::Discover, 1, None);
        other.client_id = Some(vec![9]);
        let (offer, ended) = b.handle(&other, Some(&who(2)), ME, 600, 2);
        assert_eq!(offer, Answer::Offer(Ipv4Addr::new(198, 51, 100, 101)));
        assert!(matches!(&ended[..], [Binding::Unbound { imsi, .. }] if *imsi == who(1).imsi));
    }

    #[test]
    fn a_request_for_someone_elses_address_is_nakked_and_detached_terminals_lose_their_lease() {
        let mut b = book();
        let ip = Ipv4Addr::new(198, 51, 100, 100);
        b.handle(&req(Kind::Request, 1, Some(ip)), Some(&who(1)), ME, 600, 0);
        assert!(matches!(
            b.handle(&req(Kind::Request, 2, Some(ip)), Some(&who(2)), ME, 600, 0)
                .0,
            Answer::Nak(_)
        ));
        assert!(matches!(
            b.handle(
                &req(Kind::Request, 2, Some(Ipv4Addr::new(10, 0, 0, 1))),
                Some(&who(2)),
                ME,
                600,
                0
            )
            .0,
            Answer::Nak(_)
        ));
        let gone = b.sweep(1, &|imsi, _| imsi != who(1).imsi);
        assert!(matches!(&gone[..], [Binding::Unbound { why, .. }] if why == "detached"));
        let expired = {
            // Once the detached terminal's address is no longer held for it.
            let after = 1 + HOLD_SECS;
            b.sweep(after, &|_, _| true);
            b.handle(
                &req(Kind::Request, 2, Some(ip)),
                Some(&who(2)),
                ME,
                600,
                after,
            );
            b.sweep(after + 601, &|_, _| true)
        };
        assert!(matches!(&expired[..], [Binding::Unbound { why, .. }] if why == "lease expired"));
    }

    /// Issue 12, finding 3: terminal B, itself attached, sent a REQUEST with terminal A's
    /// client identifier and got A's address, with no unbinding of A.
    #[test]
    fn a_client_identifier_never_takes_another_terminals_lease() {
        let mut b = book();
        let ip = Ipv4Addr::new(198, 51, 100, 100);
        let with_id = |kind, mac: u8, id: u8, requested| Request {
            client_id: Some(vec![1, 2, 0, 0, 0, 0, id]),
            ..req(kind, mac, requested)
        };
        b.handle(
            &with_id(Kind::Discover, 1, 1, None),
            Some(&who(1)),
            ME,
            600,
            0,
        );
        let (ack, _) = b.handle(
            &with_id(Kind::Request, 1, 1, Some(ip)),
            Some(&who(1)),
            ME,
            600,
            0,
        );
        assert_eq!(ack, Answer::Ack(ip));
        // B (MAC 2, authorised as itself) uses A's client identifier.
        let (taken, changes) = b.handle(
            &with_id(Kind::Request, 2, 1, Some(ip)),
            Some(&who(2)),
            ME,
            600,
            1,
        );
        assert!(matches!(taken, Answer::Nak(_)), "{taken:?}");
        assert!(changes.is_empty(), "{changes:?}");
        // Nor can B release or decline it with A's identifier.
        for kind in [Kind::Release, Kind::Decline] {
            let (_, changes) = b.handle(&with_id(kind, 2, 1, Some(ip)), Some(&who(2)), ME, 600, 2);
            assert!(changes.is_empty(), "{kind:?}: {changes:?}");
        }
        assert!(b
            .lease_of(&with_id(Kind::Request, 1, 1, None))
            .is_some_and(|l| l.ip == ip && !l.offered));
    }

    /// Finding 4 of the issue on the private network: 99 DISCOVERs with one authorised MAC
    /// and random client identifiers held the whole pool.
    #[test]
    fn one_terminal_holds_at_most_one_offer_whatever_its_client_identifiers() {
        let mut b = LeaseBook::new(
            Ipv4Addr::new(198, 51, 100, 100),
            Ipv4Addr::new(198, 51, 100, 199),
        );
        for id in 0..99u8 {
            let r = Request {
                client_id: Some(vec![0xff, id, id]),
                ..req(Kind::Discover, 1, None)
            };
            let (answer, _) = b.handle(&r, Some(&who(1)), ME, 600, 0);
            assert_eq!(
                answer,
                Answer::Offer(Ipv4Addr::new(198, 51, 100, 100)),
                "{id}"
            );
        }
        assert_eq!(b.leases.len(), 1);
        let (other, _) = b.handle(&req(Kind::Discover, 2, None), Some(&who(2)), ME, 600, 0);
        assert_eq!(other, Answer::Offer(Ipv4Addr::new(198, 51, 100, 101)));
    }
}
