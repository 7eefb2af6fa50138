//! Protocol codecs and algorithms, pure and free of lab state: Milenage, IPA framing,
//! GSUP, DHCPv4, what a call's packets are (UDP over IPv4, a SIP message's start), and
//! pcap files.

pub mod dhcp;
pub mod gsup;
pub mod ipa;
pub mod milenage;
pub mod pcap;
pub mod sip;
pub mod udp;
