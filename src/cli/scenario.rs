//! `roamlab run SCENARIO`: a scenario file names a lab and steps (attach, detach, wait,
//! exec) and checks (a lookup with its expected answer or NXDOMAIN, ping and HTTP by name,
//! a call). The lab comes up under its own name (or a running one is used with `--lab`),
//! each check says ✓ or ✗ and why, the lab goes, and the exit status is non-zero if any
//! check failed. What each check saw is a transcript beside the scenario (`NAME.transcript`):
//! `--check` compares with it and prints the difference, `--bless` replaces it.
//!
//! Scenarios are validated like topologies before anything is built: unknown fields, nodes,
//! terminals and networks are refused with file, line and column (exit status 2).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::demo::run as run_in;
use crate::lab::{self, UpOptions};
use crate::topology::locate::{locate, FieldPath};
use crate::topology::{Topology, TopologyError, DEFAULT_SOURCE, DEFAULT_TOPOLOGY};

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
enum Step {
    Attach(Attach),
    Detach(String),
    /// Seconds.
    Wait(f64),
    Lookup(Lookup),
    Ping(ByName),
    Http(Http),
    Call(Call),
    Exec(Exec),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Attach {
    Terminal(String),
    At(AttachAt),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachAt {
    terminal: String,
    #[serde(default)]
    at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lookup {
    from: String,
    /// A forward lookup of this name (A), or a reverse lookup of `reverse`.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    reverse: Option<Ipv4Addr>,
    /// Ask this authority without recursion (default: the lab's resolver).
    #[serde(default)]
    at: Option<IpAddr>,
    /// The answer (an address, a host name) or NXDOMAIN.
    expect: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ByName {
    from: String,
    name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Http {
    from: String,
    url: String,
    /// Text the body must hold.
    expect: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Call {
    from: String,
    to: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Exec {
    node: String,
    command: Vec<String>,
    /// The exit status it must end with (default 0).
    #[serde(default)]
    exit: i32,
}

/// A validated scenario: its lab's topology and its steps.
pub struct Scenario {
    pub file: PathBuf,
    topology: Topology,
    source_text: String,
    origin: String,
    steps: Vec<Step>,
}

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub step: String,
    pub ok: bool,
    /// What it saw: the transcript's line.
    pub saw: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
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

/// Reads and validates a scenario and the topology it names.
pub fn load(file: &Path) -> Result<Scenario, TopologyError> {
    let origin = file.display().to_string();
    let source = Topology::read_source(file)?;
    let raw: RawScenario = serde_yaml::from_str(&source).map_err(|e| {
        let text = e.to_string();
        let message = text
            .rfind(" at line ")
            .map(|c| text[..c].to_string())
            .unwrap_or(text);
        let at = e
            .location()
            .map(|l| format!("{origin}:{}:{}", l.line(), l.column()))
            .unwrap_or_else(|| origin.clone());
        TopologyError::Syntax { at, message }
    })?;
    let (topology, source_text, topo_origin) = match &raw.lab {
        None => (
            Topology::builtin(),
            DEFAULT_TOPOLOGY.to_string(),
            DEFAULT_SOURCE.to_string(),
        ),
        Some(path) => {
            let path = file.parent().unwrap_or(Path::new(".")).join(path);
            let text = Topology::read_source(&path)?;
            let origin = path.display().to_string();
            (Topology::parse(&text, &origin)?, text, origin)
        }
    };
    let fail = |path: FieldPath, message: String| invalid(&origin, &source, &path, message);
    let is_node = |n: &str| topology.node(n).is_some();
    let is_terminal = |t: &str| topology.subscribers.iter().any(|s| s.name == t);
    if raw.steps.is_empty() {
        return Err(fail(
            FieldPath::default().key("steps"),
            "a scenario needs steps".into(),
        ));
    }
    for (i, step) in raw.steps.iter().enumerate() {
        let at = FieldPath::default().key("steps").index(i);
        let place = |kind: &str, field: &str| at.key(kind).key(field);
        let from = |kind: &str, who: &str| -> Result<(), TopologyError> {
            if is_node(who) || is_terminal(who) {
                Ok(())
            } else {
                Err(fail(
                    place(kind, "from"),
                    format!("no node or terminal `{who}` in the lab"),
                ))
            }
        };
        match step {
            Step::Attach(Attach::Terminal(t)) if !is_terminal(t) => {
                return Err(fail(
                    at.key("attach"),
                    format!("no subscriber `{t}` in the lab"),
                ))
            }
            Step::Attach(Attach::At(a)) => {
                if !is_terminal(&a.terminal) {
                    return Err(fail(
                        place("attach", "terminal"),
                        format!("no subscriber `{}` in the lab", a.terminal),
                    ));
                }
                if let Some(net) = &a.at {
                    if topology.node(net).and_then(|n| n.vlr()).is_none() {
                        return Err(fail(
                            place("attach", "at"),
                            format!("`{net}` is no network with a VLR"),
                        ));
                    }
                }
            }
            Step::Detach(t) if !is_terminal(t) => {
                return Err(fail(
                    at.key("detach"),
                    format!("no subscriber `{t}` in the lab"),
                ))
            }
            Step::Wait(s) if !(0.0..=600.0).contains(s) => {
                return Err(fail(at.key("wait"), format!("{s} s: a wait is 0 to 600 s")))
            }
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
            }
            Step::Ping(p) => from("ping", &p.from)?,
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
                if !is_terminal(&c.to) {
                    return Err(fail(
                        place("call", "to"),
                        format!("no subscriber `{}` in the lab", c.to),
                    ));
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
            _ => {}
        }
    }
    Ok(Scenario {
        file: file.to_path_buf(),
        topology,
        source_text,
        origin: topo_origin,
        steps: raw.steps,
    })
}

/// How `run` treats the stored transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transcript {
    /// Write it if there is none; else write NAME.transcript.new when it differs.
    Write,
    /// Fail on any difference.
    Check,
    /// Replace it.
    Bless,
}

pub struct RunOptions<'a> {
    pub lab: Option<&'a str>,
    pub name: Option<&'a str>,
    pub transcript: Transcript,
    pub json: bool,
    pub junit: Option<&'a Path>,
}

pub fn transcript_path(scenario: &Path) -> PathBuf {
    let mut name = scenario.file_stem().unwrap_or_default().to_os_string();
    name.push(".transcript");
    scenario.with_file_name(name)
}

pub fn run(scenario: Scenario, opts: &RunOptions) -> Result<()> {
    let interrupted = super::capture::stop_on_signal();
    let mut topology = scenario.topology.clone();
    if let Some(name) = opts.name {
        topology.name = name.to_string();
    }
    let own_lab = opts.lab.is_none();
    let lab_name = opts
        .lab
        .map(str::to_string)
        .unwrap_or_else(|| topology.name.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if own_lab {
        let opts = UpOptions {
            topology: topology.clone(),
            source_text: scenario.source_text.clone(),
            origin: scenario.origin.clone(),
            start_agents: true,
            ready_timeout: Duration::from_secs(10),
        };
        rt.block_on(lab::up_over_leftovers(&opts, interrupted.clone()))
            .with_context(|| format!("up lab {lab_name}"))?;
    }
    let mut outcomes = Vec::new();
    for step in &scenario.steps {
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
        let outcome = perform(&rt, &lab_name, step);
        if !opts.json {
            let mark = if outcome.ok { "✓" } else { "✗" };
            let why = outcome
                .why
                .as_ref()
                .map(|w| format!(" — {w}"))
                .unwrap_or_default();
            println!("{mark} {}{why}", outcome.saw);
        }
        outcomes.push(outcome);
    }
    if own_lab {
        lab::down(&lab_name).with_context(|| format!("down lab {lab_name}"))?;
    }
    if interrupted.load(Ordering::SeqCst) {
        bail!("interrupted; lab {lab_name} was removed");
    }
    let text: String = outcomes.iter().map(|o| format!("{}\n", o.saw)).collect();
    let stored = transcript_path(&scenario.file);
    let differences = match opts.transcript {
        Transcript::Bless => {
            std::fs::write(&stored, &text)?;
            let _ = std::fs::remove_file(with_new(&stored));
            Vec::new()
        }
        mode => match std::fs::read_to_string(&stored) {
            Err(_) if mode == Transcript::Check => {
                bail!(
                    "no transcript to check against: {} (run with --bless to make it)",
                    stored.display()
                )
            }
            Err(_) => {
                std::fs::write(&stored, &text)?;
                Vec::new()
            }
            Ok(old) => {
                let diff = diff(&old, &text);
                if !diff.is_empty() && mode == Transcript::Write {
                    std::fs::write(with_new(&stored), &text)?;
                }
                diff
            }
        },
    };
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.ok).collect();
    if let Some(path) = opts.junit {
        std::fs::write(path, junit(&scenario.file, &outcomes))
            .with_context(|| format!("write {}", path.display()))?;
    }
    if opts.json {
        let doc = serde_json::json!({
            "scenario": scenario.file.display().to_string(),
            "lab": lab_name,
            "passed": outcomes.len() - failed.len(),
            "failed": failed.len(),
            "transcript_differs": !differences.is_empty(),
            "steps": outcomes,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    if !differences.is_empty() {
        eprintln!("transcript differs from {}:", stored.display());
        for line in &differences {
            eprintln!("{line}");
        }
    }
    if !failed.is_empty() {
        bail!(
            "{}: {} of {} checks failed: {}",
            scenario.file.display(),
            failed.len(),
            outcomes.len(),
            failed
                .iter()
                .map(|o| o.saw.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if opts.transcript == Transcript::Check && !differences.is_empty() {
        bail!(
            "{}: the transcript differs ({} lines)",
            scenario.file.display(),
            differences.len()
        );
    }
    if !opts.json {
        println!("{} of {} checks passed", outcomes.len(), outcomes.len());
    }
    Ok(())
}

fn with_new(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    path.with_file_name(name)
}

/// A line diff: `-` for the stored transcript's lines that went, `+` for new ones, with the
/// line number, in order.
fn diff(old: &str, new: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut out = Vec::new();
    for i in 0..a.len().max(b.len()) {
        match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                if let Some(x) = x {
                    out.push(format!("-{:>4} {x}", i + 1));
                }
                if let Some(y) = y {
                    out.push(format!("+{:>4} {y}", i + 1));
                }
            }
        }
    }
    out
}

/// JUnit XML: a test case per step.
fn junit(file: &Path, outcomes: &[Outcome]) -> String {
    let failures = outcomes.iter().filter(|o| !o.ok).count();
    let name = super::sequence::xml(&file.display().to_string());
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"{name}\" tests=\"{}\" failures=\"{failures}\">\n",
        outcomes.len()
    );
    for o in outcomes {
        out.push_str(&format!(
            "  <testcase classname=\"{name}\" name=\"{}\"",
            super::sequence::xml(&o.saw)
        ));
        if o.ok {
            out.push_str("/>\n");
        } else {
            out.push_str(&format!(
                "><failure message=\"{}\"/></testcase>\n",
                super::sequence::xml(o.why.as_deref().unwrap_or("failed"))
            ));
        }
    }
    out.push_str("</testsuite>\n");
    out
}

fn outcome(step: &str, ok: bool, saw: String, why: Option<String>) -> Outcome {
    Outcome {
        step: step.to_string(),
        ok,
        saw,
        why: if ok { None } else { why },
    }
}

fn perform(rt: &tokio::runtime::Runtime, lab_name: &str, step: &Step) -> Outcome {
    match step {
        Step::Attach(a) => {
            let (terminal, at) = match a {
                Attach::Terminal(t) => (t.clone(), None),
                Attach::At(a) => (a.terminal.clone(), a.at.clone()),
            };
            let done = rt.block_on(lab::terminals::attach(
                lab_name,
                &terminal,
                at.as_deref(),
                &Default::default(),
            ));
            let place = at.map(|a| format!(" at {a}")).unwrap_or_default();
            match done {
                Ok(a) => outcome(
                    "attach",
                    true,
                    format!(
                        "attach {terminal}{place} → {}",
                        a.address
                            .map(|x| x.to_string())
                            .unwrap_or_else(|| "no address".into())
                    ),
                    None,
                ),
                Err(e) => outcome(
                    "attach",
                    false,
                    format!("attach {terminal}{place} → refused"),
                    Some(e.to_string()),
                ),
            }
        }
        Step::Detach(t) => match rt.block_on(lab::terminals::detach(lab_name, t)) {
            Ok(_) => outcome("detach", true, format!("detach {t} → gone"), None),
            Err(e) => outcome(
                "detach",
                false,
                format!("detach {t} → failed"),
                Some(e.to_string()),
            ),
        },
        Step::Wait(s) => {
            std::thread::sleep(Duration::from_secs_f64(*s));
            outcome("wait", true, format!("wait {s} s"), None)
        }
        Step::Lookup(l) => {
            let server = l.at.map(|a| format!("@{a}"));
            let mut argv = vec!["dig".to_string(), "+tries=1".into(), "+time=2".into()];
            if let Some(s) = &server {
                argv.push("+norec".into());
                argv.push(s.clone());
            }
            let asked = match (&l.name, &l.reverse) {
                (Some(n), _) => {
                    argv.extend([n.clone(), "A".into()]);
                    n.clone()
                }
                (None, Some(r)) => {
                    argv.extend(["-x".into(), r.to_string()]);
                    format!("-x {r}")
                }
                (None, None) => unreachable!("validated"),
            };
            let args: Vec<&str> = argv.iter().map(String::as_str).collect();
            let (_, said) = run_in(lab_name, &l.from, &args);
            let got = super::compare::answer_or_status(&said);
            let expected = l.expect.trim_end_matches('.');
            let at = server.map(|s| format!(" {s}")).unwrap_or_default();
            outcome(
                "lookup",
                got.eq_ignore_ascii_case(expected),
                format!("lookup {} {asked}{at} → {got}", l.from),
                Some(format!("expected {expected}")),
            )
        }
        Step::Ping(p) => {
            let (ok, said) = run_in(lab_name, &p.from, &["ping", "-c", "1", "-W", "2", &p.name]);
            outcome(
                "ping",
                ok,
                format!(
                    "ping {} {} → {}",
                    p.from,
                    p.name,
                    if ok { "ok" } else { "fails" }
                ),
                said.lines().last().map(str::to_string),
            )
        }
        Step::Http(h) => {
            let (ok, said) = run_in(lab_name, &h.from, &["curl", "-s", "-f", "-m", "3", &h.url]);
            let holds = ok && said.contains(&h.expect);
            outcome(
                "http",
                holds,
                format!(
                    "http {} {} → {}",
                    h.from,
                    h.url,
                    if holds { "ok" } else { "fails" }
                ),
                Some(format!("expected the body to hold `{}`", h.expect)),
            )
        }
        Step::Call(c) => match lab::call::call(lab_name, &c.from, &c.to, Duration::from_secs(1)) {
            Ok(r) if r.succeeded() => outcome(
                "call",
                true,
                format!(
                    "call {} {} → established, media {}",
                    c.from, c.to, r.media_path
                ),
                None,
            ),
            Ok(r) => outcome(
                "call",
                false,
                format!("call {} {} → not set up", c.from, c.to),
                r.why,
            ),
            Err(e) => outcome(
                "call",
                false,
                format!("call {} {} → not set up", c.from, c.to),
                Some(e.to_string()),
            ),
        },
        Step::Exec(e) => {
            let args: Vec<&str> = e.command.iter().map(String::as_str).collect();
            let namespace = crate::topology::namespace_name(lab_name, &e.node);
            let code = exit_code_in(&namespace, &args).unwrap_or(-1);
            outcome(
                "exec",
                code == e.exit,
                format!("exec {} {} → exit {code}", e.node, e.command.join(" ")),
                Some(format!("expected exit {}", e.exit)),
            )
        }
    }
}

/// Runs a command in a namespace with the node's view (as `roamlab exec --privileged`)
/// and returns its exit code.
fn exit_code_in(namespace: &str, argv: &[&str]) -> std::io::Result<i32> {
    let mut cmd = std::process::Command::new(argv[0]);
    cmd.args(&argv[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    crate::supervisor::enter::NodeEntry::prepare(namespace)?.apply_to(&mut cmd);
    Ok(cmd.status()?.code().unwrap_or(-1))
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
    fn a_scenario_is_validated_before_anything_is_built() {
        let folder = Folder::new("validate");
        let write = |name: &str, text: &str| folder.write(name, text);
        let ok = write("ok.yaml", "steps:\n  - attach: phone1\n  - lookup: { from: fixed1, name: phone1.home.example, expect: 198.51.100.100 }\n  - detach: phone1\n");
        assert_eq!(load(&ok).unwrap().steps.len(), 3);
        for (file, text, says) in [
            ("unknown-step.yaml", "steps:\n  - fly: phone1\n", "unknown variant `fly`"),
            ("unknown-field.yaml", "steps:\n  - ping: { from: fixed1, name: x, count: 3 }\n", "unknown field `count`"),
            ("unknown-terminal.yaml", "steps:\n  - attach: phone9\n", "2:13: steps[0].attach: no subscriber `phone9` in the lab"),
            ("unknown-node.yaml", "steps:\n  - ping: { from: fixed9, name: x }\n", "steps[0].ping.from: no node or terminal `fixed9` in the lab"),
            ("two-questions.yaml", "steps:\n  - lookup: { from: fixed1, name: x, reverse: 198.51.100.100, expect: NXDOMAIN }\n", "give `name` or `reverse`"),
            ("no-network.yaml", "steps:\n  - attach: { terminal: phone1, at: core }\n", "steps[0].attach.at: `core` is no network with a VLR"),
        ] {
            let err = load(&write(file, text)).err().unwrap_or_else(|| panic!("{file} validated"));
            assert!(err.to_string().contains(says), "{file}: {err}");
            assert!(err.to_string().contains(file), "{file}: {err}");
        }
    }

    #[test]
    fn a_transcript_diff_names_the_lines_and_junit_the_failures() {
        assert!(diff("a\nb\n", "a\nb\n").is_empty());
        assert_eq!(
            diff("a\nb\n", "a\nc\nd\n"),
            ["-   2 b", "+   2 c", "+   3 d"]
        );
        let xml = junit(
            Path::new("s.yaml"),
            &[
                outcome("ping", true, "ping fixed1 x → ok".into(), None),
                outcome(
                    "lookup",
                    false,
                    "lookup fixed1 x → NXDOMAIN".into(),
                    Some("expected <1.2.3.4>".into()),
                ),
            ],
        );
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(
            xml.contains("<failure message=\"expected &lt;1.2.3.4&gt;\"/>"),
            "{xml}"
        );
    }
}
