//! DNS for the lab: the zones each server holds (derived from the topology, pure), the
//! per-lab TSIG keys, the guard in front of every signed update (replays, wrong
//! algorithms, transfers), the update client the HLR and DHCP agents use, and lookups
//! from inside a node. The DNS agent that serves them is [`crate::agents::dns`].

pub mod guard;
pub mod keys;
pub mod lookup;
pub mod update;
pub mod zonefile;
