//! Scenario files (`roamlab run`): every example under scenarios/ runs on a real lab with
//! `--check` against its committed transcript; a transcript that differs fails with the
//! difference; JUnit and JSON reports; a bad scenario is refused before anything is built.

mod common;

use common::{roamlab, root_or_skip, text, LabGuard};

/// A temporary folder, removed when the test ends, pass or fail.
struct Folder(std::path::PathBuf);

impl Folder {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("roamlab-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Folder(dir)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_example_scenario_passes_and_matches_its_transcript() {
    if !root_or_skip("scenarios") {
        return;
    }
    let files = common::yaml_files("scenarios");
    assert!(files.len() >= 2, "expected example scenarios");
    for (i, file) in files.iter().enumerate() {
        let name = format!("scen{i}");
        let guard = LabGuard::new(&name);
        let out = roamlab(&[
            "run",
            &file.display().to_string(),
            "--check",
            "--name",
            &name,
        ]);
        assert!(out.status.success(), "{}: {}", file.display(), text(&out));
        common::assert_nothing_left(&name, &[]);
        drop(guard);
    }
}

#[test]
fn a_differing_transcript_fails_check_with_the_difference_and_bless_accepts_it() {
    if !root_or_skip("scendiff") {
        return;
    }
    let folder = Folder::new("scendiff");
    let dir = &folder.0;
    let file = dir.join("s.yaml");
    std::fs::write(
        &file,
        "steps:\n  - attach: phone1\n  - lookup: { from: fixed1, name: phone1.home.example, expect: 198.51.100.100 }\n  - lookup: { from: fixed1, name: nobody.home.example, expect: 198.51.100.9 }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("s.transcript"),
        "attach phone1 → 198.51.100.100\nlookup fixed1 phone1.home.example → 198.51.100.7\n",
    )
    .unwrap();
    let junit = dir.join("junit.xml");
    let guard = LabGuard::new("scendiff");
    let path = file.display().to_string();
    let out = roamlab(&[
        "run",
        &path,
        "--check",
        "--name",
        "scendiff",
        "--junit",
        &junit.display().to_string(),
    ]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("✗ lookup fixed1 nobody.home.example → NXDOMAIN — expected 198.51.100.9"),
        "{said}"
    );
    assert!(
        said.contains("-   2 lookup fixed1 phone1.home.example → 198.51.100.7"),
        "{said}"
    );
    assert!(
        said.contains("+   2 lookup fixed1 phone1.home.example → 198.51.100.100"),
        "{said}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"3\" failures=\"1\""), "{xml}");
    common::assert_nothing_left("scendiff", &[]);

    // Bless takes this run's transcript; the next --check of the passing steps holds.
    std::fs::write(
        &file,
        "steps:\n  - attach: phone1\n  - lookup: { from: fixed1, name: phone1.home.example, expect: 198.51.100.100 }\n",
    )
    .unwrap();
    let out = roamlab(&["run", &path, "--bless", "--name", "scendiff"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = roamlab(&["run", &path, "--check", "--name", "scendiff", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["passed"], 2, "{doc}");
    assert_eq!(doc["transcript_differs"], false, "{doc}");
    drop(guard);
}

#[test]
fn a_bad_scenario_is_refused_with_its_place_and_exit_2() {
    let folder = Folder::new("scenbad");
    let file = folder.0.join("bad.yaml");
    std::fs::write(
        &file,
        "steps:\n  - attach: phone1\n  - ping: { from: nowhere, name: x }\n",
    )
    .unwrap();
    let out = roamlab(&["run", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("bad.yaml:3:")
            && text(&out).contains("steps[1].ping.from: no node or terminal `nowhere`"),
        "{}",
        text(&out)
    );
}
