//! DNS for the lab: the zones each server holds (derived from the topology, pure), the
//! per-lab TSIG keys, the DNS agent (hickory-server: sqlite-backed zones that accept
//! TSIG-signed RFC 2136 updates, and on the core the root zone plus a recursive resolver
//! that iterates from that root), and the update client the HLR and DHCP agents use.

pub mod agent;
pub mod config;
pub mod guard;
pub mod keys;
pub mod lookup;
pub mod update;
pub mod zonefile;
