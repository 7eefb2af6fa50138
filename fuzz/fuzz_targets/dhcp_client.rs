//! The terminal's DHCP client receiving one datagram on port 68: anything on the cell can
//! send it one. It must never panic, and what it accepts as an answer to its exchange gives
//! a lease it can read.
#![no_main]

use dhcproto::v4::MessageType;
use libfuzzer_sys::fuzz_target;
use roamlab::agents::dhcp_client::{accept, lease_of};

const WANT: [MessageType; 3] = [MessageType::Offer, MessageType::Ack, MessageType::Nak];

fuzz_target!(|data: &[u8]| {
    // The exchange's xid is the datagram's own, so that the fuzzer reaches what follows it.
    let xid = data
        .get(4..8)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
        .unwrap_or(0);
    if let Some(answer) = accept(data, xid, &WANT) {
        let lease = lease_of(&answer);
        let _ = format!("{lease:?}");
    }
});
