//! `roamlab demo`: the main job. Builds the built-in lab, roams phone1 and server1 into the
//! visited network, and shows with real tools (dig, ping, traceroute, curl, baresip) that
//! the method works: forward lookups answered by the home DNS, reverse lookups by the
//! visited DNS, packets straight through the visited network, a mobile server reachable
//! by name, a call by host name; then phone1 detaches and its names stop resolving.
//!
//! The steps and their checks are the built-in scenario (scenarios/roaming.yaml), run by
//! the scenario engine with every command shown: one copy of the checks, which CI also
//! runs with `roamlab run scenarios/roaming.yaml --check`.

use anyhow::Result;

use super::scenario::{self, RunOptions, Transcript};
use crate::topology::Topology;

/// The demo's lab name, unless `--name` says another.
pub const LAB: &str = "demo";

/// Runs the demo in lab `topology.name` (already validated as a lab name); a lab of that
/// name that is in use is refused, as `up` refuses it, and one a crash left behind is
/// removed first.
pub fn run_demo(keep: bool, topology: Topology) -> Result<()> {
    println!(
        "roamlab demo: roaming with dynamic DNS update (EP 1 017 208 A2), on real Linux networking"
    );
    scenario::run(
        scenario::demo(),
        &RunOptions {
            name: Some(&topology.name),
            transcript: Transcript::Skip,
            verbose: true,
            keep,
            ..Default::default()
        },
    )
}
