//! Protocol codecs and algorithms, pure and socket-free: Milenage, IPA framing, GSUP.

pub mod gsup;
pub mod ipa;
pub mod milenage;
