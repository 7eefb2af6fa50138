//! Per-namespace /etc files in /etc/netns/<namespace>/, which `ip netns exec` and
//! `roamlab exec` bind over /etc inside the node: a hosts file naming the lab's nodes and
//! a resolv.conf that points only inside the lab (never at the host's resolver).

use std::fs;
use std::io;

use crate::topology::Topology;

pub use crate::kernel::netns::etc_dir as dir_of;

/// The hosts file: each node's first address under the node's name.
pub fn hosts_file(topology: &Topology) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for node in &topology.nodes {
        let own = crate::topology::node_addresses(node, &topology.links);
        if let Some(first) = own.first() {
            out.push_str(&format!("{}\t{}\n", first.addr(), node.name));
        }
    }
    out
}

/// The resolver a node should use: the lab's own, if it has one.
pub fn resolv_conf(topology: &Topology) -> String {
    let resolver = topology.resolver();
    match resolver {
        Some(addr) => format!(
            "# written by roamlab for lab {}\nnameserver {addr}\noptions timeout:1 attempts:2\n",
            topology.name
        ),
        // Without a nameserver line the resolver asks 127.0.0.1, which stays inside the node.
        None => format!(
            "# written by roamlab for lab {}: this lab has no resolver\n",
            topology.name
        ),
    }
}

/// The files of one node added after `up` (a terminal).
pub fn write_node(topology: &Topology, node: &str) -> io::Result<()> {
    let dir = dir_of(&topology.namespace(node));
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("hosts"), hosts_file(topology))?;
    fs::write(dir.join("resolv.conf"), resolv_conf(topology))
}

pub fn write_all(topology: &Topology) -> io::Result<()> {
    let hosts = hosts_file(topology);
    let resolv = resolv_conf(topology);
    for node in &topology.nodes {
        let dir = dir_of(&topology.namespace(&node.name));
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("hosts"), &hosts)?;
        fs::write(dir.join("resolv.conf"), &resolv)?;
    }
    Ok(())
}

/// Removes /etc/netns/<namespace>; a missing one is already removed.
pub fn remove(namespace: &str) -> io::Result<()> {
    match fs::remove_dir_all(dir_of(namespace)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
