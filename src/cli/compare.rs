//! `roamlab compare`: the patent's argument, measured. One lab (topologies/compare.yaml)
//! with a terminal in each way of serving it: the method, no home update ([0011]), a home
//! address through a tunnel (Fig. 3), and at home (Fig. 2). From a fixed host, the same
//! scenario for each: forward and reverse lookup, ping by name, the path, the bytes the
//! home router carries per exchange, the RTT by name, a transfer by name, and a SIP call.
//! Every figure is measured on the lab; what the kernel cannot do (netem delays) is said,
//! never made up.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use super::exec::output_in as run;
use crate::lab::{self, UpOptions};
use crate::topology::{Topology, COMPARE_SOURCE, COMPARE_TOPOLOGY};

/// The fixed host every measurement is made from.
const FROM: &str = "fixed1";
/// Exchanges counted for the bytes through home, and pings timed by name.
const EXCHANGES: usize = 20;
const PING_BYTES: usize = 1000;
/// The size of the transfer by name.
const TRANSFER_BYTES: usize = 256 * 1024;

/// Each mode's terminal and where it attaches (as topologies/compare.yaml places them).
const MODES: [(&str, &str, &str); 4] = [
    ("method", "phone1", "visited"),
    ("no-update", "phone2", "noupdate"),
    ("tunnel", "phone3", "tunnelled"),
    ("home", "phone4", "home"),
];

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub lab: String,
    /// How the links are slowed: netem delays where the kernel has netem, tbf rates always.
    pub links: String,
    /// The tunnel's kind on this kernel.
    pub tunnel: String,
    pub rows: Vec<Row>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub mode: String,
    pub terminal: String,
    pub network: String,
    pub address: String,
    /// The forward lookup from the fixed host: the address, or the status it got.
    pub forward: String,
    pub forward_ok: bool,
    pub reverse: String,
    pub reverse_ok: bool,
    pub ping_by_name: bool,
    /// The hops from the fixed host to the terminal's address.
    pub hops: Vec<String>,
    pub via_home: bool,
    /// Bytes the home router's core link carried per ping exchange (by address).
    pub home_bytes_per_exchange: u64,
    /// Mean RTT of pings by name (ms).
    pub rtt_ms: Option<f64>,
    /// A 256 KiB transfer over HTTP by name (ms).
    pub transfer_ms: Option<f64>,
    /// SIP INVITE → 200 OK by host name (ms), and where the media went.
    pub call_setup_ms: Option<f64>,
    pub media_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_why: Option<String>,
}

pub fn run_compare(name: Option<&str>, keep: bool, json: bool) -> Result<()> {
    let netem = crate::kernel::netem::available();
    // Where the kernel has netem, the far home link gets a delay too; rates stay tbf's
    // figures either way (netem then applies both).
    let text = if netem {
        COMPARE_TOPOLOGY
            .replace(
                "impairment: { rate: 10mbit }",
                "impairment: { rate: 10mbit, delay: 20ms }",
            )
            .replace(
                "impairment: { rate: 100mbit }",
                "impairment: { rate: 100mbit, delay: 2ms }",
            )
    } else {
        COMPARE_TOPOLOGY.to_string()
    };
    let mut topology = Topology::parse(&text, COMPARE_SOURCE)?;
    if let Some(name) = name {
        topology.name = name.to_string();
    }
    let lab_name = topology.name.clone();
    let links = if netem {
        "netem: 20 ms and 10 Mbit/s on the home network's link, 2 ms and 100 Mbit/s on each visited network's".to_string()
    } else {
        "this kernel has no netem, so no link is delayed (no delay is made up); tbf limits the home network's link to 10 Mbit/s and each visited network's to 100 Mbit/s, so what detours through home pays in serialization time".to_string()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let opts = UpOptions {
        topology: topology.clone(),
        source_text: text,
        origin: COMPARE_SOURCE.to_string(),
        start_agents: true,
        ready_timeout: Duration::from_secs(10),
    };
    if !json {
        eprintln!(
            "compare: bringing up lab {lab_name} (one home, three visited networks, a home cell)…"
        );
    }
    let report = rt
        .block_on(lab::up_over_leftovers(
            &opts,
            Arc::new(AtomicBool::new(false)),
        ))
        .context("up")?;
    let tunnel = report
        .tunnels
        .first()
        .map(|(_, _, kind)| kind.to_string())
        .unwrap_or_else(|| "none".to_string());
    let measured = measure_all(&rt, &topology, json);
    if !keep {
        lab::down(&lab_name)?;
    }
    let comparison = Comparison {
        lab: lab_name,
        links,
        tunnel: if tunnel == "vxlan" {
            "vxlan (this kernel has no ipip loaded)".to_string()
        } else {
            tunnel
        },
        rows: measured?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        print!("{}", table(&comparison));
    }
    Ok(())
}

fn measure_all(rt: &tokio::runtime::Runtime, topology: &Topology, quiet: bool) -> Result<Vec<Row>> {
    let lab_name = &topology.name;
    let mut rows = Vec::new();
    for (mode, terminal, at) in MODES {
        if !quiet {
            eprintln!("compare: {mode}: {terminal} attaches at {at}, measured from {FROM}…");
        }
        let attached = rt
            .block_on(lab::terminals::attach(
                lab_name,
                terminal,
                Some(at),
                &Default::default(),
            ))
            .with_context(|| format!("attach {terminal} at {at}"))?;
        let address = attached
            .address
            .with_context(|| format!("{terminal} got no address at {at}"))?
            .to_string();
        rows.push(measure(
            topology,
            mode,
            terminal,
            at,
            &address,
            &attached.host_name,
        ));
    }
    Ok(rows)
}

fn measure(
    topology: &Topology,
    mode: &str,
    terminal: &str,
    at: &str,
    address: &str,
    name: &str,
) -> Row {
    let lab_name = &topology.name;
    let exec = |argv: &[&str]| run(lab_name, FROM, argv);
    let (_, forward_said) = exec(&["dig", "+tries=1", "+time=2", name, "A"]);
    let (forward_ok, forward) = lookup(&forward_said, address);
    let (_, reverse_said) = exec(&["dig", "+tries=1", "+time=2", "-x", address]);
    let (reverse_ok, reverse) = lookup(&reverse_said, &format!("{name}."));
    let count = EXCHANGES.to_string();
    let size = PING_BYTES.to_string();
    let ping = |to: &str| {
        exec(&[
            "ping", "-q", "-c", &count, "-i", "0.01", "-s", &size, "-W", "2", to,
        ])
    };
    let (ping_ok, by_name) = ping(name);
    let rtt_ms = ping_ok.then(|| mean_rtt(&by_name)).flatten();
    let (_, route) = exec(&["traceroute", "-n", "-q", "1", "-w", "1", address]);
    let hops = hops(&route);
    let home_addresses: Vec<String> = topology
        .node("home")
        .map(|home| {
            crate::topology::node_addresses(home, &topology.links)
                .iter()
                .map(|a| a.addr().to_string())
                .collect()
        })
        .unwrap_or_default();
    let via_home = hops.iter().any(|h| home_addresses.contains(h));
    let home_ns = topology.namespace("home");
    let before = core_link_bytes(&home_ns);
    ping(address);
    let after = core_link_bytes(&home_ns);
    let home_bytes_per_exchange = after.saturating_sub(before) / EXCHANGES as u64;
    let url = format!("http://{name}/bytes/{TRANSFER_BYTES}");
    // curl's own clock: from its start (the lookup included) to the last byte.
    let (transfer_ok, got) = exec(&[
        "curl",
        "-s",
        "-f",
        "-m",
        "10",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download} %{time_total}",
        &url,
    ]);
    let transfer_ms = transfer(transfer_ok, &got);
    let call = lab::call::call(lab_name, FROM, terminal, Duration::from_secs(1));
    let (call_setup_ms, media_path, call_why) = match call {
        Ok(r) if r.succeeded() => (r.setup_ms, r.media_path, None),
        Ok(r) => (None, r.media_path, r.why),
        Err(e) => (None, "none".to_string(), Some(e.to_string())),
    };
    Row {
        mode: mode.to_string(),
        terminal: terminal.to_string(),
        network: at.to_string(),
        address: address.to_string(),
        forward,
        forward_ok,
        reverse,
        reverse_ok,
        ping_by_name: ping_ok,
        hops,
        via_home,
        home_bytes_per_exchange,
        rtt_ms,
        transfer_ms,
        call_setup_ms,
        media_path,
        call_why,
    }
}

/// A dig answer checked against what it should be: (right, the answer or the status).
fn lookup(dig: &str, expected: &str) -> (bool, String) {
    let got = answer_or_status(dig);
    (
        got.eq_ignore_ascii_case(expected.trim_end_matches('.')),
        got,
    )
}

/// The first answer of a dig (without a name's final dot), or its status when it has none
/// (`NXDOMAIN`, or `no answer` when nothing came back).
pub(super) fn answer_or_status(dig: &str) -> String {
    let answer = dig
        .lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION"))
        .nth(1)
        .and_then(|l| l.split_whitespace().last())
        .map(|a| a.trim_end_matches('.').to_string());
    answer.unwrap_or_else(|| {
        dig.split("status: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap_or("no answer")
            .to_string()
    })
}

/// The time of a whole transfer (ms) from curl's `SIZE TIME_TOTAL`, or `None` when it
/// failed or fell short.
fn transfer(ok: bool, said: &str) -> Option<f64> {
    let mut fields = said.split_whitespace();
    let size: usize = fields.next()?.parse().ok()?;
    let secs: f64 = fields.next()?.parse().ok()?;
    (ok && size == TRANSFER_BYTES).then_some(secs * 1000.0)
}

/// The mean of `rtt min/avg/max/mdev = a/b/c/d ms`.
fn mean_rtt(ping: &str) -> Option<f64> {
    let stats = ping.lines().find(|l| l.contains("min/avg/max"))?;
    stats
        .split('=')
        .nth(1)?
        .trim()
        .split('/')
        .nth(1)?
        .parse()
        .ok()
}

/// The hop addresses of a `traceroute -n -q 1` (a `*` for a silent hop).
fn hops(traceroute: &str) -> Vec<String> {
    traceroute
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// Bytes received and sent on a namespace's `eth-core`, from /proc/net/dev as a thread in
/// that namespace sees it.
fn core_link_bytes(namespace: &str) -> u64 {
    let dev = crate::kernel::netns::run_in(namespace, || {
        std::fs::read_to_string("/proc/thread-self/net/dev")
    })
    .unwrap_or_default();
    link_bytes(&dev, "eth-core")
}

fn link_bytes(dev: &str, interface: &str) -> u64 {
    dev.lines()
        .find_map(|l| {
            let (name, counters) = l.split_once(':')?;
            if name.trim() != interface {
                return None;
            }
            let fields: Vec<u64> = counters
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            Some(fields.first()? + fields.get(8)?)
        })
        .unwrap_or(0)
}

fn ms(value: Option<f64>, decimals: usize) -> String {
    value
        .map(|v| format!("{v:.decimals$} ms"))
        .unwrap_or_else(|| "—".to_string())
}

fn yes(ok: bool, text: &str) -> String {
    if ok {
        format!("✓ {text}")
    } else {
        format!("✗ {text}")
    }
}

pub fn table(c: &Comparison) -> String {
    let rows: Vec<Vec<String>> = c
        .rows
        .iter()
        .map(|r| {
            vec![
                r.mode.clone(),
                format!("{} at {}", r.terminal, r.network),
                yes(r.forward_ok, &r.forward),
                yes(r.reverse_ok, &r.reverse),
                yes(r.ping_by_name, if r.ping_by_name { "ok" } else { "fails" }),
                r.hops.join(" → "),
                if r.via_home { "yes" } else { "no" }.to_string(),
                r.home_bytes_per_exchange.to_string(),
                ms(r.rtt_ms, 2),
                ms(r.transfer_ms, 1),
                match (r.call_setup_ms, &r.call_why) {
                    (Some(t), _) => format!("{t:.1} ms, media {}", r.media_path),
                    (None, Some(why)) => format!("no call: {why}"),
                    (None, None) => "no call".to_string(),
                },
            ]
        })
        .collect();
    let mut out = super::table::grid(
        &[
            "MODE",
            "TERMINAL",
            "FORWARD",
            "REVERSE",
            "PING BY NAME",
            "PATH FROM FIXED1",
            "VIA HOME",
            "HOME BYTES/PING",
            "RTT BY NAME",
            "256 KiB BY NAME",
            "SIP CALL (INVITE→200)",
        ],
        &rows,
    );
    out.push_str(&format!(
        "\nLinks: {}.\nTunnel: {}. Pings: {EXCHANGES} of {PING_BYTES} bytes, 10 ms apart (a rate limit delays only what queues, so a lone ping crosses a slow link at line speed); home bytes are what the home router's core link carried, both ways, per exchange.\n",
        c.links, c.tunnel
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dig_ping_traceroute_and_counters() {
        let dig = ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n;; ANSWER SECTION:\nphone1.home.example. 10 IN A 198.51.100.100\n";
        assert_eq!(
            lookup(dig, "198.51.100.100"),
            (true, "198.51.100.100".into())
        );
        let nx = ";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 2\n";
        assert_eq!(lookup(nx, "198.51.100.100"), (false, "NXDOMAIN".into()));
        assert_eq!(
            mean_rtt("20 packets transmitted, 20 received\nrtt min/avg/max/mdev = 0.05/0.132/0.2/0.01 ms\n"),
            Some(0.132)
        );
        assert_eq!(
            hops("traceroute to x (198.18.64.100), 30 hops max\n 1  203.0.113.1  0.02 ms\n 2  198.18.0.2  0.09 ms\n 3  *\n"),
            ["203.0.113.1", "198.18.0.2", "*"]
        );
        let dev = "Inter-|   Receive\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n  eth-core: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n";
        assert_eq!(link_bytes(dev, "eth-core"), 3000);
        assert_eq!(link_bytes(dev, "eth-lan"), 0);
        assert_eq!(transfer(true, "262144 0.251"), Some(251.0));
        assert_eq!(transfer(true, "1000 0.251"), None);
        assert_eq!(transfer(false, "262144 0.251"), None);
    }
}
