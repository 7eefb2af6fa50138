//! GSUP decode, and the round trip a VLR makes of what it forwards: whatever decodes
//! encodes (or is refused by the encoder, never wrapped), and decodes again to the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roamlab::protocols::gsup::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(first) = Message::decode(data) else {
        return;
    };
    let _ = first.msisdn();
    let _ = first.error_reply(0x11).try_encode();
    let Ok(bytes) = first.try_encode() else {
        return;
    };
    let second = Message::decode(&bytes).expect("what we encode decodes");
    assert_eq!(
        first, second,
        "decode → encode → decode changed the message"
    );
    assert_eq!(second.try_encode().expect("encodes again"), bytes);
});
