//! roamlab: a real, sealed Linux network lab for roaming with dynamic DNS update.
//!
//! The pipeline: [`topology`] (YAML → validated model) → [`plan`] (pure, ordered kernel
//! objects) → [`kernel`] (netlink executor with an undo log) → [`supervisor`] (agent
//! processes inside nodes) → [`lab`] (lifecycle: up, down, status, cleanup).

pub mod agents;
pub mod cli;
pub mod contract;
pub mod dns;
pub mod events;
pub mod journal;
pub mod json_file;
pub mod kernel;
pub mod lab;
pub mod plan;
pub mod protocols;
pub mod supervisor;
pub mod topology;
