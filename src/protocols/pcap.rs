//! The classic pcap file format (what tcpdump -w writes), with Linux cooked-capture (SLL)
//! link headers, so that one file holds packets of any interface kind: Ethernet, loopback,
//! VXLAN, IPIP. tcpdump, tshark and Wireshark read it.

/// LINKTYPE_LINUX_SLL.
const LINKTYPE_LINUX_SLL: u32 = 113;

/// The file header: magic (microsecond stamps), version 2.4, snapshot length, link type.
pub fn file_header(snaplen: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&snaplen.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_LINUX_SLL.to_le_bytes());
    out
}

/// One packet as the kernel's cooked capture shows it.
pub struct Record<'a> {
    /// Seconds and microseconds since the epoch.
    pub secs: u32,
    pub micros: u32,
    /// PACKET_HOST (0), PACKET_BROADCAST (1), … PACKET_OUTGOING (4).
    pub kind: u16,
    /// ARPHRD_* of the interface.
    pub hardware: u16,
    /// The link-layer source address (up to 8 bytes).
    pub source: &'a [u8],
    /// The link-layer protocol (ETH_P_IP…).
    pub protocol: u16,
    /// The packet from its network header on (as much as was kept), and its real length.
    pub data: &'a [u8],
    pub length: usize,
}

/// A record: its header, the 16-byte SLL header, and the data.
pub fn record(r: &Record) -> Vec<u8> {
    let source = &r.source[..r.source.len().min(8)];
    let kept = (r.data.len() + 16) as u32;
    let whole = (r.length.max(r.data.len()) + 16) as u32;
    let mut out = Vec::with_capacity(32 + r.data.len());
    out.extend_from_slice(&r.secs.to_le_bytes());
    out.extend_from_slice(&r.micros.to_le_bytes());
    out.extend_from_slice(&kept.to_le_bytes());
    out.extend_from_slice(&whole.to_le_bytes());
    // SLL: packet type, ARPHRD, address length, 8 address bytes, protocol (network order).
    out.extend_from_slice(&r.kind.to_be_bytes());
    out.extend_from_slice(&r.hardware.to_be_bytes());
    out.extend_from_slice(&(source.len() as u16).to_be_bytes());
    let mut address = [0u8; 8];
    address[..source.len()].copy_from_slice(source);
    out.extend_from_slice(&address);
    out.extend_from_slice(&r.protocol.to_be_bytes());
    out.extend_from_slice(r.data);
    out
}

/// An IPv4 packet holding one TCP segment (PSH, ACK) of `payload`: how a stream seen as
/// messages (the private network's Unix sockets) is written for tools that read TCP.
pub fn tcp_segment(
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let total = (40 + payload.len()).min(u16::MAX as usize) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
    ip.extend_from_slice(&src.ip().octets());
    ip.extend_from_slice(&dst.ip().octets());
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut tcp = Vec::with_capacity(20 + payload.len());
    tcp.extend_from_slice(&src.port().to_be_bytes());
    tcp.extend_from_slice(&dst.port().to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    // Data offset 5 words; flags PSH|ACK; window; checksum; urgent pointer.
    tcp.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    tcp.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12 + tcp.len());
    pseudo.extend_from_slice(&src.ip().octets());
    pseudo.extend_from_slice(&dst.ip().octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&tcp);
    let sum = checksum(&pseudo);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ip
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_segment_checks_out() {
        let segment = tcp_segment(
            "198.18.0.6:40000".parse().unwrap(),
            "198.18.0.2:4222".parse().unwrap(),
            1,
            1,
            b"\x00\x03\xee\x05\x08",
        );
        assert_eq!(segment.len(), 45);
        assert_eq!(checksum(&segment[..20]), 0, "IPv4 header checksum");
        let mut pseudo = segment[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 6, 0, 25]);
        pseudo.extend_from_slice(&segment[20..]);
        assert_eq!(checksum(&pseudo), 0, "TCP checksum");
        assert_eq!(&segment[22..24], &4222u16.to_be_bytes());
    }

    #[test]
    fn golden_header_and_record() {
        assert_eq!(
            file_header(1600),
            [
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x06, 0, 0, 113,
                0, 0, 0
            ]
        );
        let bytes = record(&Record {
            secs: 1,
            micros: 2,
            kind: 4,
            hardware: 1,
            source: &[2, 0, 0, 0, 0, 1],
            protocol: 0x0800,
            data: &[0x45, 0],
            length: 100,
        });
        assert_eq!(
            &bytes[..16],
            &[1, 0, 0, 0, 2, 0, 0, 0, 18, 0, 0, 0, 116, 0, 0, 0]
        );
        assert_eq!(
            &bytes[16..],
            &[0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00, 0x45, 0]
        );
    }
}
