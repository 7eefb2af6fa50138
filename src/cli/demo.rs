//! `roamlab demo`: the main job. Builds the built-in lab, roams phone1 and server1 into the
//! visited network, and shows with real tools (dig, ping, traceroute, curl) that the
//! method works: forward lookups answered by the home DNS, reverse lookups by the visited
//! DNS, packets straight through the visited network, a mobile server reachable by name;
//! then phone1 detaches and its names stop resolving. Every step checks its output.

use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::lab::{self, UpOptions};
use crate::supervisor::enter::NodeEntry;
use crate::topology::{Topology, DEFAULT_SOURCE, DEFAULT_TOPOLOGY};

/// The demo's lab name, unless `--name` says another.
pub const LAB: &str = "demo";

struct Demo {
    /// The lab's name.
    lab: String,
    passed: usize,
    failed: Vec<String>,
    started: Instant,
}

/// Runs a command inside a node of the demo's lab; returns its exit success and output.
pub(super) fn run(lab: &str, node: &str, argv: &[&str]) -> (bool, String) {
    let namespace = crate::topology::namespace_name(lab, node);
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    match NodeEntry::prepare(&namespace) {
        Ok(entry) => entry.apply_to(&mut cmd),
        Err(e) => return (false, format!("cannot enter {node}: {e}")),
    }
    match cmd.output() {
        Ok(out) => {
            let mut text = String::from_utf8_lossy(&out.stdout).to_string();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            (out.status.success(), text)
        }
        Err(e) => (false, format!("cannot run {}: {e}", argv[0])),
    }
}

impl Demo {
    fn step(&self, title: &str) {
        println!("\n{}", paint("1", &format!("▶ {title}")));
    }

    fn show(&self, node: &str, argv: &[&str], output: &str) {
        println!("  $ roamlab exec {node} -- {}", argv.join(" "));
        for line in output.lines().filter(|l| !l.trim().is_empty()) {
            println!("    {line}");
        }
    }

    fn check(&mut self, ok: bool, what: &str) -> bool {
        if ok {
            self.passed += 1;
            println!("  {} {what}", paint("32", "✓"));
        } else {
            self.failed.push(what.to_string());
            println!("  {} {what}", paint("31", "✗"));
        }
        ok
    }

    /// Runs a command in a node, shows it, and checks its output.
    fn exec(
        &mut self,
        node: &str,
        argv: &[&str],
        what: &str,
        holds: impl Fn(bool, &str) -> bool,
    ) -> String {
        let (ok, out) = run(&self.lab, node, argv);
        self.show(node, argv, &out);
        self.check(holds(ok, &out), what);
        out
    }
}

/// Colours for a terminal; plain text for logs.
fn paint(code: &str, text: &str) -> String {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn answer_of(dig: &str) -> Vec<String> {
    dig.lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().last().unwrap_or_default().to_string())
        .collect()
}

/// Runs the demo in lab `name` (already validated as a lab name); a lab of that name that
/// is in use is refused, as `up` refuses it, and one a crash left behind is removed first.
pub fn run_demo(keep: bool, topology: Topology) -> Result<()> {
    let name = topology.name.clone();
    let mut d = Demo {
        lab: name.clone(),
        passed: 0,
        failed: Vec::new(),
        started: Instant::now(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "roamlab demo: roaming with dynamic DNS update (EP 1 017 208 A2), on real Linux networking"
    );

    d.step("Bring up the built-in lab: core, home, visited, fixed1, fixed2");
    let opts = UpOptions {
        topology: topology.clone(),
        source_text: DEFAULT_TOPOLOGY.to_string(),
        origin: DEFAULT_SOURCE.to_string(),
        start_agents: true,
        ready_timeout: Duration::from_secs(10),
    };
    let t = Instant::now();
    let report = rt
        .block_on(lab::up_over_leftovers(
            &opts,
            Arc::new(AtomicBool::new(false)),
        ))
        .context("up")?;
    d.check(
        true,
        &format!(
            "lab {name} up in {} ms with {} agents (DNS, HLR, VLR, DHCP)",
            t.elapsed().as_millis(),
            report.agents.len()
        ),
    );

    let result = steps(&mut d, &rt);
    if keep {
        println!("\nThe lab stays up (--keep): try `sudo roamlab exec fixed1 -- dig phone1.home.example` … `sudo roamlab down {name}`.");
    } else {
        d.step("Tear the lab down");
        let removed = lab::down(&name);
        d.check(removed.is_ok(), "everything the lab made is removed");
    }
    result?;
    let total = d.passed + d.failed.len();
    println!(
        "\n{} of {total} checks passed in {:.1} s.",
        d.passed,
        d.started.elapsed().as_secs_f64()
    );
    if !d.failed.is_empty() {
        anyhow::bail!(
            "demo: {} check(s) failed: {}",
            d.failed.len(),
            d.failed.join("; ")
        );
    }
    Ok(())
}

fn attach(
    d: &mut Demo,
    rt: &tokio::runtime::Runtime,
    terminal: &str,
) -> Result<std::net::Ipv4Addr> {
    println!("  $ roamlab attach {terminal} --at visited");
    let a = rt.block_on(crate::lab::terminals::attach(
        &d.lab,
        terminal,
        Some("visited"),
        &Default::default(),
    ))?;
    let address = a.address.context("the terminal got no address")?;
    let resolvable = a
        .resolvable
        .as_ref()
        .map(|(from, t)| format!("; its name resolves from {from} {} ms after", t.as_millis()))
        .unwrap_or_default();
    println!("    {terminal}: authenticated by its home HLR via the VLR (Milenage), leased {address} by the visited DHCP{resolvable}");
    d.check(
        true,
        &format!("{terminal} attached at visited with address {address}"),
    );
    Ok(address)
}

fn steps(d: &mut Demo, rt: &tokio::runtime::Runtime) -> Result<()> {
    d.step("phone1 and server1 roam into the visited network");
    let phone = attach(d, rt, "phone1")?;
    let server = attach(d, rt, "server1")?;
    let phone_s = phone.to_string();

    d.step("Forward lookup from fixed1, through the lab's resolver, answered by the home DNS");
    d.exec(
        "fixed1",
        &[
            "dig",
            "+noall",
            "+answer",
            "+comments",
            "phone1.home.example",
        ],
        "phone1.home.example resolves to its visited address",
        |ok, out| ok && out.contains("status: NOERROR") && answer_of(out).contains(&phone_s),
    );
    d.exec(
        "fixed1",
        &[
            "dig",
            "+norec",
            "+noall",
            "+answer",
            "+comments",
            "@192.0.2.53",
            "phone1.home.example",
        ],
        "the home DNS (192.0.2.53) holds it with authority",
        |ok, out| ok && out.contains(" aa") && answer_of(out).contains(&phone_s),
    );

    d.step("Reverse lookup from fixed2, answered by the visited DNS");
    d.exec(
        "fixed2",
        &["dig", "+noall", "+answer", "+comments", "-x", &phone_s],
        "the visited address resolves back to phone1.home.example",
        |ok, out| ok && answer_of(out).iter().any(|a| a == "phone1.home.example."),
    );
    d.exec(
        "fixed2",
        &[
            "dig",
            "+norec",
            "+noall",
            "+answer",
            "+comments",
            "@198.51.100.53",
            "-x",
            &phone_s,
        ],
        "the visited DNS (198.51.100.53) holds it with authority",
        |ok, out| {
            ok && out.contains(" aa") && answer_of(out).iter().any(|a| a == "phone1.home.example.")
        },
    );

    d.step("Ping by name, and the path it takes: core → visited → phone1, not through home");
    d.exec(
        "fixed1",
        &[
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            "phone1.home.example",
        ],
        "ping phone1.home.example: no loss",
        |ok, out| ok && out.contains(" 0% packet loss"),
    );
    d.exec(
        "fixed1",
        &[
            "traceroute",
            "-n",
            "-q",
            "1",
            "-w",
            "1",
            "phone1.home.example",
        ],
        "traceroute: 203.0.113.1 (core), 198.18.0.6 (visited), then phone1; never home",
        |ok, out| {
            let hops: Vec<&str> = out
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(1))
                .collect();
            ok && hops == ["203.0.113.1", "198.18.0.6", phone_s.as_str()]
        },
    );

    d.step("The mobile server answers by name (claim 21), also peer to peer from phone1");
    let hello = "hello from server1.home.example";
    d.exec(
        "fixed1",
        &["curl", "-s", "-m", "3", "http://server1.home.example/"],
        "fixed1 reaches server1.home.example over HTTP",
        |ok, out| ok && out.contains(hello),
    );
    d.exec(
        "phone1",
        &["curl", "-s", "-m", "3", "http://server1.home.example/"],
        "phone1 reaches server1 by name (peer to peer)",
        |ok, out| ok && out.contains(hello),
    );
    let _ = server;

    d.step("A voice call by host name ([0030]): fixed1 calls sip:phone1@phone1.home.example");
    println!("  $ roamlab call fixed1 phone1");
    match crate::lab::call::call(&d.lab, "fixed1", "phone1", Duration::from_secs(1)) {
        Ok(report) => {
            println!("    {}", super::call::describe(&report));
            d.check(
                report.succeeded(),
                "baresip at both ends: the call is set up, and media flows both ways",
            );
            d.check(
                report.media_path == "direct",
                "the media goes straight to phone1, never through home",
            );
        }
        Err(e) => {
            println!("    {e}");
            d.check(false, "the call is set up");
        }
    }

    d.step("phone1 detaches: its lease, both DNS records and its registration at home go");
    println!("  $ roamlab detach phone1");
    rt.block_on(crate::lab::terminals::detach(&d.lab, "phone1"))?;
    d.check(
        true,
        "phone1 detached (DHCP release, PurgeMS, records withdrawn)",
    );
    let gone = |out: &str| out.contains("status: NXDOMAIN");
    let started = Instant::now();
    let mut authority_gone = false;
    while started.elapsed() < Duration::from_secs(3) {
        if gone(
            &run(
                &d.lab,
                "fixed1",
                &["dig", "+norec", "@192.0.2.53", "phone1.home.example"],
            )
            .1,
        ) {
            authority_gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    d.exec(
        "fixed1",
        &[
            "dig",
            "+norec",
            "+noall",
            "+comments",
            "@192.0.2.53",
            "phone1.home.example",
        ],
        "the home DNS no longer knows phone1",
        |_, out| authority_gone && gone(out),
    );
    d.exec(
        "fixed2",
        &[
            "dig",
            "+norec",
            "+noall",
            "+comments",
            "@198.51.100.53",
            "-x",
            &phone_s,
        ],
        "the visited DNS no longer maps the address",
        |_, out| gone(out),
    );
    // The resolver may still answer from its cache for the record's TTL (10 s).
    let started = Instant::now();
    let bound = Duration::from_secs(12);
    let mut forgot = None;
    while started.elapsed() < bound {
        if gone(&run(&d.lab, "fixed1", &["dig", "+time=1", "phone1.home.example"]).1) {
            forgot = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = run(
        &d.lab,
        "fixed1",
        &["dig", "+noall", "+comments", "phone1.home.example"],
    )
    .1;
    d.show(
        "fixed1",
        &["dig", "+noall", "+comments", "phone1.home.example"],
        &out,
    );
    let what = match forgot {
        Some(t) => format!(
            "the resolver forgot phone1 {:.1} s after the detach (its TTL is 10 s)",
            t.as_secs_f64()
        ),
        None => "the resolver forgot phone1 within its TTL".to_string(),
    };
    d.check(forgot.is_some() && gone(&out), &what);
    Ok(())
}
