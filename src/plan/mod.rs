//! Topology → an ordered list of kernel objects to create. Pure: no I/O, so the whole
//! plan is snapshot-tested without root, and the executor only has to apply it.
//!
//! Interface indexes are chosen here (each namespace numbers its own from 2; `lo` is 1),
//! so later steps name their links by index without asking the kernel.

mod routes;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::Serialize;

use crate::topology::{Impairment, Role, Topology};

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
    /// Sysctls of interfaces made before (a cell bridge's own), written inside the
    /// namespace; they go with their interfaces.
    SetSysctls {
        namespace: String,
        sysctls: Vec<Sysctl>,
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
        /// The peer's link-layer address; the kernel picks one at random without it.
        #[serde(skip_serializing_if = "Option::is_none")]
        peer_mac: Option<[u8; 6]>,
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
    /// A tbf root qdisc on an interface: a link that only limits the rate needs no netem.
    AddRateLimit {
        namespace: String,
        interface: String,
        index: u32,
        rate_bps: u64,
    },
    /// A netem root qdisc on an interface.
    AddNetem {
        namespace: String,
        interface: String,
        index: u32,
        impairment: Impairment,
    },
    /// A tunnel between two routers (Fig. 3), up at creation: IPIP where the kernel has it
    /// loaded, else VXLAN over UDP 4789 (this plan's addresses and routes suit both).
    CreateTunnel {
        namespace: String,
        name: String,
        index: u32,
        local: Ipv4Addr,
        remote: Ipv4Addr,
        id: u32,
    },
    /// Only the tunnel's peer may send into it: packets for `local`'s tunnel (VXLAN's UDP
    /// port, or IPIP) from any other source are dropped before the tunnel sees them (a
    /// VXLAN device takes frames from anyone who knows its port). The rules must come
    /// before the local table's, which moves from priority 0 to just after them.
    GuardTunnel {
        namespace: String,
        local: Ipv4Addr,
        peer: Ipv4Addr,
    },
    /// Policy routing of a tunnel-mode visited router: packets from `from` that arrive on
    /// `in_interface` (the cell) look up `table`, whose one route sends everything back
    /// through the tunnel.
    AddSourceRoute {
        namespace: String,
        from: IpNet,
        in_interface: String,
        table: u32,
        via: IpAddr,
        interface: String,
        index: u32,
    },
    /// Binds a bridge port to the link-layer address of the one device behind it, as an
    /// air interface binds a radio link to the subscriber it authenticated: a static FDB
    /// entry for the peer's address, then the port locked (IFLA_BRPORT_LOCKED), so frames
    /// from any other source address are dropped by the bridge, and isolated
    /// (IFLA_BRPORT_ISOLATED): it reaches the network, never another terminal directly.
    LockPort {
        namespace: String,
        interface: String,
        index: u32,
        peer_namespace: String,
        /// The link-layer address of the device behind the port, as the plan gave it.
        peer_mac: [u8; 6],
    },
}

impl Step {
    /// The namespace this step works in (for a veth, the one the request is sent to).
    pub fn namespace(&self) -> &str {
        match self {
            Step::CreateNamespace { namespace, .. }
            | Step::SetLinkUp { namespace, .. }
            | Step::CreateBridge { namespace, .. }
            | Step::SetSysctls { namespace, .. }
            | Step::CreateVeth { namespace, .. }
            | Step::SetMaster { namespace, .. }
            | Step::AddAddress { namespace, .. }
            | Step::AddRoute { namespace, .. }
            | Step::AddNetem { namespace, .. }
            | Step::AddRateLimit { namespace, .. }
            | Step::CreateTunnel { namespace, .. }
            | Step::GuardTunnel { namespace, .. }
            | Step::AddSourceRoute { namespace, .. }
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
            Step::SetSysctls { namespace, sysctls } => {
                let keys: Vec<String> = sysctls
                    .iter()
                    .map(|s| format!("{} = {}", s.key, s.value))
                    .collect();
                format!("set {} in {namespace}", keys.join(", "))
            }
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
            Step::AddRateLimit {
                namespace,
                interface,
                rate_bps,
                ..
            } => format!("limit {namespace}/{interface} to {rate_bps} bit/s"),
            Step::CreateTunnel {
                namespace,
                name,
                local,
                remote,
                ..
            } => format!("create tunnel {namespace}/{name} from {local} to {remote}"),
            Step::GuardTunnel {
                namespace,
                local,
                peer,
            } => format!("let only {peer} into the tunnel at {local} in {namespace}"),
            Step::AddSourceRoute {
                namespace,
                from,
                in_interface,
                via,
                interface,
                ..
            } => format!(
                "route packets from {from} on {in_interface} via {via} dev {interface} in {namespace}"
            ),
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
        if node.bridges.iter().any(|b| b.pool.is_some()) {
            // A cell's network routes between its terminals without telling them to
            // reach each other directly (they cannot: see the cell's sysctls below).
            sysctls.push(sysctl("net/ipv4/conf/all/send_redirects", "0"));
            sysctls.push(sysctl("net/ipv4/conf/default/send_redirects", "0"));
        }
        if node.role == Role::Core && !topology.tunnels().is_empty() {
            // Strict reverse-path filtering: nobody behind one port of the core sends with
            // an address that lives behind another, so none can forge a tunnel's source.
            sysctls.push(sysctl("net/ipv4/conf/all/rp_filter", "1"));
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
            if bridge.pool.is_some() {
                // A cell: its terminals' ports are isolated (as a radio network's
                // terminals are from each other), so the network answers ARP for one
                // terminal to another, at once, and routes between them.
                let conf = |key: &str| format!("net/ipv4/conf/{}/{key}", bridge.name);
                steps.push(Step::SetSysctls {
                    namespace: ns(&node.name),
                    sysctls: vec![
                        sysctl(&conf("proxy_arp_pvlan"), "1"),
                        sysctl(&format!("net/ipv4/neigh/{}/proxy_delay", bridge.name), "0"),
                    ],
                });
            }
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
            peer_mac: None,
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

    // Tunnels last, after every other link of their namespaces.
    for tunnel in topology.tunnels() {
        let home_index = alloc(&tunnel.home);
        let visited_index = alloc(&tunnel.visited);
        let ends = [
            (
                &tunnel.home,
                &tunnel.home_interface,
                home_index,
                tunnel.home_local,
                tunnel.visited_local,
                tunnel.home_inner,
            ),
            (
                &tunnel.visited,
                &tunnel.visited_interface,
                visited_index,
                tunnel.visited_local,
                tunnel.home_local,
                tunnel.visited_inner,
            ),
        ];
        for (node, name, index, local, remote, inner) in ends {
            steps.push(Step::CreateTunnel {
                namespace: ns(node),
                name: name.clone(),
                index,
                local,
                remote,
                id: tunnel.id,
            });
            steps.push(Step::AddAddress {
                namespace: ns(node),
                interface: name.clone(),
                index,
                address: IpNet::V4(inner),
            });
            steps.push(Step::GuardTunnel {
                namespace: ns(node),
                local,
                peer: remote,
            });
        }
        for net in &tunnel.cell_nets {
            steps.push(Step::AddRoute {
                namespace: ns(&tunnel.home),
                to: IpNet::V4(*net),
                via: IpAddr::V4(tunnel.visited_inner.addr()),
                interface: tunnel.home_interface.clone(),
                index: home_index,
            });
        }
        let visited = topology.node(&tunnel.visited).expect("a validated tunnel");
        for bridge in visited.bridges.iter().filter(|b| b.pool.is_some()) {
            let nets: std::collections::BTreeSet<IpNet> = bridge
                .addresses
                .iter()
                .filter(|a| a.addr().is_ipv4())
                .map(IpNet::trunc)
                .collect();
            for from in nets {
                steps.push(Step::AddSourceRoute {
                    namespace: ns(&tunnel.visited),
                    from,
                    in_interface: bridge.name.clone(),
                    table: crate::topology::TUNNEL_TABLE,
                    via: IpAddr::V4(tunnel.home_inner.addr()),
                    interface: tunnel.visited_interface.clone(),
                    index: visited_index,
                });
            }
        }
    }

    for (link, (main, peer)) in topology.links.iter().zip(&link_ifaces) {
        if let Some(impairment) = link.impairment {
            let rate_only = Impairment {
                rate_bps: 0,
                ..impairment
            } == Impairment::default();
            for iface in [main, peer] {
                let (namespace, interface, index) =
                    (ns(&iface.node), iface.name.clone(), iface.index);
                steps.push(if rate_only && impairment.rate_bps > 0 {
                    Step::AddRateLimit {
                        namespace,
                        interface,
                        index,
                        rate_bps: impairment.rate_bps,
                    }
                } else {
                    Step::AddNetem {
                        namespace,
                        interface,
                        index,
                        impairment,
                    }
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

    /// Fig. 3: every node reaches the tunnel-mode cell through home, home through the
    /// tunnel, and the cell's own packets go back through it; the tunnels come last.
    #[test]
    fn a_tunnel_mode_cell_is_reached_through_home_and_answers_through_the_tunnel() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/labs/tunnel.yaml");
        let plan = build(&Topology::load(std::path::Path::new(path)).unwrap());
        let route = |ns: &str| {
            plan.steps.iter().find_map(|s| match s {
                Step::AddRoute {
                    namespace,
                    to,
                    via,
                    interface,
                    ..
                } if namespace == ns && to.to_string() == "198.18.64.0/24" => {
                    Some(format!("{via} {interface}"))
                }
                _ => None,
            })
        };
        assert_eq!(route("tunnel-core").as_deref(), Some("198.18.0.2 eth-home"));
        assert_eq!(route("tunnel-fixed1").as_deref(), Some("203.0.113.1 eth0"));
        assert_eq!(
            route("tunnel-visited").as_deref(),
            Some("198.18.0.5 eth-core")
        );
        assert_eq!(
            route("tunnel-home").as_deref(),
            Some("198.19.255.254 tnl-tunnelled")
        );
        assert_eq!(route("tunnel-tunnelled"), None, "its own cell is connected");
        let source_routes: Vec<String> = plan
            .steps
            .iter()
            .filter(|s| matches!(s, Step::AddSourceRoute { .. }))
            .map(Step::describe)
            .collect();
        assert_eq!(
            source_routes,
            ["route packets from 198.18.64.0/24 on cell via 198.19.255.253 dev tnl-home in tunnel-tunnelled"]
        );
        let guards: Vec<String> = plan
            .steps
            .iter()
            .filter(|s| matches!(s, Step::GuardTunnel { .. }))
            .map(Step::describe)
            .collect();
        assert_eq!(
            guards,
            [
                "let only 198.18.0.10 into the tunnel at 198.18.0.2 in tunnel-home",
                "let only 198.18.0.2 into the tunnel at 198.18.0.10 in tunnel-tunnelled"
            ]
        );
        // The highest index of its namespace: made after every other link.
        for step in &plan.steps {
            if let Step::CreateTunnel {
                namespace, index, ..
            } = step
            {
                let others = plan.steps.iter().filter_map(|s| match s {
                    Step::CreateBridge {
                        namespace: n,
                        index: i,
                        ..
                    }
                    | Step::CreateVeth {
                        namespace: n,
                        index: i,
                        ..
                    } if n == namespace => Some(*i),
                    Step::CreateVeth {
                        peer_namespace: n,
                        peer_index: i,
                        ..
                    } if n == namespace => Some(*i),
                    _ => None,
                });
                assert!(
                    others.into_iter().all(|i| i < *index),
                    "{}",
                    step.describe()
                );
            }
        }
        let core = plan.steps.iter().find_map(|s| match s {
            Step::CreateNamespace { namespace, sysctls } if namespace == "tunnel-core" => {
                Some(sysctls.clone())
            }
            _ => None,
        });
        assert!(core
            .unwrap()
            .contains(&sysctl("net/ipv4/conf/all/rp_filter", "1")));
    }

    /// A link that only limits the rate gets tbf (which kernels without netem have); one
    /// that delays or loses gets netem.
    #[test]
    fn a_rate_alone_is_a_tbf_limit_and_anything_more_is_netem() {
        let lab = |impairment: &str| {
            let text = format!(
                "name: rl\nnodes:\n  a: {{}}\n  b: {{}}\nlinks:\n  - endpoints:\n      - {{ node: a, addresses: [198.18.0.1/30] }}\n      - {{ node: b, addresses: [198.18.0.2/30] }}\n    impairment: {impairment}\n"
            );
            build(&Topology::parse(&text, "rl.yaml").unwrap())
                .steps
                .iter()
                .filter_map(|s| match s {
                    Step::AddRateLimit { .. } => Some("tbf"),
                    Step::AddNetem { .. } => Some("netem"),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(lab("{ rate: 2mbit }"), ["tbf", "tbf"]);
        assert_eq!(lab("{ rate: 2mbit, delay: 5ms }"), ["netem", "netem"]);
    }
}
