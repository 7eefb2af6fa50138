//! The private network's tap: while `roamlab capture signaling` runs, each VLR sends a copy
//! of every GSUP message on its links to home HLRs as one datagram to the Unix socket the
//! capture binds in the VLR's own directory ([`super::LabDir::gsup_tap`]). A VLR with no
//! capture listening sends nothing anyone reads. The record: direction, the time it passed
//! (ns since the epoch), the home network, and the GSUP message's bytes.

/// One GSUP message seen on a VLR's link to an HLR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapRecord {
    /// Sent to the HLR (else received from it).
    pub to_hlr: bool,
    pub at_ns: u64,
    pub home: String,
    pub gsup: Vec<u8>,
}

impl TapRecord {
    pub fn encode(&self) -> Vec<u8> {
        let home = &self.home.as_bytes()[..self.home.len().min(255)];
        let mut out = Vec::with_capacity(10 + home.len() + self.gsup.len());
        out.push(u8::from(self.to_hlr));
        out.extend_from_slice(&self.at_ns.to_be_bytes());
        out.push(home.len() as u8);
        out.extend_from_slice(home);
        out.extend_from_slice(&self.gsup);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&direction, rest) = bytes.split_first()?;
        if direction > 1 || rest.len() < 9 {
            return None;
        }
        let at_ns = u64::from_be_bytes(rest[..8].try_into().ok()?);
        let home_len = usize::from(rest[8]);
        let rest = &rest[9..];
        if rest.len() < home_len {
            return None;
        }
        let home = String::from_utf8(rest[..home_len].to_vec()).ok()?;
        Some(TapRecord {
            to_hlr: direction == 1,
            at_ns,
            home,
            gsup: rest[home_len..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_comes_back_as_it_went_and_garbage_is_none() {
        let r = TapRecord {
            to_hlr: true,
            at_ns: 1_700_000_000_123_456_789,
            home: "home".into(),
            gsup: vec![0x08, 0x01, 0x08],
        };
        assert_eq!(TapRecord::decode(&r.encode()), Some(r));
        for bad in [
            &b""[..],
            b"\x02",
            b"\x01\x00",
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x09ab",
        ] {
            assert_eq!(TapRecord::decode(bad), None, "{bad:?}");
        }
    }
}
