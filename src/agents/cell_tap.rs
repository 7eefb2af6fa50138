//! The DHCP server's view of the cell at the link layer: a packet socket on the cell
//! bridge that receives DHCP requests (UDP to port 67, by a kernel filter) together with
//! the source address of the frame that carried each. A UDP socket cannot tell who sent a
//! datagram on the link; the server must, because chaddr is only what the client wrote.
//! With every terminal's port locked to its own address (see `Step::LockPort`), the frame's
//! source is the terminal, and a request whose chaddr is another's is refused.
//! (Kea and ISC dhcpd read the cell through packet sockets too, for their own reasons.)

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// An IPv4 + UDP datagram from `from`:67 to 255.255.255.255:68 carrying `payload`, with
/// both checksums (some stock clients check the UDP one).
fn udp_broadcast(from: std::net::Ipv4Addr, payload: &[u8]) -> io::Result<Vec<u8>> {
    let udp_len =
        u16::try_from(8 + payload.len()).map_err(|_| io::Error::other("reply too long"))?;
    let total = udp_len
        .checked_add(20)
        .ok_or_else(|| io::Error::other("reply too long"))?;
    let (src, dst) = (from.octets(), [255u8; 4]);
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let sum = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut udp = Vec::with_capacity(udp_len as usize);
    udp.extend_from_slice(&67u16.to_be_bytes());
    udp.extend_from_slice(&68u16.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    let sum = match checksum(&[&pseudo, &udp]) {
        0 => 0xffff,
        s => s,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&udp);
    Ok(ip)
}

/// The Internet checksum (RFC 1071) of the parts, one after the other (each but the last
/// of even length).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A DHCP datagram as it came off the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The Ethernet source address of the frame.
    pub source: [u8; 6],
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// Takes a DHCP request out of an IPv4 packet: UDP to port 67, not a fragment.
pub fn dhcp_payload(packet: &[u8]) -> Option<&[u8]> {
    let ihl = usize::from(*packet.first()? & 0x0f) * 4;
    if packet.first()? >> 4 != 4 || ihl < 20 || packet.len() < ihl + 8 || packet[9] != 17 {
        return None;
    }
    let fragment = u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff;
    if fragment != 0 {
        return None;
    }
    let udp = &packet[ihl..];
    if u16::from_be_bytes([udp[2], udp[3]]) != 67 {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if length < 8 || length > udp.len() {
        return None;
    }
    Some(&udp[8..length])
}

/// A packet socket on one interface that sees IPv4 UDP to port 67 only.
pub struct CellTap {
    fd: AsyncFd<OwnedFd>,
    /// The interface's index, for what is sent on it.
    index: i32,
}

/// cBPF over the IP header (the socket is SOCK_DGRAM, so a packet starts there): accept
/// UDP that is not a fragment and goes to port 67; drop the rest in the kernel.
fn filter() -> Vec<libc::sock_filter> {
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    const LD_B_ABS: u16 = 0x30;
    const LD_H_ABS: u16 = 0x28;
    const LDX_B_MSH: u16 = 0xb1;
    const LD_H_IND: u16 = 0x48;
    const JEQ_K: u16 = 0x15;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    vec![
        op(LD_B_ABS, 0, 0, 9),    // protocol
        op(JEQ_K, 0, 5, 17),      // UDP, else drop
        op(LD_H_ABS, 0, 0, 6),    // flags and fragment offset
        op(JSET_K, 3, 0, 0x1fff), // a later fragment: drop
        op(LDX_B_MSH, 0, 0, 0),   // x = header length
        op(LD_H_IND, 0, 0, 2),    // UDP destination port
        op(JEQ_K, 1, 0, 67),
        op(RET_K, 0, 0, 0),           // drop
        op(RET_K, 0, 0, 0x0004_0000), // accept (whole packet)
    ]
}

impl CellTap {
    pub fn open(interface: &str) -> io::Result<Self> {
        let name = std::ffi::CString::new(interface)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: plain syscalls on a descriptor we own from here on.
        unsafe {
            let index = libc::if_nametoindex(name.as_ptr());
            if index == 0 {
                return Err(io::Error::last_os_error());
            }
            let protocol = (libc::ETH_P_IP as u16).to_be();
            let raw = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(protocol),
            );
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(raw);
            let program = filter();
            let fprog = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_ptr() as *mut libc::sock_filter,
            };
            if libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&fprog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = protocol;
            addr.sll_ifindex = index as i32;
            if libc::bind(
                raw,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // SAFETY (register): the descriptor is ours alone and lives as long as the AsyncFd.
            let fd = AsyncFd::register(fd).map_err(|e| io::Error::other(e.to_string()))?;
            Ok(CellTap {
                fd,
                index: index as i32,
            })
        }
    }

    /// Sends a server's reply to one client's link-layer address: an IPv4 datagram from
    /// `from`:67 to 255.255.255.255:68 in a frame for `to` alone. A client without an address
    /// takes it as it takes a broadcast (RFC 2131 §4.1), but only its own port of the cell
    /// carries it, so the cost of a reply does not grow with the terminals on the cell.
    pub fn send_to_link(
        &self,
        to: [u8; 6],
        from: std::net::Ipv4Addr,
        payload: &[u8],
    ) -> io::Result<()> {
        let datagram = udp_broadcast(from, payload)?;
        // SAFETY: sendto from our buffer to a sockaddr_ll of the right size.
        let sent = unsafe {
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = (libc::ETH_P_IP as u16).to_be();
            addr.sll_ifindex = self.index;
            addr.sll_halen = 6;
            addr.sll_addr[..6].copy_from_slice(&to);
            libc::sendto(
                self.fd.get_ref().as_raw_fd(),
                datagram.as_ptr().cast(),
                datagram.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next DHCP request on the link, with the frame's source address. Frames this
    /// host sent itself are skipped.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            let got = guard.try_io(|fd| {
                // SAFETY: recvfrom into our buffer and a sockaddr_ll of the right size.
                unsafe {
                    let mut from: libc::sockaddr_ll = std::mem::zeroed();
                    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                    let n = libc::recvfrom(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&mut from as *mut libc::sockaddr_ll).cast(),
                        &mut len,
                    );
                    if n < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok((n as usize, from))
                }
            });
            let (n, from) = match got {
                Ok(result) => result?,
                Err(_would_block) => continue,
            };
            if from.sll_pkttype == libc::PACKET_OUTGOING || from.sll_halen != 6 {
                continue;
            }
            let Some(payload) = dhcp_payload(&buf[..n]) else {
                continue;
            };
            let mut source = [0u8; 6];
            source.copy_from_slice(&from.sll_addr[..6]);
            return Ok(Received {
                source,
                payload: payload.to_vec(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(dport: u16, fragment: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0];
        p.extend(fragment.to_be_bytes());
        p.extend([64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255]);
        p.extend(68u16.to_be_bytes());
        p.extend(dport.to_be_bytes());
        p.extend(((payload.len() + 8) as u16).to_be_bytes());
        p.extend([0, 0]);
        p.extend(payload);
        p
    }

    #[test]
    fn a_reply_datagram_has_valid_checksums() {
        let d = udp_broadcast(std::net::Ipv4Addr::new(198, 51, 100, 1), b"offer").unwrap();
        assert_eq!(d.len(), 20 + 8 + 5);
        assert_eq!(checksum(&[&d[..20]]), 0, "IP header checksum");
        let mut pseudo = vec![198, 51, 100, 1, 255, 255, 255, 255, 0, 17];
        pseudo.extend_from_slice(&13u16.to_be_bytes());
        assert_eq!(checksum(&[&pseudo, &d[20..]]), 0, "UDP checksum");
        assert_eq!((&d[20..22], &d[22..24]), (&[0, 67][..], &[0, 68][..]));
        assert_eq!(&d[28..], b"offer");
    }

    #[test]
    fn takes_only_whole_udp_datagrams_to_port_67() {
        assert_eq!(dhcp_payload(&packet(67, 0, b"dhcp")), Some(&b"dhcp"[..]));
        assert_eq!(dhcp_payload(&packet(68, 0, b"dhcp")), None);
        assert_eq!(
            dhcp_payload(&packet(67, 0x2000, b"dhcp")),
            None,
            "first fragment"
        );
        assert_eq!(
            dhcp_payload(&packet(67, 0x0001, b"dhcp")),
            None,
            "later fragment"
        );
        let mut tcp = packet(67, 0, b"dhcp");
        tcp[9] = 6;
        assert_eq!(dhcp_payload(&tcp), None);
        let mut lying = packet(67, 0, b"dhcp");
        lying[24] = 0xff; // UDP length past the end
        assert_eq!(dhcp_payload(&lying), None);
        for cut in 0..30 {
            let _ = dhcp_payload(&packet(67, 0, b"dhcp")[..cut]);
        }
    }
}
