//! Writes the seed corpora (`fuzz/seeds/<target>/`) from real exchanges: the messages the
//! real HLR and VLR cores trade in an attach, the DHCP packets of a lease's life as the
//! client and server build them, update messages as the update client builds them, and the
//! project's topology files. Run from `fuzz/`: `cargo run --example seeds`.

use std::net::Ipv4Addr;
use std::path::Path;

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::Encodable;
use roamlab::dns::update::{message, Change, RecordData};
use roamlab::protocols::dhcp::reply;
use roamlab::protocols::gsup::{msg, Message};
use roamlab::protocols::ipa::{self, Frame};

#[path = "../fuzz_targets/common.rs"]
mod common;

const IMSI: &str = common::IMSIS[0];

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// Chunks as the targets read them: a 2-byte length, then the bytes.
fn chunked(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// Every GSUP message of an attach, a session address, a purge and a cancel, as the real
/// HLR core answers a VLR's requests.
fn gsup_exchange() -> Vec<Message> {
    let mut hlr = common::hlr_core();
    let mut seen = Vec::new();
    let mut attach = Message::new(msg::ATTACH_REQUEST, IMSI);
    attach.host_name = Some("phone1.home.example".into());
    attach.terminal_mac = Some([0x02, 0, 0, 0, 0, 1]);
    seen.push(attach);
    let mut session = Message::new(msg::SESSION_ADDRESS_REQUEST, IMSI);
    session.session_address = Some("198.51.100.100".parse().unwrap());
    let mut ul = Message::new(msg::UPDATE_LOCATION_REQUEST, IMSI);
    ul.cn_domain = Some(1);
    for request in [
        Message::new(msg::SEND_AUTH_INFO_REQUEST, IMSI),
        ul,
        Message::new(msg::INSERT_DATA_RESULT, IMSI),
        session,
        Message::new(msg::SESSION_WITHDRAW_REQUEST, IMSI),
        Message::new(msg::PURGE_MS_REQUEST, IMSI),
    ] {
        seen.push(request.clone());
        for out in hlr.handle("visited", &request).send {
            seen.push(out.message);
        }
    }
    // Registered elsewhere: the HLR cancels the location at visited.
    for request in [
        Message::new(msg::SEND_AUTH_INFO_REQUEST, IMSI),
        Message::new(msg::UPDATE_LOCATION_REQUEST, IMSI),
    ] {
        for out in hlr.handle("elsewhere", &request).send {
            seen.push(out.message);
        }
    }
    let mut response = Message::new(msg::AUTH_RESPONSE, IMSI);
    response.res = Some(vec![0xa5; 8]);
    let mut failure = Message::new(msg::AUTH_FAILURE, IMSI);
    failure.auts = Some([0x5a; 14]);
    seen.extend([response, failure, Message::new(msg::DETACH_REQUEST, IMSI)]);
    seen
}

fn dhcp_client_message(
    kind: MessageType,
    mac: [u8; 6],
    requested: Option<Ipv4Addr>,
) -> v4::Message {
    let mut m = v4::Message::default();
    m.set_opcode(v4::Opcode::BootRequest)
        .set_xid(0x1234_5678)
        .set_flags(v4::Flags::default().set_broadcast())
        .set_chaddr(&mac);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ClientIdentifier([&[1u8][..], &mac].concat()));
    o.insert(DhcpOption::Hostname("phone1".into()));
    o.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
    ]));
    if let Some(ip) = requested {
        o.insert(DhcpOption::RequestedIpAddress(ip));
        o.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(198, 51, 100, 1)));
    }
    m
}

fn main() {
    let exchange = gsup_exchange();
    for (i, m) in exchange.iter().enumerate() {
        let bytes = m.encode();
        write("gsup", &format!("{i:02}-{:02x}", m.msg_type), &bytes);
        let mut frame = vec![ipa::PROTO_OSMO, ipa::EXT_GSUP];
        frame.extend_from_slice(&bytes);
        write("ipa_frame", &format!("gsup-{i:02}"), &frame);
    }
    let ccm = [
        Frame::Ping,
        Frame::Pong,
        Frame::IdAck,
        Frame::IdNack,
        Frame::IdGet(vec![ipa::TAG_UNIT_NAME, ipa::TAG_SERIAL, ipa::TAG_UNIT_ID]),
        Frame::IdResp(vec![
            (ipa::TAG_UNIT_NAME, "visited-00-00-00-00-00-00".into()),
            (ipa::TAG_SERIAL, "visited".into()),
            (ipa::TAG_UNIT_ID, "0/0/0".into()),
        ]),
    ];
    let mut stream = Vec::new();
    for (i, f) in ccm.iter().enumerate() {
        let bytes = ipa::encode(f);
        write("ipa_frame", &format!("ccm-{i}"), &bytes[2..]);
        stream.extend_from_slice(&bytes);
    }
    for m in &exchange[..4] {
        stream.extend_from_slice(&ipa::encode(&Frame::Gsup(m.encode())));
    }
    write("ipa_stream", "identity-then-gsup", &stream);

    // The HLR core: the VLR's side of the exchange, raw (0x80: decode the rest).
    let from_visited: Vec<Vec<u8>> = exchange
        .iter()
        .filter(|m| m.msg_type < 0x80 && m.msg_type & 0b11 != 0b10)
        .map(|m| [&[0x80u8][..], &m.encode()].concat())
        .collect();
    write("hlr_core", "attach-raw", &chunked(&from_visited));
    // Built: SAI, UL, ISD result, session address in the pool, withdraw, purge.
    let built: Vec<Vec<u8>> = vec![
        vec![0, msg::SEND_AUTH_INFO_REQUEST, 0, 0],
        vec![0, msg::UPDATE_LOCATION_REQUEST, 0, 0],
        vec![0, msg::INSERT_DATA_RESULT, 0, 0],
        vec![0, msg::SESSION_ADDRESS_REQUEST, 0, 1, 0, 0, 0, 8],
        vec![0, msg::SESSION_WITHDRAW_REQUEST, 0, 0],
        vec![1, msg::SEND_AUTH_INFO_REQUEST, 0, 0],
        vec![1, msg::UPDATE_LOCATION_REQUEST, 0, 0],
        vec![0, msg::PURGE_MS_REQUEST, 0, 0],
    ];
    write("hlr_core", "attach-built", &chunked(&built));

    // The VLR core: attach with a true claim, vector, honest answer, registration.
    let mac = [0x02, 0, 0, 0, 0, 1];
    let vlr_ops: Vec<Vec<u8>> = vec![
        [&[0u8, 0, 1][..], &mac].concat(),
        vec![1],
        vec![3],
        vec![1],
        [&[0u8, 1, 2][..], &mac].concat(),
        vec![1],
        vec![4],
        [
            &[5u8][..],
            &Message::new(msg::LOCATION_CANCEL_REQUEST, IMSI).encode(),
        ]
        .concat(),
    ];
    write("vlr_core", "attach-honest-then-forged", &chunked(&vlr_ops));

    // DHCP: a lease's life from the client's side, and the server's answers.
    let served = common::served();
    let ip = Ipv4Addr::new(198, 51, 100, 100);
    let discover = dhcp_client_message(MessageType::Discover, mac, None);
    let request = dhcp_client_message(MessageType::Request, mac, Some(ip));
    let release = dhcp_client_message(MessageType::Release, mac, Some(ip));
    let mut packets = Vec::new();
    for (name, m) in [
        ("discover", &discover),
        ("request", &request),
        ("release", &release),
    ] {
        let bytes = m.to_vec().unwrap();
        write(
            "dhcp_server",
            name,
            &chunked(&[[&[0u8][..], &bytes].concat()]),
        );
        packets.push([&[0u8][..], &bytes].concat());
    }
    write("dhcp_server", "lease-life", &chunked(&packets));
    for (name, kind) in [
        ("offer", MessageType::Offer),
        ("ack", MessageType::Ack),
        ("nak", MessageType::Nak),
    ] {
        let answer = reply(
            &served,
            &discover,
            Some((0x01, "phone1.home.example".into())),
            kind,
            ip,
        );
        write("dhcp_client", name, &answer.to_vec().unwrap());
    }

    // The lease book: discover, request, renew, sweep, detach, sweep.
    let book_ops: Vec<Vec<u8>> = vec![
        vec![0, 0, 0, 1, 0, 0, 0],
        vec![0, 1, 0, 1, 3, 1, 0],
        vec![3, 30],
        vec![0, 1, 0, 1, 3, 1, 5],
        vec![1],
        vec![2, 0, 3],
        vec![1],
        vec![0, 0, 1, 1, 0, 0, 0],
    ];
    write("lease_book", "lease-life", &chunked(&book_ops));

    // DNS updates: the texts the agents write, and an update message as an answer.
    for (i, text) in [
        "phone1.home.example. A 198.51.100.100",
        "100.100.51.198.in-addr.arpa. PTR phone1.home.example.",
        "phone1.home.example. AAAA 2001:db8::1",
    ]
    .iter()
    .enumerate()
    {
        write(
            "dns_update",
            &format!("text-{i}"),
            &[&[1u8][..], text.as_bytes()].concat(),
        );
    }
    let update = message(
        "home.example",
        300,
        &Change::Replace {
            name: "phone1.home.example".into(),
            data: RecordData::Address(ip.into()),
        },
    )
    .unwrap();
    write(
        "dns_update",
        "answer",
        &[&[0u8][..], &update.to_vec().unwrap()].concat(),
    );
    write(
        "dns_update",
        "guard",
        &[
            &[3u8][..],
            &chunked(&[vec![1, 0, 75, 1], vec![1, 0, 75, 1, 0], vec![1, 0, 75, 255]]),
        ]
        .concat(),
    );

    // Topologies: the project's own files.
    for dir in ["../topologies", "../tests/labs", "../tests/fixtures/bad"] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            write("topology", &name, &std::fs::read(&path).unwrap());
        }
    }
}
