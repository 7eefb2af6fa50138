//! One IPA frame's body, by stream id (first byte): what decodes encodes to a frame that
//! decodes to the same, and the identity a CCM ID_RESP claims is read without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roamlab::agents::signaling::identity_of;
use roamlab::protocols::ipa::{decode, encode, Frame, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let Some((&proto, body)) = data.split_first() else {
        return;
    };
    if body.len() > MAX_FRAME {
        return;
    }
    let Ok(frame) = decode(proto, body) else {
        return;
    };
    if let Frame::IdResp(items) = &frame {
        let _ = identity_of(items);
    }
    let bytes = encode(&frame);
    let len = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
    assert_eq!(len, bytes.len() - 3, "the header counts the body");
    let again = decode(bytes[2], &bytes[3..]).expect("what we encode decodes");
    assert_eq!(frame, again);
});
