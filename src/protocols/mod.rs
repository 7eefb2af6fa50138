//! Protocol codecs and algorithms, pure and free of lab state: Milenage, IPA framing,
//! GSUP, DHCPv4, and what a call's packets are (UDP over IPv4, a SIP message's start).

pub mod dhcp;
pub mod gsup;
pub mod ipa;
pub mod milenage;
pub mod sip;
pub mod udp;
