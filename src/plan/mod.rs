//! Topology → an ordered list of kernel objects to create. Pure: no I/O, so the whole
//! plan is snapshot-tested without root, and the executor only has to apply it.
//!
//! Interface indexes are chosen here (each namespace numbers its own from 2; `lo` is 1),
//! so later steps name their links by index without asking the kernel.

mod routes;

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::topology::{Impairment, Topology};

/// Index the kernel gives `lo` in every new namespace.
pub const LOOPBACK_INDEX: u32 = 1;

/// One kernel object to create. Each is undone by deleting what it made.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Step {
    /// A named network namespace (`/run/netns/<namespace>`), with its sysctls set inside.
    CreateNamespace {
        namespace: String,
        sysctls: Vec<Sysctl>,
    },
    SetLinkUp {
        namespace: String,
        interface: String,
        index: u32,
    },
    CreateBridge {
        namespace: String,
        name: String,
        index: u32,
    },
    /// A veth pair created in place: `name` in `namespace`, `peer_name` directly in
    /// `peer_namespace` (never moved afterwards). `name` comes up at creation; the peer
    /// cannot (the kernel refuses to open a veth before its pair is joined), so a
    /// `SetLinkUp` follows.
    CreateVeth {
        namespace: String,
        name: String,
        index: u32,
        /// Bridge (by index in `namespace`) that `name` joins.
        master: Option<u32>,
        peer_namespace: String,
        peer_name: String,
        peer_index: u32,
    },
    /// Makes an existing interface a port of a bridge in the same namespace.
    SetMaster {
        namespace: String,
        interface: String,
        index: u32,
        master: u32,
    },
    AddAddress {
        namespace: String,
        interface: String,
        index: u32,
        address: IpNet,
    },
    AddRoute {
        namespace: String,
        to: IpNet,
        via: IpAddr,
        interface: String,
        index: u32,
    },
    /// A netem root qdisc on an interface.
    AddNetem {
        namespace: String,
        interface: String,
        index: u32,
        impairment: Impairment,
    },
    /// Binds a bridge port to the link-layer address of the one device behind it, as an
    /// air interface binds a radio link to the subscriber it authenticated: a static FDB
    /// entry for the peer's address, then the port locked (IFLA_BRPORT_LOCKED), so frames
    /// from any other source address are dropped by the bridge.
    LockPort {
        namespace: String,
        interface: String,
        index: u32,
        peer_namespace: String,
        peer_index: u32,
    },
}

impl Step {
    /// The namespace this step works in (for a veth, the one the request is sent to).
    pub fn namespace(&self) -> &str {
        match self {
            Step::CreateNamespace { namespace, .. }
            | Step::SetLinkUp { namespace, .. }
            | Step::CreateBridge { namespace, .. }
            | Step::CreateVeth { namespace, .. }
            | Step::SetMaster { namespace, .. }
            | Step::AddAddress { namespace, .. }
            | Step::AddRoute { namespace, .. }
            | Step::AddNetem { namespace, .. }
            | Step::LockPort { namespace, .. } => namespace,
        }
    }

    /// One line for logs and errors: `add address 198.18.0.1/30 to roam-core/eth-home`.
    pub fn describe(&self) -> String {
        match self {
            Step::CreateNamespace { namespace, .. } => format!("create namespace {namespace}"),
            Step::SetLinkUp {
                namespace,
                interface,
                ..
            } => format!("set {namespace}/{interface} up"),
            Step::CreateBridge {
                namespace, name, ..
            } => format!("create bridge {namespace}/{name}"),
            Step::CreateVeth {
                namespace,
                name,
                peer_namespace,
                peer_name,
                ..
            } => {
                format!("create veth {namespace}/{name} <-> {peer_namespace}/{peer_name}")
            }
            Step::SetMaster {
                namespace,
                interface,
                master,
                ..
            } => {
                format!("attach {namespace}/{interface} to bridge index {master}")
            }
            Step::AddAddress {
                namespace,
                interface,
                address,
                ..
            } => {
                format!("add address {address} to {namespace}/{interface}")
            }
            Step::AddRoute {
                namespace,
                to,
                via,
                interface,
                ..
            } => {
                format!("add route {to} via {via} dev {interface} in {namespace}")
            }
            Step::AddNetem {
                namespace,
                interface,
                ..
            } => format!("add netem to {namespace}/{interface}"),
            Step::LockPort {
                namespace,
                interface,
                peer_namespace,
                ..
            } => format!(
                "lock bridge port {namespace}/{interface} to the address of its peer in {peer_namespace}"
            ),
        }
    }
}

/// A sysctl under /proc/sys, written inside the namespace: `net/ipv4/ip_forward = 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sysctl {
    pub key: String,
    pub value: String,
}

fn sysctl(key: &str, value: &str) -> Sysctl {
    Sysctl {
        key: key.to_string(),
        value: value.to_string(),
    }
}

/// The kernel objects of a lab, in the order they are created.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub lab: String,
    pub steps: Vec<Step>,
}

impl Plan {
    /// Namespaces the plan creates, in order.
    pub fn namespaces(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::CreateNamespace { namespace, .. } => Some(namespace.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Where an interface of the lab lives.
#[derive(Debug, Clone)]
pub(crate) struct Iface {
    pub node: String,
    pub name: String,
    pub index: u32,
}

/// Builds the plan of a validated topology.
pub fn build(topology: &Topology) -> Plan {
    let ns = |node: &str| topology.namespace(node);
    let mut steps = Vec::new();
    let uses_v6 = topology_uses_v6(topology);

    for node in &topology.nodes {
        let mut sysctls = Vec::new();
        if node.role.forwards() {
            sysctls.push(sysctl("net/ipv4/ip_forward", "1"));
        }
        if !uses_v6 {
            // No IPv6 in this lab: no link-local addresses, router solicitations or MLD.
            sysctls.push(sysctl("net/ipv6/conf/all/disable_ipv6", "1"));
            sysctls.push(sysctl("net/ipv6/conf/default/disable_ipv6", "1"));
        } else {
            // Duplicate address detection would hold new addresses back for a second.
            sysctls.push(sysctl("net/ipv6/conf/all/accept_dad", "0"));
            sysctls.push(sysctl("net/ipv6/conf/default/accept_dad", "0"));
            if node.role.forwards() {
                sysctls.push(sysctl("net/ipv6/conf/all/forwarding", "1"));
            }
        }
        steps.push(Step::CreateNamespace {
            namespace: ns(&node.name),
            sysctls,
        });
        steps.push(Step::SetLinkUp {
            namespace: ns(&node.name),
            interface: "lo".to_string(),
            index: LOOPBACK_INDEX,
        });
    }

    let mut next_index: HashMap<String, u32> = HashMap::new();
    let mut alloc = |node: &str| {
        let slot = next_index
            .entry(node.to_string())
            .or_insert(LOOPBACK_INDEX + 1);
        let index = *slot;
        *slot += 1;
        index
    };
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut bridge_index: HashMap<(String, String), u32> = HashMap::new();

    for node in &topology.nodes {
        for bridge in &node.bridges {
            let index = alloc(&node.name);
            bridge_index.insert((node.name.clone(), bridge.name.clone()), index);
            ifaces.push(Iface {
                node: node.name.clone(),
                name: bridge.name.clone(),
                index,
            });
            steps.push(Step::CreateBridge {
                namespace: ns(&node.name),
                name: bridge.name.clone(),
                index,
            });
        }
    }

    let mut link_ifaces = Vec::new();
    for link in &topology.links {
        // The request goes to the side that joins a bridge, so the bridge port is set at
        // creation (the kernel applies IFLA_MASTER only to the requested side).
        let (main, peer) = if link.a.bridge.is_none() && link.b.bridge.is_some() {
            (&link.b, &link.a)
        } else {
            (&link.a, &link.b)
        };
        let main_index = alloc(&main.node);
        let peer_index = alloc(&peer.node);
        let master_of = |end: &crate::topology::Endpoint| {
            end.bridge
                .as_ref()
                .map(|b| bridge_index[&(end.node.clone(), b.clone())])
        };
        steps.push(Step::CreateVeth {
            namespace: ns(&main.node),
            name: main.interface.clone(),
            index: main_index,
            master: master_of(main),
            peer_namespace: ns(&peer.node),
            peer_name: peer.interface.clone(),
            peer_index,
        });
        steps.push(Step::SetLinkUp {
            namespace: ns(&peer.node),
            interface: peer.interface.clone(),
            index: peer_index,
        });
        if let Some(master) = master_of(peer) {
            steps.push(Step::SetMaster {
                namespace: ns(&peer.node),
                interface: peer.interface.clone(),
                index: peer_index,
                master,
            });
        }
        let main_iface = Iface {
            node: main.node.clone(),
            name: main.interface.clone(),
            index: main_index,
        };
        let peer_iface = Iface {
            node: peer.node.clone(),
            name: peer.interface.clone(),
            index: peer_index,
        };
        link_ifaces.push((main_iface.clone(), peer_iface.clone()));
        ifaces.push(main_iface);
        ifaces.push(peer_iface);
    }

    for node in &topology.nodes {
        for bridge in &node.bridges {
            let index = bridge_index[&(node.name.clone(), bridge.name.clone())];
            for address in &bridge.addresses {
                steps.push(Step::AddAddress {
                    namespace: ns(&node.name),
                    interface: bridge.name.clone(),
                    index,
                    address: *address,
                });
            }
        }
    }
    for (link, (main, peer)) in topology.links.iter().zip(&link_ifaces) {
        for iface in [main, peer] {
            let end = if link.a.node == iface.node {
                &link.a
            } else {
                &link.b
            };
            for address in &end.addresses {
                steps.push(Step::AddAddress {
                    namespace: ns(&iface.node),
                    interface: iface.name.clone(),
                    index: iface.index,
                    address: *address,
                });
            }
        }
    }

    for route in routes::compute(topology, &ifaces) {
        steps.push(Step::AddRoute {
            namespace: ns(&route.node),
            to: route.to,
            via: route.via,
            interface: route.iface.name.clone(),
            index: route.iface.index,
        });
    }

    for (link, (main, peer)) in topology.links.iter().zip(&link_ifaces) {
        if let Some(impairment) = link.impairment {
            for iface in [main, peer] {
                steps.push(Step::AddNetem {
                    namespace: ns(&iface.node),
                    interface: iface.name.clone(),
                    index: iface.index,
                    impairment,
                });
            }
        }
    }

    Plan {
        lab: topology.name.clone(),
        steps,
    }
}

fn topology_uses_v6(topology: &Topology) -> bool {
    let bridge = topology
        .nodes
        .iter()
        .flat_map(|n| &n.bridges)
        .flat_map(|b| &b.addresses);
    let ends = topology
        .links
        .iter()
        .flat_map(|l| l.a.addresses.iter().chain(&l.b.addresses));
    bridge.chain(ends).any(|a| matches!(a, IpNet::V6(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lab_plan() {
        let plan = build(&Topology::builtin());
        insta::assert_yaml_snapshot!(plan);
    }

    #[test]
    fn namespaces_are_prefixed_with_the_lab() {
        let plan = build(&Topology::builtin());
        assert_eq!(
            plan.namespaces(),
            [
                "roam-core",
                "roam-fixed1",
                "roam-fixed2",
                "roam-home",
                "roam-visited"
            ]
        );
    }

    #[test]
    fn indexes_are_unique_per_namespace() {
        let plan = build(&Topology::builtin());
        let mut seen = std::collections::HashSet::new();
        for step in &plan.steps {
            match step {
                Step::CreateBridge {
                    namespace, index, ..
                } => assert!(seen.insert((namespace.clone(), *index))),
                Step::CreateVeth {
                    namespace,
                    index,
                    peer_namespace,
                    peer_index,
                    ..
                } => {
                    assert!(seen.insert((namespace.clone(), *index)));
                    assert!(seen.insert((peer_namespace.clone(), *peer_index)));
                }
                _ => {}
            }
        }
    }
}
