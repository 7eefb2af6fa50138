//! The command line: parses arguments, runs a verb, and turns errors into one readable
//! line. Library modules return typed errors; context is added only here.

mod bench;
mod call;
mod capture;
mod compare;
mod demo;
mod docs;
mod exec;
mod graph;
mod scenario;
mod sequence;
mod table;
mod terminals;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::contract::configs;
use crate::contract::LabDir;
use crate::lab::{self, UpOptions};
use crate::topology::{Topology, DEFAULT_SOURCE, DEFAULT_TOPOLOGY};

#[derive(Parser)]
#[command(
    name = "roamlab",
    version,
    about = "A real, sealed Linux network lab for roaming with dynamic DNS update"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Reads the command line. An agent's, in the one shape the supervisor writes
    /// (`agent <kind> --config <file>`), is read directly: building clap's whole command
    /// tree to parse it costs ~0.4 ms of every agent's start, and a terminal's agent starts
    /// on the path of every attach. Any other line goes to clap, which explains mistakes.
    pub fn from_args() -> Self {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        Self::agent_line(&args).unwrap_or_else(|| Self::parse_from(args))
    }

    /// An agent's command line in the supervisor's one shape (`agent <kind> --config
    /// <file>`, after argv[0]), as an agent's run reads it; none for any other line.
    pub fn agent_line(args: &[std::ffi::OsString]) -> Option<Self> {
        let [_, agent, kind, flag, config] = args else {
            return None;
        };
        if agent != "agent" || flag != "--config" {
            return None;
        }
        let config = PathBuf::from(config);
        let agent = match kind.to_str()? {
            "hlr" => AgentCommand::Hlr { config },
            "vlr" => AgentCommand::Vlr { config },
            "dhcp" => AgentCommand::Dhcp { config },
            "terminal" => AgentCommand::Terminal { config },
            "terminal-host" => AgentCommand::TerminalHost { config },
            "dns" => AgentCommand::Dns { config },
            _ => return None,
        };
        Some(Cli {
            command: Command::Agent { agent },
        })
    }

    /// Whether this run is an agent (started by the supervisor).
    pub fn is_agent(&self) -> bool {
        matches!(self.command, Command::Agent { .. })
    }

    /// Whether this run starts one agent and nothing after it: the attach of one terminal
    /// by its name (see `supervisor::zygote`).
    pub fn starts_one_agent(&self) -> bool {
        match &self.command {
            Command::Attach { terminals, all, .. } => terminals::single(terminals, *all),
            _ => false,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// The main job: bring up the built-in lab, roam phone1 and server1 into the visited
    /// network, show forward and reverse lookups, ping and HTTP by name, detach, show the
    /// names gone, tear down. Each step is checked; exit 0 only if all hold.
    ///
    /// Example: sudo roamlab demo --keep
    Demo {
        /// Leave the lab up afterwards, to poke at it.
        #[arg(long)]
        keep: bool,
        /// The lab's name (default: demo); a running lab of that name is refused.
        #[arg(long)]
        name: Option<String>,
    },
    /// The patent's argument, measured: a terminal in every mode (the method, no home
    /// update, a tunnel through home, at home) on one lab, and from a fixed host the same
    /// scenario for each: lookups, ping by name, the path, bytes through the home router,
    /// RTT and a transfer by name, a SIP call. Prints one row per mode; tears down after.
    ///
    /// Example: sudo roamlab compare --json
    Compare {
        /// The lab's name (default: compare); a running lab of that name is refused.
        #[arg(long)]
        name: Option<String>,
        /// Leave the lab up afterwards.
        #[arg(long)]
        keep: bool,
        /// Print the comparison as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build a lab: namespaces, links, bridges, addresses, routes, then its agents.
    ///
    /// Without -t, builds the built-in roaming lab (core, home, visited, fixed1, fixed2).
    /// Example: sudo roamlab up -t topologies/roaming.yaml --name lab2
    Up {
        /// Topology file (default: the built-in roaming lab).
        #[arg(short = 't', long = "topology")]
        topology: Option<PathBuf>,
        /// Lab name, overriding the file's `name`.
        #[arg(long)]
        name: Option<String>,
        /// Build only the network fabric; start no agents.
        #[arg(long)]
        no_agents: bool,
        /// Seconds each agent has to report ready.
        #[arg(long, default_value_t = 10.0)]
        ready_timeout: f64,
        /// Print the lab's status as JSON (as `status --json`) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a lab: its agents, processes, namespaces, /etc/netns files and state.
    ///
    /// Example: sudo roamlab down roam
    Down {
        /// Lab name (default: the only lab there is).
        lab: Option<String>,
    },
    /// Show what exists of a lab: namespaces, interfaces, addresses, agents.
    ///
    /// Example: sudo roamlab status --json
    Status {
        /// Lab name (default: the only lab there is).
        lab: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a command inside a node, with its resolv.conf and hosts (like `ip netns exec`).
    ///
    /// The command runs as the node's own software would: it sees no lab state and no
    /// other process, and cannot mount, ptrace or load modules; --privileged lifts that.
    ///
    /// Example: sudo roamlab exec fixed1 -- ping -c 1 198.51.100.1
    Exec {
        /// Lab name (default: the only lab there is).
        #[arg(long)]
        lab: Option<String>,
        /// Run with the full view of the machine and every capability (for the operator).
        #[arg(long)]
        privileged: bool,
        /// Node to run in.
        node: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Check a topology file without touching the kernel (no root needed).
    ///
    /// Example: roamlab validate topologies/roaming.yaml
    Validate {
        /// Topology file.
        file: PathBuf,
    },
    /// Draw a topology as Graphviz dot or Mermaid (no root needed).
    ///
    /// Example: roamlab graph --format mermaid
    Graph {
        /// Topology file (default: the built-in roaming lab).
        #[arg(short = 't', long = "topology")]
        topology: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Remove what crashed or killed labs left behind, and say what was removed.
    ///
    /// Without --lab, removes every lab that is neither up and whole nor being built by a
    /// live `up`; --all removes all labs.
    /// Example: sudo roamlab cleanup
    Cleanup {
        /// Only this lab (removed whatever its state).
        #[arg(long)]
        lab: Option<String>,
        /// Also remove labs that are up and whole.
        #[arg(long)]
        all: bool,
    },
    /// Attach a subscriber's terminal to a visited network: a namespace with a link into
    /// the visited cell, and a terminal agent that attaches (Milenage authentication via the
    /// home HLR). Returns when the attach is accepted, or says why it was refused.
    ///
    /// Example: sudo roamlab attach phone1 --at visited
    /// Many at once: several names, globs (quoted: 't*'), or --all; with a summary.
    ///
    /// Example: sudo roamlab attach 't*' --parallel 32
    Attach {
        /// Subscribers' names in the topology, or globs of them (`*`, `?`).
        terminals: Vec<String>,
        /// Every subscriber of the lab.
        #[arg(long, conflicts_with = "terminals")]
        all: bool,
        /// How many terminals attach at a time.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
        parallel: u16,
        /// The visited network (default: the only one).
        #[arg(long)]
        at: Option<String>,
        /// The DHCP client the terminal runs for its address; `none` registers the
        /// terminal without one (its address may then come through a DHCP relay).
        #[arg(long, default_value = "builtin", value_parser = ["builtin", "dhclient", "udhcpc", "dhcpcd", "none"])]
        dhcp_client: String,
        /// The host name the terminal claims at attach (claim 23); its home must hold the
        /// same name, or the attach is refused. One terminal only.
        #[arg(long, conflicts_with = "all")]
        host_name: Option<String>,
        /// Lab name (default: the only lab there is).
        #[arg(long)]
        lab: Option<String>,
        /// Print one JSON document (each terminal's outcome) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Detach a terminal (it sends a detach, its VLR purges it at home) and remove it.
    /// Many at once: several names, globs, or --all (every attached terminal).
    ///
    /// Example: sudo roamlab detach phone1; sudo roamlab detach --all
    Detach {
        /// Attached terminals, or globs of them (`*`, `?`).
        terminals: Vec<String>,
        /// Every attached terminal.
        #[arg(long, conflicts_with = "terminals")]
        all: bool,
        /// Lab name (default: the only lab there is).
        #[arg(long)]
        lab: Option<String>,
        /// Print one JSON document (each terminal's outcome) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Call a terminal by its host name with SIP ([0030]): a real user agent (baresip) at
    /// both ends, a tone each way. Reports the set-up time (INVITE → 200 OK on the caller's
    /// wire), the RTP packets each way, and whether the media went through home.
    ///
    /// Example: sudo roamlab call fixed1 phone1
    Call {
        /// The calling node (a fixed host) or attached terminal.
        from: String,
        /// The attached terminal called, at sip:NAME@ITS-HOST-NAME.
        to: String,
        /// Seconds of media after the answer.
        #[arg(long, default_value_t = 1.0, value_parser = media_secs)]
        media_secs: f64,
        /// Lab name (default: the only lab there is).
        #[arg(long)]
        lab: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario file: bring its lab up (or use a running one with --lab), run its
    /// steps and checks (✓/✗ and why), tear down; non-zero if any check failed. What each
    /// check saw goes in a transcript beside it (NAME.transcript): --check compares with
    /// it, --bless replaces it.
    ///
    /// Example: sudo roamlab run scenarios/roaming.yaml --check
    Run {
        /// The scenario file (YAML).
        scenario: PathBuf,
        /// Use this running lab instead of bringing one up (it stays up).
        #[arg(long)]
        lab: Option<String>,
        /// The lab's name (default: its topology's).
        #[arg(long, conflicts_with = "lab")]
        name: Option<String>,
        /// Fail if the transcript differs from the stored one, and print the difference.
        #[arg(long, conflicts_with = "bless")]
        check: bool,
        /// Replace the stored transcript with this run's.
        #[arg(long)]
        bless: bool,
        /// Write a JUnit XML report here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
        /// Run on this topology file instead of the lab the scenario names (e.g. the same
        /// steps with BIND as the DNS servers).
        #[arg(long, conflicts_with = "lab")]
        topology: Option<PathBuf>,
        /// Show each command the steps run in the lab and what it printed.
        #[arg(short, long)]
        verbose: bool,
        /// Write an HTML report here (DIR/index.html): the topology, the checks, the
        /// sequence diagram of the run's events and the transcript.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        /// Leave the lab up afterwards.
        #[arg(long, conflicts_with = "lab")]
        keep: bool,
    },
    /// Capture a node's or terminal's traffic (all its interfaces, or NODE/INTERFACE) as a
    /// pcap file for tcpdump, tshark or Wireshark, or a line per packet. Until Ctrl-C,
    /// --seconds or --count.
    ///
    /// Example: sudo roamlab capture visited/cell -w cell.pcap --seconds 10
    Capture {
        /// NODE or NODE/INTERFACE (a node of the lab, or an attached terminal).
        target: String,
        /// Write a pcap file (`-` for standard output) instead of a line per packet.
        #[arg(short = 'w', long = "write")]
        write: Option<PathBuf>,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
        /// Stop after this many packets.
        #[arg(long)]
        count: Option<usize>,
        /// Lab name (default: the only lab there is).
        #[arg(long)]
        lab: Option<String>,
    },
    /// Print the lab's agent events (JSON lines from every agent) in time order.
    ///
    /// Example: sudo roamlab events --follow
    Events {
        /// Lab name (default: the only lab there is).
        lab: Option<String>,
        /// Keep printing events as they happen, until Ctrl-C.
        #[arg(long, conflicts_with = "format")]
        follow: bool,
        /// Print the raw JSON lines (as --format json).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// text (a line each), json, or the flow as a sequence diagram: mermaid (text for
        /// Mermaid) or svg (a self-contained picture).
        #[arg(long, value_parser = ["text", "json", "mermaid", "svg"])]
        format: Option<String>,
    },
    /// Print a shell completion script.
    ///
    /// Example: roamlab completions bash > /etc/bash_completion.d/roamlab
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), made from the same definitions as --help; with --out,
    /// write it and one page per verb (roamlab-attach.1, …) into a folder.
    ///
    /// Example: roamlab man --out /usr/local/share/man/man1
    Man {
        /// Folder to write roamlab.1 and roamlab-VERB.1 into.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// DNS of a running lab.
    Dns {
        #[command(subcommand)]
        command: DnsCommand,
    },
    /// Restart one agent of a running lab (stop it, start it again, wait until ready).
    ///
    /// Example: sudo roamlab restart home/dns
    Restart {
        /// Lab name (default: the only lab there is).
        #[arg(long)]
        lab: Option<String>,
        /// The agent as NODE/NAME, as `status` lists it.
        agent: String,
    },
    /// Drive a running lab's VLR and HLR with in-process terminals and print attach
    /// latencies and throughput (used by scripts/bench-attach.sh).
    #[command(hide = true)]
    BenchAttach {
        #[arg(long)]
        lab: String,
        #[arg(long, default_value = "visited")]
        visited: String,
        #[arg(long, default_value_t = 500)]
        cycles: usize,
        #[arg(long, default_value_t = 100)]
        concurrent: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Ask for a DHCP lease on an interface with the built-in client and say what came
    /// back (a test probe; run it inside a namespace).
    #[command(hide = true)]
    DhcpProbe {
        #[arg(long, default_value = "eth0")]
        interface: String,
        #[arg(long, default_value_t = 2.0)]
        timeout: f64,
    },
    /// Run an agent (started by the supervisor inside a node, not by hand).
    #[command(hide = true)]
    Agent {
        #[command(subcommand)]
        agent: AgentCommand,
    },
}

#[derive(Subcommand)]
enum DnsCommand {
    /// Send a TSIG-signed dynamic update (RFC 2136) to the server of ZONE, with that
    /// server's key, from inside the server's node.
    ///
    /// Example: sudo roamlab dns update roam home.example add www.home.example A 192.0.2.80
    Update {
        lab: String,
        zone: String,
        #[arg(value_enum)]
        op: UpdateOp,
        name: String,
        /// A, AAAA or PTR.
        rtype: String,
        /// The record's data (optional for delete: then every record of the type goes).
        data: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum UpdateOp {
    /// Add a record beside any others of its name and type.
    Add,
    /// Make this the only record of its name and type.
    Replace,
    /// Delete the record (or, without DATA, all records of the type).
    Delete,
}

#[derive(Subcommand)]
enum AgentCommand {
    /// The home network's HLR.
    Hlr {
        #[arg(long)]
        config: PathBuf,
    },
    /// A visited network's VLR.
    Vlr {
        #[arg(long)]
        config: PathBuf,
    },
    /// A visited network's DHCP server.
    Dhcp {
        #[arg(long)]
        config: PathBuf,
    },
    /// A roaming terminal.
    Terminal {
        #[arg(long)]
        config: PathBuf,
    },
    /// A host of many roaming terminals, each in its own namespace.
    TerminalHost {
        #[arg(long)]
        config: PathBuf,
    },
    /// Authoritative DNS server (and on the core, the lab's resolver).
    Dns {
        #[arg(long)]
        config: PathBuf,
    },
    /// TCP and UDP echo on one port.
    Echo {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long, default_value_t = 0)]
        ready_after_ms: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
}

/// Loads a topology file, or the built-in lab; `--name` renames it.
fn load_topology(file: Option<&PathBuf>, name: Option<&str>) -> Result<(Topology, String, String)> {
    let (text, origin) = match file {
        Some(path) => (Topology::read_source(path)?, path.display().to_string()),
        None => (DEFAULT_TOPOLOGY.to_string(), DEFAULT_SOURCE.to_string()),
    };
    let mut topology = Topology::parse(&text, &origin)?;
    if let Some(name) = name {
        // Re-validate under the new name so its rules apply to it too.
        let renamed = format!("name: {name}\n");
        Topology::parse(&renamed_source(&text, &renamed), &origin)?;
        topology.name = name.to_string();
    }
    Ok((topology, text, origin))
}

/// The topology text with its `name:` line replaced (for validating an override).
fn renamed_source(text: &str, name_line: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("name:") {
            out.push_str(name_line);
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn require_root(verb: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("roamlab {verb} needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run it with sudo");
    }
    Ok(())
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// Runs `work` to its end on a runtime of its own, then lets the runtime go without joining
/// its idle blocking threads one by one (the verb is about to print and exit; nothing still
/// running there is wanted: a name check that was begun and not needed, say).
pub(crate) fn run_to_end<F: std::future::Future>(work: F) -> Result<F::Output> {
    let runtime = runtime()?;
    let done = runtime.block_on(work);
    runtime.shutdown_background();
    Ok(done)
}

/// Sets `flag` on SIGINT, SIGTERM or SIGHUP, so `up` can roll back instead of dying.
fn cancel_on_signals(flag: Arc<AtomicBool>) {
    use tokio::signal::unix::{signal, SignalKind};
    for kind in [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ] {
        let flag = flag.clone();
        if let Ok(mut s) = signal(kind) {
            tokio::spawn(async move {
                if s.recv().await.is_some() {
                    eprintln!("roamlab: interrupted, removing what was built so far…");
                    flag.store(true, Ordering::SeqCst);
                }
            });
        }
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up {
            topology,
            name,
            no_agents,
            ready_timeout,
            json,
        } => {
            let (topology, source_text, origin) =
                load_topology(topology.as_ref(), name.as_deref())?;
            require_root("up")?;
            let opts = UpOptions {
                topology,
                source_text,
                origin,
                start_agents: !no_agents,
                ready_timeout: Duration::from_secs_f64(ready_timeout.max(0.0)),
            };
            let started = Instant::now();
            let rt = runtime()?;
            let report = rt.block_on(async {
                let cancel = Arc::new(AtomicBool::new(false));
                cancel_on_signals(cancel.clone());
                lab::up(&opts, cancel).await
            })?;
            if json {
                let status = rt.block_on(lab::status(&opts.topology.name))?;
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(());
            }
            print!(
                "{}",
                table::up_table(
                    &opts.topology,
                    &report.plan,
                    &report.agents,
                    &report.tunnels
                )
            );
            println!(
                "lab {} is up in {} ms; `roamlab exec NODE -- CMD` runs a command in a node, `roamlab down {}` removes it",
                opts.topology.name,
                started.elapsed().as_millis(),
                opts.topology.name
            );
            Ok(())
        }
        Command::Compare { name, keep, json } => {
            if let Some(name) = &name {
                load_topology(None, Some(name))?;
            }
            require_root("compare")?;
            compare::run_compare(name.as_deref(), keep, json)
        }
        Command::Demo { keep, name } => {
            let (topology, _, _) = load_topology(None, Some(name.as_deref().unwrap_or(demo::LAB)))?;
            require_root("demo")?;
            demo::run_demo(keep, topology)
        }
        Command::Down { lab } => {
            require_root("down")?;
            let lab = lab::resolve(lab.as_deref())?;
            let report = lab::down(&lab)?;
            println!("lab {lab} removed ({} objects)", report.removed.len());
            for item in &report.left_alone {
                println!("left alone: {item}");
            }
            Ok(())
        }
        Command::Status { lab, json } => {
            require_root("status")?;
            let lab = lab::resolve(lab.as_deref())?;
            let status = runtime()?.block_on(lab::status(&lab))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", table::status_table(&status));
            }
            Ok(())
        }
        Command::Exec {
            lab,
            node,
            command,
            privileged,
        } => {
            require_root("exec")?;
            let lab = lab::resolve(lab.as_deref())?;
            let namespace = crate::topology::namespace_name(&lab, &node);
            if !crate::kernel::netns::is_mounted(&namespace) {
                bail!("lab {lab} has no node {node} (namespace {namespace} does not exist)");
            }
            let code = exec::run(&node, &namespace, &command, privileged)?;
            std::process::exit(code)
        }
        Command::Validate { file } => {
            let topology = Topology::load(&file)?;
            let plan = crate::plan::build(&topology);
            println!(
                "{}: lab {} is valid: {} nodes, {} links, {} subscribers, {} kernel objects",
                file.display(),
                topology.name,
                topology.nodes.len(),
                topology.links.len(),
                topology.subscribers.len(),
                plan.steps.len()
            );
            Ok(())
        }
        Command::Graph { topology, format } => {
            let (topology, _, _) = load_topology(topology.as_ref(), None)?;
            match format {
                GraphFormat::Dot => print!("{}", graph::dot(&topology)),
                GraphFormat::Mermaid => print!("{}", graph::mermaid(&topology)),
            }
            Ok(())
        }
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { out } => docs::man(out.as_deref()),
        Command::Cleanup { lab, all } => {
            require_root("cleanup")?;
            let report = lab::cleanup(lab.as_deref(), all);
            if report.removed.is_empty() {
                println!("nothing to clean up");
            }
            for item in &report.removed {
                println!("removed {item}");
            }
            for item in &report.left_alone {
                println!("left alone: {item}");
            }
            if !report.errors.is_empty() {
                bail!(
                    "cleanup left {} problem(s): {}",
                    report.errors.len(),
                    report.errors.join("; ")
                );
            }
            Ok(())
        }
        Command::Dns {
            command:
                DnsCommand::Update {
                    lab,
                    zone,
                    op,
                    name,
                    rtype,
                    data,
                },
        } => {
            require_root("dns update")?;
            use crate::dns::update::{self, Change, RecordData, RecordKind};
            let kind = RecordKind::parse(&rtype)?;
            let data = data.map(|d| RecordData::parse(kind, &d)).transpose()?;
            let change = match (op, data) {
                (UpdateOp::Add, Some(data)) => Change::Add { name, data },
                (UpdateOp::Replace, Some(data)) => Change::Replace { name, data },
                (UpdateOp::Delete, data) => Change::Delete {
                    name,
                    rtype: kind,
                    data,
                },
                (_, None) => bail!("add and replace need the record's data"),
            };
            let (node, target) = update::target_in_lab(&LabDir::of(&lab), &zone)
                .with_context(|| format!("lab {lab}"))?;
            let namespace = crate::topology::namespace_name(&lab, &node);
            update::send_from(&namespace, target, change)?;
            println!("zone {zone} updated");
            Ok(())
        }
        Command::Attach {
            terminals,
            all,
            parallel,
            at,
            lab,
            dhcp_client,
            host_name,
            json,
        } => {
            require_root("attach")?;
            let lab = lab::resolve(lab.as_deref())?;
            let parallel = usize::from(parallel);
            let setup = crate::lab::terminals::TerminalSetup {
                dhcp_client,
                host_name,
            };
            terminals::attach(&lab, &terminals, all, at.as_deref(), &setup, parallel, json)
        }
        Command::Detach {
            terminals,
            all,
            lab,
            json,
        } => {
            require_root("detach")?;
            let lab = lab::resolve(lab.as_deref())?;
            terminals::detach(&lab, &terminals, all, json)
        }
        Command::Call {
            from,
            to,
            media_secs,
            lab,
            json,
        } => {
            require_root("call")?;
            let lab = lab::resolve(lab.as_deref())?;
            call::run(&lab, &from, &to, media_secs, json)
        }
        Command::Run {
            scenario: file,
            lab,
            name,
            check,
            bless,
            junit,
            json,
            topology,
            verbose,
            report,
            keep,
        } => {
            let loaded = scenario::load(&file, topology.as_deref())?;
            if let Some(name) = &name {
                load_topology(None, Some(name))?;
            }
            require_root("run")?;
            let transcript = match (check, bless) {
                (true, _) => scenario::Transcript::Check,
                (_, true) => scenario::Transcript::Bless,
                _ => scenario::Transcript::Write,
            };
            scenario::run(
                loaded,
                &scenario::RunOptions {
                    lab: lab.as_deref(),
                    name: name.as_deref(),
                    transcript,
                    json,
                    junit: junit.as_deref(),
                    verbose,
                    keep,
                    report: report.as_deref(),
                },
            )
        }
        Command::Capture {
            target,
            write,
            seconds,
            count,
            lab,
        } => {
            require_root("capture")?;
            let lab = lab::resolve(lab.as_deref())?;
            capture::run(&lab, &target, write.as_deref(), seconds, count)
        }
        Command::Events {
            lab,
            follow,
            json,
            format,
        } => {
            require_root("events")?;
            let lab = lab::resolve(lab.as_deref())?;
            match format.as_deref() {
                Some(picture @ ("mermaid" | "svg")) => print_sequence(&lab, picture),
                Some("json") => print_events(&lab, false, true),
                _ => print_events(&lab, follow, json),
            }
        }
        Command::DhcpProbe { interface, timeout } => {
            let mac = std::fs::read_to_string(format!("/sys/class/net/{interface}/address"))
                .with_context(|| format!("no interface {interface}"))?;
            let mac: Vec<u8> = mac
                .trim()
                .split(':')
                .filter_map(|h| u8::from_str_radix(h, 16).ok())
                .collect();
            let mac: [u8; 6] = mac
                .try_into()
                .map_err(|_| anyhow::anyhow!("{interface}: no MAC address"))?;
            let lease = runtime()?.block_on(crate::agents::dhcp_client::acquire(
                &crate::agents::place::Link::here(&interface),
                mac,
                None,
                Duration::from_secs_f64(timeout),
            ));
            match lease {
                Ok(l) => {
                    println!("leased {} from {}", l.address, l.server);
                    Ok(())
                }
                Err(why) => bail!("no lease: {why}"),
            }
        }
        Command::BenchAttach {
            lab,
            visited,
            cycles,
            concurrent,
            rounds,
        } => {
            require_root("bench-attach")?;
            bench::run(&lab, &visited, cycles, concurrent, rounds)
        }
        Command::Restart { lab, agent } => {
            require_root("restart")?;
            let lab = lab::resolve(lab.as_deref())?;
            let record = lab::restart_agent(&lab, &agent)?;
            println!("agent {agent} of lab {lab} restarted (pid {})", record.pid);
            Ok(())
        }
        Command::Agent { agent } => match agent {
            AgentCommand::Hlr { config } => {
                let config = configs::load(&config).context("hlr agent")?;
                runtime()?
                    .block_on(crate::agents::hlr::run(config))
                    .context("hlr agent")
            }
            AgentCommand::Vlr { config } => {
                let config = configs::load(&config).context("vlr agent")?;
                runtime()?
                    .block_on(crate::agents::vlr::run(config))
                    .context("vlr agent")
            }
            AgentCommand::Dhcp { config } => {
                let config = configs::load(&config).context("dhcp agent")?;
                runtime()?
                    .block_on(crate::agents::dhcp::run(config))
                    .context("dhcp agent")
            }
            AgentCommand::Terminal { config } => {
                let config = configs::load(&config).context("terminal agent")?;
                runtime()?
                    .block_on(crate::agents::terminal::run(config))
                    .context("terminal agent")
            }
            AgentCommand::TerminalHost { config } => {
                let config = configs::load(&config).context("terminal host")?;
                // Both cores: a thousand terminals' file writes and namespace entries are
                // short blocking calls, which one thread would take one after another.
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .context("start the async runtime")?
                    .block_on(crate::agents::terminal_host::run(config))
                    .context("terminal host")
            }
            AgentCommand::Dns { config } => {
                let config = configs::load(&config).context("dns agent")?;
                runtime()?
                    .block_on(crate::agents::dns::run(config))
                    .context("dns agent")
            }
            AgentCommand::Echo {
                listen,
                ready_after_ms,
            } => {
                let config = crate::agents::echo::EchoConfig {
                    listen,
                    ready_after: Duration::from_millis(ready_after_ms),
                };
                runtime()?
                    .block_on(crate::agents::echo::run(config))
                    .context("echo agent")
            }
        },
    }
}

fn print_events(lab: &str, follow: bool, json: bool) -> Result<()> {
    let dir = LabDir::of(lab);
    let show = |e: &crate::events::Event| {
        if json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            println!("{}", crate::events::format(e));
        }
    };
    let events = crate::events::read_all(&dir).with_context(|| format!("lab {lab}"))?;
    events.iter().for_each(show);
    if !follow {
        return Ok(());
    }
    let mut tail = crate::events::Tail::new(&dir);
    tail.skip_to_end();
    loop {
        let mut new = tail.poll();
        new.sort_by(|a, b| a.ts.total_cmp(&b.ts));
        new.iter().for_each(show);
        if !dir.path().exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The lab's events as a sequence diagram, its terminals named as the topology names them.
fn print_sequence(lab: &str, format: &str) -> Result<()> {
    let dir = LabDir::of(lab);
    let events = crate::events::read_all(&dir).with_context(|| format!("lab {lab}"))?;
    let names = crate::contract::model::read_or_parse(&dir)
        .ok()
        .map(|t| sequence::names_of(&t))
        .unwrap_or_default();
    let (lanes, rows) = sequence::rows(&events, &names);
    match format {
        "svg" => print!("{}", sequence::svg(&lanes, &rows)),
        _ => print!("{}", sequence::mermaid(&lanes, &rows)),
    }
    Ok(())
}

/// Exit status for an error: 2 for bad input (a topology problem), 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    if error
        .chain()
        .any(|e| e.is::<crate::topology::TopologyError>())
    {
        2
    } else {
        1
    }
}

/// Seconds of media a call carries: a tenth of a second up to a minute.
fn media_secs(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(0.1..=60.0).contains(&secs) {
        return Err(format!("{secs} s: a call carries 0.1 to 60 s of media"));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// An agent's kind and config file, as a reading of its command line gave them.
    fn agent_of(cli: &Cli) -> Option<(&'static str, &std::path::Path)> {
        let Command::Agent { agent } = &cli.command else {
            return None;
        };
        Some(match agent {
            AgentCommand::Hlr { config } => ("hlr", config),
            AgentCommand::Vlr { config } => ("vlr", config),
            AgentCommand::Dhcp { config } => ("dhcp", config),
            AgentCommand::Terminal { config } => ("terminal", config),
            AgentCommand::TerminalHost { config } => ("terminal-host", config),
            AgentCommand::Dns { config } => ("dns", config),
            AgentCommand::Echo { .. } => return None,
        })
    }

    fn line(words: &[&str]) -> Vec<std::ffi::OsString> {
        words.iter().map(Into::into).collect()
    }

    #[test]
    fn every_agent_line_reads_as_clap_reads_it() {
        let cli = Cli::command();
        let agents = cli.find_subcommand("agent").expect("agent subcommand");
        let mut read = 0;
        for kind in agents.get_subcommands() {
            if !kind.get_arguments().any(|a| a.get_id() == "config") {
                continue;
            }
            let words = line(&["roamlab", "agent", kind.get_name(), "--config", "/x/c.json"]);
            let direct = Cli::agent_line(&words)
                .unwrap_or_else(|| panic!("agent {} is not read directly", kind.get_name()));
            let by_clap = Cli::try_parse_from(&words).expect("clap reads it");
            assert_eq!(agent_of(&direct), agent_of(&by_clap));
            assert_eq!(agent_of(&direct).map(|a| a.0), Some(kind.get_name()));
            read += 1;
        }
        assert_eq!(read, 6, "every agent with a config file");
    }

    /// Only an attach of one terminal, by its name, starts one agent and nothing after it
    /// (so only it forks a zygote for that agent, see `supervisor::zygote`).
    #[test]
    fn only_an_attach_of_one_named_terminal_starts_one_agent() {
        let starts_one =
            |words: &[&str]| Cli::try_parse_from(line(words)).unwrap().starts_one_agent();
        assert!(starts_one(&["roamlab", "attach", "phone1"]));
        assert!(starts_one(&[
            "roamlab",
            "attach",
            "phone1",
            "--lab",
            "x",
            "--dhcp-client",
            "udhcpc"
        ]));
        for words in [
            &["roamlab", "attach", "phone*"][..],
            &["roamlab", "attach", "phone?"],
            &["roamlab", "attach", "phone1", "phone2"],
            &["roamlab", "attach", "--all"],
            &["roamlab", "detach", "phone1"],
            &["roamlab", "up"],
        ] {
            assert!(!starts_one(words), "{words:?}");
        }
    }

    #[test]
    fn other_lines_are_left_to_clap() {
        for words in [
            &["roamlab", "agent", "terminal", "--config"][..],
            &["roamlab", "agent", "terminal", "--conf", "c.json"],
            &["roamlab", "agent", "echo", "--config", "c.json"],
            &["roamlab", "agents", "terminal", "--config", "c.json"],
            &[
                "roamlab", "agent", "terminal", "--config", "c.json", "extra",
            ],
            &["roamlab", "attach", "phone1", "--lab", "x"],
        ] {
            assert!(Cli::agent_line(&line(words)).is_none(), "{words:?}");
        }
    }
}
