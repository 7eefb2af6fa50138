//! `roamlab capture NODE[/INTERFACE]`: a node's (or terminal's) traffic, from a packet
//! socket inside its namespace, as a pcap file (`-w FILE`, `-w -` for standard output: pipe
//! it to `tcpdump -r -` or `tshark -r -`) or a line per packet. Stops on Ctrl-C, after
//! `--seconds` or after `--count` packets.
//!
//! `roamlab capture signaling` records the private network, which no packet socket sees (its
//! links are Unix sockets): each VLR copies its GSUP messages to the capture (see
//! [`crate::contract::tap`]), written as IPA over TCP port 4222, as osmo-hlr serves GSUP, so
//! that `tshark -d tcp.port==4222,gsm_ipa` shows SendAuthInfo, UpdateLocation and the rest.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::kernel::packets::{Packet, PacketSocket, SNAPLEN};
use crate::protocols::{pcap, udp};

pub fn run(
    lab: &str,
    target: &str,
    write: Option<&Path>,
    seconds: Option<f64>,
    count: Option<usize>,
) -> Result<()> {
    let (node, interface) = match target.split_once('/') {
        Some((node, interface)) if !interface.is_empty() => (node, Some(interface)),
        Some(_) => bail!("`{target}`: name an interface after the `/`, or none"),
        None => (target, None),
    };
    let (state, topology) = crate::lab::terminals::load(lab)?;
    if node == SIGNALING && interface.is_none() && topology.node(node).is_none() {
        return capture_signaling(lab, &topology, write, seconds, count);
    }
    let namespace = match state.terminals.iter().find(|t| t.name == node) {
        Some(t) => t.namespace.clone(),
        None if topology.node(node).is_some() => topology.namespace(node),
        None => bail!("lab {lab} has no node or attached terminal `{node}`"),
    };
    let socket = PacketSocket::open_in(&namespace, interface).with_context(|| {
        format!(
            "capture in {node}{}",
            interface.map(|i| format!("/{i}")).unwrap_or_default()
        )
    })?;
    let mut out = pcap_out(write)?;
    let stop = stop_on_signal();
    let until = Until::new(seconds, count);
    let mut seen = 0usize;
    while !stop.load(Ordering::SeqCst) && until.goes_on(seen) {
        let Some(packet) = socket.recv() else {
            continue;
        };
        seen += 1;
        match out.as_mut() {
            Some(out) => {
                out.write_all(&pcap::record(&pcap::Record {
                    secs: packet.at.as_secs() as u32,
                    micros: packet.at.subsec_micros(),
                    kind: u16::from(packet.kind),
                    hardware: packet.hardware,
                    source: &packet.source,
                    protocol: packet.protocol,
                    data: &packet.data,
                    length: packet.length,
                }))?;
                // Whole records as they come: the file reads while the capture runs.
                out.flush()?;
            }
            None => println!("{}", describe(&packet)),
        }
    }
    if write.is_some_and(|p| p != Path::new("-")) {
        eprintln!("capture: {seen} packets from {node}");
    }
    Ok(())
}

/// The target that names the private network.
const SIGNALING: &str = "signaling";
/// The port osmo-hlr serves GSUP on: the HLR's end of each written stream.
const GSUP_PORT: u16 = 4222;

/// The pcap file (or standard output) to write, its header written; none for lines.
fn pcap_out(write: Option<&Path>) -> Result<Option<Box<dyn Write>>> {
    let mut out: Option<Box<dyn Write>> = match write {
        None => None,
        Some(p) if p == Path::new("-") => Some(Box::new(std::io::stdout().lock())),
        Some(p) => Some(Box::new(
            std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?,
        )),
    };
    if let Some(out) = out.as_mut() {
        out.write_all(&pcap::file_header(SNAPLEN as u32))?;
        out.flush()?;
    }
    Ok(out)
}

/// When a capture ends: after a time, or a number of packets.
struct Until {
    deadline: Option<Instant>,
    count: Option<usize>,
}

impl Until {
    fn new(seconds: Option<f64>, count: Option<usize>) -> Self {
        Until {
            deadline: seconds.map(|s| Instant::now() + Duration::from_secs_f64(s)),
            count,
        }
    }

    fn goes_on(&self, seen: usize) -> bool {
        self.deadline.is_none_or(|d| Instant::now() < d) && self.count.is_none_or(|c| seen < c)
    }
}

/// One VLR's tap: the socket it copies to, and the stream each of its HLR links is written as.
struct VlrTap {
    vlr: String,
    path: std::path::PathBuf,
    socket: std::os::unix::net::UnixDatagram,
    address: std::net::Ipv4Addr,
}

fn capture_signaling(
    lab: &str,
    topology: &crate::topology::Topology,
    write: Option<&Path>,
    seconds: Option<f64>,
    count: Option<usize>,
) -> Result<()> {
    let dir = crate::contract::LabDir::of(lab);
    let address_of = |node: &str| {
        crate::topology::outer_address(node, &topology.links)
            .unwrap_or(std::net::Ipv4Addr::new(198, 18, 255, 254))
    };
    let mut taps = Vec::new();
    for node in topology.nodes.iter().filter(|n| n.vlr().is_some()) {
        let path = dir.gsup_tap(&node.name);
        // A tap a killed capture left is not listened on: this one takes its place.
        let _ = std::fs::remove_file(&path);
        let socket = std::os::unix::net::UnixDatagram::bind(&path)
            .with_context(|| format!("listen for {}'s GSUP at {}", node.name, path.display()))?;
        socket.set_nonblocking(true)?;
        taps.push(VlrTap {
            vlr: node.name.clone(),
            path,
            socket,
            address: address_of(&node.name),
        });
    }
    if taps.is_empty() {
        bail!("lab {lab} has no VLR: its private network carries nothing");
    }
    let result = (|| -> Result<usize> {
        let mut out = pcap_out(write)?;
        let stop = stop_on_signal();
        let until = Until::new(seconds, count);
        // TCP sequence numbers per (VLR, home) and direction, so tools reassemble the streams.
        let mut streams: std::collections::HashMap<(String, String), (u32, u32)> =
            Default::default();
        let mut seen = 0usize;
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::SeqCst) && until.goes_on(seen) {
            let mut idle = true;
            for (i, tap) in taps.iter().enumerate() {
                let Ok(n) = tap.socket.recv(&mut buf) else {
                    continue;
                };
                idle = false;
                let Some(record) = crate::contract::tap::TapRecord::decode(&buf[..n]) else {
                    continue;
                };
                seen += 1;
                let frame = crate::protocols::ipa::encode(&crate::protocols::ipa::Frame::Gsup(
                    record.gsup.clone(),
                ));
                let vlr_end = std::net::SocketAddrV4::new(tap.address, 40000 + i as u16);
                let hlr_end = std::net::SocketAddrV4::new(address_of(&record.home), GSUP_PORT);
                let (up, down) = streams
                    .entry((tap.vlr.clone(), record.home.clone()))
                    .or_insert((1, 1));
                let (src, dst, seq, ack) = if record.to_hlr {
                    (vlr_end, hlr_end, *up, *down)
                } else {
                    (hlr_end, vlr_end, *down, *up)
                };
                if record.to_hlr {
                    *up = up.wrapping_add(frame.len() as u32);
                } else {
                    *down = down.wrapping_add(frame.len() as u32);
                }
                let packet = pcap::tcp_segment(src, dst, seq, ack, &frame);
                match out.as_mut() {
                    Some(out) => {
                        out.write_all(&pcap::record(&pcap::Record {
                            secs: (record.at_ns / 1_000_000_000) as u32,
                            micros: ((record.at_ns % 1_000_000_000) / 1000) as u32,
                            kind: if record.to_hlr { 4 } else { 0 },
                            hardware: 1,
                            source: &[],
                            protocol: 0x0800,
                            data: &packet,
                            length: packet.len(),
                        }))?;
                        out.flush()?;
                    }
                    None => println!(
                        "{}.{:06} {} {} {} GSUP {}",
                        record.at_ns / 1_000_000_000,
                        (record.at_ns % 1_000_000_000) / 1000,
                        tap.vlr,
                        if record.to_hlr { "->" } else { "<-" },
                        record.home,
                        gsup_name(&record.gsup)
                    ),
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(seen)
    })();
    for tap in &taps {
        let _ = std::fs::remove_file(&tap.path);
    }
    let seen = result?;
    if write.is_some_and(|p| p != Path::new("-")) {
        eprintln!("capture: {seen} GSUP messages on the private network");
    }
    Ok(())
}

/// A GSUP message's name from its first byte (its type).
fn gsup_name(gsup: &[u8]) -> String {
    match gsup.first() {
        Some(&t) => crate::protocols::gsup::msg::name(t).to_string(),
        None => "(empty)".to_string(),
    }
}

/// One line: time, direction, interface index, and what it is.
fn describe(p: &Packet) -> String {
    let direction = if p.outgoing() { "out" } else { "in " };
    let what = match p.protocol {
        0x0800 => match udp::parse(&p.data) {
            Some(d) => format!("UDP {} > {}", d.src, d.dst),
            None if p.data.len() >= 20 => format!(
                "IPv4 {} > {} proto {}",
                std::net::Ipv4Addr::new(p.data[12], p.data[13], p.data[14], p.data[15]),
                std::net::Ipv4Addr::new(p.data[16], p.data[17], p.data[18], p.data[19]),
                p.data[9]
            ),
            None => "IPv4 (short)".to_string(),
        },
        0x0806 => "ARP".to_string(),
        0x86dd => "IPv6".to_string(),
        other => format!("protocol 0x{other:04x}"),
    };
    format!(
        "{}.{:06} {direction} if{} {what}, {} bytes",
        p.at.as_secs(),
        p.at.subsec_micros(),
        p.interface,
        p.length
    )
}

/// A flag set on SIGINT or SIGTERM.
pub(super) fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        flag.store(true, Ordering::SeqCst);
    });
    stop
}
