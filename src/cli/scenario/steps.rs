//! What each scenario step does on a running lab, with real tools in the lab's nodes (dig,
//! ping, traceroute, curl, baresip) and the lab's own verbs (attach, detach, kill,
//! restart). A step gives its outcome: the transcript's line (normalised: no ids, TTLs,
//! timings or pids), whether it held and why not, and the commands it ran with their output.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::file::{Attach, Lookup, Step};
use crate::cli::exec::{exit_code_in, output_in as run_in};
use crate::lab;

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub step: String,
    pub ok: bool,
    /// What it saw: the transcript's line.
    pub saw: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The commands it ran in the lab and what they printed, for `--verbose`.
    #[serde(skip)]
    pub shown: Vec<String>,
}

pub(super) fn outcome(step: &str, ok: bool, saw: String, why: Option<String>) -> Outcome {
    Outcome {
        step: step.to_string(),
        ok,
        saw,
        why: if ok { None } else { why },
        shown: Vec::new(),
    }
}

/// A verb's outcome: `VERB WHAT → DONE`, or `→ failed` with the error.
fn verb_outcome<T, E: std::fmt::Display>(
    verb: &str,
    what: &str,
    done: &str,
    result: Result<T, E>,
) -> Outcome {
    match result {
        Ok(_) => outcome(verb, true, format!("{verb} {what} → {done}"), None),
        Err(e) => outcome(
            verb,
            false,
            format!("{verb} {what} → failed"),
            Some(e.to_string()),
        ),
    }
}

/// Runs a command in a node and keeps it and its output for the outcome.
fn shown_run(lab: &str, node: &str, argv: &[&str], shown: &mut Vec<String>) -> (bool, String) {
    let (ok, out) = run_in(lab, node, argv);
    shown_record(node, argv, &out, shown);
    (ok, out)
}

/// Sleeps for `length`, or less when `stop` is set (Ctrl-C): true if it slept it all.
fn pause(length: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + length;
    while !stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    false
}

/// Does one step on lab `lab_name`; `stop` (Ctrl-C) cuts waits short.
pub(super) fn perform(
    rt: &tokio::runtime::Runtime,
    lab_name: &str,
    step: &Step,
    stop: &AtomicBool,
) -> Outcome {
    let mut shown = Vec::new();
    let mut done = match step {
        Step::Say(_) => unreachable!("headings are not performed"),
        Step::Attach(a) => {
            let (terminal, at, refused) = match a {
                Attach::Terminal(t) => (t.clone(), None, None),
                Attach::At(a) => (a.terminal.clone(), a.at.clone(), a.refused.clone()),
            };
            attach(
                rt,
                lab_name,
                "attach",
                &terminal,
                at.as_deref(),
                refused.as_deref(),
                &mut shown,
            )
        }
        Step::Move(m) => attach(
            rt,
            lab_name,
            "move",
            &m.terminal,
            Some(&m.to),
            None,
            &mut shown,
        ),
        Step::Detach(t) => {
            shown.push(format!("$ roamlab detach {t}"));
            let done = rt.block_on(lab::terminals::detach(lab_name, t));
            verb_outcome("detach", t, "gone", done)
        }
        Step::Kill(agent) => {
            shown.push(format!("$ kill -9 <pid of {agent}>"));
            verb_outcome("kill", agent, "gone", lab::kill_agent(lab_name, agent))
        }
        Step::Restart(agent) => {
            shown.push(format!("$ roamlab restart {agent}"));
            verb_outcome(
                "restart",
                agent,
                "ready",
                lab::restart_agent(lab_name, agent),
            )
        }
        Step::Wait(s) => {
            let waited = pause(Duration::from_secs_f64(*s), stop);
            outcome(
                "wait",
                waited,
                format!("wait {s} s"),
                Some("interrupted".into()),
            )
        }
        Step::Lookup(l) => lookup(lab_name, l, stop, &mut shown),
        Step::Ping(p) => {
            let argv = ["ping", "-c", "3", "-i", "0.2", "-W", "2", &p.name];
            let (ok, said) = shown_run(lab_name, &p.from, &argv, &mut shown);
            let ok = ok && said.contains(" 0% packet loss");
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
        Step::Trace(t) => {
            let argv = ["traceroute", "-n", "-q", "1", "-w", "1", &t.name];
            let (ok, said) = shown_run(lab_name, &t.from, &argv, &mut shown);
            let hops: Vec<&str> = said
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(1))
                .collect();
            let expected: Vec<String> = t.via.iter().map(|a| a.to_string()).collect();
            outcome(
                "trace",
                ok && hops == expected,
                format!("trace {} {} → {}", t.from, t.name, hops.join(" ")),
                Some(format!("expected {}", expected.join(" "))),
            )
        }
        Step::Http(h) => {
            let argv = ["curl", "-s", "-f", "-m", "3", &h.url];
            let (ok, said) = shown_run(lab_name, &h.from, &argv, &mut shown);
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
        Step::Call(c) => {
            shown.push(format!("$ roamlab call {} {}", c.from, c.to));
            let not_set_up = format!("call {} {} → not set up", c.from, c.to);
            match lab::call::call(lab_name, &c.from, &c.to, Duration::from_secs(1)) {
                Ok(r) if r.succeeded() => {
                    shown.push(format!("  {}", crate::cli::call::describe(&r)));
                    let path_holds = c.media.as_ref().is_none_or(|m| *m == r.media_path);
                    outcome(
                        "call",
                        path_holds,
                        format!(
                            "call {} {} → established, media {}",
                            c.from, c.to, r.media_path
                        ),
                        c.media.as_ref().map(|m| format!("expected the media {m}")),
                    )
                }
                Ok(r) => outcome("call", false, not_set_up, r.why),
                Err(e) => outcome("call", false, not_set_up, Some(e.to_string())),
            }
        }
        Step::Exec(e) => {
            let args: Vec<&str> = e.command.iter().map(String::as_str).collect();
            shown.push(format!(
                "$ roamlab exec {} -- {}",
                e.node,
                e.command.join(" ")
            ));
            let code = exit_code_in(lab_name, &e.node, &args).unwrap_or(-1);
            outcome(
                "exec",
                code == e.exit,
                format!("exec {} {} → exit {code}", e.node, e.command.join(" ")),
                Some(format!("expected exit {}", e.exit)),
            )
        }
    };
    done.shown = shown;
    done
}

fn attach(
    rt: &tokio::runtime::Runtime,
    lab_name: &str,
    verb: &str,
    terminal: &str,
    at: Option<&str>,
    refused: Option<&str>,
    shown: &mut Vec<String>,
) -> Outcome {
    let place = at.map(|a| format!(" at {a}")).unwrap_or_default();
    let said = match verb {
        "move" => format!("move {terminal} to {}", at.unwrap_or_default()),
        _ => format!("attach {terminal}{place}"),
    };
    shown.push(format!(
        "$ roamlab attach {terminal}{}",
        at.map(|a| format!(" --at {a}")).unwrap_or_default()
    ));
    let done = rt.block_on(lab::terminals::attach(
        lab_name,
        terminal,
        at,
        &Default::default(),
    ));
    match (done, refused) {
        (Ok(a), None) => {
            let address = a
                .address
                .map(|x| x.to_string())
                .unwrap_or_else(|| "no address".into());
            let resolvable = a
                .resolvable
                .as_ref()
                .map(|(from, t)| {
                    format!("; its name resolves from {from} {} ms after", t.as_millis())
                })
                .unwrap_or_default();
            shown.push(format!(
                "  {terminal}: authenticated by its home HLR via the VLR (Milenage), leased {address} by the {} DHCP{resolvable}",
                a.visited
            ));
            outcome(verb, true, format!("{said} → {address}"), None)
        }
        (Ok(a), Some(cause)) => outcome(
            verb,
            false,
            format!(
                "{said} → {}",
                a.address
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "no address".into())
            ),
            Some(format!("expected a refusal for `{cause}`")),
        ),
        (Err(e), None) => outcome(
            verb,
            false,
            format!("{said} → refused"),
            Some(e.to_string()),
        ),
        (Err(e), Some(cause)) => {
            let why = e.to_string();
            shown.push(format!("  {why}"));
            let holds = why.contains(cause);
            // The expected cause, not the whole message: the transcript stays free of
            // what varies between runs.
            outcome(
                verb,
                holds,
                format!(
                    "{said} → refused: {}",
                    if holds { cause } else { "another cause" }
                ),
                Some(why),
            )
        }
    }
}

/// A lookup with dig; at an authority the answer must be authoritative. With `within`,
/// asked again until it is the expected one.
fn lookup(lab_name: &str, l: &Lookup, stop: &AtomicBool, shown: &mut Vec<String>) -> Outcome {
    let mut argv = vec![
        "dig".to_string(),
        "+tries=1".into(),
        "+time=2".into(),
        "+noall".into(),
        "+comments".into(),
        "+answer".into(),
    ];
    if let Some(at) = l.at {
        argv.push("+norec".into());
        argv.push(format!("@{at}"));
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
    let expected = l.expect.trim_end_matches('.');
    let deadline = Instant::now() + Duration::from_secs_f64(l.within.unwrap_or(0.0));
    let got = loop {
        let (_, said) = run_in(lab_name, &l.from, &args);
        let mut got = super::super::compare::answer_or_status(&said);
        if l.at.is_some() && !authoritative(&said) {
            got.push_str(" (not authoritative)");
        }
        if got.eq_ignore_ascii_case(expected)
            || Instant::now() >= deadline
            || !pause(Duration::from_millis(100), stop)
        {
            shown_record(&l.from, &args, &said, shown);
            break got;
        }
    };
    let at = l.at.map(|a| format!(" @{a}")).unwrap_or_default();
    outcome(
        "lookup",
        got.eq_ignore_ascii_case(expected),
        format!("lookup {} {asked}{at} → {got}", l.from),
        Some(format!("expected {expected}")),
    )
}

fn shown_record(node: &str, argv: &[&str], said: &str, shown: &mut Vec<String>) {
    shown.push(format!("$ roamlab exec {node} -- {}", argv.join(" ")));
    shown.extend(
        said.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("  {l}")),
    );
}

/// dig's header says `flags: qr aa …` for an authoritative answer.
fn authoritative(dig: &str) -> bool {
    dig.lines()
        .filter_map(|l| l.split("flags:").nth(1))
        .any(|f| {
            f.split(';')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .any(|x| x == "aa")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_aa_flag_makes_an_answer_authoritative() {
        let aa = ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n;; flags: qr aa; QUERY: 1, ANSWER: 1\n";
        let rd = ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n;; flags: qr rd ra; QUERY: 1, ANSWER: 1\n";
        assert!(authoritative(aa));
        assert!(!authoritative(rd));
        assert!(!authoritative("; <<>> DiG 9.18 <<>> aa.example\n"));
    }
}
