//! Where everything of a lab is: one type for a lab's state directory, and every path in
//! it. Nothing else in roamlab joins a path below /run/roamlab.

use std::path::{Path, PathBuf};

/// Root of all labs' state.
pub const RUN_DIR: &str = "/run/roamlab";

/// The kinds of lab agent that keep a directory of their own (`<kind>-<node>/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKind {
    Hlr,
    Vlr,
    Dhcp,
    Dns,
}

impl AgentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::Hlr => "hlr",
            AgentKind::Vlr => "vlr",
            AgentKind::Dhcp => "dhcp",
            AgentKind::Dns => "dns",
        }
    }
}

/// A lab's state directory, /run/roamlab/<lab>/.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabDir(PathBuf);

impl LabDir {
    /// The directory of the lab named `lab`.
    pub fn of(lab: &str) -> Self {
        LabDir(Path::new(RUN_DIR).join(lab))
    }

    /// A lab directory somewhere else (tests, benchmarks).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        LabDir(path.into())
    }

    /// The lab an agent belongs to, from its configuration file (`<lab>/<kind>-<node>/config.json`).
    pub fn of_config(config: &Path) -> Option<Self> {
        Some(LabDir(config.parent()?.parent()?.to_path_buf()))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The topology the lab was built from (holds every subscriber's K and OPc).
    pub fn topology(&self) -> PathBuf {
        self.0.join("topology.yaml")
    }

    /// The validated model of that topology, as `up` built it (see [`super::model`]).
    pub fn model(&self) -> PathBuf {
        self.0.join("topology.json")
    }

    /// Every object the lab made.
    pub fn state(&self) -> PathBuf {
        self.0.join("state.json")
    }

    /// Held while a verb changes the state.
    pub fn lock(&self) -> PathBuf {
        self.0.join("lock")
    }

    /// The identity of every namespace the lab made.
    pub fn namespaces(&self) -> PathBuf {
        self.0.join("namespaces.jsonl")
    }

    /// The lab agents' event log (terminals keep their own, see [`Self::terminal_events`]).
    pub fn events(&self) -> PathBuf {
        self.0.join("events.jsonl")
    }

    /// The agents' stdout and stderr.
    pub fn logs(&self) -> PathBuf {
        self.0.join("agents")
    }

    /// Where `roamlab capture signaling` listens for a VLR's copies of its GSUP messages
    /// (in the VLR's own directory: the one place both can reach).
    pub fn gsup_tap(&self, vlr: &str) -> PathBuf {
        self.agent_dir(AgentKind::Vlr, vlr).join("gsup.tap")
    }

    /// One end of a `roamlab call`: its user agent's configuration and log. The only lab
    /// state that user agent sees.
    pub fn call_end(&self, call: u32, end: &str) -> PathBuf {
        self.0.join("calls").join(format!("{call}-{end}"))
    }

    pub fn agent_log(&self, node: &str, name: &str) -> PathBuf {
        self.logs().join(format!("{node}.{name}.log"))
    }

    /// The private network's sockets, each alone in a directory of its own: a directory is
    /// what an agent is granted, so that it reaches a restarted peer's new socket too.
    pub fn signaling(&self) -> PathBuf {
        self.0.join("signaling")
    }

    pub fn hlr_socket(&self, home: &str) -> PathBuf {
        self.signaling()
            .join(format!("hlr-{home}"))
            .join("hlr.sock")
    }

    /// The cell's air-interface socket.
    pub fn cell_socket(&self, visited: &str) -> PathBuf {
        self.signaling()
            .join(format!("cell-{visited}"))
            .join("cell.sock")
    }

    /// Where a visited network's DHCP agent reaches its VLR.
    pub fn vlr_local_socket(&self, visited: &str) -> PathBuf {
        self.signaling()
            .join(format!("local-{visited}"))
            .join("local.sock")
    }

    /// An agent's own directory: its configuration and the state it keeps. Only that
    /// agent is granted it.
    pub fn agent_dir(&self, kind: AgentKind, node: &str) -> PathBuf {
        self.0.join(format!("{}-{node}", kind.as_str()))
    }

    pub fn agent_config(&self, kind: AgentKind, node: &str) -> PathBuf {
        self.agent_dir(kind, node).join("config.json")
    }

    /// The network an agent of `kind` serves, from its configuration's path.
    pub fn node_of_config(config: &Path, kind: AgentKind) -> Option<String> {
        config
            .parent()?
            .file_name()?
            .to_str()?
            .strip_prefix(kind.as_str())?
            .strip_prefix('-')
            .map(String::from)
    }

    /// The HLR's sequence numbers, locations and registrations.
    pub fn hlr_state(&self, home: &str) -> PathBuf {
        self.agent_dir(AgentKind::Hlr, home).join("state.jsonl")
    }

    /// What a VLR publishes for its node's DHCP agent (which is granted this directory and
    /// nothing else of the VLR's).
    pub fn vlr_published(&self, visited: &str) -> PathBuf {
        self.agent_dir(AgentKind::Vlr, visited).join("published")
    }

    /// The VLR's registrations: a journal (see `crate::journal`), a line per change.
    pub fn vlr_attached(&self, visited: &str) -> PathBuf {
        self.vlr_published(visited).join("attached.jsonl")
    }

    /// The terminals' links on the VLR's cell, as the lab made them: one file per IMSI
    /// holding the address its locked port carries. Written by the lab (the cell's
    /// operator) at attach; read by the VLR only.
    pub fn vlr_cell_links(&self, visited: &str) -> PathBuf {
        self.agent_dir(AgentKind::Vlr, visited).join("links")
    }

    pub fn vlr_cell_link(&self, visited: &str, imsi: &str) -> PathBuf {
        super::published::cell_link_file(&self.vlr_cell_links(visited), imsi)
    }

    /// The DHCP agent's leases: a journal keyed by address, a line per change.
    pub fn dhcp_leases(&self, visited: &str) -> PathBuf {
        self.agent_dir(AgentKind::Dhcp, visited)
            .join("leases.jsonl")
    }

    /// Declined addresses on probation: a journal keyed by address.
    pub fn dhcp_probation(&self, visited: &str) -> PathBuf {
        self.agent_dir(AgentKind::Dhcp, visited)
            .join("probation.jsonl")
    }

    /// Addresses held for subscribers whose leases ended: a journal keyed by address.
    pub fn dhcp_held(&self, visited: &str) -> PathBuf {
        self.agent_dir(AgentKind::Dhcp, visited).join("held.jsonl")
    }

    /// The DHCP agent's durable queue of DNS changes.
    pub fn dhcp_queue(&self, visited: &str) -> PathBuf {
        self.agent_dir(AgentKind::Dhcp, visited).join("queue.jsonl")
    }

    /// A DNS server's zone files and journals.
    pub fn dns_file(&self, node: &str, file: &str) -> PathBuf {
        self.agent_dir(AgentKind::Dns, node).join(file)
    }

    /// The TSIG keys, one file each, granted one by one.
    pub fn keys(&self) -> PathBuf {
        self.0.join("keys")
    }

    /// A DNS server's key, raw bytes.
    pub fn key_file(&self, server: &str) -> PathBuf {
        self.keys().join(format!("{server}.key"))
    }

    /// The same key as a BIND `key` clause, for nsupdate -k.
    pub fn key_conf(&self, server: &str) -> PathBuf {
        self.keys().join(format!("{server}.conf"))
    }

    pub fn terminals(&self) -> PathBuf {
        self.0.join("terminals")
    }

    /// A node's /etc files (hosts, resolv.conf), which /etc/netns/<namespace> points at:
    /// on the lab's own tmpfs, so that a node costs the host's disk one inode (the link)
    /// rather than three. No node's process is granted this directory.
    pub fn node_etc(&self, namespace: &str) -> PathBuf {
        self.0.join("etc").join(namespace)
    }

    /// A terminal's own directory: its configuration (K and OPc: its SIM), its SQN_MS and
    /// its stock DHCP client's files. The only lab state the terminal itself can see.
    pub fn terminal_dir(&self, terminal: &str) -> PathBuf {
        self.terminals().join(terminal)
    }

    pub fn terminal_config(&self, terminal: &str) -> PathBuf {
        self.terminal_dir(terminal).join("config.json")
    }

    pub fn terminal_state(&self, terminal: &str) -> PathBuf {
        self.terminal_dir(terminal).join("state.json")
    }

    pub fn terminal_events(&self, terminal: &str) -> PathBuf {
        self.terminal_dir(terminal).join("events.jsonl")
    }

    /// The hosts of many terminals, a directory each (root only): config and control socket.
    pub fn terminal_hosts(&self) -> PathBuf {
        self.0.join("terminal-hosts")
    }

    pub fn terminal_host_dir(&self, host: &str) -> PathBuf {
        self.terminal_hosts().join(host)
    }

    pub fn terminal_host_config(&self, host: &str) -> PathBuf {
        self.terminal_host_dir(host).join("config.json")
    }

    pub fn terminal_host_control(&self, host: &str) -> PathBuf {
        self.terminal_host_dir(host).join("control.sock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_knows_its_node_and_lab_from_its_config_path() {
        let lab = LabDir::of("l1");
        let config = lab.agent_config(AgentKind::Vlr, "visited");
        assert_eq!(config, Path::new("/run/roamlab/l1/vlr-visited/config.json"));
        assert_eq!(
            LabDir::node_of_config(&config, AgentKind::Vlr).as_deref(),
            Some("visited")
        );
        assert_eq!(LabDir::node_of_config(&config, AgentKind::Hlr), None);
        assert_eq!(LabDir::of_config(&config), Some(lab));
    }

    #[test]
    fn every_socket_is_alone_in_its_directory() {
        let lab = LabDir::of("l1");
        let sockets = [
            lab.hlr_socket("home"),
            lab.cell_socket("visited"),
            lab.vlr_local_socket("visited"),
        ];
        let mut dirs: Vec<_> = sockets.iter().map(|s| s.parent().unwrap()).collect();
        dirs.sort();
        dirs.dedup();
        assert_eq!(dirs.len(), sockets.len());
    }
}
