//! An IPv4 packet's UDP datagram, as a packet socket hands it over (from the IP header
//! on): addresses, ports and payload. Anything else (IPv6, other protocols, fragments after
//! the first, truncated or inconsistent headers) is `None`.

use std::net::{Ipv4Addr, SocketAddrV4};

const PROTOCOL_UDP: u8 = 17;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: &'a [u8],
}

pub fn parse(packet: &[u8]) -> Option<Datagram<'_>> {
    let version = packet.first()? >> 4;
    let header = usize::from(packet.first()? & 0x0f) * 4;
    if version != 4 || header < 20 || packet.len() < header + 8 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    let fragment_offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
    if packet[9] != PROTOCOL_UDP || fragment_offset != 0 || total < header + 8 {
        return None;
    }
    let ip = |at: usize| Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3]);
    let udp = &packet[header..];
    let port = |at: usize| u16::from_be_bytes([udp[at], udp[at + 1]]);
    let length = usize::from(port(4));
    if length < 8 {
        return None;
    }
    // A capture may be cut short: the payload is what arrived of it.
    let end = length.min(udp.len()).min(total - header);
    Some(Datagram {
        src: SocketAddrV4::new(ip(12), port(0)),
        dst: SocketAddrV4::new(ip(16), port(2)),
        payload: &udp[8..end.max(8)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 203.0.113.10:5060 → 198.18.64.100:5060, payload "INVITE".
    fn golden() -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 34, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 203, 0, 113, 10, 198, 18, 64, 100,
        ];
        p.extend_from_slice(&[0x13, 0xc4, 0x13, 0xc4, 0, 14, 0, 0]);
        p.extend_from_slice(b"INVITE");
        p
    }

    #[test]
    fn reads_addresses_ports_and_payload() {
        let packet = golden();
        let d = parse(&packet).unwrap();
        assert_eq!(d.src, "203.0.113.10:5060".parse().unwrap());
        assert_eq!(d.dst, "198.18.64.100:5060".parse().unwrap());
        assert_eq!(d.payload, b"INVITE");
    }

    #[test]
    fn refuses_what_is_not_a_whole_first_udp_fragment() {
        let mut tcp = golden();
        tcp[9] = 6;
        assert_eq!(parse(&tcp), None);
        let mut later_fragment = golden();
        later_fragment[7] = 1;
        assert_eq!(parse(&later_fragment), None);
        let mut v6 = golden();
        v6[0] = 0x60;
        assert_eq!(parse(&v6), None);
        let mut short_length = golden();
        short_length[25] = 4;
        assert_eq!(parse(&short_length), None);
        assert_eq!(parse(&golden()[..27]), None);
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x9e37_79b9_u32;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            let _ = parse(&bytes);
            let mut headed = bytes.clone();
            if headed.len() > 1 {
                headed[0] = 0x45;
                let _ = parse(&headed);
            }
        }
    }
}
