//! What an authoritative server checks before hickory's catalog sees a message: a signed
//! update replayed within the fudge window is refused (hickory accepts a captured update
//! again for 300 s), a known key name with another algorithm gets BADKEY as RFC 8945 §5.2
//! asks (hickory answers BADSIG), and IXFR is refused like AXFR (hickory answers NOERROR
//! with nothing in it, which dig reports as a failed transfer).
//!
//! [`ReplayGuard`] is the pure part: it is fed each verified signature and says whether it
//! was seen before. [`Guarded`] wraps the catalog.

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

/// Remembers the MACs of signed messages until their time is out of the fudge window.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: HashMap<Vec<u8>, u64>,
    /// (expiry, mac) in arrival order, for pruning.
    order: VecDeque<(u64, Vec<u8>)>,
}

impl ReplayGuard {
    /// Records a signature made at `signed` (seconds) with `fudge`; false if it was seen.
    pub fn first_use(&mut self, mac: &[u8], signed: u64, fudge: u16, now: u64) -> bool {
        while let Some((expiry, _)) = self.order.front() {
            if *expiry >= now && self.order.len() < MAX_REMEMBERED {
                break;
            }
            let (_, old) = self.order.pop_front().expect("front exists");
            self.seen.remove(&old);
        }
        if self.seen.contains_key(mac) {
            return false;
        }
        let expiry = signed.saturating_add(u64::from(fudge));
        self.seen.insert(mac.to_vec(), expiry);
        self.order.push_back((expiry, mac.to_vec()));
        true
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
    fn verdict(&self, request: &Request, now: u64) -> Option<Refusal> {
        if request.metadata.op_code == OpCode::Query {
            let ixfr = request
                .queries
                .queries()
                .iter()
                .any(|q| q.query_type() == RecordType::IXFR);
            return ixfr.then_some(Refusal::Transfer);
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
            return Some(Refusal::WrongAlgorithm(tsig.name.clone()));
        }
        // Only a signature that verifies is remembered, so nobody can fill the memory, or
        // spoil a future update, with made-up MACs. Bad ones are the catalog's to refuse.
        signer
            .verify_message_byte(request.as_slice(), None, true)
            .ok()?;
        let fresh = self
            .replays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first_use(&tsig.data.mac, tsig.data.time, tsig.data.fudge, now);
        (!fresh).then_some(Refusal::Replay(tsig.name.clone()))
    }
}

enum Refusal {
    Transfer,
    WrongAlgorithm(Name),
    Replay(Name),
}

#[async_trait::async_trait]
impl RequestHandler for Guarded {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let now = T::current_time();
        let Some(refusal) = self.verdict(request, now) else {
            return self
                .catalog
                .handle_request::<R, T>(request, response_handle)
                .await;
        };
        let src = request.src();
        let builder = MessageResponseBuilder::new(&request.queries, None);
        let mut response = match &refusal {
            Refusal::Transfer => {
                tracing::warn!(%src, "IXFR refused (zone transfers are not served)");
                builder.error_msg(&request.metadata, ResponseCode::Refused)
            }
            Refusal::WrongAlgorithm(key) => {
                tracing::warn!(%src, %key, "update refused: key {key} is not for that algorithm (BADKEY)");
                builder.error_msg(&request.metadata, ResponseCode::NotAuth)
            }
            Refusal::Replay(key) => {
                tracing::warn!(%src, %key, "update refused: a replay of an update already accepted");
                builder.error_msg(&request.metadata, ResponseCode::Refused)
            }
        };
        if let Refusal::WrongAlgorithm(key) = refusal {
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
    fn a_signature_is_accepted_once_within_its_window() {
        let mut guard = ReplayGuard::default();
        assert!(guard.first_use(b"mac-1", 1000, 300, 1000));
        assert!(!guard.first_use(b"mac-1", 1000, 300, 1100), "replayed");
        assert!(guard.first_use(b"mac-2", 1000, 300, 1100));
        // Past the window the entry is pruned; hickory refuses the message as BADTIME then.
        assert!(guard.first_use(b"mac-1", 1000, 300, 1301));
        assert!(guard.seen.len() <= 2);
    }

    #[test]
    fn memory_is_bounded() {
        let mut guard = ReplayGuard::default();
        for i in 0..(MAX_REMEMBERED + 10) {
            guard.first_use(&(i as u64).to_be_bytes(), 1000, 300, 1000);
        }
        assert!(guard.seen.len() <= MAX_REMEMBERED);
        assert_eq!(guard.seen.len(), guard.order.len());
    }
}
