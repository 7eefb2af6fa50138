//! Tables for people: what `up` built and what `status` finds.

use crate::lab::LabStatus;
use crate::plan::{Plan, Step};
use crate::supervisor::AgentRecord;
use crate::topology::Topology;

/// Rows of (node, namespace, interface, addresses, agents), aligned in columns.
fn render(rows: &[[String; 5]]) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.to_vec()).collect();
    grid(
        &["NODE", "NAMESPACE", "INTERFACE", "ADDRESSES", "AGENTS"],
        &rows,
    )
}

/// Columns padded to their widest cell, two spaces apart, under a header.
pub fn grid(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut widths = vec![0usize; header.len()];
    for row in std::iter::once(&header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The table `up` prints, from the plan it applied and the agents it started.
/// `tunnels` names the kind of each tunnel made: (namespace, interface, kind).
pub fn up_table(
    topology: &Topology,
    plan: &Plan,
    agents: &[AgentRecord],
    tunnels: &[(String, String, &'static str)],
) -> String {
    let mut rows = Vec::new();
    for node in &topology.nodes {
        let ns = topology.namespace(&node.name);
        let mut ifaces: Vec<(String, Vec<String>)> = Vec::new();
        for step in &plan.steps {
            match step {
                Step::CreateBridge {
                    namespace, name, ..
                } if *namespace == ns => ifaces.push((name.clone(), vec![])),
                Step::CreateVeth {
                    namespace, name, ..
                } if *namespace == ns => ifaces.push((name.clone(), vec![])),
                Step::CreateVeth {
                    peer_namespace,
                    peer_name,
                    ..
                } if *peer_namespace == ns => ifaces.push((peer_name.clone(), vec![])),
                Step::CreateTunnel {
                    namespace, name, ..
                } if *namespace == ns => ifaces.push((name.clone(), vec![])),
                Step::AddAddress {
                    namespace,
                    interface,
                    address,
                    ..
                } if *namespace == ns => {
                    if let Some(entry) = ifaces.iter_mut().find(|(n, _)| n == interface) {
                        entry.1.push(address.to_string());
                    }
                }
                _ => {}
            }
        }
        let agent_cells: Vec<String> = node
            .services
            .iter()
            .map(|s| {
                match agents
                    .iter()
                    .find(|a| a.node == node.name && a.name == s.name())
                {
                    Some(a) => format!("{} (pid {})", a.name, a.pid),
                    None => format!("{} (declared)", s.name()),
                }
            })
            .collect();
        let lines = ifaces.len().max(agent_cells.len()).max(1);
        for i in 0..lines {
            let (mut iface, addrs) = ifaces.get(i).cloned().unwrap_or_default();
            if let Some((_, _, kind)) = tunnels.iter().find(|(n, i, _)| *n == ns && *i == iface) {
                iface = format!("{iface} ({kind})");
            }
            rows.push([
                if i == 0 {
                    node.name.clone()
                } else {
                    String::new()
                },
                if i == 0 { ns.clone() } else { String::new() },
                iface,
                addrs.join(", "),
                agent_cells.get(i).cloned().unwrap_or_default(),
            ]);
        }
    }
    render(&rows)
}

pub fn status_table(status: &LabStatus) -> String {
    let mut rows = Vec::new();
    for node in &status.nodes {
        let ifaces: Vec<_> = node.interfaces.iter().filter(|i| i.name != "lo").collect();
        let agents: Vec<String> = status
            .agents
            .iter()
            .filter(|a| a.node == node.node)
            .map(|a| {
                format!(
                    "{} (pid {}, {})",
                    a.name,
                    a.pid,
                    if a.alive { "running" } else { "DEAD" }
                )
            })
            .collect();
        let lines = ifaces.len().max(agents.len()).max(1);
        for i in 0..lines {
            let (iface, addrs) = match ifaces.get(i) {
                Some(x) => (
                    format!(
                        "{}{}{}",
                        x.name,
                        x.tunnel
                            .as_ref()
                            .map(|kind| format!(" ({kind})"))
                            .unwrap_or_default(),
                        if x.up { "" } else { " (down)" }
                    ),
                    x.addresses
                        .iter()
                        .filter(|a| !is_link_local(a))
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                None if i == 0 && !node.exists => ("MISSING".to_string(), String::new()),
                None => Default::default(),
            };
            rows.push([
                if i == 0 {
                    node.node.clone()
                } else {
                    String::new()
                },
                if i == 0 {
                    node.namespace.clone()
                } else {
                    String::new()
                },
                iface,
                addrs,
                agents.get(i).cloned().unwrap_or_default(),
            ]);
        }
    }
    let keys = if status.tsig_keys.is_empty() {
        String::new()
    } else {
        format!(
            "TSIG keys for dynamic update (nsupdate -k FILE): {}\n",
            status.tsig_keys.join(", ")
        )
    };
    let mut attached = String::new();
    for (visited, list) in &status.attached {
        let names: Vec<String> = list
            .iter()
            .map(|t| format!("{} ({})", t.host_name.as_deref().unwrap_or("?"), &t.imsi))
            .collect();
        let shown = if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        };
        attached.push_str(&format!(
            "attached at {visited} (its VLR's list): {shown}\n"
        ));
    }
    format!(
        "lab {} ({}, from {}), state in {}\n{}{keys}{attached}",
        status.lab,
        match status.phase {
            crate::lab::state::Phase::Running => "running",
            crate::lab::state::Phase::Creating => "being created, or left by a crashed up",
        },
        status.source,
        status.state_dir,
        render(&rows)
    )
}

fn is_link_local(net: &ipnet::IpNet) -> bool {
    matches!(net, ipnet::IpNet::V6(v6) if (v6.addr().segments()[0] & 0xffc0) == 0xfe80)
}
