//! DHCPv4 on the wire: decoding what a client sends without trusting it (dhcproto behind
//! guards that keep its panics out), reading the options the server acts on one by one,
//! and building the server's answers. No state and no policy: the lease book decides.

use std::net::{Ipv4Addr, SocketAddr};

use dhcproto::v4::{self, DhcpOption, MessageType, Opcode};
use dhcproto::Decodable;

/// Binds UDP port `port` on all addresses of one interface, able to broadcast.
pub fn bind_socket(interface: &str, port: u16) -> std::io::Result<tokio::net::UdpSocket> {
    bind_socket_at(interface, Ipv4Addr::UNSPECIFIED, port)
}

/// Binds UDP `address`:`port` on one interface (receiving only what arrives on it), able
/// to broadcast.
pub fn bind_socket_at(
    interface: &str,
    address: Ipv4Addr,
    port: u16,
) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    socket.bind_device(Some(interface.as_bytes()))?;
    socket.bind(&SocketAddr::from((address, port)).into())?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// The terminals the VLR lists, by link-layer address.
/// The smallest BOOTP message: the fixed header and the magic cookie.
pub const MIN_MESSAGE: usize = 240;

/// Decodes a client packet, refusing what dhcproto cannot be trusted with: its `chaddr()`
/// slices by the header's hardware-address length and panics past 16 bytes, and some
/// option decoders assert on their length.
pub fn decode(packet: &[u8]) -> Result<v4::Message, String> {
    if packet.len() < MIN_MESSAGE {
        return Err(format!(
            "{} bytes is shorter than a DHCP message",
            packet.len()
        ));
    }
    if packet[2] as usize > 16 {
        return Err(format!(
            "hardware address length {} is more than 16",
            packet[2]
        ));
    }
    if let Some((code, len)) = option_dhcproto_asserts_on(packet) {
        return Err(format!("option {code} of {len} bytes is malformed"));
    }
    // Should another of its decoders assert, that too is a malformed packet, not the end
    // of the server or the terminal.
    std::panic::catch_unwind(|| v4::Message::from_bytes(packet))
        .map_err(|_| "the DHCP decoder gave up on a malformed option".to_string())?
        .map_err(|e| e.to_string())
}

/// The lengths dhcproto 0.15 asserts on (debug builds) or subtracts from (overflow
/// checks) instead of refusing: Rapid Commit is empty, Client Network Interface 3 bytes,
/// the bulk leasequery times 4, Client FQDN at least 3 and a BLQ status code at least 1.
fn dhcproto_takes(code: u8, len: usize) -> bool {
    match code {
        80 => len == 0,
        81 => len >= 3,
        94 => len == 3,
        151 => len >= 1,
        152..=155 => len == 4,
        _ => true,
    }
}

/// The first option, as dhcproto will see it (consecutive instances of one code joined,
/// RFC 3396), whose length dhcproto asserts on: its code and length.
fn option_dhcproto_asserts_on(packet: &[u8]) -> Option<(u8, usize)> {
    let mut at = packet.get(MIN_MESSAGE..)?;
    let mut joined: Option<(u8, usize)> = None;
    let bad = |j: Option<(u8, usize)>| j.filter(|(code, len)| !dhcproto_takes(*code, *len));
    while let Some((&code, rest)) = at.split_first() {
        if code == 0 || code == 255 {
            if let Some(found) = bad(joined.take()) {
                return Some(found);
            }
            if code == 255 {
                return None;
            }
            at = rest;
            continue;
        }
        // dhcproto decodes what it was joining as soon as it sees another code.
        if joined.is_some_and(|(c, _)| c != code) {
            if let Some(found) = bad(joined.take()) {
                return Some(found);
            }
        }
        let Some((&len, rest)) = rest.split_first() else {
            break;
        };
        if rest.len() < len as usize {
            // dhcproto stops here, without the option it was joining.
            return None;
        }
        at = &rest[len as usize..];
        joined = Some(match joined {
            Some((c, total)) => (c, total + len as usize),
            None => (code, len as usize),
        });
    }
    bad(joined)
}

/// The options the server reads, parsed from the packet itself. dhcproto stops at the
/// first option it cannot decode (stock clients encode option 81 in ways it refuses), and
/// everything after it would be lost; this reads each option on its own.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    pub msg_type: Option<u8>,
    pub requested: Option<Ipv4Addr>,
    pub server: Option<Ipv4Addr>,
    pub host_name: Option<String>,
    /// Option 61.
    pub client_id: Option<Vec<u8>>,
    /// Option 81: its flags and the name, whether sent in wire format (E=1) or as ASCII.
    pub fqdn: Option<(u8, String)>,
    /// Option 80 (RFC 4039): the client takes a committed ACK in answer to its DISCOVER.
    pub rapid_commit: bool,
}

/// RFC 4702 flag bits of option 81.
const FQDN_S: u8 = 0x01;
const FQDN_O: u8 = 0x02;
const FQDN_E: u8 = 0x04;

pub fn client_options(packet: &[u8]) -> ClientOptions {
    let mut out = ClientOptions::default();
    let Some(mut at) = packet.get(MIN_MESSAGE..) else {
        return out;
    };
    let ip = |v: &[u8]| <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from);
    while let Some((&code, rest)) = at.split_first() {
        match code {
            0 => {
                at = rest;
                continue;
            }
            255 => break,
            _ => {}
        }
        let Some((&len, rest)) = rest.split_first() else {
            break;
        };
        let Some(value) = rest.get(..len as usize) else {
            break;
        };
        at = &rest[len as usize..];
        match code {
            53 => out.msg_type = value.first().copied(),
            50 => out.requested = ip(value),
            54 => out.server = ip(value),
            61 if !value.is_empty() => out.client_id = Some(value.to_vec()),
            80 => out.rapid_commit = true,
            12 => {
                out.host_name = std::str::from_utf8(value)
                    .ok()
                    .map(|s| s.trim_end_matches('\0').to_string())
            }
            81 if value.len() >= 3 => {
                let (flags, name) = (value[0], &value[3..]);
                let text = if flags & FQDN_E != 0 {
                    wire_name(name)
                } else {
                    std::str::from_utf8(name).ok().map(String::from)
                };
                if let Some(text) = text
                    .map(|t| t.trim_end_matches('.').to_string())
                    .filter(|t| !t.is_empty())
                {
                    out.fqdn = Some((flags, text));
                }
            }
            _ => {}
        }
    }
    out
}

/// A DNS name in wire format (labels with length octets), as text.
fn wire_name(mut bytes: &[u8]) -> Option<String> {
    let mut labels = Vec::new();
    while let Some((&len, rest)) = bytes.split_first() {
        if len == 0 {
            break;
        }
        let label = rest.get(..len as usize)?;
        labels.push(std::str::from_utf8(label).ok()?.to_string());
        bytes = &rest[len as usize..];
    }
    Some(labels.join("."))
}

/// What a server puts in every answer: who it is and what it hands out.
#[derive(Debug, Clone)]
pub struct Served {
    pub server_ip: Ipv4Addr,
    pub prefix_len: u8,
    pub router: Ipv4Addr,
    pub dns_servers: Vec<Ipv4Addr>,
    pub lease_secs: u64,
    /// Whether a DISCOVER that asks for Rapid Commit (RFC 4039) gets a committed ACK.
    pub rapid_commit: bool,
}

/// The server's answer (OFFER, ACK or NAK) to client message `m`, leasing `yiaddr`; an ACK
/// to a DISCOVER says Rapid Commit (RFC 4039 §3), as a client takes no other.
pub fn reply(
    config: &Served,
    m: &v4::Message,
    fqdn: Option<(u8, String)>,
    kind: MessageType,
    yiaddr: Ipv4Addr,
) -> v4::Message {
    let mut r = v4::Message::new_with_id(
        m.xid(),
        Ipv4Addr::UNSPECIFIED,
        yiaddr,
        config.server_ip,
        m.giaddr(),
        m.chaddr(),
    );
    r.set_opcode(Opcode::BootReply)
        .set_flags(m.flags())
        .set_htype(m.htype());
    if kind == MessageType::Ack && !m.ciaddr().is_unspecified() {
        r.set_ciaddr(m.ciaddr());
    }
    let committed_at_once =
        kind == MessageType::Ack && m.opts().msg_type() == Some(MessageType::Discover);
    let o = r.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ServerIdentifier(config.server_ip));
    if committed_at_once {
        o.insert(DhcpOption::RapidCommit);
    }
    if kind != MessageType::Nak {
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::from(
            u32::MAX << (32 - config.prefix_len),
        )));
        o.insert(DhcpOption::Router(vec![config.router]));
        o.insert(DhcpOption::DomainNameServer(config.dns_servers.clone()));
        if kind != MessageType::Ack || !yiaddr.is_unspecified() {
            o.insert(DhcpOption::AddressLeaseTime(config.lease_secs as u32));
            o.insert(DhcpOption::Renewal((config.lease_secs / 2) as u32));
            o.insert(DhcpOption::Rebinding((config.lease_secs * 7 / 8) as u32));
        }
    }
    // RFC 4702: answer a client FQDN option; the server does the forward update (S=1),
    // overriding the client's choice if it wanted to do it itself (O=1).
    if let Some((flags, name)) = fqdn {
        let o_bit = if flags & FQDN_S == 0 { FQDN_O } else { 0 };
        let flags = v4::fqdn::FqdnFlags::new(FQDN_S | o_bit | FQDN_E);
        if let Ok(domain) = format!("{name}.").parse::<hickory_proto::rr::Name>() {
            o.insert(DhcpOption::ClientFQDN(v4::fqdn::ClientFQDN::new(
                flags, domain,
            )));
        }
    }
    r
}

/// A DISCOVER from 02:00:00:00:00:01, for the tests of this codec and of its users.
#[cfg(test)]
pub(crate) fn test_discover() -> Vec<u8> {
    use dhcproto::Encodable;
    let mut m = v4::Message::new_with_id(
        7,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &[2, 0, 0, 0, 0, 1],
    );
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    m.to_vec().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discover() -> Vec<u8> {
        test_discover()
    }

    /// Found by the dhcp_client fuzz target: option lengths dhcproto asserts on are refused
    /// by name before dhcproto sees them (alone, or joined from several instances).
    #[test]
    fn options_dhcproto_asserts_on_are_refused_by_name() {
        for (options, code, len) in [
            (&[81u8, 0][..], 81, 0),
            (&[81, 2, 0, 0], 81, 2),
            (&[80, 1, 0], 80, 1),
            (&[94, 2, 1, 2], 94, 2),
            (&[151, 0], 151, 0),
            (&[153, 2, 0, 0, 153, 1, 0], 153, 3),
            (&[53, 1, 1, 152, 5, 0, 0, 0, 0, 0], 152, 5),
            // Decoded as soon as another code follows, however long that one says it is.
            (&[152, 5, 0, 0, 0, 0, 0, 111, 110, 0], 152, 5),
        ] {
            let mut packet = discover();
            packet.truncate(MIN_MESSAGE);
            packet.extend_from_slice(options);
            packet.push(255);
            let refused = decode(&packet).expect_err("refused");
            assert_eq!(
                refused,
                format!("option {code} of {len} bytes is malformed")
            );
        }
        // Joined to a length it takes, or cut short (dhcproto stops there), it passes on.
        for options in [&[81u8, 2, 0, 0, 81, 1, 0][..], &[81, 2, 0]] {
            let mut packet = discover();
            packet.truncate(MIN_MESSAGE);
            packet.extend_from_slice(options);
            assert!(decode(&packet).is_ok(), "{options:?}");
        }
    }

    #[test]
    fn garbage_truncations_and_lying_headers_never_panic() {
        let good = discover();
        assert!(decode(&good).is_ok());
        for cut in 0..good.len() {
            if let Ok(m) = decode(&good[..cut]) {
                let _ = (m.chaddr(), client_options(&good[..cut]));
            }
        }
        let mut seed = 0x9e37_79b9_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..20_000 {
            let mut p: Vec<u8> = (0..(next() % 600) as usize).map(|_| next() as u8).collect();
            if p.len() >= 240 && round % 2 == 0 {
                p[0] = 1;
                p[236..240].copy_from_slice(&[99, 130, 83, 99]);
            }
            let _ = client_options(&p);
            if let Ok(m) = decode(&p) {
                let _ = m.chaddr();
            }
        }
        let mut liar = good.clone();
        liar[2] = 200;
        assert!(decode(&liar).is_err());
        let mut bad_fqdn = good[..240].to_vec();
        bad_fqdn.extend([53, 1, 1, 81, 250, 0xff, 0, 0, 7, b'b', b'a', b'd', 255]);
        if let Ok(m) = decode(&bad_fqdn) {
            let _ = (m.chaddr(), client_options(&bad_fqdn));
        }
    }

    #[test]
    fn option_81_in_both_encodings_and_after_a_bad_option() {
        let base = discover()[..240].to_vec();
        let with = |opts: &[u8]| {
            let mut p = base.clone();
            p.extend_from_slice(opts);
            client_options(&p)
        };
        // Wire format (E=1), as the built-in client and dhcpcd send it.
        let wire = with(&[
            53, 1, 1, 81, 24, 0x05, 0, 0, 6, b'p', b'h', b'o', b'n', b'e', b'1', 4, b'h', b'o',
            b'm', b'e', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 255,
        ]);
        assert_eq!(wire.fqdn, Some((0x05, "phone1.home.example".to_string())));
        // ASCII (E=0), as dhclient sends it by default.
        let mut opts = vec![53, 1, 3, 81, 22, 0x01, 0, 0];
        opts.extend_from_slice(b"phone1.home.example");
        opts.extend([50, 4, 198, 51, 100, 100, 255]);
        let ascii = with(&opts);
        assert_eq!(ascii.fqdn, Some((0x01, "phone1.home.example".to_string())));
        assert_eq!(
            ascii.requested,
            Some(Ipv4Addr::new(198, 51, 100, 100)),
            "options after option 81 are read"
        );
        // A malformed option does not hide the ones after it.
        let after_bad = with(&[
            53, 1, 1, 81, 2, 0xff, 0, 12, 6, b'p', b'h', b'o', b'n', b'e', b'1', 255,
        ]);
        assert_eq!(
            (after_bad.msg_type, after_bad.host_name.as_deref()),
            (Some(1), Some("phone1"))
        );
    }
}
