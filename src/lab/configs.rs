//! What `up` tells each agent: the topology turned into the agents' configuration files
//! (the types are the contract's, [`crate::contract::configs`]), and the DNS servers'
//! zone files and keys. Every directory an agent is granted exists before it starts.

use std::io;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::contract::configs::{
    hex, DhcpConfig, DnsAgentConfig, DnsTarget, HlrConfig, KeyRef, PartnerHlr, PartnerPool,
    RelayConfig, ResolverConfig, SubscriberRecord, VlrConfig, ZoneConfig,
};
use crate::contract::{AgentKind, LabDir};
use crate::dns::keys::{key_name, TsigKey};
use crate::dns::zonefile;
use crate::json_file::private_dir;
use crate::json_file::write_private_json;
use crate::topology::{NameSource, Node, Relay, Role, Service, Topology, Zone, DEFAULT_LEASE_SECS};

/// The target for `zone` if `node` serves it in `topology`.
fn dns_target(topology: &Topology, lab: &LabDir, node: &str, zone: &str) -> Option<DnsTarget> {
    let z = topology
        .zones
        .iter()
        .find(|z| z.server == node && z.name == zone)?;
    zone_target(topology, lab, z)
}

/// Where updates of `zone` go, signed with the key of the node that may make them.
fn zone_target(topology: &Topology, lab: &LabDir, zone: &Zone) -> Option<DnsTarget> {
    let (address, _) = topology.dns_of(&zone.server)?;
    let signer = zone.signer();
    Some(DnsTarget {
        server: SocketAddr::new(address, 53),
        zone: zone.fqdn(),
        key_name: key_name(signer),
        key_file: lab.key_file(signer),
        ttl: zone.ttl,
    })
}

/// Writes the HLR, VLR and DHCP configurations of a new lab, and makes the directories
/// their sockets live in.
pub fn write_agent_configs(topology: &Topology, lab: &LabDir) -> io::Result<()> {
    private_dir(&lab.signaling())?;
    let events_file = lab.events();
    // Every path an agent is granted exists before the agent starts.
    crate::events::create(&events_file)?;
    let socket_dir =
        |socket: std::path::PathBuf| private_dir(socket.parent().expect("a socket's directory"));
    let runs = |node: &Node, kind: &Service| node.services.contains(kind);
    for node in &topology.nodes {
        if node.role == Role::Home && runs(node, &Service::Hlr) {
            private_dir(&lab.agent_dir(AgentKind::Hlr, &node.name))?;
            socket_dir(lab.hlr_socket(&node.name))?;
            let config = hlr_config(topology, lab, node);
            write_private_json(&lab.agent_config(AgentKind::Hlr, &node.name), &config)?;
        }
        let vlr = node.vlr();
        if let (Role::Visited | Role::Home, Some((implicit_detach_s, name_source))) =
            (node.role, vlr)
        {
            private_dir(&lab.agent_dir(AgentKind::Vlr, &node.name))?;
            private_dir(&lab.vlr_published(&node.name))?;
            socket_dir(lab.cell_socket(&node.name))?;
            socket_dir(lab.vlr_local_socket(&node.name))?;
            let config = vlr_config(topology, lab, node, implicit_detach_s, name_source);
            write_private_json(&lab.agent_config(AgentKind::Vlr, &node.name), &config)?;
        }
        let serves_dhcp = node
            .services
            .iter()
            .any(|s| matches!(s, Service::Dhcp { .. }));
        if matches!(node.role, Role::Visited | Role::Home) && serves_dhcp {
            if let Some(config) = dhcp_config(topology, lab, node) {
                private_dir(&lab.agent_dir(AgentKind::Dhcp, &node.name))?;
                write_private_json(&lab.agent_config(AgentKind::Dhcp, &node.name), &config)?;
            }
        }
    }
    Ok(())
}

fn hlr_config(topology: &Topology, lab: &LabDir, node: &Node) -> HlrConfig {
    let visited: Vec<&Node> = topology
        .nodes
        .iter()
        .filter(|v| {
            (v.role == Role::Visited && v.partners.contains(&node.name))
                || (v.name == node.name && v.vlr().is_some())
        })
        .collect();
    // A partner's cell pools and its relays' pools: the only session addresses it may
    // report.
    let partner_pools = visited
        .iter()
        .flat_map(|v| {
            v.pools().into_iter().map(|p| PartnerPool {
                network: v.name.clone(),
                start: p.start,
                end: p.end,
            })
        })
        .collect();
    let subscribers = topology
        .subscribers
        .iter()
        .filter(|s| s.home == node.name)
        .map(|s| SubscriberRecord {
            name: s.name.clone(),
            imsi: s.imsi.clone(),
            msisdn: s.msisdn.clone(),
            host_name: s.hostname.clone(),
            k: hex(&s.k),
            opc: hex(&s.opc),
            roaming: s.roaming,
            packet_data: s.packet_data,
            ttl: s.ttl,
        })
        .collect();
    HlrConfig {
        name: node.name.clone(),
        socket: lab.hlr_socket(&node.name),
        state_file: lab.hlr_state(&node.name),
        events_file: lab.events(),
        partners: visited.iter().map(|v| v.name.clone()).collect(),
        partner_pools,
        subscribers,
        dns: node
            .domain
            .as_deref()
            .and_then(|d| dns_target(topology, lab, &node.name, d)),
    }
}

fn vlr_config(
    topology: &Topology,
    lab: &LabDir,
    node: &Node,
    implicit_detach_s: u64,
    name_source: NameSource,
) -> VlrConfig {
    let partners = (node.hlr_partners().into_iter())
        .filter_map(|p| topology.node(p))
        .filter_map(|home| {
            Some(PartnerHlr {
                network: home.name.clone(),
                plmn: home.plmn.clone()?,
                socket: lab.hlr_socket(&home.name),
                address: home.external_hlr,
            })
        })
        .collect();
    VlrConfig {
        name: node.name.clone(),
        cell_socket: lab.cell_socket(&node.name),
        local_socket: lab.vlr_local_socket(&node.name),
        attached_file: lab.vlr_attached(&node.name),
        cell_links: lab.vlr_cell_links(&node.name),
        events_file: lab.events(),
        partners,
        implicit_detach_s,
        name_source,
        gsup_tap: Some(lab.gsup_tap(&node.name)),
    }
}

fn dhcp_config(topology: &Topology, lab: &LabDir, node: &Node) -> Option<DhcpConfig> {
    let bridge = node.bridges.iter().find(|b| b.pool.is_some())?;
    let pool = bridge.pool?;
    let (IpAddr::V4(start), IpAddr::V4(end)) = (pool.start, pool.end) else {
        return None;
    };
    let own = bridge.addresses.iter().find_map(|a| match a {
        IpNet::V4(v4) if v4.contains(&start) => Some(*v4),
        _ => None,
    })?;
    let dns_servers = match topology.resolver() {
        Some(IpAddr::V4(r)) => vec![r],
        _ => Vec::new(),
    };
    // Its own reverse zones, or (in tunnel mode) its home's for the cell's home addresses.
    let reverse_zones = topology
        .zones
        .iter()
        .filter(|z| z.signer() == node.name && z.name.ends_with("in-addr.arpa"))
        .filter_map(|z| zone_target(topology, lab, z))
        .collect();
    let (lease_secs, relays, rapid_commit) = node
        .services
        .iter()
        .find_map(|s| match s {
            Service::Dhcp {
                lease_secs,
                relays,
                rapid_commit,
            } => Some((*lease_secs, relays.as_slice(), *rapid_commit)),
            _ => None,
        })
        .unwrap_or((DEFAULT_LEASE_SECS, &[], true));
    let relays = relays
        .iter()
        .filter_map(|r| relay_config(topology, node, r))
        .collect();
    Some(DhcpConfig {
        name: node.name.clone(),
        interface: bridge.name.clone(),
        server_ip: own.addr(),
        prefix_len: own.prefix_len(),
        pool_start: start,
        pool_end: end,
        router: own.addr(),
        dns_servers,
        lease_secs,
        rapid_commit,
        vlr_attached: lab.vlr_attached(&node.name),
        vlr_local_socket: lab.vlr_local_socket(&node.name),
        leases_file: lab.dhcp_leases(&node.name),
        probation_file: lab.dhcp_probation(&node.name),
        held_file: lab.dhcp_held(&node.name),
        queue_file: lab.dhcp_queue(&node.name),
        reverse_zones,
        events_file: lab.events(),
        relays,
        name_source: node.vlr().map(|(_, source)| source).unwrap_or_default(),
        mode: node.mode,
    })
}

/// Where the server meets relay `r`: its interface on the point-to-point link whose subnet
/// holds the relay's address, and its own address there. Validation placed every relay at
/// the far end of such a link.
fn relay_config(topology: &Topology, node: &Node, r: &Relay) -> Option<RelayConfig> {
    let on_link = |a: &IpNet| match a {
        IpNet::V4(v4) if v4.contains(&r.address) => Some(v4.addr()),
        _ => None,
    };
    let (interface, local) = topology
        .links
        .iter()
        .flat_map(|l| [&l.a, &l.b])
        .filter(|e| e.node == node.name)
        .find_map(|e| {
            let local = e.addresses.iter().find_map(on_link)?;
            Some((
                e.bridge.clone().unwrap_or_else(|| e.interface.clone()),
                local,
            ))
        })
        .or_else(|| {
            node.bridges.iter().find_map(|b| {
                let local = b.addresses.iter().find_map(on_link)?;
                Some((b.name.clone(), local))
            })
        })?;
    let (IpAddr::V4(pool_start), IpAddr::V4(pool_end)) = (r.pool.start, r.pool.end) else {
        return None;
    };
    Some(RelayConfig {
        address: r.address,
        interface,
        local,
        subnet: r.subnet,
        pool_start,
        pool_end,
        router: r.router,
    })
}

/// Writes, for a new lab, every DNS server's zone files, key and agent configuration, each
/// server in a directory of its own. A journal of an earlier lab of the same name never
/// survives into a new one: the state directory is new, and any journal found is removed.
pub fn write_dns_configs(topology: &Topology, lab: &LabDir) -> io::Result<()> {
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
    // A key for every DNS server, and for every other node a zone names as its updater.
    let signers: std::collections::BTreeSet<&str> = topology
        .nodes
        .iter()
        .filter(|n| topology.dns_of(&n.name).is_some())
        .map(|n| n.name.as_str())
        .chain(topology.zones.iter().map(Zone::signer))
        .collect();
    for signer in signers {
        TsigKey::generate(signer)?.write(lab, signer)?;
    }
    for node in &topology.nodes {
        let Some((listen, resolver)) = topology.dns_of(&node.name) else {
            continue;
        };
        private_dir(&lab.agent_dir(AgentKind::Dns, &node.name))?;
        let mut zones = Vec::new();
        for zone in zonefile::zones_of(topology, &node.name) {
            let file_stem = if zone.name == "." {
                "root".to_string()
            } else {
                zone.name.clone()
            };
            let zone_file = lab.dns_file(&node.name, &format!("{file_stem}.zone"));
            let journal = lab.dns_file(&node.name, &format!("{file_stem}.jrnl"));
            std::fs::write(&zone_file, zonefile::zone_text(topology, zone))?;
            match std::fs::remove_file(&journal) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            // The root is the lab's fixed frame; the networks' own zones take updates.
            let update_key = (zone.name != ".").then(|| KeyRef {
                name: key_name(zone.signer()),
                file: lab.key_file(zone.signer()),
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
                let roots_file = lab.dns_file(&node.name, "root.hints");
                std::fs::write(&roots_file, hints)?;
                Some(ResolverConfig {
                    listen,
                    roots_file,
                    allow_servers: lab_nets.clone(),
                })
            }
            _ => None,
        };
        let server = node
            .services
            .iter()
            .find_map(|s| match s {
                Service::Dns { server, .. } => Some(*server),
                _ => None,
            })
            .unwrap_or_default();
        let config = DnsAgentConfig {
            server,
            listen,
            zones,
            resolver,
        };
        write_private_json(&lab.agent_config(AgentKind::Dns, &node.name), &config)?;
    }
    Ok(())
}
