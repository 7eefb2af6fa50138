//! The contract between a lab and its agents, in one place: where every file and socket of
//! a lab is ([`LabDir`]), what each agent is told ([`configs`]), and what agents publish
//! for the lab and for each other ([`published`]). Everything above reads and writes the
//! lab's directory through these types; this module depends on nothing of roamlab's but
//! [`crate::json_file`].

pub mod configs;
pub mod host_control;
pub mod lab_dir;
pub mod model;
pub mod published;
pub mod tap;

pub use lab_dir::{AgentKind, LabDir, RUN_DIR};
