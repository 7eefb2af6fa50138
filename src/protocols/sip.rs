//! What a SIP message is, from its start line and CSeq (RFC 3261 §7): a request and its
//! method, or a response, its code and the method it answers. Enough to time a call's
//! set-up on the wire (INVITE → 200 OK); the rest of the message is not read.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Request {
        method: String,
    },
    Response {
        code: u16,
        to_method: Option<String>,
    },
}

pub fn start(payload: &[u8]) -> Option<Start> {
    // Only the head: SIP headers are text; a body may not be.
    let head = &payload[..payload.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let first = lines.next()?;
    if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
        let code = rest
            .get(..3)?
            .parse()
            .ok()
            .filter(|c| (100..700).contains(c))?;
        let to_method = lines.take_while(|l| !l.is_empty()).find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim();
            name.eq_ignore_ascii_case("cseq")
                .then(|| value.split_whitespace().nth(1).map(str::to_string))?
        });
        return Some(Start::Response { code, to_method });
    }
    let mut parts = first.split(' ');
    let method = parts.next()?;
    let _uri = parts.next()?;
    let valid = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    (valid && parts.next() == Some("SIP/2.0")).then(|| Start::Request {
        method: method.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_an_invite_from_the_200_ok_that_answers_it() {
        let invite = b"INVITE sip:phone1@phone1.home.example SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\nv=0";
        assert_eq!(
            start(invite),
            Some(Start::Request {
                method: "INVITE".into()
            })
        );
        let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 203.0.113.10\r\nCSeq: 16431 INVITE\r\n\r\n";
        assert_eq!(
            start(ok),
            Some(Start::Response {
                code: 200,
                to_method: Some("INVITE".into())
            })
        );
        let cancelled = b"SIP/2.0 200 OK\r\nCSeq: 16431 CANCEL\r\n\r\n";
        assert_eq!(
            start(cancelled),
            Some(Start::Response {
                code: 200,
                to_method: Some("CANCEL".into())
            })
        );
    }

    #[test]
    fn what_is_not_sip_is_none() {
        for bytes in [
            &b""[..],
            b"\x80\x00\x01\x02rtp",
            b"SIP/2.0 2",
            b"SIP/2.0 999 Nope\r\n",
            b"invite sip:x SIP/2.0\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert_eq!(start(bytes), None, "{bytes:?}");
        }
    }
}
