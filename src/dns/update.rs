//! RFC 2136 dynamic update, signed with TSIG (hmac-sha256), over UDP:
//! what the HLR and DHCP agents (and `roamlab dns update`) use to write A and PTR records.
//!
//! A replace is one message that deletes the name's records of that type and adds the new
//! one, so a changed address never leaves two records behind.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::update_message::UpdateMessage;
use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigVerifier, TSigner};

use super::keys::TsigKey;

/// How long one update may take before it is reported as failed.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(3);
const TSIG_FUDGE: u16 = 300;

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{0}")]
    Invalid(String),
    #[error("update of zone {zone} at {server}: {cause}")]
    Transport {
        zone: String,
        server: SocketAddr,
        cause: String,
    },
    #[error("update of zone {zone} at {server} refused: {code}")]
    Refused {
        zone: String,
        server: SocketAddr,
        code: String,
        /// The server will refuse it again (NOTAUTH, REFUSED, NOTZONE, FORMERR), as
        /// opposed to failing now (SERVFAIL).
        for_good: bool,
    },
}

/// Where an update goes and who signs it.
#[derive(Debug, Clone)]
pub struct UpdateTarget {
    pub server: SocketAddr,
    /// The zone's name (`home.example.`).
    pub zone: String,
    pub key: TsigKey,
    /// TTL of the records this target adds.
    pub ttl: u32,
}

impl UpdateTarget {
    /// The target an agent's configuration names, with the key read from its file.
    pub fn load(target: &crate::contract::configs::DnsTarget) -> std::io::Result<Self> {
        let secret = std::fs::read(&target.key_file).map_err(|e| {
            std::io::Error::new(e.kind(), format!("{}: {e}", target.key_file.display()))
        })?;
        Ok(UpdateTarget {
            server: target.server,
            zone: target.zone.clone(),
            key: TsigKey {
                name: target.key_name.clone(),
                secret,
            },
            ttl: target.ttl,
        })
    }
}

/// One change to a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Adds a record beside any others of its name and type.
    Add { name: String, data: RecordData },
    /// Makes `data` the only record of its name and type.
    Replace { name: String, data: RecordData },
    /// Deletes one record, or with `data: None` every record of the type.
    Delete {
        name: String,
        rtype: RecordKind,
        data: Option<RecordData>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    A,
    Aaaa,
    Ptr,
}

/// The data of an address or pointer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    Address(IpAddr),
    Pointer(String),
}

impl RecordKind {
    pub fn parse(text: &str) -> Result<Self, UpdateError> {
        match text.to_ascii_uppercase().as_str() {
            "A" => Ok(RecordKind::A),
            "AAAA" => Ok(RecordKind::Aaaa),
            "PTR" => Ok(RecordKind::Ptr),
            other => Err(UpdateError::Invalid(format!(
                "record type {other}: only A, AAAA and PTR are updated"
            ))),
        }
    }

    fn record_type(self) -> RecordType {
        match self {
            RecordKind::A => RecordType::A,
            RecordKind::Aaaa => RecordType::AAAA,
            RecordKind::Ptr => RecordType::PTR,
        }
    }
}

impl RecordData {
    /// Parses `data` as the data of a `kind` record.
    pub fn parse(kind: RecordKind, data: &str) -> Result<Self, UpdateError> {
        let bad = || UpdateError::Invalid(format!("`{data}` is not the data of a {kind:?} record"));
        match kind {
            RecordKind::A => data
                .parse::<std::net::Ipv4Addr>()
                .map(|a| RecordData::Address(a.into()))
                .map_err(|_| bad()),
            RecordKind::Aaaa => data
                .parse::<std::net::Ipv6Addr>()
                .map(|a| RecordData::Address(a.into()))
                .map_err(|_| bad()),
            RecordKind::Ptr => {
                fqdn(data)?;
                Ok(RecordData::Pointer(data.to_string()))
            }
        }
    }

    pub fn kind(&self) -> RecordKind {
        match self {
            RecordData::Address(IpAddr::V4(_)) => RecordKind::A,
            RecordData::Address(IpAddr::V6(_)) => RecordKind::Aaaa,
            RecordData::Pointer(_) => RecordKind::Ptr,
        }
    }

    fn rdata(&self) -> Result<RData, UpdateError> {
        Ok(match self {
            RecordData::Address(IpAddr::V4(a)) => RData::A(A(*a)),
            RecordData::Address(IpAddr::V6(a)) => RData::AAAA(AAAA(*a)),
            RecordData::Pointer(target) => RData::PTR(PTR(fqdn(target)?)),
        })
    }
}

fn fqdn(name: &str) -> Result<Name, UpdateError> {
    let mut parsed =
        Name::from_str(name).map_err(|e| UpdateError::Invalid(format!("`{name}`: {e}")))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// The reverse name of an address: `100.100.51.198.in-addr.arpa.`.
pub fn reverse_name(ip: IpAddr) -> String {
    Name::from(ip).to_string()
}

/// Builds the update message for `change` (pure; the client signs it when it is sent).
pub fn message(zone: &str, ttl: u32, change: &Change) -> Result<Message, UpdateError> {
    let zone_name = fqdn(zone)?;
    let mut msg = Message::new(0, hickory_proto::op::MessageType::Query, OpCode::Update);
    let mut query = Query::new();
    query
        .set_name(zone_name.clone())
        .set_query_class(DNSClass::IN)
        .set_query_type(RecordType::SOA);
    msg.add_zone(query);
    let owner = |name: &str| -> Result<Name, UpdateError> {
        let n = fqdn(name)?;
        if !zone_name.zone_of(&n) {
            return Err(UpdateError::Invalid(format!(
                "{n} is not in zone {zone_name}"
            )));
        }
        Ok(n)
    };
    let delete_rrset = |name: Name, rtype: RecordType| {
        let mut r = Record::update0(name, 0, rtype).into_record_of_rdata();
        r.dns_class = DNSClass::ANY;
        r
    };
    match change {
        Change::Add { name, data } => {
            msg.add_update(Record::from_rdata(owner(name)?, ttl, data.rdata()?));
        }
        Change::Replace { name, data } => {
            let n = owner(name)?;
            msg.add_update(delete_rrset(n.clone(), data.kind().record_type()));
            msg.add_update(Record::from_rdata(n, ttl, data.rdata()?));
        }
        Change::Delete {
            name,
            rtype,
            data: None,
        } => {
            msg.add_update(delete_rrset(owner(name)?, rtype.record_type()));
        }
        Change::Delete {
            name,
            data: Some(data),
            ..
        } => {
            let mut r = Record::from_rdata(owner(name)?, 0, data.rdata()?);
            r.dns_class = DNSClass::NONE;
            msg.add_update(r);
        }
    }
    Ok(msg)
}

/// An EDNS option from the local-use range (RFC 6891 §9) that carries a nonce.
const NONCE_OPTION: u16 = 65001;

/// Makes every signed update unique: a random id and an 8-byte nonce. The same change
/// sent twice in one second would otherwise be byte for byte (and MAC for MAC) the same
/// message, which a server that never applies one signed message twice (ours: replay
/// protection) would answer without applying.
fn make_unique(msg: &mut Message) {
    let mut random = [0u8; 10];
    // SAFETY: getrandom writes at most `random.len()` bytes into our buffer.
    let got = unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
    if got != random.len() as isize {
        // No entropy to be had: the time still makes repeats rare.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        random.copy_from_slice(&nanos.to_le_bytes()[..10]);
    }
    msg.metadata.id = u16::from_le_bytes([random[0], random[1]]);
    let mut edns = hickory_proto::op::Edns::new();
    edns.options_mut()
        .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
            NONCE_OPTION,
            random[2..].to_vec(),
        ));
    msg.set_edns(edns);
}

/// What a server's answer to an update says: applied, or refused (for good when no retry
/// can change it: the key, the zone or the message is wrong).
pub fn answer_of(zone: &str, server: SocketAddr, response: &Message) -> Result<(), UpdateError> {
    match response.metadata.response_code {
        ResponseCode::NoError => Ok(()),
        code => Err(UpdateError::Refused {
            zone: zone.to_string(),
            server,
            code: code.to_string(),
            for_good: matches!(
                code,
                ResponseCode::NotAuth
                    | ResponseCode::Refused
                    | ResponseCode::NotZone
                    | ResponseCode::FormErr
            ),
        }),
    }
}

/// Sends one signed update and waits for the server's answer.
pub async fn send(target: &UpdateTarget, change: &Change) -> Result<(), UpdateError> {
    let mut msg = message(&target.zone, target.ttl, change)?;
    make_unique(&mut msg);
    let transport = |cause: String| UpdateError::Transport {
        zone: target.zone.clone(),
        server: target.server,
        cause,
    };
    let verifier = sign(&target.key, &mut msg)?;
    let bytes = msg
        .to_vec()
        .map_err(|e| UpdateError::Invalid(format!("encode the update: {e}")))?;
    let exchanged = exchange(target.server, &bytes, msg.metadata.id, verifier);
    let response = tokio::time::timeout(UPDATE_TIMEOUT, exchanged)
        .await
        .map_err(|_| transport(format!("no answer within {UPDATE_TIMEOUT:?}")))?
        .map_err(transport)?;
    answer_of(&target.zone, target.server, &response)
}

/// Signs `msg` with `key` (TSIG, hmac-sha256, now); gives what verifies the answer to it.
fn sign(key: &TsigKey, msg: &mut Message) -> Result<TSigVerifier, UpdateError> {
    let signer = TSigner::new(
        key.secret.clone(),
        TsigAlgorithm::HmacSha256,
        fqdn(&key.name)?,
        TSIG_FUDGE,
    )
    .map_err(|e| UpdateError::Invalid(format!("key {}: {e}", key.name)))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    msg.finalize(&signer, now)
        .map_err(|e| UpdateError::Invalid(format!("sign with key {}: {e}", key.name)))?
        .ok_or_else(|| UpdateError::Invalid(format!("key {}: signs nothing", key.name)))
}

/// Sends a signed update from a socket of its own (the kernel picks its port) and gives
/// the server's answer, its signature verified. Only an answer from the server to this
/// message's ID ends the wait: anything else that arrives is passed over unread.
async fn exchange(
    server: SocketAddr,
    update: &[u8],
    id: u16,
    mut verifier: TSigVerifier,
) -> Result<Message, String> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| e.to_string())?;
    socket
        .send_to(update, server)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = socket
            .recv_from(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        let answer = &buf[..n];
        if !super::from_server_to(id, server, from, answer) {
            continue;
        }
        return verifier
            .verify(answer)
            .map(|r| r.into_message())
            .map_err(|e| e.to_string());
    }
}

/// Sends one update from inside namespace `namespace` (on a thread of its own with its own
/// runtime: a namespace is per thread, and runtime workers never change theirs).
pub fn send_from(namespace: &str, target: UpdateTarget, change: Change) -> Result<(), UpdateError> {
    let server = target.server;
    let zone = target.zone.clone();
    let outcome = crate::kernel::netns::run_in(namespace, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(runtime.block_on(send(&target, &change)))
    });
    outcome.unwrap_or_else(|e| {
        Err(UpdateError::Transport {
            zone,
            server,
            cause: format!("enter {namespace}: {e}"),
        })
    })
}

/// Finds, among a lab's DNS agents, the server of `zone`, and builds the target that
/// updates it with that server's key. Returns the server's node too.
pub fn target_in_lab(
    lab: &crate::contract::LabDir,
    zone: &str,
) -> Result<(String, UpdateTarget), UpdateError> {
    use crate::contract::{configs, AgentKind, LabDir};
    let entries = std::fs::read_dir(lab.path())
        .map_err(|e| UpdateError::Invalid(format!("{}: {e}", lab.path().display())))?;
    let mut servers: Vec<String> = entries
        .flatten()
        .filter_map(|e| LabDir::node_of_config(&e.path().join("config.json"), AgentKind::Dns))
        .collect();
    servers.sort();
    for node in servers {
        let path = lab.agent_config(AgentKind::Dns, &node);
        let config: configs::DnsAgentConfig =
            configs::load(&path).map_err(|e| UpdateError::Invalid(e.to_string()))?;
        let Some(z) = config.zone(zone) else { continue };
        let Some(key) = &z.update_key else {
            return Err(UpdateError::Invalid(format!(
                "zone {zone} (served by {node}) takes no updates"
            )));
        };
        let secret = std::fs::read(&key.file)
            .map_err(|e| UpdateError::Invalid(format!("{}: {e}", key.file.display())))?;
        let target = UpdateTarget {
            server: SocketAddr::new(config.listen, 53),
            zone: z.origin.clone(),
            key: TsigKey {
                name: key.name.clone(),
                secret,
            },
            ttl: z.dynamic_ttl,
        };
        return Ok((node, target));
    }
    Err(UpdateError::Invalid(format!(
        "no DNS server of this lab serves zone {zone}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::MessageType;

    /// An answer to an update counts only if it carries the key's signature over this
    /// update: one unsigned, or signed with another key, is refused, whatever it says.
    /// (A rightly signed answer is the DNS agent's to make: every update in the root
    /// tests' labs is one.)
    #[test]
    fn an_answer_without_the_keys_signature_is_refused() {
        let key = |name: &str, secret: &[u8]| TsigKey {
            name: name.into(),
            secret: secret.to_vec(),
        };
        let change = Change::Replace {
            name: "phone1.home.example".into(),
            data: RecordData::Address("198.51.100.100".parse().unwrap()),
        };
        let mut update = message("home.example", 10, &change).unwrap();
        make_unique(&mut update);
        let mut verifier = sign(&key("roamlab-home", &[7; 32]), &mut update).unwrap();
        let id = update.metadata.id;
        let answer = || {
            let mut a = Message::new(id, MessageType::Response, OpCode::Update);
            a.metadata.response_code = ResponseCode::NoError;
            a
        };
        let unsigned = answer().to_vec().unwrap();
        assert!(verifier.verify(&unsigned).is_err());
        let mut forged = answer();
        sign(&key("roamlab-home", &[8; 32]), &mut forged).unwrap();
        assert!(verifier.verify(&forged.to_vec().unwrap()).is_err());
    }

    #[test]
    fn replace_deletes_the_rrset_then_adds() {
        let change = Change::Replace {
            name: "phone1.home.example".into(),
            data: RecordData::Address("198.51.100.100".parse().unwrap()),
        };
        let msg = message("home.example", 10, &change).unwrap();
        assert_eq!(msg.metadata.op_code, OpCode::Update);
        let updates = &msg.authorities;
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[0].dns_class, DNSClass::ANY);
        assert_eq!(updates[0].record_type(), RecordType::A);
        assert_eq!(updates[1].ttl, 10);
        assert_eq!(
            updates[1].data,
            RData::A(A("198.51.100.100".parse().unwrap()))
        );
    }

    #[test]
    fn names_outside_the_zone_are_refused_before_sending() {
        let change = Change::Add {
            name: "x.visited.example".into(),
            data: RecordData::Address("192.0.2.9".parse().unwrap()),
        };
        assert!(message("home.example", 10, &change)
            .unwrap_err()
            .to_string()
            .contains("not in zone"));
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("198.51.100.100".parse().unwrap()),
            "100.100.51.198.in-addr.arpa."
        );
    }
}
