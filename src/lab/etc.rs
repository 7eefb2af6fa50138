//! Per-namespace /etc files in /etc/netns/<namespace>/, which `ip netns exec` and
//! `roamlab exec` bind over /etc inside the node: a hosts file naming the lab's nodes and
//! a resolv.conf that points only inside the lab (never at the host's resolver). The files
//! live in the lab's own directory (`LabDir::node_etc`) and /etc/netns/<namespace> is a
//! link to them: on a disk like this machine's (ext4 without a journal), each new inode
//! costs a scan of the inode bitmap, and a thousand terminals made three each.

use std::fs;
use std::io;
use std::path::Path;

use crate::contract::LabDir;
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

/// What is at /etc/netns/<namespace>, for the lab whose files are at `own`.
enum There {
    /// Nothing, or a directory (an older roamlab's, which kept the files in it).
    NoLink,
    /// The lab's link to `own`.
    Ours,
    /// A link to anywhere else: not the lab's to write through or remove.
    Foreign,
}

fn there(link: &Path, own: &Path) -> io::Result<There> {
    match fs::symlink_metadata(link) {
        Ok(m) if m.is_symlink() => Ok(match fs::read_link(link)? == own {
            true => There::Ours,
            false => There::Foreign,
        }),
        Ok(_) => Ok(There::NoLink),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(There::NoLink),
        Err(e) => Err(e),
    }
}

/// Writes one node's files in the lab's directory and links /etc/netns/<namespace> to
/// them. A directory already there (an older roamlab's) gets the files, as it did; a link
/// to anywhere else is not the lab's, and is refused.
fn write_files(lab: &str, namespace: &str, hosts: &str, resolv: &str) -> io::Result<()> {
    let own = LabDir::of(lab).node_etc(namespace);
    fs::create_dir_all(&own)?;
    fs::write(own.join("hosts"), hosts)?;
    fs::write(own.join("resolv.conf"), resolv)?;
    fs::create_dir_all(crate::kernel::netns::ETC_NETNS)?;
    let link = dir_of(namespace);
    match std::os::unix::fs::symlink(&own, &link) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match there(&link, &own)? {
            There::Ours => Ok(()),
            There::Foreign => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} links elsewhere: not this lab's", link.display()),
            )),
            There::NoLink => {
                fs::write(link.join("hosts"), hosts)?;
                fs::write(link.join("resolv.conf"), resolv)
            }
        },
        other => other,
    }
}

/// The files of one node added after `up` (a terminal).
pub fn write_node(topology: &Topology, node: &str) -> io::Result<()> {
    let namespace = topology.namespace(node);
    write_files(
        &topology.name,
        &namespace,
        &hosts_file(topology),
        &resolv_conf(topology),
    )
}

pub fn write_all(topology: &Topology) -> io::Result<()> {
    let hosts = hosts_file(topology);
    let resolv = resolv_conf(topology);
    for node in &topology.nodes {
        write_files(
            &topology.name,
            &topology.namespace(&node.name),
            &hosts,
            &resolv,
        )?;
    }
    Ok(())
}

/// Removes /etc/netns/<namespace> (the lab's link, or an older roamlab's directory) and the
/// files in the lab's directory; what is missing is already removed, and a link to
/// anywhere else is not the lab's to remove.
pub fn remove(lab: &str, namespace: &str) -> io::Result<()> {
    let gone = |result: io::Result<()>| match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    let link = dir_of(namespace);
    let own: &Path = &LabDir::of(lab).node_etc(namespace);
    let unlinked = match there(&link, own) {
        Ok(There::Ours) => gone(fs::remove_file(&link)),
        Ok(There::Foreign) => Ok(()),
        Ok(There::NoLink) => gone(fs::remove_dir_all(&link)),
        Err(e) => Err(e),
    };
    unlinked.and(gone(fs::remove_dir_all(own)))
}
