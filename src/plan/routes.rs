//! Routes of each node: by default every subnet of the lab is reachable from every node,
//! along the shortest path of routers (what a routing protocol would converge to); a node
//! with explicit `routes` gets exactly those. A tunnel-mode cell's subnets are home
//! addresses: every node reaches them through the home router, which reaches them through
//! the tunnel (a route the plan adds with the tunnel).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

use ipnet::IpNet;

use super::Iface;
use crate::topology::Topology;

pub(crate) struct Route {
    pub node: String,
    pub to: IpNet,
    pub via: IpAddr,
    pub iface: Iface,
}

/// A node's foot on an L2 segment: the interface and the addresses it holds there.
struct Member {
    node: String,
    iface: Iface,
    addresses: Vec<IpNet>,
}

pub(crate) fn compute(topology: &Topology, ifaces: &[Iface]) -> Vec<Route> {
    let segments = segments(topology, ifaces);
    let connected = |node: &str| -> BTreeSet<IpNet> {
        segments
            .iter()
            .flatten()
            .filter(|m| m.node == node)
            .flat_map(|m| m.addresses.iter().map(|a| a.trunc()))
            .collect()
    };
    let all_nets: BTreeSet<IpNet> = segments
        .iter()
        .flatten()
        .flat_map(|m| m.addresses.iter().map(|a| a.trunc()))
        .collect();

    // Tunnel-mode cells: subnet → the home network that owns it.
    let owners: HashMap<IpNet, String> = topology
        .tunnels()
        .into_iter()
        .flat_map(|t| {
            let home = t.home.clone();
            t.cell_nets
                .into_iter()
                .map(move |n| (IpNet::V4(n), home.clone()))
        })
        .collect();

    let mut routes = Vec::new();
    for node in &topology.nodes {
        if let Some(explicit) = &node.routes {
            for route in explicit {
                let member = segments.iter().flatten().find(|m| {
                    m.node == node.name
                        && m.addresses.iter().any(|a| a.trunc().contains(&route.via))
                });
                if let Some(member) = member {
                    routes.push(Route {
                        node: node.name.clone(),
                        to: route.to,
                        via: route.via,
                        iface: member.iface.clone(),
                    });
                }
            }
            continue;
        }
        let mine = connected(&node.name);
        for dest in all_nets.difference(&mine) {
            let owner = owners.get(dest).map(String::as_str);
            if owner == Some(node.name.as_str()) {
                continue;
            }
            if let Some((via, iface)) = first_hop(topology, &segments, &node.name, dest, owner) {
                routes.push(Route {
                    node: node.name.clone(),
                    to: *dest,
                    via,
                    iface,
                });
            }
        }
    }
    routes
}

/// Breadth-first search from `from` to the nearest node connected to `dest`, passing only
/// through forwarding nodes (or to `owner`, the home network of a tunnel-mode cell);
/// returns the gateway and interface of the first hop.
fn first_hop(
    topology: &Topology,
    segments: &[Vec<Member>],
    from: &str,
    dest: &IpNet,
    owner: Option<&str>,
) -> Option<(IpAddr, Iface)> {
    let v4 = dest.addr().is_ipv4();
    let mut first: HashMap<String, (IpAddr, Iface)> = HashMap::new();
    let mut queue = VecDeque::from([from.to_string()]);
    let mut seen = BTreeSet::from([from.to_string()]);
    while let Some(current) = queue.pop_front() {
        if current != from {
            let reaches = match owner {
                Some(home) => current == home,
                None => segments
                    .iter()
                    .flatten()
                    .any(|m| m.node == current && m.addresses.iter().any(|a| a.trunc() == *dest)),
            };
            if reaches {
                return first.remove(&current);
            }
            let forwards = topology.node(&current).is_some_and(|n| n.role.forwards());
            if !forwards {
                continue;
            }
        }
        for segment in segments {
            let Some(here) = segment.iter().find(|m| m.node == current) else {
                continue;
            };
            for other in segment.iter().filter(|m| m.node != current) {
                if seen.contains(&other.node) {
                    continue;
                }
                // The neighbour's address in a subnet we share, of the destination's family.
                let gateway = other.addresses.iter().find(|theirs| {
                    theirs.addr().is_ipv4() == v4
                        && here
                            .addresses
                            .iter()
                            .any(|ours| ours.trunc() == theirs.trunc())
                });
                let Some(gateway) = gateway else { continue };
                seen.insert(other.node.clone());
                let hop = if current == from {
                    (gateway.addr(), here.iface.clone())
                } else {
                    first[&current].clone()
                };
                first.insert(other.node.clone(), hop);
                queue.push_back(other.node.clone());
            }
        }
    }
    None
}

/// The lab's L2 segments: one per bridge (with every link end that joins it) and one per
/// plain point-to-point link.
fn segments(topology: &Topology, ifaces: &[Iface]) -> Vec<Vec<Member>> {
    let iface = |node: &str, name: &str| {
        ifaces
            .iter()
            .find(|i| i.node == node && i.name == name)
            .cloned()
            .expect("planned interface")
    };
    let mut by_bridge: HashMap<(String, String), usize> = HashMap::new();
    let mut segments: Vec<Vec<Member>> = Vec::new();
    for node in &topology.nodes {
        for bridge in &node.bridges {
            by_bridge.insert((node.name.clone(), bridge.name.clone()), segments.len());
            segments.push(vec![Member {
                node: node.name.clone(),
                iface: iface(&node.name, &bridge.name),
                addresses: bridge.addresses.clone(),
            }]);
        }
    }
    for link in &topology.links {
        let bridges: Vec<usize> = [&link.a, &link.b]
            .iter()
            .filter_map(|e| {
                e.bridge
                    .as_ref()
                    .map(|b| by_bridge[&(e.node.clone(), b.clone())])
            })
            .collect();
        let segment = match bridges.as_slice() {
            [] => {
                segments.push(Vec::new());
                segments.len() - 1
            }
            [one] => *one,
            [a, b] => {
                // Two bridges joined by a link form one segment.
                let moved = std::mem::take(&mut segments[*b]);
                segments[*a].extend(moved);
                for slot in by_bridge.values_mut() {
                    if *slot == *b {
                        *slot = *a;
                    }
                }
                *a
            }
            _ => unreachable!("a link has two ends"),
        };
        for end in [&link.a, &link.b] {
            if end.bridge.is_none() {
                segments[segment].push(Member {
                    node: end.node.clone(),
                    iface: iface(&end.node, &end.interface),
                    addresses: end.addresses.clone(),
                });
            }
        }
    }
    segments
}
