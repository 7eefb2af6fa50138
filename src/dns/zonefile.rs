//! Zone files and root hints from the topology. Pure text generation, snapshot-tested.
//!
//! Every zone gets an SOA whose minimum (and TTL) is the zone's negative TTL, an NS record
//! naming its server, and a delegation in its nearest enclosing zone of the lab (usually
//! the lab's root), with the server's address where that zone is authoritative for it.
//!
//! Servers are named `ns-<node>.example.`: outside every delegated zone, so the root
//! answers their addresses with authority. (hickory-server sends referrals without glue,
//! so a name like `ns.home.example.` could never be resolved from the root.)

use std::net::IpAddr;

use crate::topology::{Topology, Zone};

/// The host name of a node's DNS server.
pub fn server_name(node: &str) -> String {
    format!("ns-{node}.example.")
}

fn server_address(topology: &Topology, node: &str) -> Option<IpAddr> {
    topology.dns_of(node).map(|(address, _)| address)
}

/// Whether `name` (a domain without trailing dot, or ".") lies inside zone `zone`.
pub fn within(name: &str, zone: &str) -> bool {
    let name = name.trim_end_matches('.');
    zone == "." || name == zone || name.ends_with(&format!(".{zone}"))
}

/// The name of the nearest enclosing zone of `name` among `zones`: its parent domains are
/// tried from the nearest up (a few label steps, whatever the number of zones).
fn parent_of<'a>(name: &str, zones: &std::collections::HashSet<&'a str>) -> Option<&'a str> {
    let mut rest = name.trim_end_matches('.');
    if rest.is_empty() {
        return None; // the root has no parent
    }
    while let Some((_, up)) = rest.split_once('.') {
        if let Some(zone) = zones.get(up) {
            return Some(zone);
        }
        rest = up;
    }
    zones.get(".").copied()
}

fn address_record(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "A"
    } else {
        "AAAA"
    }
}

/// The master file of one zone.
pub fn zone_text(topology: &Topology, zone: &Zone) -> String {
    let origin = zone.fqdn();
    let ns = server_name(&zone.server);
    let neg = zone.negative_ttl;
    let contact = if zone.name == "." {
        "hostmaster.example.".to_string()
    } else {
        format!("hostmaster.{origin}")
    };
    let mut lines = vec![
        format!("$ORIGIN {origin}"),
        format!("$TTL {neg}"),
        format!("@ {neg} IN SOA {ns} {contact} 1 3600 600 86400 {neg}"),
        format!("@ IN NS {ns}"),
    ];
    let address_of = |node: &str, name: &str, lines: &mut Vec<String>| {
        if let Some(ip) = server_address(topology, node).filter(|_| within(name, &zone.name)) {
            let line = format!("{name} IN {} {ip}", address_record(ip));
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
    };
    address_of(&zone.server, &ns, &mut lines);
    let names: std::collections::HashSet<&str> =
        topology.zones.iter().map(|z| z.name.as_str()).collect();
    for child in topology
        .zones
        .iter()
        .filter(|c| parent_of(&c.name, &names) == Some(zone.name.as_str()))
    {
        let child_ns = server_name(&child.server);
        lines.push(format!("{} IN NS {child_ns}", child.fqdn()));
        address_of(&child.server, &child_ns, &mut lines);
    }
    for r in &zone.records {
        let ttl = r.ttl.map(|t| format!(" {t}")).unwrap_or_default();
        lines.push(format!("{}{ttl} IN {} {}", r.name, r.rtype, r.data));
    }
    lines.join("\n") + "\n"
}

/// Root hints for the lab's resolver: the servers of the lab's root zone.
pub fn root_hints(topology: &Topology) -> Option<String> {
    let root = topology.zones.iter().find(|z| z.name == ".")?;
    let ns = server_name(&root.server);
    let ip = server_address(topology, &root.server)?;
    Some(format!(
        ". 3600000 IN NS {ns}\n{ns} 3600000 IN {} {ip}\n",
        address_record(ip)
    ))
}

/// Zones served by one node, in the order the topology lists them.
pub fn zones_of<'a>(topology: &'a Topology, node: &str) -> Vec<&'a Zone> {
    topology.zones.iter().filter(|z| z.server == node).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lab_zones() {
        let t = Topology::builtin();
        let mut all = String::new();
        for zone in &t.zones {
            all.push_str(&format!(
                ";; served by {}\n{}\n",
                zone.server,
                zone_text(&t, zone)
            ));
        }
        all.push_str(&format!(";; root hints\n{}", root_hints(&t).unwrap()));
        insta::assert_snapshot!(all);
    }

    #[test]
    fn the_default_lab_has_root_home_visited_and_reverse_zones() {
        let t = Topology::builtin();
        let names: Vec<(&str, &str)> = t
            .zones
            .iter()
            .map(|z| (z.name.as_str(), z.server.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (".", "core"),
                ("home.example", "home"),
                ("visited.example", "visited"),
                ("100.51.198.in-addr.arpa", "visited")
            ]
        );
    }

    /// Issue 12, finding 4: the parent of a zone was found by scanning every zone, for every
    /// zone (cubic in the number of zones); now by walking up its labels.
    #[test]
    fn the_nearest_enclosing_zone_by_its_labels() {
        let zones: std::collections::HashSet<&str> = [
            ".",
            "home.example",
            "in-addr.arpa",
            "100.51.198.in-addr.arpa",
            "51.198.in-addr.arpa",
        ]
        .into_iter()
        .collect();
        assert_eq!(
            parent_of("100.51.198.in-addr.arpa", &zones),
            Some("51.198.in-addr.arpa")
        );
        assert_eq!(
            parent_of("51.198.in-addr.arpa", &zones),
            Some("in-addr.arpa")
        );
        assert_eq!(parent_of("home.example", &zones), Some("."));
        assert_eq!(parent_of("in-addr.arpa", &zones), Some("."));
        assert_eq!(parent_of(".", &zones), None);
        let no_root: std::collections::HashSet<&str> = ["home.example"].into_iter().collect();
        assert_eq!(parent_of("home.example", &no_root), None);
    }
}
