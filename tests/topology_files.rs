//! Walks every topology file: each under topologies/ and tests/labs/ must validate and plan; each under
//! tests/fixtures/bad/ must fail with the message its first line expects.

mod common;

use std::fs;
use std::path::Path;

use common::yaml_files;
use roamlab::topology::Topology;

#[test]
fn every_shipped_and_test_topology_validates_and_plans() {
    let files: Vec<_> = yaml_files("topologies")
        .into_iter()
        .chain(yaml_files("tests/labs"))
        .collect();
    assert!(files.len() > 1);
    for file in files {
        let topology = Topology::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let plan = roamlab::plan::build(&topology);
        assert!(!plan.steps.is_empty(), "{}: empty plan", file.display());
    }
}

#[test]
fn the_embedded_default_is_the_shipped_file() {
    let shipped =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/roaming.yaml"))
            .unwrap();
    assert_eq!(shipped, roamlab::topology::DEFAULT_TOPOLOGY);
}

#[test]
fn every_bad_fixture_fails_with_its_expected_message() {
    let files = yaml_files("tests/fixtures/bad");
    assert!(files.len() >= 15, "expected a folder of bad fixtures");
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: …`", file.display()));
        let err = match Topology::load(&file) {
            Ok(_) => panic!(
                "{}: validated, but should fail with: {expect}",
                file.display()
            ),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(expect),
            "{}:\n  expected: {expect}\n  got:      {err}",
            file.display()
        );
        assert!(
            !err.contains('\n'),
            "{}: error is not one line: {err}",
            file.display()
        );
    }
}

/// A dhcp service's relays: typed (the router defaults to the subnet's first host), and the
/// relay's pool gets its reverse zones at the visited DNS.
#[test]
fn a_relay_is_typed_and_its_pool_gets_reverse_zones() {
    let yaml = std::process::Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/crowd-lab.sh"),
    )
    .args(["2", "relaylab"])
    .env("RELAY", "1")
    .output()
    .unwrap();
    assert!(yaml.status.success());
    let topology = Topology::parse(&String::from_utf8_lossy(&yaml.stdout), "relay.yaml").unwrap();
    let visited = topology.node("visited").unwrap();
    let relays = visited
        .services
        .iter()
        .find_map(|s| match s {
            roamlab::topology::Service::Dhcp { relays, .. } => Some(relays.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(relays.len(), 1);
    assert_eq!(relays[0].address.to_string(), "198.18.0.10");
    assert_eq!(relays[0].router.to_string(), "198.18.16.1");
    let zones: Vec<&str> = topology
        .zones
        .iter()
        .filter(|z| z.server == "visited")
        .map(|z| z.name.as_str())
        .collect();
    for net in 16..=31 {
        let zone = format!("{net}.18.198.in-addr.arpa");
        assert!(zones.contains(&zone.as_str()), "{zone} missing: {zones:?}");
    }
}
