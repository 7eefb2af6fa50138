//! What an authoritative server checks before hickory's catalog sees a message: a signed
//! update seen before within the fudge window is never applied again (hickory applies a
//! captured update again for 300 s), a known key name with another algorithm gets BADKEY
//! as RFC 8945 §5.2 asks (hickory answers BADSIG), and IXFR is refused like AXFR (hickory
//! answers NOERROR with nothing in it, which dig reports as a failed transfer).
//!
//! A message seen again is either a client's retransmission (its first answer was lost)
//! or an attacker's replay; both get the first answer's response code, signed for that
//! request, and neither touches the zone. So a retransmitting client is answered as it
//! expects, and a replayed update brings nothing back.
//!
//! [`ReplayGuard`] is the pure part: it is fed each verified signature and says whether it
//! was seen before, and what was answered. [`Guarded`] wraps the catalog.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, RecordType, TSigResponseContext, TSigner};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponseBuilder};

/// At most this many signatures are remembered; the oldest go first. A window of 600 s at
/// tens of thousands of updates per second would need more, but a replay then still has
/// to arrive after that many newer updates and within the window.
const MAX_REMEMBERED: usize = 1 << 20;

/// Remembers the MACs of signed messages, and what each was answered, until their time
/// is out of the fudge window.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    /// MAC → the first answer's response code (None while it is being answered).
    seen: HashMap<Vec<u8>, Option<ResponseCode>>,
    /// (expiry, mac) in arrival order, for pruning.
    order: VecDeque<(u64, Vec<u8>)>,
}

/// What to do with a signed update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// New: apply it, then [`ReplayGuard::answered`].
    First,
    /// Seen, and answered with this code: answer the same, apply nothing.
    Answered(ResponseCode),
    /// Seen and still being applied: drop this copy (the client will get the first answer).
    InProgress,
}

impl ReplayGuard {
    /// Records a signature made at `signed` (seconds) with `fudge`.
    pub fn check(&mut self, mac: &[u8], signed: u64, fudge: u16, now: u64) -> Seen {
        while let Some((expiry, _)) = self.order.front() {
            if *expiry >= now && self.order.len() < MAX_REMEMBERED {
                break;
            }
            let (_, old) = self.order.pop_front().expect("front exists");
            self.seen.remove(&old);
        }
        match self.seen.get(mac) {
            Some(Some(code)) => return Seen::Answered(*code),
            Some(None) => return Seen::InProgress,
            None => {}
        }
        let expiry = signed.saturating_add(u64::from(fudge));
        self.seen.insert(mac.to_vec(), None);
        self.order.push_back((expiry, mac.to_vec()));
        Seen::First
    }

    /// Records how the first copy of `mac` was answered.
    pub fn answered(&mut self, mac: &[u8], code: ResponseCode) {
        if let Some(slot) = self.seen.get_mut(mac) {
            *slot = Some(code);
        }
    }
}

/// The catalog behind the checks above.
pub struct Guarded {
    catalog: Catalog,
    signers: Vec<TSigner>,
    replays: Mutex<ReplayGuard>,
}

impl Guarded {
    /// `signers`: the update keys of the zones in `catalog`.
    pub fn new(catalog: Catalog, signers: Vec<TSigner>) -> Self {
        Guarded {
            catalog,
            signers,
            replays: Mutex::new(ReplayGuard::default()),
        }
    }

    /// What to answer instead of the catalog, if anything.
    fn verdict(&self, request: &Request, now: u64) -> Option<Verdict> {
        if request.metadata.op_code == OpCode::Query {
            let ixfr = request
                .queries
                .queries()
                .iter()
                .any(|q| q.query_type() == RecordType::IXFR);
            return ixfr.then_some(Verdict::Transfer);
        }
        if request.metadata.op_code != OpCode::Update {
            return None;
        }
        let tsig = request.signature.as_ref()?;
        let signer = self
            .signers
            .iter()
            .find(|s| s.signer_name() == &tsig.name)?;
        if &tsig.data.algorithm != signer.algorithm() {
            return Some(Verdict::WrongAlgorithm(tsig.name.clone()));
        }
        // Only a signature that verifies is remembered, so nobody can fill the memory, or
        // spoil a future update, with made-up MACs. Bad ones are the catalog's to refuse.
        signer
            .verify_message_byte(request.as_slice(), None, true)
            .ok()?;
        let seen = self
            .replays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(&tsig.data.mac, tsig.data.time, tsig.data.fudge, now);
        match seen {
            Seen::First => Some(Verdict::Track(tsig.data.mac.clone())),
            Seen::Answered(code) => Some(Verdict::Again {
                key: tsig.name.clone(),
                code,
                signer: signer.clone(),
                mac: tsig.data.mac.clone(),
            }),
            Seen::InProgress => Some(Verdict::Drop(tsig.name.clone())),
        }
    }
}

enum Verdict {
    Transfer,
    WrongAlgorithm(Name),
    /// A new signed update: the catalog applies it, and its answer is remembered.
    Track(Vec<u8>),
    /// Seen before: its first answer again, nothing applied.
    Again {
        key: Name,
        code: ResponseCode,
        signer: TSigner,
        mac: Vec<u8>,
    },
    /// Seen before and still being applied.
    Drop(Name),
}

#[async_trait::async_trait]
impl RequestHandler for Guarded {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let now = T::current_time();
        let src = request.src();
        let verdict = match self.verdict(request, now) {
            None => {
                return self
                    .catalog
                    .handle_request::<R, T>(request, response_handle)
                    .await
            }
            Some(Verdict::Track(mac)) => {
                let info = self
                    .catalog
                    .handle_request::<R, T>(request, response_handle)
                    .await;
                self.replays
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .answered(&mac, info.response_code);
                return info;
            }
            Some(Verdict::Drop(key)) => {
                tracing::info!(%src, %key, "a copy of an update being applied; dropped");
                return ResponseInfo::from(hickory_proto::op::Header {
                    metadata: hickory_proto::op::Metadata::response_from_request(&request.metadata),
                    counts: Default::default(),
                });
            }
            Some(Verdict::Again {
                key,
                code,
                signer,
                mac,
            }) => {
                tracing::warn!(%src, %key, "an update seen before (a retransmission or a replay): its first answer ({code}) again, nothing applied");
                return answer_again(request, code, signer, mac, now, response_handle).await;
            }
            Some(other) => other,
        };
        let builder = MessageResponseBuilder::new(&request.queries, None);
        let mut response = match &verdict {
            Verdict::Transfer => {
                tracing::warn!(%src, "IXFR refused (zone transfers are not served)");
                builder.error_msg(&request.metadata, ResponseCode::Refused)
            }
            Verdict::WrongAlgorithm(key) => {
                tracing::warn!(%src, %key, "update refused: key {key} is not for that algorithm (BADKEY)");
                builder.error_msg(&request.metadata, ResponseCode::NotAuth)
            }
            Verdict::Track(_) | Verdict::Again { .. } | Verdict::Drop(_) => {
                unreachable!("handled above")
            }
        };
        if let Verdict::WrongAlgorithm(key) = verdict {
            // "…MUST generate an error response with RCODE 9 (NOTAUTH) and TSIG ERROR 17
            // (BADKEY). This response MUST be unsigned" (RFC 8945 §5.2.2).
            if let Ok(tsig) =
                TSigResponseContext::unknown_key(request.metadata.id, now, key).sign(&[])
            {
                response.set_signature(tsig);
            }
        }
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(%src, "cannot send a refusal: {e}");
                let mut metadata =
                    hickory_proto::op::Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                hickory_proto::op::Header {
                    metadata,
                    counts: Default::default(),
                }
                .into()
            }
        }
    }
}

/// Answers a signed update seen before with `code`, signed for this request as the first
/// answer was, so that a retransmitting client accepts it.
async fn answer_again<R: ResponseHandler>(
    request: &Request,
    code: ResponseCode,
    signer: TSigner,
    mac: Vec<u8>,
    now: u64,
    mut response_handle: R,
) -> ResponseInfo {
    use hickory_proto::op::{MessageType, Metadata};
    use hickory_proto::serialize::binary::BinEncoder;
    let meta = || {
        let mut m = Metadata::new(request.metadata.id, MessageType::Response, OpCode::Update);
        m.response_code = code;
        m
    };
    let mut response = MessageResponseBuilder::new(&request.queries, None).build_no_records(meta());
    let mut tbs = Vec::with_capacity(512);
    let encoded = MessageResponseBuilder::new(&request.queries, None)
        .build_no_records(meta())
        .destructive_emit(&mut BinEncoder::new(&mut tbs));
    let signed = encoded.map_err(|e| e.to_string()).and_then(|_| {
        TSigResponseContext::new(request.metadata.id, now, signer, mac, None)
            .sign(&tbs)
            .map_err(|e| e.to_string())
    });
    match signed {
        Ok(tsig) => response.set_signature(tsig),
        Err(e) => tracing::warn!("cannot sign the answer again: {e}"),
    }
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::warn!(src = %request.src(), "cannot send an answer again: {e}");
            ResponseInfo::from(hickory_proto::op::Header {
                metadata: meta(),
                counts: Default::default(),
            })
        }
    }
}

/// The key every zone update is signed with.
pub fn signer(name: &str, secret: Vec<u8>, fudge: u16) -> Result<TSigner, String> {
    let parsed = Name::from_ascii(name).map_err(|e| format!("key name {name}: {e}"))?;
    TSigner::new(secret, TsigAlgorithm::HmacSha256, parsed, fudge)
        .map_err(|e| format!("key {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_applied_once_and_its_answer_given_again() {
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.check(b"mac-1", 1000, 300, 1000), Seen::First);
        assert_eq!(guard.check(b"mac-1", 1000, 300, 1000), Seen::InProgress);
        guard.answered(b"mac-1", ResponseCode::NoError);
        assert_eq!(
            guard.check(b"mac-1", 1000, 300, 1100),
            Seen::Answered(ResponseCode::NoError),
            "replayed"
        );
        assert_eq!(guard.check(b"mac-2", 1000, 300, 1100), Seen::First);
        // Past the window the entry is pruned; hickory refuses the message as BADTIME then.
        assert_eq!(guard.check(b"mac-1", 1000, 300, 1301), Seen::First);
        assert!(guard.seen.len() <= 2);
    }

    #[test]
    fn memory_is_bounded() {
        let mut guard = ReplayGuard::default();
        for i in 0..(MAX_REMEMBERED + 10) {
            guard.check(&(i as u64).to_be_bytes(), 1000, 300, 1000);
        }
        assert!(guard.seen.len() <= MAX_REMEMBERED);
        assert_eq!(guard.seen.len(), guard.order.len());
    }
}
