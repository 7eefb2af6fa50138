//! Protocol codecs and algorithms, pure and free of lab state: Milenage, IPA framing,
//! GSUP, DHCPv4.

pub mod dhcp;
pub mod gsup;
pub mod ipa;
pub mod milenage;
