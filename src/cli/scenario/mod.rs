//! `roamlab run SCENARIO`: a scenario file names a lab and steps (attach, move, detach,
//! kill or restart an agent, wait, exec) and checks (a lookup with its expected answer or
//! NXDOMAIN, ping, traceroute and HTTP by name, a refusal and its cause, a call). The lab
//! comes up under its own name (or a running one is used with `--lab`), each check says ✓
//! or ✗ and why, the lab goes, and the exit status is non-zero if any check failed. What
//! each check saw is a transcript beside the scenario (`NAME.transcript`): `--check`
//! compares with it and prints the difference, `--bless` replaces it. `--report DIR`
//! writes an HTML page of the run. `roamlab demo` is the built-in scenario, run here.

mod file;
mod report;
mod steps;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use file::Step;
pub use file::{demo, load, Scenario};
use steps::Outcome;

use crate::lab::{self, UpOptions};

/// How `run` treats the stored transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transcript {
    /// Write it if there is none; else write NAME.transcript.new when it differs.
    #[default]
    Write,
    /// Fail on any difference.
    Check,
    /// Replace it.
    Bless,
    /// Neither read nor write one (the demo).
    Skip,
}

#[derive(Default)]
pub struct RunOptions<'a> {
    pub lab: Option<&'a str>,
    pub name: Option<&'a str>,
    pub transcript: Transcript,
    pub json: bool,
    pub junit: Option<&'a Path>,
    /// Show each command the steps run and what it printed, under headings.
    pub verbose: bool,
    /// Leave the lab up afterwards.
    pub keep: bool,
    /// Write an HTML report of the run in this folder.
    pub report: Option<&'a Path>,
}

pub fn transcript_path(scenario: &Path) -> PathBuf {
    let mut name = scenario.file_stem().unwrap_or_default().to_os_string();
    name.push(".transcript");
    scenario.with_file_name(name)
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

pub fn run(scenario: Scenario, opts: &RunOptions) -> Result<()> {
    let started = Instant::now();
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
    let say = |line: &str| {
        if !opts.json {
            println!("{line}");
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if own_lab {
        let up = UpOptions {
            topology: topology.clone(),
            source_text: scenario.source_text.clone(),
            origin: scenario.topology_origin.clone(),
            start_agents: true,
            ready_timeout: Duration::from_secs(10),
        };
        let t = Instant::now();
        let report = rt
            .block_on(lab::up_over_leftovers(&up, interrupted.clone()))
            .with_context(|| format!("up lab {lab_name}"))?;
        if opts.verbose {
            say(&paint(
                "1",
                &format!("▶ Bring up lab {lab_name} ({})", scenario.topology_origin),
            ));
            say(&format!(
                "  lab {lab_name} up in {} ms: {} nodes, {} agents",
                t.elapsed().as_millis(),
                topology.nodes.len(),
                report.agents.len()
            ));
        }
    }
    let mut outcomes = Vec::new();
    for step in &scenario.steps {
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
        if let Step::Say(heading) = step {
            if opts.verbose {
                say(&format!("\n{}", paint("1", &format!("▶ {heading}"))));
            }
            continue;
        }
        let outcome = steps::perform(&rt, &lab_name, step, &interrupted);
        if opts.verbose {
            for line in &outcome.shown {
                say(&format!("  {line}"));
            }
        }
        let (mark, colour) = if outcome.ok {
            ("✓", "32")
        } else {
            ("✗", "31")
        };
        let why = outcome
            .why
            .as_ref()
            .map(|w| format!(" — {w}"))
            .unwrap_or_default();
        let indent = if opts.verbose { "  " } else { "" };
        say(&format!(
            "{indent}{} {}{why}",
            paint(colour, mark),
            outcome.saw
        ));
        outcomes.push(outcome);
    }
    let events = match opts.report {
        Some(_) => {
            crate::events::read_all(&crate::contract::LabDir::of(&lab_name)).unwrap_or_default()
        }
        None => Vec::new(),
    };
    // --keep leaves the lab up, unless the run was interrupted.
    let stays = opts.keep && !interrupted.load(Ordering::SeqCst);
    if own_lab && !stays {
        lab::down(&lab_name).with_context(|| format!("down lab {lab_name}"))?;
        if opts.verbose {
            say(&format!("\n{}", paint("1", "▶ Tear the lab down")));
            say(&format!(
                "  {} everything the lab made is removed",
                paint("32", "✓")
            ));
        }
    } else if own_lab {
        say(&format!(
            "\nThe lab stays up (--keep): try `sudo roamlab exec fixed1 -- dig phone1.home.example` … `sudo roamlab down {lab_name}`."
        ));
    }
    if interrupted.load(Ordering::SeqCst) {
        match own_lab {
            true => bail!("interrupted; lab {lab_name} was removed"),
            false => bail!("interrupted; lab {lab_name} stays up, as it was before the run"),
        }
    }
    let text: String = outcomes.iter().map(|o| format!("{}\n", o.saw)).collect();
    let (stored, differences) = match &scenario.file {
        Some(file) if opts.transcript != Transcript::Skip => {
            let stored = transcript_path(file);
            let differences = compare_transcript(&stored, &text, opts.transcript)?;
            (Some(stored), differences)
        }
        _ => (None, Vec::new()),
    };
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.ok).collect();
    if let Some(path) = opts.junit {
        std::fs::write(path, junit(&scenario.origin, &outcomes))
            .with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(dir) = opts.report {
        let page = report::page(&scenario, &topology, &outcomes, &events, &text);
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let index = dir.join("index.html");
        std::fs::write(&index, page).with_context(|| format!("write {}", index.display()))?;
        say(&format!("report: {}", index.display()));
    }
    if opts.json {
        let doc = serde_json::json!({
            "scenario": scenario.origin,
            "lab": lab_name,
            "passed": outcomes.len() - failed.len(),
            "failed": failed.len(),
            "transcript_differs": !differences.is_empty(),
            "steps": outcomes,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    if let (Some(stored), false) = (&stored, differences.is_empty()) {
        eprintln!("transcript differs from {}:", stored.display());
        for line in &differences {
            eprintln!("{line}");
        }
    }
    if !failed.is_empty() {
        bail!(
            "{}: {} of {} checks failed: {}",
            scenario.origin,
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
            scenario.origin,
            differences.len()
        );
    }
    let total = outcomes.len();
    match opts.verbose {
        true => say(&format!(
            "\n{total} of {total} checks passed in {:.1} s.",
            started.elapsed().as_secs_f64()
        )),
        false => say(&format!("{total} of {total} checks passed")),
    }
    Ok(())
}

/// Compares this run's transcript with the stored one as `mode` says, writing what it
/// says to; returns the differing lines.
fn compare_transcript(stored: &Path, text: &str, mode: Transcript) -> Result<Vec<String>> {
    match mode {
        Transcript::Skip => Ok(Vec::new()),
        Transcript::Bless => {
            std::fs::write(stored, text)?;
            let _ = std::fs::remove_file(with_new(stored));
            Ok(Vec::new())
        }
        mode => match std::fs::read_to_string(stored) {
            Err(_) if mode == Transcript::Check => bail!(
                "no transcript to check against: {} (run with --bless to make it)",
                stored.display()
            ),
            Err(_) => {
                std::fs::write(stored, text)?;
                Ok(Vec::new())
            }
            Ok(old) => {
                let diff = diff(&old, text);
                if !diff.is_empty() && mode == Transcript::Write {
                    std::fs::write(with_new(stored), text)?;
                }
                Ok(diff)
            }
        },
    }
}

fn with_new(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    path.with_file_name(name)
}

/// A unified diff of the stored transcript (`-`) and this run's (`+`): hunks with two
/// lines of context and `@@ -start,count +start,count @@` headers, as `diff -u` prints.
/// Empty when they are the same.
fn diff(old: &str, new: &str) -> Vec<String> {
    const CONTEXT: usize = 2;
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // The longest common subsequence, from the back: lcs[i][j] for a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // The edit script: (kind, old line index, new line index).
    let mut script = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            script.push((' ', i, j));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            script.push(('-', i, j));
            i += 1;
        } else {
            script.push(('+', i, j));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..script.len()).filter(|&k| script[k].0 != ' ').collect();
    let mut out = Vec::new();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT + 1 {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT).min(script.len() - 1);
        let hunk = &script[start..=end];
        let olds = hunk.iter().filter(|e| e.0 != '+').count();
        let news = hunk.iter().filter(|e| e.0 != '-').count();
        let (o, n) = (hunk[0].1, hunk[0].2);
        out.push(format!(
            "@@ -{},{olds} +{},{news} @@",
            o + usize::from(olds > 0),
            n + usize::from(news > 0)
        ));
        for &(kind, i, j) in hunk {
            let line = if kind == '+' { b[j] } else { a[i] };
            out.push(format!("{kind}{line}"));
        }
    }
    out
}

/// JUnit XML: a test case per step.
fn junit(origin: &str, outcomes: &[Outcome]) -> String {
    let failures = outcomes.iter().filter(|o| !o.ok).count();
    let name = super::sequence::xml(origin);
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

#[cfg(test)]
mod tests {
    use super::steps::outcome;
    use super::*;

    #[test]
    fn a_transcript_diff_names_the_lines_and_junit_the_failures() {
        assert!(diff("a\nb\n", "a\nb\n").is_empty());
        assert_eq!(
            diff("a\nb\n", "a\nc\nd\n"),
            ["@@ -1,2 +1,3 @@", " a", "-b", "+c", "+d"]
        );
        // A line put in shows as one line put in, not as every later line changed.
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let new = "1\n2\n3\n4\nnew\n5\n6\n7\n8\n9\n";
        assert_eq!(
            diff(old, new),
            ["@@ -3,4 +3,5 @@", " 3", " 4", "+new", " 5", " 6"]
        );
        // Changes far apart are hunks of their own.
        let new = "one\n2\n3\n4\n5\n6\n7\n8\nnine\n";
        assert_eq!(
            diff(old, new),
            [
                "@@ -1,3 +1,3 @@",
                "-1",
                "+one",
                " 2",
                " 3",
                "@@ -7,3 +7,3 @@",
                " 7",
                " 8",
                "-9",
                "+nine"
            ]
        );
        assert_eq!(diff("", "a\n"), ["@@ -0,0 +1,1 @@", "+a"]);
        let xml = junit(
            "s.yaml",
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
