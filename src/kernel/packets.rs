//! A packet socket (AF_PACKET, cooked: no link-layer header) in one of the lab's namespaces,
//! on all its interfaces or one, for every protocol, so that it sees what the namespace
//! sends as well as what it receives. Each packet comes with the time the kernel stamped on
//! it, so a reader that falls behind does not move the figures. Reads wake every 50 ms.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::netns;

/// SIOCGSTAMPNS (asm-generic/sockios.h, 64-bit time): the stamp of the last packet read.
const SIOCGSTAMPNS: libc::c_ulong = 0x8907;
/// The largest packet kept whole (an Ethernet frame, and a VXLAN one around it).
pub const SNAPLEN: usize = 1600;

pub struct PacketSocket {
    fd: OwnedFd,
}

/// One packet, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// When the kernel took it in or sent it (CLOCK_REALTIME).
    pub at: Duration,
    /// PACKET_HOST, PACKET_BROADCAST, PACKET_OUTGOING… (linux/if_packet.h).
    pub kind: u8,
    /// The link-layer protocol (ETH_P_IP…), host order.
    pub protocol: u16,
    pub interface: i32,
    /// ARPHRD_ETHER… and the link-layer source address.
    pub hardware: u16,
    pub source: Vec<u8>,
    /// From the network header on, at most [`SNAPLEN`] bytes.
    pub data: Vec<u8>,
    /// Its length on the wire.
    pub length: usize,
}

impl Packet {
    pub fn outgoing(&self) -> bool {
        self.kind == libc::PACKET_OUTGOING
    }
}

impl PacketSocket {
    /// Opens the socket inside `namespace` (on a thread of its own), bound to `interface`
    /// when one is named.
    pub fn open_in(namespace: &str, interface: Option<&str>) -> io::Result<Self> {
        let interface = interface.map(str::to_string);
        let fd = netns::run_in(namespace, move || open(interface.as_deref()))?;
        Ok(PacketSocket { fd })
    }

    /// The next packet, or `None` when 50 ms pass without one.
    pub fn recv(&self) -> Option<Packet> {
        let mut buf = [0u8; SNAPLEN];
        // SAFETY: recvfrom(2) into a buffer and an address structure owned here; MSG_TRUNC
        // makes it return the packet's whole length.
        let (len, from) = unsafe {
            let mut from: libc::sockaddr_ll = std::mem::zeroed();
            let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            let len = libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                libc::MSG_TRUNC,
                &mut from as *mut _ as *mut libc::sockaddr,
                &mut from_len,
            );
            (len, from)
        };
        if len <= 0 {
            return None;
        }
        let length = len as usize;
        let at = stamp_of_last(&self.fd)?;
        let address_len = usize::from(from.sll_halen).min(8);
        Some(Packet {
            at,
            kind: from.sll_pkttype,
            protocol: u16::from_be(from.sll_protocol),
            interface: from.sll_ifindex,
            hardware: from.sll_hatype,
            source: from.sll_addr[..address_len].to_vec(),
            data: buf[..length.min(SNAPLEN)].to_vec(),
            length,
        })
    }
}

fn open(interface: Option<&str>) -> io::Result<OwnedFd> {
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2), setsockopt(2), if_nametoindex(3) and bind(2) calls on a
    // descriptor owned here and structures that outlive them.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            all as i32,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let socket = OwnedFd::from_raw_fd(fd);
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        let set = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &timeout as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        if set < 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some(name) = interface {
            let c_name = std::ffi::CString::new(name)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
            let index = libc::if_nametoindex(c_name.as_ptr());
            if index == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no interface {name}"),
                ));
            }
            let mut address: libc::sockaddr_ll = std::mem::zeroed();
            address.sll_family = libc::AF_PACKET as u16;
            address.sll_protocol = all;
            address.sll_ifindex = index as i32;
            let bound = libc::bind(
                fd,
                &address as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            );
            if bound < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // The first SIOCGSTAMPNS turns stamping on (it fails: nothing was read yet).
        let _ = stamp_of_last(&socket);
        Ok(socket)
    }
}

fn stamp_of_last(socket: &OwnedFd) -> Option<Duration> {
    let mut stamp = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the ioctl writes one timespec into `stamp`, owned here.
    let got = unsafe { libc::ioctl(socket.as_raw_fd(), SIOCGSTAMPNS, &mut stamp) };
    (got == 0).then(|| Duration::new(stamp.tv_sec as u64, stamp.tv_nsec as u32))
}
