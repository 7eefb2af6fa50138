//! `roamlab attach` and `detach`: one terminal or many (names, globs, `--all`), with a
//! progress line on a terminal when it takes more than a second, and one summary naming
//! every terminal that failed and why.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::json;

use crate::lab::terminals::{self, Attached, Outcomes, Progress, TerminalError};

/// Which terminals a verb names: `--all` of the pool, or `patterns` matched against it.
/// The pool is read only for `--all` or a glob: plain names need no look at the lab
/// before the verb reads it itself.
fn chosen(
    lab: &str,
    pool: impl FnOnce() -> Result<Vec<String>, TerminalError>,
    patterns: &[String],
    all: bool,
    what: &str,
) -> Result<Vec<String>> {
    if all {
        return Ok(pool()?);
    }
    if patterns.is_empty() {
        bail!("name the terminals (names or globs such as 't*'), or say --all");
    }
    let pool = if patterns.iter().any(|p| is_glob(p)) {
        pool()?
    } else {
        Vec::new()
    };
    let pool: Vec<&str> = pool.iter().map(String::as_str).collect();
    // A plain name that is not in the pool is the verb's to refuse (its error says more).
    let mut names = Vec::new();
    for p in patterns {
        if is_glob(p) {
            names.extend(terminals::select(lab, &pool, p, what)?);
        } else {
            names.push(p.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    Ok(names)
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Whether the verb names one terminal by name, and so answers as the single verb did.
pub(super) fn single(patterns: &[String], all: bool) -> bool {
    !all && patterns.len() == 1 && !is_glob(&patterns[0])
}

/// Runs `work` with a progress line on stderr (when it is a terminal) once a second has
/// passed.
fn with_progress<T>(verb: &str, progress: &Progress, work: impl FnOnce() -> T) -> T {
    let show = std::io::stderr().is_terminal();
    let finished = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        if show {
            scope.spawn(|| {
                let start = Instant::now();
                let mut shown = false;
                while !finished.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if start.elapsed() < Duration::from_secs(1) {
                        continue;
                    }
                    let (done, failed, total) = (
                        progress.done.load(Ordering::Relaxed),
                        progress.failed.load(Ordering::Relaxed),
                        progress.total.load(Ordering::Relaxed),
                    );
                    eprint!(
                        "\r{verb}: {done}/{total} done, {failed} failed, {:.1} s",
                        start.elapsed().as_secs_f64()
                    );
                    let _ = std::io::stderr().flush();
                    shown = true;
                }
                if shown {
                    eprint!("\r\x1b[K");
                }
            });
        }
        let out = work();
        finished.store(true, Ordering::Relaxed);
        out
    })
}

/// The reason a terminal failed, without its name (the summary groups terminals by it).
fn reason(e: &TerminalError) -> String {
    match e {
        TerminalError::Refused { why, .. } => why.clone(),
        other => other.to_string(),
    }
}

/// Prints the outcomes as one JSON document (`{verb, took_ms, attached|detached, failed,
/// terminals: [{terminal, ok, …|why}]}`); errors if any terminal failed, as the text does.
fn print_json<T>(
    verb: &str,
    outcomes: &Outcomes<T>,
    took: Duration,
    done: impl Fn(&T) -> serde_json::Value,
) -> Result<()> {
    let terminals: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|(terminal, result)| {
            let mut entry = match result {
                Ok(t) => done(t),
                Err(e) => json!({ "why": reason(e) }),
            };
            entry["terminal"] = json!(terminal);
            entry["ok"] = json!(result.is_ok());
            entry
        })
        .collect();
    let failed = outcomes.iter().filter(|(_, r)| r.is_err()).count();
    let summary = json!({
        "verb": verb,
        "took_ms": took.as_secs_f64() * 1000.0,
        "succeeded": outcomes.len() - failed,
        "failed": failed,
        "terminals": terminals,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if failed > 0 {
        bail!("{failed} of {} terminals failed to {verb}", outcomes.len());
    }
    Ok(())
}

/// Prints one summary; errors if any terminal failed.
fn summarise<T>(verb: &str, done: &str, outcomes: &Outcomes<T>, took: Duration) -> Result<()> {
    let mut by_reason: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (t, r) in outcomes {
        if let Err(e) = r {
            by_reason.entry(reason(e)).or_default().push(t);
        }
    }
    let failed: usize = by_reason.values().map(Vec::len).sum();
    let ok = outcomes.len() - failed;
    for (why, names) in &by_reason {
        let shown: Vec<&str> = names.iter().take(20).copied().collect();
        let more = if names.len() > shown.len() {
            format!(" and {} more", names.len() - shown.len())
        } else {
            String::new()
        };
        println!(
            "  {} {verb} failed: {why}: {}{more}",
            names.len(),
            shown.join(", ")
        );
    }
    println!(
        "{} terminals: {ok} {done}, {failed} failed, in {:.2} s ({:.1} ms per terminal)",
        outcomes.len(),
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / outcomes.len().max(1) as f64
    );
    if failed > 0 {
        bail!("{failed} of {} terminals failed to {verb}", outcomes.len());
    }
    Ok(())
}

fn print_attached(a: &Attached) {
    let entry = a.registration.as_ref();
    // A network that learns names from its terminals registers none until one says it.
    let host = entry
        .and_then(|e| e.host_name.as_deref())
        .unwrap_or(&a.host_name);
    let msisdn = entry.and_then(|e| e.msisdn.as_deref()).unwrap_or("?");
    println!(
        "{} attached at {} as {host} (IMSI {}, MSISDN {msisdn}); namespace {}, agent pid {}",
        a.terminal, a.visited, a.imsi, a.namespace, a.agent.pid
    );
    if let Some(address) = a.address {
        match &a.resolvable {
            Some((from, took)) => println!(
                "{} has address {address}; {host} resolves to it from {from} ({} ms after the attach)",
                a.terminal,
                took.as_millis()
            ),
            None if a.mode == crate::topology::Mode::NoUpdate => println!(
                "{} has address {address}; {} runs mode no-update: its home DNS is not told, so \
                 forward lookups of {host} fail",
                a.terminal, a.visited
            ),
            None => println!("{} has address {address}", a.terminal),
        }
    } else if entry.is_some_and(|e| !e.packet_data) {
        println!(
            "{} has no address: its profile has no packet-data service",
            a.terminal
        );
    }
}

pub fn attach(
    lab: &str,
    patterns: &[String],
    all: bool,
    at: Option<&str>,
    setup: &terminals::TerminalSetup,
    parallel: usize,
    json: bool,
) -> Result<()> {
    let names = chosen(
        lab,
        || terminals::subscribers(lab),
        patterns,
        all,
        "subscriber",
    )?;
    if setup.host_name.is_some() && names.len() != 1 {
        bail!(
            "--host-name is one terminal's claim, and {} terminals were named",
            names.len()
        );
    }
    let progress = Progress::default();
    let started = Instant::now();
    let mut outcomes = with_progress("attach", &progress, || {
        super::run_to_end(terminals::attach_many(
            lab, &names, at, setup, parallel, &progress,
        ))?
        .map_err(anyhow::Error::from)
    })?;
    if json {
        return print_json("attach", &outcomes, started.elapsed(), |a| {
            json!({
                "visited": a.visited,
                "imsi": a.imsi,
                "host_name": a.registration.as_ref().and_then(|r| r.host_name.clone()).unwrap_or(a.host_name.clone()),
                "namespace": a.namespace,
                "pid": a.agent.pid,
                "address": a.address,
                "resolvable_from": a.resolvable.as_ref().map(|(from, _)| from),
                "resolvable_ms": a.resolvable.as_ref().map(|(_, took)| took.as_secs_f64() * 1000.0),
                "mode": a.mode,
            })
        });
    }
    if single(patterns, all) {
        let (_, result) = outcomes.pop().expect("one outcome");
        print_attached(&result?);
        return Ok(());
    }
    summarise("attach", "attached", &outcomes, started.elapsed())
}

pub fn detach(lab: &str, patterns: &[String], all: bool, json: bool) -> Result<()> {
    let names = chosen(
        lab,
        || terminals::attached(lab),
        patterns,
        all,
        "attached terminal",
    )?;
    let progress = Progress::default();
    let started = Instant::now();
    let mut outcomes = with_progress("detach", &progress, || {
        super::run_to_end(terminals::detach_many(lab, &names, &progress))?
            .map_err(anyhow::Error::from)
    })?;
    if json {
        return print_json(
            "detach",
            &outcomes,
            started.elapsed(),
            |visited| json!({ "visited": visited }),
        );
    }
    if single(patterns, all) {
        let (terminal, result) = outcomes.pop().expect("one outcome");
        println!("{terminal} detached from {} and removed", result?);
        return Ok(());
    }
    summarise("detach", "detached", &outcomes, started.elapsed())
}
