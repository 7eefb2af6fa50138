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
            Ok(CellTap { fd })
        }
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
