//! The scenario file: its YAML form and its validation against the lab it runs on. Unknown
//! fields, steps, nodes, terminals, networks and agents are refused with file, line and
//! column before anything is built, as topologies are.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::lab::agent_specs;
use crate::topology::locate::{locate, FieldPath};
use crate::topology::{Topology, TopologyError, DEFAULT_SOURCE, DEFAULT_TOPOLOGY};

/// The demo's steps: `roamlab demo` runs this scenario, and CI runs the same file with
/// `--check`, so the demo's checks have one copy.
pub const DEMO_SCENARIO: &str = include_str!("../../../scenarios/roaming.yaml");
pub const DEMO_ORIGIN: &str = "the built-in demo scenario (scenarios/roaming.yaml)";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    /// A topology file, relative to the scenario (default: the built-in lab).
    #[serde(default)]
    lab: Option<PathBuf>,
    /// Each step a one-key map (`- attach: phone1`).
    #[serde(with = "serde_yaml::with::singleton_map_recursive")]
    steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum Step {
    /// A heading for what follows; no check, nothing in the transcript.
    Say(String),
    Attach(Attach),
    /// An attached terminal attaches at another network (make before break).
    Move(Move),
    Detach(String),
    /// Kill an agent (`node/name`) with SIGKILL, as a crash would.
    Kill(String),
    /// Stop an agent and start it again, waiting until it is ready.
    Restart(String),
    /// Seconds.
    Wait(f64),
    Lookup(Lookup),
    Ping(ByName),
    /// The hops from a node to a name, by traceroute.
    Trace(Trace),
    Http(Http),
    Call(Call),
    Exec(Exec),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Attach {
    Terminal(String),
    At(AttachAt),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AttachAt {
    pub terminal: String,
    #[serde(default)]
    pub at: Option<String>,
    /// The attach must be refused, for a cause that holds this text.
    #[serde(default)]
    pub refused: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Move {
    pub terminal: String,
    pub to: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Lookup {
    pub from: String,
    /// A forward lookup of this name (A), or a reverse lookup of `reverse`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub reverse: Option<Ipv4Addr>,
    /// Ask this authority without recursion (default: the lab's resolver); its answer
    /// must be authoritative.
    #[serde(default)]
    pub at: Option<IpAddr>,
    /// The answer (an address, a host name) or NXDOMAIN.
    pub expect: String,
    /// Ask again until the answer is the expected one, for this many seconds at the most
    /// (a resolver's cache, a record on its way).
    #[serde(default)]
    pub within: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ByName {
    pub from: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Trace {
    pub from: String,
    pub name: String,
    /// Every hop's address, the last one the name's.
    pub via: Vec<IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Http {
    pub from: String,
    pub url: String,
    /// Text the body must hold.
    pub expect: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Call {
    pub from: String,
    pub to: String,
    /// The media's path the call must take: `direct` or `through home`.
    #[serde(default)]
    pub media: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Exec {
    pub node: String,
    pub command: Vec<String>,
    /// The exit status it must end with (default 0).
    #[serde(default)]
    pub exit: i32,
}

/// A validated scenario: its lab's topology and its steps.
pub struct Scenario {
    /// The file it came from; `None` for the built-in demo.
    pub file: Option<PathBuf>,
    pub origin: String,
    pub topology: Topology,
    pub source_text: String,
    pub topology_origin: String,
    pub(super) steps: Vec<Step>,
}

#[cfg(test)]
impl Scenario {
    /// The checks, not counting headings.
    pub fn checks(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| !matches!(s, Step::Say(_)))
            .count()
    }
}

fn invalid(
    origin: &str,
    source: &str,
    path: &FieldPath,
    message: impl Into<String>,
) -> TopologyError {
    let at = match locate(source, path) {
        Some((line, col)) => format!("{origin}:{line}:{col}"),
        None => origin.to_string(),
    };
    TopologyError::Invalid {
        at,
        field: path.to_string(),
        message: message.into(),
    }
}

/// Reads and validates a scenario and the topology it names, or `topology` in its place.
pub fn load(file: &Path, topology: Option<&Path>) -> Result<Scenario, TopologyError> {
    let source = Topology::read_source(file)?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut scenario = parse(&source, &file.display().to_string(), base, topology)?;
    scenario.file = Some(file.to_path_buf());
    Ok(scenario)
}

/// The demo: the built-in scenario on the built-in lab.
pub fn demo() -> Scenario {
    parse(DEMO_SCENARIO, DEMO_ORIGIN, Path::new("."), None)
        .expect("the built-in demo scenario is valid (a unit test checks it)")
}

fn parse(
    source: &str,
    origin: &str,
    base: &Path,
    topology_file: Option<&Path>,
) -> Result<Scenario, TopologyError> {
    let raw: RawScenario = serde_yaml::from_str(source).map_err(|e| {
        let text = e.to_string();
        let message = text
            .rfind(" at line ")
            .map(|c| text[..c].to_string())
            .unwrap_or(text);
        let at = e
            .location()
            .map(|l| format!("{origin}:{}:{}", l.line(), l.column()))
            .unwrap_or_else(|| origin.to_string());
        TopologyError::Syntax { at, message }
    })?;
    let named = raw.lab.as_ref().map(|p| base.join(p));
    let (topology, source_text, topology_origin) =
        match topology_file.map(Path::to_path_buf).or(named) {
            None => (
                Topology::builtin(),
                DEFAULT_TOPOLOGY.to_string(),
                DEFAULT_SOURCE.to_string(),
            ),
            Some(path) => {
                let text = Topology::read_source(&path)?;
                let origin = path.display().to_string();
                (Topology::parse(&text, &origin)?, text, origin)
            }
        };
    validate(&raw.steps, &topology, origin, source)?;
    Ok(Scenario {
        file: None,
        origin: origin.to_string(),
        topology,
        source_text,
        topology_origin,
        steps: raw.steps,
    })
}

fn validate(
    steps: &[Step],
    topology: &Topology,
    origin: &str,
    source: &str,
) -> Result<(), TopologyError> {
    let fail = |path: FieldPath, message: String| invalid(origin, source, &path, message);
    let is_node = |n: &str| topology.node(n).is_some();
    let is_terminal = |t: &str| topology.subscribers.iter().any(|s| s.name == t);
    let is_network = |n: &str| topology.node(n).and_then(|n| n.vlr()).is_some();
    let networks: Vec<&str> = topology
        .nodes
        .iter()
        .filter(|n| n.vlr().is_some() && n.role == crate::topology::Role::Visited)
        .map(|n| n.name.as_str())
        .collect();
    let agents: Vec<String> = agent_specs(topology)
        .iter()
        .map(|s| format!("{}/{}", s.node, s.name))
        .collect();
    if steps.iter().all(|s| matches!(s, Step::Say(_))) {
        return Err(fail(
            FieldPath::default().key("steps"),
            "a scenario needs steps".into(),
        ));
    }
    for (i, step) in steps.iter().enumerate() {
        let at = FieldPath::default().key("steps").index(i);
        let place = |kind: &str, field: &str| at.key(kind).key(field);
        let terminal = |path: FieldPath, t: &str| -> Result<(), TopologyError> {
            match is_terminal(t) {
                true => Ok(()),
                false => Err(fail(path, format!("no subscriber `{t}` in the lab"))),
            }
        };
        let network = |path: FieldPath, net: &str| -> Result<(), TopologyError> {
            match is_network(net) {
                true => Ok(()),
                false => Err(fail(path, format!("`{net}` is no network with a VLR"))),
            }
        };
        let from = |kind: &str, who: &str| -> Result<(), TopologyError> {
            match is_node(who) || is_terminal(who) {
                true => Ok(()),
                false => Err(fail(
                    place(kind, "from"),
                    format!("no node or terminal `{who}` in the lab"),
                )),
            }
        };
        let agent = |kind: &str, who: &str| -> Result<(), TopologyError> {
            match agents.iter().any(|a| a == who) {
                true => Ok(()),
                false => Err(fail(
                    at.key(kind),
                    format!("no agent `{who}` in the lab (it has {})", agents.join(", ")),
                )),
            }
        };
        // As `roamlab attach` without --at: the only visited network, or none to choose.
        let somewhere = |path: FieldPath| -> Result<(), TopologyError> {
            match networks.len() {
                1 => Ok(()),
                0 => Err(fail(
                    path,
                    "the lab has no visited network; say `at`".into(),
                )),
                _ => Err(fail(
                    path,
                    format!(
                        "several visited networks ({}); say which with `at`",
                        networks.join(", ")
                    ),
                )),
            }
        };
        match step {
            Step::Say(_) => {}
            Step::Attach(Attach::Terminal(t)) => {
                terminal(at.key("attach"), t)?;
                somewhere(at.key("attach"))?;
            }
            Step::Attach(Attach::At(a)) => {
                terminal(place("attach", "terminal"), &a.terminal)?;
                match &a.at {
                    Some(net) => network(place("attach", "at"), net)?,
                    None => somewhere(at.key("attach"))?,
                }
                if a.refused.as_deref().is_some_and(|r| r.trim().is_empty()) {
                    return Err(fail(
                        place("attach", "refused"),
                        "say what the refusal's cause holds".into(),
                    ));
                }
            }
            Step::Move(m) => {
                terminal(place("move", "terminal"), &m.terminal)?;
                network(place("move", "to"), &m.to)?;
            }
            Step::Detach(t) => terminal(at.key("detach"), t)?,
            Step::Kill(a) => agent("kill", a)?,
            Step::Restart(a) => agent("restart", a)?,
            Step::Wait(s) if !(0.0..=600.0).contains(s) => {
                return Err(fail(at.key("wait"), format!("{s} s: a wait is 0 to 600 s")))
            }
            Step::Wait(_) => {}
            Step::Lookup(l) => {
                from("lookup", &l.from)?;
                if l.name.is_some() == l.reverse.is_some() {
                    return Err(fail(
                        at.key("lookup"),
                        "give `name` or `reverse`, one of them".into(),
                    ));
                }
                if l.expect.trim().is_empty() {
                    return Err(fail(
                        place("lookup", "expect"),
                        "expect an answer or NXDOMAIN".into(),
                    ));
                }
                if let Some(s) = l.within {
                    if !(0.0..=600.0).contains(&s) {
                        return Err(fail(
                            place("lookup", "within"),
                            format!("{s} s: within is 0 to 600 s"),
                        ));
                    }
                }
            }
            Step::Ping(p) => from("ping", &p.from)?,
            Step::Trace(t) => {
                from("trace", &t.from)?;
                if t.via.is_empty() || t.via.len() > 30 {
                    return Err(fail(
                        place("trace", "via"),
                        "list every hop, 1 to 30 of them".into(),
                    ));
                }
            }
            Step::Http(h) => {
                from("http", &h.from)?;
                if !h.url.starts_with("http://") {
                    return Err(fail(
                        place("http", "url"),
                        format!("`{}` is not an http:// URL", h.url),
                    ));
                }
            }
            Step::Call(c) => {
                from("call", &c.from)?;
                terminal(place("call", "to"), &c.to)?;
                if let Some(m) = &c.media {
                    if m != "direct" && m != "through home" {
                        return Err(fail(
                            place("call", "media"),
                            format!("`{m}`: the media goes `direct` or `through home`"),
                        ));
                    }
                }
            }
            Step::Exec(e) => {
                if !(is_node(&e.node) || is_terminal(&e.node)) {
                    return Err(fail(
                        place("exec", "node"),
                        format!("no node or terminal `{}` in the lab", e.node),
                    ));
                }
                if e.command.is_empty() {
                    return Err(fail(place("exec", "command"), "an empty command".into()));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder of scenario files for one test, removed when the test ends, pass or fail.
    struct Folder(PathBuf);

    impl Folder {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("roamlab-scenario-{test}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Folder(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_demo_scenario_is_valid_and_checks_the_whole_flow() {
        let demo = demo();
        assert!(demo.file.is_none());
        let kinds: Vec<&str> = demo
            .steps
            .iter()
            .map(|s| match s {
                Step::Say(_) => "say",
                Step::Attach(_) => "attach",
                Step::Lookup(_) => "lookup",
                Step::Ping(_) => "ping",
                Step::Trace(_) => "trace",
                Step::Http(_) => "http",
                Step::Call(_) => "call",
                Step::Detach(_) => "detach",
                _ => "other",
            })
            .collect();
        for kind in [
            "attach", "lookup", "ping", "trace", "http", "call", "detach",
        ] {
            assert!(kinds.contains(&kind), "the demo has no {kind}");
        }
        assert!(demo.checks() >= 15);
    }

    #[test]
    fn a_scenario_is_validated_before_anything_is_built() {
        let folder = Folder::new("validate");
        let write = |name: &str, text: &str| folder.write(name, text);
        let moves = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/labs/moves.yaml");
        let ok = write("ok.yaml", "steps:\n  - say: Roaming\n  - attach: phone1\n  - lookup: { from: fixed1, name: phone1.home.example, expect: 198.51.100.100, within: 2 }\n  - kill: home/hlr\n  - restart: home/hlr\n  - detach: phone1\n");
        let loaded = load(&ok, None).unwrap();
        assert_eq!((loaded.steps.len(), loaded.checks()), (6, 5));
        for (file, text, says) in [
            ("unknown-step.yaml", "steps:\n  - fly: phone1\n", "unknown variant `fly`"),
            ("unknown-field.yaml", "steps:\n  - ping: { from: fixed1, name: x, count: 3 }\n", "unknown field `count`"),
            ("unknown-terminal.yaml", "steps:\n  - attach: phone9\n", "2:13: steps[0].attach: no subscriber `phone9` in the lab"),
            ("unknown-node.yaml", "steps:\n  - ping: { from: fixed9, name: x }\n", "steps[0].ping.from: no node or terminal `fixed9` in the lab"),
            ("two-questions.yaml", "steps:\n  - lookup: { from: fixed1, name: x, reverse: 198.51.100.100, expect: NXDOMAIN }\n", "give `name` or `reverse`"),
            ("no-network.yaml", "steps:\n  - attach: { terminal: phone1, at: core }\n", "steps[0].attach.at: `core` is no network with a VLR"),
            ("move-nowhere.yaml", "steps:\n  - attach: phone1\n  - move: { terminal: phone1, to: fixed1 }\n", "3:35: steps[1].move.to: `fixed1` is no network with a VLR"),
            ("no-agent.yaml", "steps:\n  - kill: home/vlr\n", "steps[0].kill: no agent `home/vlr` in the lab (it has core/dns, home/dns, home/hlr"),
            ("empty-refusal.yaml", "steps:\n  - attach: { terminal: phone1, refused: \"\" }\n", "steps[0].attach.refused: say what"),
            ("no-hops.yaml", "steps:\n  - trace: { from: fixed1, name: x, via: [] }\n", "steps[0].trace.via: list every hop"),
            ("bad-media.yaml", "steps:\n  - call: { from: fixed1, to: phone1, media: carrier-pigeon }\n", "steps[0].call.media"),
            ("only-words.yaml", "steps:\n  - say: nothing else\n", "a scenario needs steps"),
            ("bad-within.yaml", "steps:\n  - lookup: { from: fixed1, name: x, expect: NXDOMAIN, within: -1 }\n", "steps[0].lookup.within"),
            ("where.yaml", &format!("lab: {}\nsteps:\n  - attach: phone1\n", moves.display()), "where.yaml:3:13: steps[0].attach: several visited networks (visited, visited2); say which with `at`"),
        ] {
            let err = load(&write(file, text), None).err().unwrap_or_else(|| panic!("{file} validated"));
            assert!(err.to_string().contains(says), "{file}: {err}");
            assert!(err.to_string().contains(file), "{file}: {err}");
        }
    }

    #[test]
    fn a_topology_given_for_the_run_replaces_the_scenarios_lab() {
        let folder = Folder::new("topology");
        let file = folder.write("s.yaml", "steps:\n  - attach: phone1\n");
        let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/labs/bind.yaml");
        let loaded = load(&file, Some(&lab)).unwrap();
        assert_eq!(loaded.topology.name, "bind");
        assert_eq!(loaded.topology_origin, lab.display().to_string());
        assert_eq!(load(&file, None).unwrap().topology.name, "roam");
    }
}
