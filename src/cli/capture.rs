//! `roamlab capture NODE[/INTERFACE]`: a node's (or terminal's) traffic, from a packet
//! socket inside its namespace, as a pcap file (`-w FILE`, `-w -` for standard output: pipe
//! it to `tcpdump -r -` or `tshark -r -`) or a line per packet. Stops on Ctrl-C, after
//! `--seconds` or after `--count` packets.

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
    let stop = stop_on_signal();
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut seen = 0usize;
    while !stop.load(Ordering::SeqCst)
        && deadline.is_none_or(|d| Instant::now() < d)
        && count.is_none_or(|c| seen < c)
    {
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
fn stop_on_signal() -> Arc<AtomicBool> {
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
