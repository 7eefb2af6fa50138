//! The DNS agent's configuration file, written by `up` into the lab's state directory and
//! read by `roamlab agent dns --config FILE`. Unknown fields are refused.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::keys::{self, TsigKey};
use super::zonefile;
use crate::json_file;
use crate::topology::Topology;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsAgentConfig {
    /// Where the authoritative server answers (UDP and TCP port 53).
    pub listen: IpAddr,
    pub zones: Vec<ZoneConfig>,
    pub resolver: Option<ResolverConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Fully qualified: `home.example.`.
    pub origin: String,
    pub zone_file: PathBuf,
    /// The sqlite journal: updates live here and survive restarts of the agent.
    pub journal: PathBuf,
    /// The key that may update this zone; no key, no updates.
    pub update_key: Option<KeyRef>,
    /// TTL the lab's own updaters give dynamic records.
    pub dynamic_ttl: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    pub name: String,
    pub file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {
    pub listen: IpAddr,
    pub roots_file: PathBuf,
    /// The only networks the resolver may query: the lab's own.
    pub allow_servers: Vec<IpNet>,
}

/// Where a lab keeps its DNS files.
pub fn dns_dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("dns")
}

pub fn keys_dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("keys")
}

pub fn config_path(lab_dir: &Path, node: &str) -> PathBuf {
    dns_dir(lab_dir).join(format!("{node}.json"))
}

impl DnsAgentConfig {
    pub fn load(path: &Path) -> io::Result<Self> {
        json_file::read_json(path)
    }

    /// The zone configuration for a zone name (with or without the trailing dot).
    pub fn zone(&self, name: &str) -> Option<&ZoneConfig> {
        let want = format!("{}.", name.trim_end_matches('.'));
        self.zones
            .iter()
            .find(|z| z.origin.eq_ignore_ascii_case(&want))
    }
}

/// Writes, for a new lab, every DNS server's zone files, key and agent configuration.
/// A journal of an earlier lab of the same name never survives into a new one: the state
/// directory is new, and any journal found is removed.
pub fn prepare_lab(topology: &Topology, lab_dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let dir = dns_dir(lab_dir);
    std::fs::create_dir_all(&dir)?;
    let mut configs = Vec::new();
    let lab_nets: Vec<IpNet> = {
        let mut nets: Vec<IpNet> = topology
            .nodes
            .iter()
            .flat_map(|n| crate::topology::node_addresses(n, &topology.links))
            .map(|a| a.trunc())
            .collect();
        nets.sort();
        nets.dedup();
        nets
    };
    for node in &topology.nodes {
        let Some((listen, resolver)) = topology.dns_of(&node.name) else {
            continue;
        };
        let key = TsigKey::generate(&node.name)?;
        key.write(&keys_dir(lab_dir), &node.name)?;
        let mut zones = Vec::new();
        for zone in zonefile::zones_of(topology, &node.name) {
            let file_stem = if zone.name == "." {
                "root".to_string()
            } else {
                zone.name.clone()
            };
            let zone_file = dir.join(format!("{file_stem}.zone"));
            let journal = dir.join(format!("{file_stem}.jrnl"));
            std::fs::write(&zone_file, zonefile::zone_text(topology, zone))?;
            match std::fs::remove_file(&journal) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            // The root is the lab's fixed frame; the networks' own zones take updates.
            let update_key = (zone.name != ".").then(|| KeyRef {
                name: key.name.clone(),
                file: keys::raw_path(&keys_dir(lab_dir), &node.name),
            });
            zones.push(ZoneConfig {
                origin: zone.fqdn(),
                zone_file,
                journal,
                update_key,
                dynamic_ttl: zone.ttl,
            });
        }
        let resolver = match (resolver, zonefile::root_hints(topology)) {
            (Some(listen), Some(hints)) => {
                let roots_file = dir.join("root.hints");
                std::fs::write(&roots_file, hints)?;
                Some(ResolverConfig {
                    listen,
                    roots_file,
                    allow_servers: lab_nets.clone(),
                })
            }
            _ => None,
        };
        let config = DnsAgentConfig {
            listen,
            zones,
            resolver,
        };
        let path = config_path(lab_dir, &node.name);
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&config).map_err(io::Error::other)?,
        )?;
        configs.push((node.name.clone(), path));
    }
    Ok(configs)
}
