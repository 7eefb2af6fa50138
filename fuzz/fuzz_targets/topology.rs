//! A topology file from a user: parse (with its limits) and validate, then everything `up`
//! derives from it before the first syscall: the plan, the agents, and every zone file.
//! Invariants: what validates plans, and every zone file it yields loads in hickory's zone
//! parser, as the DNS agent will load it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roamlab::dns::zonefile::{root_hints, zone_text};
use roamlab::lab::agent_specs;
use roamlab::topology::Topology;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(topology) = Topology::parse(source, "fuzz.yaml") else {
        return;
    };
    let plan = roamlab::plan::build(&topology);
    for step in &plan.steps {
        let _ = step.describe();
    }
    let _ = agent_specs(&topology);
    let _ = root_hints(&topology);
    for zone in &topology.zones {
        let text = zone_text(&topology, zone);
        let origin = hickory_proto::rr::Name::from_ascii(zone.fqdn()).expect("a zone's name");
        if let Err(e) =
            hickory_proto::serialize::txt::Parser::new(text.clone(), None, Some(origin)).parse()
        {
            panic!("zone {} does not load: {e}\n{text}", zone.fqdn());
        }
    }
});
