//! The command line without root: validate, graph, help, and errors as one line.

mod common;

use common::{repo, roamlab, text};

#[test]
fn validate_accepts_the_default_lab() {
    let out = roamlab(&[
        "validate",
        repo("topologies/roaming.yaml").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("lab roam is valid: 5 nodes, 4 links, 3 subscribers"));
}

#[test]
fn validate_refuses_bad_input_with_one_line_and_exit_2() {
    let out = roamlab(&[
        "validate",
        repo("tests/fixtures/bad/unknown-node.yaml")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("unknown-node.yaml:9:17: links[0].endpoints[1].node: unknown node `nowhere`"),
        "{err}"
    );
}

#[test]
fn validate_names_a_missing_file() {
    let out = roamlab(&["validate", "/nonexistent/lab.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("/nonexistent/lab.yaml: cannot read the topology"),
        "{}",
        text(&out)
    );
}

#[test]
fn graph_draws_the_default_lab() {
    let dot = roamlab(&["graph"]);
    assert!(dot.status.success());
    let dot = String::from_utf8_lossy(&dot.stdout);
    assert!(
        dot.starts_with("graph \"roam\" {") && dot.contains("\"fixed1\" -- \"core:hosts\""),
        "{dot}"
    );
    let mermaid = roamlab(&["graph", "--format", "mermaid"]);
    assert!(String::from_utf8_lossy(&mermaid.stdout).starts_with("flowchart LR"));
}

#[test]
fn every_verb_has_help_with_an_example() {
    for verb in [
        "up",
        "down",
        "status",
        "exec",
        "validate",
        "graph",
        "cleanup",
        "completions",
        "man",
    ] {
        let out = roamlab(&[verb, "--help"]);
        assert!(out.status.success(), "{verb} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Example: "),
            "{verb} --help has no example:\n{help}"
        );
    }
}

/// Finding 10 of the issue on the private network: a non-UTF-8 file made `up` exit 1 but
/// `validate` exit 2; an over-large file was read whole and parsed. Both verbs now refuse
/// both before anything is built (`graph` reads topologies the same way as `up`).
#[test]
fn non_utf8_and_oversized_topologies_exit_2_everywhere() {
    let dir = std::env::temp_dir().join(format!("roamlab-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("latin1.yaml");
    std::fs::write(&bad, b"name: caf\xe9\n").unwrap();
    let huge = dir.join("huge.yaml");
    let mut padded = String::from("name: huge\nnodes:\n");
    while padded.len() <= 4 * 1024 * 1024 {
        padded.push_str("  # padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&huge, padded).unwrap();
    for (file, cause) in [
        (&bad, "not UTF-8 (invalid byte at offset 9)"),
        (&huge, "bytes is more than the limit of 4194304 bytes"),
    ] {
        let path = file.to_str().unwrap();
        for verb in [&["validate", path][..], &["graph", "-t", path][..]] {
            let out = roamlab(verb);
            assert_eq!(out.status.code(), Some(2), "{verb:?}: {}", text(&out));
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains(cause), "{verb:?}: {err}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The verbs `roamlab --help` lists (its "Commands:" section), but `help`.
fn verbs() -> Vec<String> {
    let help = text(&roamlab(&["--help"]));
    let verbs: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| *v != "help")
        .map(String::from)
        .collect();
    assert!(
        verbs.iter().any(|v| v == "attach") && verbs.len() > 10,
        "{verbs:?}"
    );
    verbs
}

/// Issue 11, deliverable 6: bash completes roamlab's verbs and their options from the
/// generated script.
#[test]
fn bash_completes_the_verbs_and_their_options() {
    let script = roamlab(&["completions", "bash"]);
    assert!(script.status.success(), "{}", text(&script));
    let path = std::env::temp_dir().join(format!("roamlab-completion-{}", std::process::id()));
    std::fs::write(&path, &script.stdout).unwrap();
    let complete = |words: &str| {
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _roamlab roamlab \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            path.display()
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &program])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let all = complete("roamlab ''");
    for verb in verbs() {
        assert!(all.lines().any(|l| l == verb), "{verb} not offered: {all}");
    }
    assert_eq!(complete("roamlab att").trim(), "attach");
    assert!(
        complete("roamlab attach --dh")
            .lines()
            .any(|l| l == "--dhcp-client"),
        "{}",
        complete("roamlab attach --dh")
    );
    std::fs::remove_file(&path).unwrap();
}

/// Issue 11, deliverable 6: a man page for roamlab and one for every verb, each with every
/// long option its --help gives.
#[test]
fn man_pages_cover_every_verb_and_option() {
    let dir = std::env::temp_dir().join(format!("roamlab-man-{}", std::process::id()));
    let out = roamlab(&["man", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let top = std::fs::read_to_string(dir.join("roamlab.1")).unwrap();
    assert!(top.contains(".TH roamlab 1"), "{top}");
    for verb in verbs() {
        let page = std::fs::read_to_string(dir.join(format!("roamlab-{verb}.1")))
            .unwrap_or_else(|e| panic!("no page for {verb}: {e}"));
        assert!(
            page.contains(&format!(".TH roamlab-{verb} 1")),
            "{verb}: {page}"
        );
        assert!(
            top.contains(&format!("roamlab\\-{verb}(1)")),
            "{verb} not listed"
        );
        let help = text(&roamlab(&[&verb, "--help"]));
        for option in help
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| w.trim_end_matches([',', '.', ')', ':']))
            .filter(|w| {
                w.chars()
                    .skip(2)
                    .all(|c| c.is_ascii_lowercase() || c == '-')
            })
        {
            let roff = option.replace('-', "\\-");
            assert!(
                page.contains(&roff),
                "{verb}: {option} missing from its page"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
