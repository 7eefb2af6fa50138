//! GSUP messages (Osmocom's Generic Subscriber Update Protocol): a message type byte and
//! tag-length-value information elements, byte-compatible with libosmocore's encoder for
//! the messages we use, so real GSUP tools decode them.
//!
//! roamlab adds, outside GSUP's assigned values:
//! - message types 0xF0/0xF1/0xF2 (request/error/result): the visited network reports a
//!   terminal's session address to the HLR, which answers with the subscriber's host
//!   name; 0xF4/0xF5/0xF6: it withdraws that address;
//! - message types 0x80–0x8F: the cell's air interface between terminal and VLR (attach,
//!   authentication, detach), which reuses this encoding on its own socket;
//! - IEs 0xF0 (host name, text), 0xF1 (an IPv4 or IPv6 address, 4 or 16 bytes) and 0xF2
//!   (the terminal's link-layer address on the cell, 6 bytes, which the visited DHCP server
//!   authorises by).
//!
//! Decoding never panics: every length is checked, and a malformed message is an error.

use std::net::IpAddr;

/// Message types (GSUP's, then roamlab's).
pub mod msg {
    pub const UPDATE_LOCATION_REQUEST: u8 = 0x04;
    pub const UPDATE_LOCATION_ERROR: u8 = 0x05;
    pub const UPDATE_LOCATION_RESULT: u8 = 0x06;
    pub const SEND_AUTH_INFO_REQUEST: u8 = 0x08;
    pub const SEND_AUTH_INFO_ERROR: u8 = 0x09;
    pub const SEND_AUTH_INFO_RESULT: u8 = 0x0a;
    pub const AUTH_FAIL_REPORT: u8 = 0x0b;
    pub const PURGE_MS_REQUEST: u8 = 0x0c;
    pub const PURGE_MS_ERROR: u8 = 0x0d;
    pub const PURGE_MS_RESULT: u8 = 0x0e;
    pub const INSERT_DATA_REQUEST: u8 = 0x10;
    pub const INSERT_DATA_ERROR: u8 = 0x11;
    pub const INSERT_DATA_RESULT: u8 = 0x12;
    pub const LOCATION_CANCEL_REQUEST: u8 = 0x1c;
    pub const LOCATION_CANCEL_ERROR: u8 = 0x1d;
    pub const LOCATION_CANCEL_RESULT: u8 = 0x1e;
    /// roamlab: report a terminal's session address to its HLR.
    pub const SESSION_ADDRESS_REQUEST: u8 = 0xf0;
    pub const SESSION_ADDRESS_ERROR: u8 = 0xf1;
    pub const SESSION_ADDRESS_RESULT: u8 = 0xf2;
    /// roamlab: withdraw it.
    pub const SESSION_WITHDRAW_REQUEST: u8 = 0xf4;
    pub const SESSION_WITHDRAW_ERROR: u8 = 0xf5;
    pub const SESSION_WITHDRAW_RESULT: u8 = 0xf6;
    /// roamlab air interface (terminal ↔ VLR over the cell).
    pub const ATTACH_REQUEST: u8 = 0x80;
    pub const ATTACH_REJECT: u8 = 0x81;
    pub const ATTACH_ACCEPT: u8 = 0x82;
    pub const AUTH_REQUEST: u8 = 0x84;
    pub const AUTH_RESPONSE: u8 = 0x86;
    pub const AUTH_FAILURE: u8 = 0x87;
    pub const DETACH_REQUEST: u8 = 0x88;
    pub const DETACH_ACCEPT: u8 = 0x8a;
    /// The network dropped the terminal (its home registered it elsewhere).
    pub const DETACH_INDICATION: u8 = 0x8c;

    /// The error form of a request (GSUP: the last two bits are 01).
    pub fn error_of(request: u8) -> u8 {
        (request & 0b1111_1100) | 0b01
    }

    /// The result form of a request (the last two bits are 10).
    pub fn result_of(request: u8) -> u8 {
        (request & 0b1111_1100) | 0b10
    }

    pub fn name(t: u8) -> &'static str {
        match t {
            UPDATE_LOCATION_REQUEST => "UpdateLocation request",
            UPDATE_LOCATION_ERROR => "UpdateLocation error",
            UPDATE_LOCATION_RESULT => "UpdateLocation result",
            SEND_AUTH_INFO_REQUEST => "SendAuthInfo request",
            SEND_AUTH_INFO_ERROR => "SendAuthInfo error",
            SEND_AUTH_INFO_RESULT => "SendAuthInfo result",
            AUTH_FAIL_REPORT => "AuthFailReport",
            PURGE_MS_REQUEST => "PurgeMS request",
            PURGE_MS_ERROR => "PurgeMS error",
            PURGE_MS_RESULT => "PurgeMS result",
            INSERT_DATA_REQUEST => "InsertSubscriberData request",
            INSERT_DATA_ERROR => "InsertSubscriberData error",
            INSERT_DATA_RESULT => "InsertSubscriberData result",
            LOCATION_CANCEL_REQUEST => "CancelLocation request",
            LOCATION_CANCEL_ERROR => "CancelLocation error",
            LOCATION_CANCEL_RESULT => "CancelLocation result",
            SESSION_ADDRESS_REQUEST => "SessionAddress request",
            SESSION_ADDRESS_ERROR => "SessionAddress error",
            SESSION_ADDRESS_RESULT => "SessionAddress result",
            SESSION_WITHDRAW_REQUEST => "SessionWithdraw request",
            SESSION_WITHDRAW_ERROR => "SessionWithdraw error",
            SESSION_WITHDRAW_RESULT => "SessionWithdraw result",
            ATTACH_REQUEST => "Attach request",
            ATTACH_REJECT => "Attach reject",
            ATTACH_ACCEPT => "Attach accept",
            AUTH_REQUEST => "Authentication request",
            AUTH_RESPONSE => "Authentication response",
            AUTH_FAILURE => "Authentication failure",
            DETACH_REQUEST => "Detach request",
            DETACH_ACCEPT => "Detach accept",
            DETACH_INDICATION => "Detach indication",
            _ => "unknown message",
        }
    }
}

/// Information element tags.
mod ie {
    pub const IMSI: u8 = 0x01;
    pub const CAUSE: u8 = 0x02;
    pub const AUTH_TUPLE: u8 = 0x03;
    pub const PDP_INFO_COMPL: u8 = 0x04;
    pub const PDP_INFO: u8 = 0x05;
    pub const CANCEL_TYPE: u8 = 0x06;
    pub const FREEZE_PTMSI: u8 = 0x07;
    pub const MSISDN: u8 = 0x08;
    pub const HLR_NUMBER: u8 = 0x09;
    pub const MESSAGE_CLASS: u8 = 0x0a;
    pub const CHARG_CHAR: u8 = 0x14;
    pub const RAND: u8 = 0x20;
    pub const SRES: u8 = 0x21;
    pub const KC: u8 = 0x22;
    pub const IK: u8 = 0x23;
    pub const CK: u8 = 0x24;
    pub const AUTN: u8 = 0x25;
    pub const AUTS: u8 = 0x26;
    pub const RES: u8 = 0x27;
    pub const CN_DOMAIN: u8 = 0x28;
    pub const NUM_VECTORS: u8 = 0x52;
    pub const HOST_NAME: u8 = 0xf0;
    pub const SESSION_ADDRESS: u8 = 0xf1;
    pub const TERMINAL_MAC: u8 = 0xf2;
}

/// GSM 24.008 GMM cause values used here.
pub mod cause {
    pub const IMSI_UNKNOWN: u8 = 2;
    pub const ILLEGAL_MS: u8 = 3;
    pub const GPRS_NOT_ALLOWED: u8 = 7;
    pub const PLMN_NOT_ALLOWED: u8 = 11;
    pub const ROAMING_NOT_ALLOWED: u8 = 13;
    pub const NETWORK_FAILURE: u8 = 17;
    pub const CONGESTION: u8 = 22;
    pub const MAC_FAILURE: u8 = 20;
    pub const SYNCH_FAILURE: u8 = 21;
    pub const INVALID_MANDATORY_INFO: u8 = 96;
    pub const MSG_TYPE_NOT_IMPLEMENTED: u8 = 97;
    pub const PROTOCOL_ERROR: u8 = 111;

    pub fn name(c: u8) -> &'static str {
        match c {
            IMSI_UNKNOWN => "IMSI unknown in HLR",
            ILLEGAL_MS => "illegal MS",
            GPRS_NOT_ALLOWED => "GPRS services not allowed",
            PLMN_NOT_ALLOWED => "PLMN not allowed (no roaming agreement)",
            ROAMING_NOT_ALLOWED => "roaming not allowed",
            NETWORK_FAILURE => "network failure",
            CONGESTION => "congestion",
            MAC_FAILURE => "MAC failure",
            SYNCH_FAILURE => "synch failure",
            INVALID_MANDATORY_INFO => "invalid mandatory information",
            MSG_TYPE_NOT_IMPLEMENTED => "message type not implemented",
            _ => "protocol error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelType {
    Update,
    Withdraw,
}

/// One authentication vector (GSM and UMTS parts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthTuple {
    pub rand: [u8; 16],
    pub sres: [u8; 4],
    pub kc: [u8; 8],
    /// The UMTS part: IK, CK, AUTN, XRES.
    pub umts: Option<UmtsTuple>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UmtsTuple {
    pub ik: [u8; 16],
    pub ck: [u8; 16],
    pub autn: [u8; 16],
    pub res: Vec<u8>,
}

/// A decoded message. Fields absent from the wire are `None`/empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub msg_type: u8,
    pub imsi: String,
    /// MSISDN as encoded on the wire (osmo-hlr: a length octet, then BCD); see
    /// [`encode_msisdn`] and [`Message::msisdn`].
    pub msisdn: Option<Vec<u8>>,
    /// Raw HLR-Number (BCD with its type-of-number octet).
    pub hlr_number: Option<Vec<u8>>,
    pub cause: Option<u8>,
    pub cancel_type: Option<CancelType>,
    pub pdp_info_complete: bool,
    pub freeze_ptmsi: bool,
    /// PDP-Info IEs, kept encoded.
    pub pdp_infos: Vec<Vec<u8>>,
    pub auth_tuples: Vec<AuthTuple>,
    pub auts: Option<[u8; 14]>,
    pub rand: Option<[u8; 16]>,
    pub cn_domain: Option<u8>,
    pub charging: Option<Vec<u8>>,
    pub num_vectors: Option<u8>,
    pub message_class: Option<u8>,
    pub host_name: Option<String>,
    pub session_address: Option<IpAddr>,
    /// Air interface: the terminal's MAC address on the cell.
    pub terminal_mac: Option<[u8; 6]>,
    /// Air interface: the challenge's AUTN and the terminal's RES.
    pub autn: Option<[u8; 16]>,
    pub res: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("IE 0x{tag:02x} runs past the end of the message")]
    Truncated { tag: u8 },
    #[error("IE 0x{tag:02x} has a bad value: {why}")]
    BadValue { tag: u8, why: &'static str },
    #[error("no IMSI")]
    NoImsi,
}

impl Message {
    pub fn new(msg_type: u8, imsi: &str) -> Self {
        Message {
            msg_type,
            imsi: imsi.to_string(),
            ..Default::default()
        }
    }

    /// The MSISDN's digits, when it is encoded as osmo-hlr does.
    pub fn msisdn(&self) -> Option<String> {
        let (&len, digits) = self.msisdn.as_ref()?.split_first()?;
        unbcd(digits.get(..len as usize)?)
    }

    /// The error answer to this request, with a cause.
    pub fn error_reply(&self, cause: u8) -> Self {
        let mut m = Message::new(msg::error_of(self.msg_type), &self.imsi);
        m.cause = Some(cause);
        m
    }

    /// The message's bytes, or the first information element too long for GSUP's
    /// one-octet length (never a wrapped length on the wire).
    pub fn try_encode(&self) -> Result<Vec<u8>, EncodeError> {
        let bytes = self.encode();
        match first_overlong(self) {
            Some(tag) => Err(EncodeError::TooLong { tag }),
            None => Ok(bytes),
        }
    }

    /// The message's bytes. Every value must fit GSUP's one-octet length; [`try_encode`]
    /// checks that (a value that does not would be cut here, so nothing decodes wrongly).
    ///
    /// [`try_encode`]: Message::try_encode
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.msg_type];
        put(&mut out, ie::IMSI, &bcd(&self.imsi));
        if let Some(msisdn) = &self.msisdn {
            put(&mut out, ie::MSISDN, msisdn);
        }
        if let Some(h) = &self.hlr_number {
            put(&mut out, ie::HLR_NUMBER, h);
        }
        if let Some(c) = self.cause {
            put(&mut out, ie::CAUSE, &[c]);
        }
        if let Some(t) = self.cancel_type {
            put(
                &mut out,
                ie::CANCEL_TYPE,
                &[if t == CancelType::Update { 0 } else { 1 }],
            );
        }
        if self.pdp_info_complete {
            put(&mut out, ie::PDP_INFO_COMPL, &[]);
        }
        if self.freeze_ptmsi {
            put(&mut out, ie::FREEZE_PTMSI, &[]);
        }
        for pdp in &self.pdp_infos {
            put(&mut out, ie::PDP_INFO, pdp);
        }
        for tuple in &self.auth_tuples {
            let mut t = Vec::new();
            put(&mut t, ie::RAND, &tuple.rand);
            put(&mut t, ie::SRES, &tuple.sres);
            put(&mut t, ie::KC, &tuple.kc);
            if let Some(u) = &tuple.umts {
                put(&mut t, ie::IK, &u.ik);
                put(&mut t, ie::CK, &u.ck);
                put(&mut t, ie::AUTN, &u.autn);
                put(&mut t, ie::RES, &u.res);
            }
            put(&mut out, ie::AUTH_TUPLE, &t);
        }
        if let Some(a) = &self.auts {
            put(&mut out, ie::AUTS, a);
        }
        if let Some(r) = &self.rand {
            put(&mut out, ie::RAND, r);
        }
        if let Some(a) = &self.autn {
            put(&mut out, ie::AUTN, a);
        }
        if let Some(r) = &self.res {
            put(&mut out, ie::RES, r);
        }
        if let Some(d) = self.cn_domain {
            put(&mut out, ie::CN_DOMAIN, &[d]);
        }
        if let Some(c) = &self.charging {
            put(&mut out, ie::CHARG_CHAR, c);
        }
        if let Some(n) = self.num_vectors {
            put(&mut out, ie::NUM_VECTORS, &[n]);
        }
        if let Some(c) = self.message_class {
            put(&mut out, ie::MESSAGE_CLASS, &[c]);
        }
        if let Some(h) = &self.host_name {
            put(&mut out, ie::HOST_NAME, h.as_bytes());
        }
        match self.session_address {
            Some(IpAddr::V4(a)) => put(&mut out, ie::SESSION_ADDRESS, &a.octets()),
            Some(IpAddr::V6(a)) => put(&mut out, ie::SESSION_ADDRESS, &a.octets()),
            None => {}
        }
        if let Some(mac) = &self.terminal_mac {
            put(&mut out, ie::TERMINAL_MAC, mac);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (&msg_type, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        let mut m = Message {
            msg_type,
            ..Default::default()
        };
        let mut have_imsi = false;
        for (tag, value) in Tlvs(rest) {
            let (tag, value) = (tag, value?);
            let bad = |why| DecodeError::BadValue { tag, why };
            match tag {
                ie::IMSI => {
                    m.imsi = unbcd(value).ok_or(bad("not BCD digits"))?;
                    have_imsi = true;
                }
                ie::MSISDN => m.msisdn = Some(value.to_vec()),
                ie::HLR_NUMBER => m.hlr_number = Some(value.to_vec()),
                ie::CAUSE => m.cause = Some(one(value).ok_or(bad("not one byte"))?),
                ie::CANCEL_TYPE => {
                    m.cancel_type = Some(match one(value) {
                        Some(0) => CancelType::Update,
                        Some(1) => CancelType::Withdraw,
                        _ => return Err(bad("unknown cancel type")),
                    })
                }
                ie::PDP_INFO_COMPL => m.pdp_info_complete = true,
                ie::FREEZE_PTMSI => m.freeze_ptmsi = true,
                ie::PDP_INFO => m.pdp_infos.push(value.to_vec()),
                ie::AUTH_TUPLE => m.auth_tuples.push(auth_tuple(value)?),
                ie::AUTS => m.auts = Some(value.try_into().map_err(|_| bad("not 14 bytes"))?),
                ie::RAND => m.rand = Some(value.try_into().map_err(|_| bad("not 16 bytes"))?),
                ie::AUTN => m.autn = Some(value.try_into().map_err(|_| bad("not 16 bytes"))?),
                ie::RES => {
                    if value.len() < 4 || value.len() > 16 {
                        return Err(bad("not 4 to 16 bytes"));
                    }
                    m.res = Some(value.to_vec())
                }
                ie::CN_DOMAIN => m.cn_domain = Some(one(value).ok_or(bad("not one byte"))?),
                ie::CHARG_CHAR => m.charging = Some(value.to_vec()),
                ie::NUM_VECTORS => m.num_vectors = Some(one(value).ok_or(bad("not one byte"))?),
                ie::MESSAGE_CLASS => m.message_class = Some(one(value).ok_or(bad("not one byte"))?),
                ie::HOST_NAME => {
                    m.host_name =
                        Some(String::from_utf8(value.to_vec()).map_err(|_| bad("not text"))?)
                }
                ie::SESSION_ADDRESS => {
                    m.session_address = Some(match value.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(value).expect("4")),
                        16 => IpAddr::from(<[u8; 16]>::try_from(value).expect("16")),
                        _ => return Err(bad("not 4 or 16 bytes")),
                    })
                }
                ie::TERMINAL_MAC => {
                    m.terminal_mac = Some(value.try_into().map_err(|_| bad("not 6 bytes"))?)
                }
                // GSUP peers may send IEs we do not use; they are skipped, as osmo does.
                _ => {}
            }
        }
        if !have_imsi {
            return Err(DecodeError::NoImsi);
        }
        Ok(m)
    }
}

fn one(value: &[u8]) -> Option<u8> {
    match value {
        [b] => Some(*b),
        _ => None,
    }
}

fn auth_tuple(bytes: &[u8]) -> Result<AuthTuple, DecodeError> {
    let mut t = AuthTuple::default();
    let mut umts = UmtsTuple::default();
    let mut is_umts = false;
    for (tag, value) in Tlvs(bytes) {
        let value = value?;
        let bad = |why| DecodeError::BadValue { tag, why };
        match tag {
            ie::RAND => t.rand = value.try_into().map_err(|_| bad("not 16 bytes"))?,
            ie::SRES => t.sres = value.try_into().map_err(|_| bad("not 4 bytes"))?,
            ie::KC => t.kc = value.try_into().map_err(|_| bad("not 8 bytes"))?,
            ie::IK => {
                (umts.ik, is_umts) = (value.try_into().map_err(|_| bad("not 16 bytes"))?, true)
            }
            ie::CK => {
                (umts.ck, is_umts) = (value.try_into().map_err(|_| bad("not 16 bytes"))?, true)
            }
            ie::AUTN => {
                (umts.autn, is_umts) = (value.try_into().map_err(|_| bad("not 16 bytes"))?, true)
            }
            // As at top level: a RES is 4 to 16 bytes (TS 33.102).
            ie::RES if value.len() < 4 || value.len() > 16 => {
                return Err(bad("RES must be 4 to 16 bytes"))
            }
            ie::RES => (umts.res, is_umts) = (value.to_vec(), true),
            _ => {}
        }
    }
    if is_umts && umts.res.is_empty() {
        // What would be re-encoded as an empty RES, which no peer decodes.
        return Err(DecodeError::BadValue {
            tag: ie::RES,
            why: "a UMTS vector without RES",
        });
    }
    t.umts = is_umts.then_some(umts);
    Ok(t)
}

/// Iterates over tag-length-value items, reporting a truncated one as an error.
struct Tlvs<'a>(&'a [u8]);

impl<'a> Iterator for Tlvs<'a> {
    type Item = (u8, Result<&'a [u8], DecodeError>);

    fn next(&mut self) -> Option<Self::Item> {
        let (&tag, rest) = self.0.split_first()?;
        let Some((&len, rest)) = rest.split_first() else {
            self.0 = &[];
            return Some((tag, Err(DecodeError::Truncated { tag })));
        };
        match rest.get(..len as usize) {
            Some(value) => {
                self.0 = &rest[len as usize..];
                Some((tag, Ok(value)))
            }
            None => {
                self.0 = &[];
                Some((tag, Err(DecodeError::Truncated { tag })))
            }
        }
    }
}

fn put(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    // A longer value cannot be said in one length octet; `try_encode` refuses it, and here
    // it is cut rather than wrapped, so the bytes still parse as what they say.
    let value = &value[..value.len().min(255)];
    out.push(tag);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

/// The first variable-length element of `m` longer than 255 bytes, if any.
fn first_overlong(m: &Message) -> Option<u8> {
    let long = |v: &[u8]| v.len() > 255;
    if m.msisdn.as_deref().is_some_and(long) {
        return Some(ie::MSISDN);
    }
    if m.hlr_number.as_deref().is_some_and(long) {
        return Some(ie::HLR_NUMBER);
    }
    if m.charging.as_deref().is_some_and(long) {
        return Some(ie::CHARG_CHAR);
    }
    if m.pdp_infos.iter().any(|p| long(p)) {
        return Some(ie::PDP_INFO);
    }
    if m.res.as_deref().is_some_and(long) {
        return Some(ie::RES);
    }
    if m.host_name.as_deref().is_some_and(|h| long(h.as_bytes())) {
        return Some(ie::HOST_NAME);
    }
    for t in &m.auth_tuples {
        // The tuple itself: its IEs (fixed sizes but RES) must fit too.
        let res = t.umts.as_ref().map_or(0, |u| u.res.len());
        if res > 255 || 16 + 4 + 8 + 3 * 16 + res + 14 > 255 {
            return Some(ie::AUTH_TUPLE);
        }
    }
    None
}

/// Why a message cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("information element 0x{tag:02x} is longer than 255 bytes")]
    TooLong { tag: u8 },
}

/// An MSISDN as osmo-hlr puts it in GSUP: a length octet, then the digits in TBCD.
pub fn encode_msisdn(digits: &str) -> Vec<u8> {
    let bcd = bcd(digits);
    let mut out = vec![bcd.len() as u8];
    out.extend(bcd);
    out
}

/// Digits as TBCD: two per octet, low nibble first, an odd count padded with 0xF.
pub fn bcd(digits: &str) -> Vec<u8> {
    let d: Vec<u8> = digits
        .bytes()
        .map(|b| b.wrapping_sub(b'0') & 0x0f)
        .collect();
    d.chunks(2)
        .map(|p| p[0] | (p.get(1).copied().unwrap_or(0x0f) << 4))
        .collect()
}

fn unbcd(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len() * 2);
    for (i, b) in bytes.iter().enumerate() {
        for (n, nibble) in [b & 0x0f, b >> 4].into_iter().enumerate() {
            match nibble {
                0..=9 => out.push((b'0' + nibble) as char),
                0x0f if n == 1 && i + 1 == bytes.len() => {}
                _ => return None,
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMSI_IE: [u8; 10] = [0x01, 0x08, 0x21, 0x43, 0x65, 0x87, 0x09, 0x21, 0x43, 0xf5];

    fn with_imsi(msg_type: u8, tail: &[u8]) -> Vec<u8> {
        let mut v = vec![msg_type];
        v.extend(IMSI_IE);
        v.extend(tail);
        v
    }

    /// Messages as libosmocore's own GSUP test encodes them: decoding and re-encoding
    /// must give the same bytes.
    #[test]
    fn golden_bytes_round_trip() {
        let range = |from: u8| -> Vec<u8> { (from..from + 16).collect() };
        let mut umts_tuple = vec![0x20, 0x10];
        umts_tuple.extend(range(1));
        umts_tuple.extend([
            0x21, 0x04, 0x21, 0x22, 0x23, 0x24, 0x22, 0x08, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36,
            0x37, 0x38,
        ]);
        for tag in [0x23, 0x24, 0x25] {
            umts_tuple.extend([tag, 0x10]);
            umts_tuple.extend(range(1));
        }
        umts_tuple.extend([0x27, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]);
        let mut sai_result = vec![0x03, umts_tuple.len() as u8];
        sai_result.extend(&umts_tuple);
        let mut auts_req = vec![0x26, 0x0e];
        auts_req.extend(1..=14u8);
        auts_req.extend([0x20, 0x10]);
        auts_req.extend(range(1));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("SendAuthInfo request", with_imsi(0x08, &[0x0a, 0x01, 0x01])),
            ("SendAuthInfo error", with_imsi(0x09, &[0x02, 0x01, 0x07])),
            ("SendAuthInfo result (UMTS)", with_imsi(0x0a, &sai_result)),
            ("SendAuthInfo request with AUTS", with_imsi(0x08, &auts_req)),
            ("UpdateLocation request", with_imsi(0x04, &[])),
            ("UpdateLocation error", with_imsi(0x05, &[0x02, 0x01, 0x07])),
            (
                "CancelLocation request",
                with_imsi(0x1c, &[0x06, 0x01, 0x00]),
            ),
            ("CancelLocation error", with_imsi(0x1d, &[0x02, 0x01, 0x03])),
            ("CancelLocation result", with_imsi(0x1e, &[])),
            ("PurgeMS request", with_imsi(0x0c, &[])),
            ("PurgeMS error", with_imsi(0x0d, &[0x02, 0x01, 0x03])),
            ("PurgeMS result", with_imsi(0x0e, &[0x07, 0x00])),
            (
                "UpdateLocation result",
                with_imsi(
                    0x06,
                    &[
                        0x08, 0x07, 0x91, 0x94, 0x61, 0x46, 0x32, 0x24, 0x43, // MSISDN
                        0x09, 0x07, 0x91, 0x83, 0x52, 0x38, 0x48, 0x83, 0x93, // HLR number
                        0x04, 0x00, // PDP info complete
                        0x05, 0x19, 0x10, 0x01, 0x01, 0x11, 0x02, 0xf1, 0x21, 0x12, 0x09, 0x04,
                        b't', b'e', b's', b't', 0x03, b'a', b'p', b'n', 0x13, 0x01, 0x02, 0x14,
                        0x02, 0xff, 0x23, // PDP info 1
                        0x05, 0x11, 0x10, 0x01, 0x02, 0x11, 0x02, 0xf1, 0x21, 0x12, 0x08, 0x03,
                        b'f', b'o', b'o', 0x03, b'a', b'p', b'n', // PDP info 2
                        0x14, 0x02, 0xae, 0xff, // charging characteristics
                    ],
                ),
            ),
        ];
        for (name, bytes) in cases {
            let m = Message::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(m.imsi, "123456789012345", "{name}");
            assert_eq!(m.encode(), bytes, "{name}: re-encoding differs");
        }
    }

    #[test]
    fn umts_vectors_and_msisdn_decode_to_their_fields() {
        let mut ours = Message::new(msg::INSERT_DATA_REQUEST, "001010000000001");
        ours.msisdn = Some(encode_msisdn("15550000001"));
        ours.host_name = Some("phone1.home.example".into());
        ours.session_address = Some("198.51.100.100".parse().unwrap());
        ours.terminal_mac = Some([2, 0, 0, 0, 0, 1]);
        let back = Message::decode(&ours.encode()).unwrap();
        assert_eq!(back, ours);
        assert_eq!(back.msisdn().as_deref(), Some("15550000001"));
    }

    #[test]
    fn imsi_is_tbcd() {
        assert_eq!(
            bcd("123456789012345"),
            [0x21, 0x43, 0x65, 0x87, 0x09, 0x21, 0x43, 0xf5]
        );
        assert_eq!(
            unbcd(&[0x21, 0x43, 0x65, 0x87, 0x09, 0x21, 0x43, 0xf5]).as_deref(),
            Some("123456789012345")
        );
        assert_eq!(unbcd(&[0xf1]).as_deref(), Some("1"));
        assert_eq!(unbcd(&[0x1f]), None);
    }

    #[test]
    fn error_and_result_forms_follow_the_gsup_scheme() {
        assert_eq!(
            msg::error_of(msg::SEND_AUTH_INFO_REQUEST),
            msg::SEND_AUTH_INFO_ERROR
        );
        assert_eq!(
            msg::result_of(msg::UPDATE_LOCATION_REQUEST),
            msg::UPDATE_LOCATION_RESULT
        );
        assert_eq!(
            msg::result_of(msg::SESSION_ADDRESS_REQUEST),
            msg::SESSION_ADDRESS_RESULT
        );
        assert_eq!(
            msg::error_of(msg::SESSION_WITHDRAW_REQUEST),
            msg::SESSION_WITHDRAW_ERROR
        );
    }

    /// A tiny deterministic generator for the property tests below.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn garbage_and_truncations_never_panic() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut valid = Message::new(msg::SEND_AUTH_INFO_RESULT, "001010000000001");
        valid.auth_tuples.push(AuthTuple {
            umts: Some(UmtsTuple {
                res: vec![1; 8],
                ..Default::default()
            }),
            ..Default::default()
        });
        valid.host_name = Some("phone1.home.example".into());
        let bytes = valid.encode();
        for cut in 0..bytes.len() {
            let _ = Message::decode(&bytes[..cut]);
        }
        for _ in 0..20_000 {
            let len = (xorshift(&mut seed) % 80) as usize;
            let garbage: Vec<u8> = (0..len).map(|_| xorshift(&mut seed) as u8).collect();
            let _ = Message::decode(&garbage);
            let mut flipped = bytes.clone();
            let at = (xorshift(&mut seed) as usize) % flipped.len();
            flipped[at] = xorshift(&mut seed) as u8;
            if let Ok(m) = Message::decode(&flipped) {
                // Whatever decodes must encode again without panicking.
                let _ = m.encode();
            }
        }
    }

    #[test]
    fn round_trips_are_stable() {
        let mut seed = 42u64;
        for _ in 0..2_000 {
            let mut m = Message::new(
                msg::ATTACH_REQUEST,
                &format!("{:015}", xorshift(&mut seed) % 1_000_000_000_000_000),
            );
            if xorshift(&mut seed).is_multiple_of(2) {
                m.cause = Some(xorshift(&mut seed) as u8);
            }
            if xorshift(&mut seed).is_multiple_of(2) {
                m.rand = Some([xorshift(&mut seed) as u8; 16]);
                m.autn = Some([xorshift(&mut seed) as u8; 16]);
            }
            if xorshift(&mut seed).is_multiple_of(2) {
                m.res = Some(vec![xorshift(&mut seed) as u8; 8]);
            }
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    /// Issue 12, finding 1: a tuple's RES of 166 bytes or more decoded, and re-encoding
    /// wrapped its length, so the VLR would have forwarded a message that no longer
    /// decodes. The tuple's RES is now held to 4–16 bytes, and the encoder never wraps.
    /// Found by the gsup fuzz target: a tuple with IK, CK or AUTN but no RES decoded, and
    /// re-encoded with an empty RES that no longer decoded.
    #[test]
    fn a_umts_tuple_needs_its_res() {
        let mut input = vec![
            0x0a, 0x01, 0x08, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0xf1,
        ];
        input.extend_from_slice(&[0x03, 0x12, 0x25, 0x10]);
        input.extend_from_slice(&[0x5a; 16]);
        assert_eq!(
            Message::decode(&input),
            Err(DecodeError::BadValue {
                tag: ie::RES,
                why: "a UMTS vector without RES"
            })
        );
    }

    #[test]
    fn tuple_res_is_bounded_and_lengths_never_wrap() {
        let mut input = vec![0x04, 0x01, 0x00, 0x03, 0xa8, 0x27, 0xa6];
        input.extend(std::iter::repeat_n(0u8, 166));
        assert!(Message::decode(&input).is_err());
        let mut m = Message::new(msg::INSERT_DATA_REQUEST, "001010000000001");
        m.host_name = Some("x".repeat(300));
        assert_eq!(
            m.try_encode(),
            Err(EncodeError::TooLong { tag: ie::HOST_NAME })
        );
        // What `encode` writes anyway still decodes (the value cut, not the length wrapped).
        assert!(Message::decode(&m.encode()).is_ok());
        m.host_name = Some("phone1.home.example".into());
        assert_eq!(
            Message::decode(&m.try_encode().unwrap()).unwrap().host_name,
            m.host_name
        );
    }
}
