//! Raw topology → validated [`Topology`]: every name, reference, address and subnet is
//! checked here, before anything touches the kernel. The first problem found is
//! reported with the file, line and column of the field that holds it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use super::locate::{locate, FieldPath};
use super::raw::{
    RawEndpoint, RawImpairment, RawNode, RawRelay, RawService, RawSubscriber, RawTopology, RawZone,
};
use super::units::{parse_duration_us, parse_percent, parse_rate_bps};
use super::{
    Bridge, DnsServer, Endpoint, Impairment, Link, Mode, NameSource, Node, Pool, Relay, Role,
    Service, StaticRecord, StaticRoute, Subscriber, Topology, Zone, DEFAULT_IMPLICIT_DETACH_S,
};

/// Lease time of a dhcp service that does not say (seconds).
pub const DEFAULT_LEASE_SECS: u64 = 600;
/// The longest implicit-detach time a VLR takes (a day, in seconds).
const MAX_IMPLICIT_DETACH_S: u64 = 86_400;
/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;
/// Lab names are short so that `<lab>-<node>` stays readable; they hold no `-`.
const MAX_LAB_NAME: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("{file}: cannot read the topology: {cause}")]
    Read { file: String, cause: String },
    #[error("{at}: {message}")]
    Syntax { at: String, message: String },
    #[error("{at}: {field}: {message}")]
    Invalid {
        at: String,
        field: String,
        message: String,
    },
}

type Result<T> = std::result::Result<T, TopologyError>;

pub(super) fn parse(source: &str, origin: &str) -> Result<Topology> {
    if source.len() as u64 > super::limits::MAX_BYTES {
        return Err(TopologyError::Read {
            file: origin.to_string(),
            cause: format!(
                "{} bytes is more than the limit of {} bytes",
                source.len(),
                super::limits::MAX_BYTES
            ),
        });
    }
    super::limits::check_expansion(source).map_err(|e| TopologyError::Syntax {
        at: format!("{origin}:{}:{}", e.line, e.col),
        message: e.message,
    })?;
    let raw: RawTopology = serde_yaml::from_str(source).map_err(|e| syntax(origin, &e))?;
    Validator { source, origin }.topology(raw)
}

fn syntax(origin: &str, error: &serde_yaml::Error) -> TopologyError {
    let text = error.to_string();
    // serde_yaml appends " at line L column C"; we put the location first instead.
    let message = match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    };
    let at = match error.location() {
        Some(loc) => format!("{origin}:{}:{}", loc.line(), loc.column()),
        None => origin.to_string(),
    };
    TopologyError::Syntax { at, message }
}

struct Validator<'a> {
    source: &'a str,
    origin: &'a str,
}

/// Where each address of the lab sits, for uniqueness and subnet checks.
struct AddressUse {
    node: String,
    path: FieldPath,
}

impl Validator<'_> {
    fn fail<T>(&self, path: &FieldPath, message: impl Into<String>) -> Result<T> {
        let at = match locate(self.source, path) {
            Some((line, col)) => format!("{}:{line}:{col}", self.origin),
            None => self.origin.to_string(),
        };
        Err(TopologyError::Invalid {
            at,
            field: path.to_string(),
            message: message.into(),
        })
    }

    fn topology(&self, raw: RawTopology) -> Result<Topology> {
        let root = FieldPath::default();
        self.lab_name(&raw.name, &root.key("name"))?;
        use super::limits::{MAX_LINKS, MAX_NODES, MAX_SUBSCRIBERS};
        for (field, count, limit) in [
            ("nodes", raw.nodes.len(), MAX_NODES),
            ("links", raw.links.len(), MAX_LINKS),
            ("subscribers", raw.subscribers.len(), MAX_SUBSCRIBERS),
        ] {
            if count > limit {
                return self.fail(
                    &root.key(field),
                    format!("{count} {field} is more than the limit of {limit}"),
                );
            }
        }
        if raw.nodes.is_empty() {
            return self.fail(&root.key("nodes"), "a lab needs at least one node");
        }
        let mut nodes = Vec::new();
        for (name, node) in &raw.nodes {
            nodes.push(self.node(name, node, &root.key("nodes").key(name))?);
        }
        self.unique_domains(&nodes)?;
        let links = self.links(&raw, &nodes)?;
        self.interfaces_unique(&nodes, &links)?;
        self.addresses(&nodes, &links)?;
        // Services come last among a node's parts: where they listen depends on the
        // addresses its links give it.
        for node in nodes.iter_mut() {
            let own = node_addresses(node, &links);
            let path = root.key("nodes").key(&node.name).key("services");
            node.services =
                self.services(&raw.nodes[&node.name].services, node.role, &own, &path)?;
            // A terminal's word is verified by its home, which no-update never asks.
            let from_terminals = node.services.iter().position(|s| {
                matches!(
                    s,
                    Service::Vlr {
                        name_source: NameSource::Terminal,
                        ..
                    }
                )
            });
            if let (Mode::NoUpdate, Some(i)) = (node.mode, from_terminals) {
                return self.fail(
                    &path.index(i).key("name_source"),
                    "a terminal's host name must be verified by its home, \
                     and mode no-update never asks it",
                );
            }
        }
        for node in &nodes {
            self.node_references(node, &nodes, &links)?;
        }
        self.tunnels(&nodes, &links)?;
        let zones = self.zones(&raw.zones, &nodes)?;
        let subscribers = self.subscribers(&raw.subscribers, &nodes)?;
        self.plmns(&raw, &mut nodes, &subscribers)?;
        Ok(Topology {
            name: raw.name,
            nodes,
            links,
            subscribers,
            zones,
        })
    }

    fn lab_name(&self, name: &str, path: &FieldPath) -> Result<()> {
        let ok = name.len() <= MAX_LAB_NAME
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !ok {
            return self.fail(
                path,
                format!("lab name `{name}` must be 1-{MAX_LAB_NAME} lowercase letters or digits, starting with a letter"),
            );
        }
        Ok(())
    }

    fn node_name(&self, name: &str, path: &FieldPath) -> Result<()> {
        let ok = (1..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return self.fail(
                path,
                format!("name `{name}` must be 1-32 lowercase letters, digits or `-`, starting with a letter"),
            );
        }
        Ok(())
    }

    fn node(&self, name: &str, raw: &RawNode, path: &FieldPath) -> Result<Node> {
        self.node_name(name, path)?;
        let role = match raw.role.as_deref() {
            None | Some("host") => Role::Host,
            Some("core") => Role::Core,
            Some("home") => Role::Home,
            Some("visited") => Role::Visited,
            Some(other) => {
                return self.fail(
                    &path.key("role"),
                    format!("unknown role `{other}` (expected core, home, visited or host)"),
                )
            }
        };
        let domain = match (&raw.domain, role) {
            (Some(d), Role::Home | Role::Visited) => {
                self.domain_name(d, &path.key("domain"))?;
                Some(d.clone())
            }
            (Some(_), _) => {
                return self.fail(
                    &path.key("domain"),
                    "only home and visited networks own a domain",
                )
            }
            (None, Role::Home | Role::Visited) => {
                return self.fail(
                    path,
                    format!("a {} network needs a `domain`", role_name(role)),
                )
            }
            (None, _) => None,
        };
        let mut bridges = Vec::new();
        for (bname, bridge) in &raw.bridges {
            let bpath = path.key("bridges").key(bname);
            self.interface_name(bname, &bpath)?;
            for (i, addr) in bridge.addresses.iter().enumerate() {
                self.host_address(addr, &bpath.key("addresses").index(i))?;
            }
            let pool = match &bridge.pool {
                Some(p) => Some(self.pool(
                    p.start,
                    p.end,
                    &bridge.addresses,
                    ("the bridge's subnets", "the bridge's own address"),
                    &bpath.key("pool"),
                )?),
                None => None,
            };
            bridges.push(Bridge {
                name: bname.clone(),
                addresses: bridge.addresses.clone(),
                pool,
            });
        }
        if !raw.partners.is_empty() && role != Role::Visited {
            return self.fail(
                &path.key("partners"),
                "only visited networks have roaming partners",
            );
        }
        if raw.mode.is_some() && role != Role::Visited {
            return self.fail(
                &path.key("mode"),
                "only visited networks have a roaming mode",
            );
        }
        let routes = raw.routes.as_ref().map(|routes| {
            routes
                .iter()
                .map(|r| StaticRoute {
                    to: r.to.trunc(),
                    via: r.via,
                })
                .collect()
        });
        Ok(Node {
            name: name.to_string(),
            role,
            domain,
            plmn: None,
            external_hlr: None,
            bridges,
            services: Vec::new(),
            partners: raw.partners.clone(),
            routes,
            mode: raw.mode.unwrap_or_default(),
        })
    }

    fn pool(
        &self,
        start: IpAddr,
        end: IpAddr,
        subnets: &[IpNet],
        (within, own_address): (&str, &str),
        path: &FieldPath,
    ) -> Result<Pool> {
        if start.is_ipv4() != end.is_ipv4() || start > end {
            return self.fail(
                path,
                format!("pool {start}-{end}: start must not be after end, in one address family"),
            );
        }
        let (IpAddr::V4(first), IpAddr::V4(last)) = (start, end) else {
            return self.fail(
                path,
                format!(
                    "pool {start}-{end}: IPv6 pools are not served (the DHCP server speaks \
                     DHCPv4 only); give the bridge an IPv4 pool"
                ),
            );
        };
        let size = u64::from(u32::from(last)) - u64::from(u32::from(first)) + 1;
        if size > super::limits::MAX_POOL {
            return self.fail(
                path,
                format!(
                    "pool {start}-{end} holds {size} addresses, more than the limit of {}",
                    super::limits::MAX_POOL
                ),
            );
        }
        let Some(subnet) = subnets
            .iter()
            .find(|n| n.contains(&start) && n.contains(&end))
        else {
            return self.fail(path, format!("pool {start}-{end} is outside {within}"));
        };
        if let Some(own) = subnets
            .iter()
            .map(|n| n.addr())
            .find(|a| *a >= start && *a <= end)
        {
            return self.fail(
                path,
                format!("pool {start}-{end} contains {own_address} {own}"),
            );
        }
        if start == subnet.network() || end == subnet.broadcast() && start.is_ipv4() {
            return self.fail(
                path,
                format!("pool {start}-{end} contains the subnet's network or broadcast address"),
            );
        }
        Ok(Pool { start, end })
    }

    fn services(
        &self,
        raw: &[RawService],
        role: Role,
        own: &[IpNet],
        path: &FieldPath,
    ) -> Result<Vec<Service>> {
        let mut services: Vec<Service> = Vec::new();
        for (i, service) in raw.iter().enumerate() {
            let spath = path.index(i);
            let service = match service {
                RawService::Dns {
                    address,
                    resolver,
                    server,
                } => self.dns_service(*address, *resolver, *server, role, own, &spath)?,
                RawService::Hlr {} => Service::Hlr,
                RawService::Vlr {
                    implicit_detach_s,
                    name_source,
                } => {
                    let implicit_detach_s = implicit_detach_s.unwrap_or(DEFAULT_IMPLICIT_DETACH_S);
                    if implicit_detach_s > MAX_IMPLICIT_DETACH_S {
                        return self.fail(
                            &spath.key("implicit_detach_s"),
                            format!(
                                "{implicit_detach_s} s is longer than a day \
                                 ({MAX_IMPLICIT_DETACH_S} s at most)"
                            ),
                        );
                    }
                    Service::Vlr {
                        implicit_detach_s,
                        name_source: *name_source,
                    }
                }
                RawService::Dhcp {
                    lease_secs,
                    relays,
                    rapid_commit,
                } => Service::Dhcp {
                    lease_secs: lease_secs.unwrap_or(DEFAULT_LEASE_SECS).max(4),
                    relays: self.relays(relays, &spath.key("relays"))?,
                    rapid_commit: rapid_commit.unwrap_or(true),
                },
                RawService::Echo {
                    name,
                    port,
                    address,
                    ready_after_ms,
                } => {
                    if *port == 0 {
                        return self.fail(&spath.key("port"), "port must be 1-65535");
                    }
                    let name = name.clone().unwrap_or_else(|| "echo".to_string());
                    self.node_name(&name, &spath.key("name"))?;
                    Service::Echo {
                        name,
                        address: *address,
                        port: *port,
                        ready_after_ms: ready_after_ms.unwrap_or(0),
                    }
                }
            };
            let allowed = match service {
                Service::Hlr => role == Role::Home,
                // A home network may have a cell of its own (Fig. 2): its terminals attach
                // there through their HLR directly.
                Service::Vlr { .. } | Service::Dhcp { .. } => {
                    matches!(role, Role::Visited | Role::Home)
                }
                Service::Dns { .. } | Service::Echo { .. } => true,
            };
            if !allowed {
                let wants = if service == Service::Hlr {
                    "home"
                } else {
                    "visited or home"
                };
                return self.fail(
                    &spath.key("kind"),
                    format!(
                        "a {} service runs only in a {wants} network, not in a {} node",
                        service.kind(),
                        role_name(role)
                    ),
                );
            }
            if services.iter().any(|s| s.name() == service.name()) {
                return self.fail(
                    &spath,
                    format!("the node already runs a service named `{}`", service.name()),
                );
            }
            services.push(service);
        }
        Ok(services)
    }

    /// A dhcp service's relays, each on its own: IPv4, a pool inside its subnet that spares
    /// the router, one relay per address and subnets apart. Where they stand in the lab is
    /// checked with the node's links ([`Self::relay_placement`]).
    fn relays(&self, raw: &[RawRelay], path: &FieldPath) -> Result<Vec<Relay>> {
        let mut relays: Vec<Relay> = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let rpath = path.index(i);
            let (IpAddr::V4(address), IpNet::V4(subnet)) = (r.address, r.subnet) else {
                return self.fail(
                    &rpath,
                    format!(
                        "relay {} for {}: relays are served over DHCPv4 only; give it an IPv4 \
                         address and subnet",
                        r.address, r.subnet
                    ),
                );
            };
            if subnet != subnet.trunc() {
                return self.fail(
                    &rpath.key("subnet"),
                    format!(
                        "subnet {subnet} has host bits set; write {}",
                        subnet.trunc()
                    ),
                );
            }
            if subnet.prefix_len() > 30 {
                return self.fail(
                    &rpath.key("subnet"),
                    format!("subnet {subnet} leaves no room for a router and clients"),
                );
            }
            let router = match r.router {
                None => Ipv4Addr::from(u32::from(subnet.network()) + 1),
                Some(IpAddr::V4(router))
                    if subnet.contains(&router)
                        && router != subnet.network()
                        && router != subnet.broadcast() =>
                {
                    router
                }
                Some(router) => {
                    return self.fail(
                        &rpath.key("router"),
                        format!("router {router} is not a host of subnet {subnet}"),
                    )
                }
            };
            let own = IpNet::V4(Ipv4Net::new(router, subnet.prefix_len()).expect("valid"));
            let pool = self.pool(
                r.pool.start,
                r.pool.end,
                &[own],
                ("the relay's subnet", "the relayed subnet's router"),
                &rpath.key("pool"),
            )?;
            if let Some(other) = relays.iter().find(|o| o.address == address) {
                return self.fail(
                    &rpath.key("address"),
                    format!("relay {address} is already the relay of {}", other.subnet),
                );
            }
            if let Some(other) = relays.iter().find(|o| {
                o.subnet.contains(&subnet.network()) || subnet.contains(&o.subnet.network())
            }) {
                return self.fail(
                    &rpath.key("subnet"),
                    format!(
                        "subnet {subnet} overlaps {} of relay {}",
                        other.subnet, other.address
                    ),
                );
            }
            relays.push(Relay {
                address,
                subnet,
                pool,
                router,
            });
        }
        Ok(relays)
    }

    /// Where a dhcp service's relays stand: each relay's address is the far end of a
    /// point-to-point link of this node (not its cell, whose clients need no relay, nor a
    /// bridge, where any host could pose as the relay), and no relayed subnet overlaps a
    /// subnet of the lab, so a relayed address never means two things.
    fn relay_placement(
        &self,
        node: &Node,
        relays: &[Relay],
        nodes: &[Node],
        links: &[Link],
        path: &FieldPath,
    ) -> Result<()> {
        let own = node_addresses(node, links);
        let cells: Vec<IpNet> = node
            .bridges
            .iter()
            .filter(|b| b.pool.is_some())
            .flat_map(|b| b.addresses.iter().map(|a| a.trunc()))
            .collect();
        for (i, relay) in relays.iter().enumerate() {
            let rpath = path.index(i);
            let address = IpAddr::V4(relay.address);
            if own.iter().any(|a| a.addr() == address) {
                return self.fail(
                    &rpath.key("address"),
                    format!("relay {address} is this node's own address"),
                );
            }
            if cells.iter().any(|c| c.contains(&address)) {
                return self.fail(
                    &rpath.key("address"),
                    format!(
                        "relay {address} is on the cell, whose clients the server answers \
                         without a relay"
                    ),
                );
            }
            if !own.iter().any(|a| a.trunc().contains(&address)) {
                return self.fail(
                    &rpath.key("address"),
                    format!(
                        "relay {address} is not on a subnet directly connected to `{}`",
                        node.name
                    ),
                );
            }
            // Only the relay's node can send on its link: a point-to-point link, whose other
            // end holds the relay's address (on a bridge, any host could claim it).
            let point_to_point = links.iter().any(|l| {
                [(&l.a, &l.b), (&l.b, &l.a)].iter().any(|(ours, theirs)| {
                    ours.node == node.name
                        && ours.bridge.is_none()
                        && theirs.bridge.is_none()
                        && ours.addresses.iter().any(|a| a.trunc().contains(&address))
                        && theirs.addresses.iter().any(|a| a.addr() == address)
                })
            });
            if !point_to_point {
                return self.fail(
                    &rpath.key("address"),
                    format!(
                        "relay {address} is not the far end of a point-to-point link of `{}`: \
                         the relay runs in a node linked to it directly",
                        node.name
                    ),
                );
            }
            let subnet = IpNet::V4(relay.subnet);
            for n in nodes {
                if let Some(a) = node_addresses(n, links).iter().find(|a| {
                    a.trunc().contains(&subnet.network()) || subnet.contains(&a.network())
                }) {
                    return self.fail(
                        &rpath.key("subnet"),
                        format!(
                            "subnet {subnet} overlaps {} of node `{}`",
                            a.trunc(),
                            n.name
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// Where a dns service listens: as given, else the node's address ending in .53, else
    /// its first LAN (bridge) address, else its first address.
    fn dns_service(
        &self,
        address: Option<IpAddr>,
        resolver: Option<IpAddr>,
        server: DnsServer,
        role: Role,
        own: &[IpNet],
        path: &FieldPath,
    ) -> Result<Service> {
        let owned = |ip: IpAddr, key: &str| -> Result<IpAddr> {
            if own.iter().any(|a| a.addr() == ip) {
                Ok(ip)
            } else {
                self.fail(
                    &path.key(key),
                    format!("{ip} is not an address of this node"),
                )
            }
        };
        let address = match address {
            Some(ip) => owned(ip, "address")?,
            None => {
                let ends_in_53 = own.iter().map(|a| a.addr()).find(|ip| match ip {
                    IpAddr::V4(v4) => v4.octets()[3] == 53 && Some(*ip) != resolver,
                    IpAddr::V6(_) => false,
                });
                match ends_in_53.or_else(|| own.first().map(|a| a.addr())) {
                    Some(ip) => ip,
                    None => return self.fail(path, "a dns service needs an address on its node"),
                }
            }
        };
        let resolver = match resolver {
            Some(_) if role != Role::Core => {
                return self.fail(
                    &path.key("resolver"),
                    "only the core runs the lab's resolver",
                )
            }
            Some(ip) if ip == address => {
                return self.fail(
                    &path.key("resolver"),
                    format!("the resolver needs an address of its own, not the server's {ip}"),
                )
            }
            Some(_) if server == DnsServer::Bind => {
                return self.fail(
                    &path.key("resolver"),
                    "the lab's resolver is hickory's: a bind server serves zones only",
                )
            }
            Some(ip) => Some(owned(ip, "resolver")?),
            None => None,
        };
        Ok(Service::Dns {
            address,
            resolver,
            server,
        })
    }

    /// The lab's zones: derived from the topology (a home or visited network's domain, the
    /// reverse zones of a visited pool, the root on the core), then the written-out ones,
    /// which add zones or replace a derived zone of the same name.
    fn zones(&self, raw: &[RawZone], nodes: &[Node]) -> Result<Vec<Zone>> {
        let mut zones: Vec<Zone> = Vec::new();
        for node in nodes {
            if !node
                .services
                .iter()
                .any(|s| matches!(s, Service::Dns { .. }))
            {
                continue;
            }
            let mut names = Vec::new();
            match node.role {
                Role::Core => names.push(".".to_string()),
                Role::Home | Role::Visited => names.extend(node.domain.clone()),
                Role::Host => {}
            }
            // A tunnel-mode network's cell holds home addresses: their reverse zones are
            // its home's (below).
            if matches!(node.role, Role::Visited | Role::Home) && node.mode != Mode::Tunnel {
                for pool in node.pools() {
                    for name in reverse_zones(pool) {
                        if !names.contains(&name) {
                            names.push(name);
                        }
                    }
                }
            }
            for name in names {
                zones.push(Zone::derived(name, &node.name));
            }
            let tunnelled = nodes
                .iter()
                .filter(|v| v.mode == Mode::Tunnel && v.partners.first() == Some(&node.name));
            for visited in tunnelled {
                for pool in visited.pools() {
                    for name in reverse_zones(pool) {
                        if !zones.iter().any(|z| z.name == name) {
                            let mut zone = Zone::derived(name, &node.name);
                            zone.updated_by = Some(visited.name.clone());
                            zones.push(zone);
                        }
                    }
                }
            }
        }
        let mut written = BTreeSet::new();
        for (i, zone) in raw.iter().enumerate() {
            let path = FieldPath::default().key("zones").index(i);
            let name = zone.name.trim_end_matches('.').to_ascii_lowercase();
            let name = if name.is_empty() {
                ".".to_string()
            } else {
                name
            };
            if name != "." {
                self.domain_name(&name, &path.key("name"))?;
            }
            if !written.insert(name.clone()) {
                return self.fail(
                    &path.key("name"),
                    format!("zone `{name}` is written out twice"),
                );
            }
            match nodes.iter().find(|n| n.name == zone.server) {
                None => {
                    return self.fail(
                        &path.key("server"),
                        format!("unknown node `{}`", zone.server),
                    )
                }
                Some(n) if !n.services.iter().any(|s| matches!(s, Service::Dns { .. })) => {
                    return self.fail(
                        &path.key("server"),
                        format!("node `{}` runs no dns service", zone.server),
                    )
                }
                Some(_) => {}
            }
            let mut records = Vec::new();
            for (j, line) in zone.records.iter().enumerate() {
                match StaticRecord::parse(line) {
                    Ok(r) => records.push(r),
                    Err(e) => return self.fail(&path.key("records").index(j), e),
                }
            }
            let mut z = Zone::derived(name.clone(), &zone.server);
            z.records = records;
            z.ttl = zone.ttl.unwrap_or(z.ttl);
            z.negative_ttl = zone.negative_ttl.unwrap_or(z.negative_ttl);
            zones.retain(|d| d.name != name);
            zones.push(z);
        }
        let resolver = nodes.iter().find(|n| {
            n.services.iter().any(|s| {
                matches!(
                    s,
                    Service::Dns {
                        resolver: Some(_),
                        ..
                    }
                )
            })
        });
        if let Some(core) = resolver {
            if !zones.iter().any(|z| z.name == ".") {
                let path = FieldPath::default()
                    .key("nodes")
                    .key(&core.name)
                    .key("services");
                return self.fail(
                    &path,
                    "the resolver iterates from the lab's root, but no node serves the root zone",
                );
            }
        }
        Ok(zones)
    }

    fn unique_domains(&self, nodes: &[Node]) -> Result<()> {
        let mut seen = HashMap::new();
        for node in nodes {
            if let Some(domain) = &node.domain {
                if let Some(other) = seen.insert(domain.clone(), node.name.clone()) {
                    let path = node_path(&node.name).key("domain");
                    return self.fail(
                        &path,
                        format!("domain `{domain}` is already owned by node `{other}`"),
                    );
                }
            }
        }
        Ok(())
    }

    fn links(&self, raw: &RawTopology, nodes: &[Node]) -> Result<Vec<Link>> {
        let mut links = Vec::new();
        for (i, link) in raw.links.iter().enumerate() {
            let path = FieldPath::default().key("links").index(i);
            let [a, b] = link.endpoints.as_slice() else {
                return self.fail(
                    &path.key("endpoints"),
                    format!(
                        "a link has exactly 2 endpoints, found {}",
                        link.endpoints.len()
                    ),
                );
            };
            let epath = path.key("endpoints");
            let a_end = self.endpoint(a, b, nodes, &epath.index(0))?;
            let b_end = self.endpoint(b, a, nodes, &epath.index(1))?;
            if a.node == b.node {
                return self.fail(
                    &epath.index(1).key("node"),
                    format!("a link cannot join node `{}` to itself", a.node),
                );
            }
            let impairment = match &link.impairment {
                Some(imp) => Some(self.impairment(imp, &path.key("impairment"))?),
                None => None,
            };
            links.push(Link {
                a: a_end,
                b: b_end,
                impairment,
            });
        }
        Ok(links)
    }

    fn endpoint(
        &self,
        end: &RawEndpoint,
        peer: &RawEndpoint,
        nodes: &[Node],
        path: &FieldPath,
    ) -> Result<Endpoint> {
        let Some(node) = nodes.iter().find(|n| n.name == end.node) else {
            return self.fail(&path.key("node"), format!("unknown node `{}`", end.node));
        };
        if let Some(bridge) = &end.bridge {
            if !node.bridges.iter().any(|b| &b.name == bridge) {
                return self.fail(
                    &path.key("bridge"),
                    format!("node `{}` has no bridge `{bridge}`", node.name),
                );
            }
            if !end.addresses.is_empty() {
                return self.fail(
                    &path.key("addresses"),
                    "an end that joins a bridge has no addresses of its own; put them on the bridge",
                );
            }
        }
        let interface = match (&end.interface, &end.bridge) {
            (Some(name), _) => name.clone(),
            (None, Some(bridge)) => format!("{bridge}-{}", peer.node),
            (None, None) => format!("eth-{}", peer.node),
        };
        let ipath = if end.interface.is_some() {
            path.key("interface")
        } else {
            path.clone()
        };
        self.interface_name(&interface, &ipath)?;
        for (i, addr) in end.addresses.iter().enumerate() {
            self.host_address(addr, &path.key("addresses").index(i))?;
        }
        Ok(Endpoint {
            node: end.node.clone(),
            interface,
            bridge: end.bridge.clone(),
            addresses: end.addresses.clone(),
        })
    }

    fn impairment(&self, raw: &RawImpairment, path: &FieldPath) -> Result<Impairment> {
        let mut imp = Impairment::default();
        if let Some(d) = &raw.delay {
            imp.delay_us = self.unit(parse_duration_us(d), &path.key("delay"))?;
        }
        if let Some(j) = &raw.jitter {
            imp.jitter_us = self.unit(parse_duration_us(j), &path.key("jitter"))?;
            if imp.delay_us == 0 {
                return self.fail(&path.key("jitter"), "jitter needs a delay");
            }
        }
        if let Some(l) = &raw.loss {
            imp.loss_percent = self.unit(parse_percent(l), &path.key("loss"))?;
        }
        if let Some(r) = &raw.rate {
            imp.rate_bps = self.unit(parse_rate_bps(r), &path.key("rate"))?;
        }
        Ok(imp)
    }

    fn unit<T>(&self, parsed: std::result::Result<T, String>, path: &FieldPath) -> Result<T> {
        parsed.or_else(|message| self.fail(path, message))
    }

    fn interface_name(&self, name: &str, path: &FieldPath) -> Result<()> {
        if name.is_empty() || name.len() > MAX_IFNAME {
            return self.fail(
                path,
                format!("interface name `{name}` must be 1-{MAX_IFNAME} bytes long (set a shorter `interface:`)"),
            );
        }
        if name == "."
            || name == ".."
            || name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
        {
            return self.fail(
                path,
                format!("interface name `{name}` may not contain `/`, `:` or spaces"),
            );
        }
        Ok(())
    }

    fn host_address(&self, addr: &IpNet, path: &FieldPath) -> Result<()> {
        let ip = addr.addr();
        if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
            return self.fail(path, format!("{addr} is not a usable host address"));
        }
        if let IpNet::V4(v4) = addr {
            if v4.prefix_len() < 31 && (v4.addr() == v4.network() || v4.addr() == v4.broadcast()) {
                return self.fail(
                    path,
                    format!("{addr} is the network or broadcast address of its subnet"),
                );
            }
        }
        Ok(())
    }

    fn interfaces_unique(&self, nodes: &[Node], links: &[Link]) -> Result<()> {
        let mut names: HashMap<(&str, &str), FieldPath> = HashMap::new();
        for node in nodes {
            names.insert((&node.name, "lo"), FieldPath::default());
            for bridge in &node.bridges {
                let path = node_path(&node.name).key("bridges").key(&bridge.name);
                if bridge.name == "lo" {
                    return self.fail(&path, "`lo` is the loopback interface's name");
                }
                names.insert((&node.name, &bridge.name), path);
            }
        }
        for (i, link) in links.iter().enumerate() {
            for (j, end) in [&link.a, &link.b].into_iter().enumerate() {
                let path = endpoint_path(i, j);
                if names
                    .insert((&end.node, &end.interface), path.clone())
                    .is_some()
                {
                    return self.fail(
                        &path,
                        format!("node `{}` already has an interface `{}` (set `interface:` to another name)", end.node, end.interface),
                    );
                }
            }
        }
        Ok(())
    }

    /// Addresses are unique; each link or LAN segment has its own subnets; the two ends of
    /// a point-to-point link share one; a host on a bridge sits in the bridge's subnet.
    fn addresses(&self, nodes: &[Node], links: &[Link]) -> Result<()> {
        let mut segments = Segments::default();
        let mut uses: BTreeMap<IpAddr, AddressUse> = BTreeMap::new();
        let mut nets: Vec<(IpNet, usize, FieldPath)> = Vec::new();
        let mut record = |addr: &IpNet, node: &str, segment: usize, path: FieldPath| {
            if let Some(prev) = uses.get(&addr.addr()) {
                return self.fail(
                    &path,
                    format!(
                        "address {} is already used by node `{}` ({})",
                        addr.addr(),
                        prev.node,
                        prev.path
                    ),
                );
            }
            uses.insert(
                addr.addr(),
                AddressUse {
                    node: node.to_string(),
                    path: path.clone(),
                },
            );
            nets.push((addr.trunc(), segment, path));
            Ok(())
        };
        for node in nodes {
            for bridge in &node.bridges {
                let seg = segments.bridge(&node.name, &bridge.name);
                let path = node_path(&node.name).key("bridges").key(&bridge.name);
                for (i, addr) in bridge.addresses.iter().enumerate() {
                    record(addr, &node.name, seg, path.key("addresses").index(i))?;
                }
            }
        }
        for (i, link) in links.iter().enumerate() {
            let seg = segments.link(i, link);
            for (j, end) in [&link.a, &link.b].into_iter().enumerate() {
                let path = endpoint_path(i, j);
                for (k, addr) in end.addresses.iter().enumerate() {
                    record(addr, &end.node, seg, path.key("addresses").index(k))?;
                }
            }
        }
        // Different segments must not overlap.
        for (i, (net, seg, path)) in nets.iter().enumerate() {
            let seg = segments.find(*seg);
            for (other, oseg, opath) in &nets[..i] {
                if segments.find(*oseg) != seg
                    && (net.contains(&other.network()) || other.contains(&net.network()))
                {
                    return self.fail(
                        path,
                        format!(
                            "subnet {net} overlaps subnet {other} of another segment ({opath})"
                        ),
                    );
                }
            }
        }
        // Within a segment, ends must be able to reach each other.
        for (i, link) in links.iter().enumerate() {
            for (j, (end, peer)) in [(&link.a, &link.b), (&link.b, &link.a)]
                .into_iter()
                .enumerate()
            {
                let path = endpoint_path(i, j);
                let peer_nets: Vec<IpNet> = match &peer.bridge {
                    Some(b) => nodes
                        .iter()
                        .find(|n| n.name == peer.node)
                        .and_then(|n| n.bridges.iter().find(|x| &x.name == b))
                        .map(|x| x.addresses.iter().map(|a| a.trunc()).collect())
                        .unwrap_or_default(),
                    None => peer.addresses.iter().map(|a| a.trunc()).collect(),
                };
                for (k, addr) in end.addresses.iter().enumerate() {
                    let same_family: Vec<&IpNet> = peer_nets
                        .iter()
                        .filter(|n| n.addr().is_ipv4() == addr.addr().is_ipv4())
                        .collect();
                    if !same_family.is_empty() && !same_family.contains(&&addr.trunc()) {
                        let peer_desc = match &peer.bridge {
                            Some(b) => format!("bridge `{b}` of node `{}`", peer.node),
                            None => format!("the other end in node `{}`", peer.node),
                        };
                        return self.fail(
                            &path.key("addresses").index(k),
                            format!(
                                "{addr} is not in a subnet of {peer_desc} ({})",
                                join(&same_family)
                            ),
                        );
                    }
                }
            }
        }
        // Pools must not hand out a static address.
        for node in nodes {
            for bridge in &node.bridges {
                if let Some(pool) = &bridge.pool {
                    if let Some((ip, u)) = uses.range(pool.start..=pool.end).next() {
                        let path = node_path(&node.name)
                            .key("bridges")
                            .key(&bridge.name)
                            .key("pool");
                        return self.fail(
                            &path,
                            format!(
                                "pool {}-{} contains {ip}, a static address of node `{}`",
                                pool.start, pool.end, u.node
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn node_references(&self, node: &Node, nodes: &[Node], links: &[Link]) -> Result<()> {
        let path = node_path(&node.name);
        for (i, partner) in node.partners.iter().enumerate() {
            match nodes.iter().find(|n| &n.name == partner) {
                Some(n) if n.role == Role::Home => {}
                Some(_) => {
                    return self.fail(
                        &path.key("partners").index(i),
                        format!("partner `{partner}` is not a home network"),
                    )
                }
                None => {
                    return self.fail(
                        &path.key("partners").index(i),
                        format!("unknown node `{partner}`"),
                    )
                }
            }
        }
        let own = node_addresses(node, links);
        if let Some(routes) = &node.routes {
            for (i, route) in routes.iter().enumerate() {
                let rpath = path.key("routes").index(i);
                if route.to.addr().is_ipv4() != route.via.is_ipv4() {
                    return self.fail(
                        &rpath.key("via"),
                        format!(
                            "gateway {} is not of the same family as {}",
                            route.via, route.to
                        ),
                    );
                }
                if own.iter().any(|a| a.addr() == route.via) {
                    return self.fail(
                        &rpath.key("via"),
                        format!("gateway {} is this node's own address", route.via),
                    );
                }
                if !own.iter().any(|a| a.trunc().contains(&route.via)) {
                    return self.fail(
                        &rpath.key("via"),
                        format!(
                            "gateway {} is not on a subnet directly connected to `{}`",
                            route.via, node.name
                        ),
                    );
                }
            }
        }
        for (i, service) in node.services.iter().enumerate() {
            if let Service::Dhcp { relays, .. } = service {
                let rpath = path.key("services").index(i).key("relays");
                self.relay_placement(node, relays, nodes, links, &rpath)?;
            }
            if let Service::Echo {
                address: Some(addr),
                ..
            } = service
            {
                if !own.iter().any(|a| a.addr() == *addr) {
                    return self.fail(
                        &path.key("services").index(i).key("address"),
                        format!("{addr} is not an address of node `{}`", node.name),
                    );
                }
            }
        }
        Ok(())
    }

    /// A tunnel-mode visited network carries home addresses of one partner, on a cell, over
    /// a tunnel both routers can start, in a /30 and under names nothing else uses.
    fn tunnels(&self, nodes: &[Node], links: &[Link]) -> Result<()> {
        let tunnelled: Vec<&Node> = nodes.iter().filter(|n| n.mode == Mode::Tunnel).collect();
        for node in &tunnelled {
            let path = node_path(&node.name).key("mode");
            if node.partners.len() != 1 {
                return self.fail(
                    &path,
                    format!(
                        "mode tunnel gives terminals home addresses of one home network, \
                         and `{}` has {} partners",
                        node.name,
                        node.partners.len()
                    ),
                );
            }
            if !node.pools().iter().any(|p| p.start.is_ipv4()) {
                return self.fail(
                    &path,
                    "mode tunnel needs a cell: a bridge with an IPv4 pool of home addresses",
                );
            }
            for end in [node.name.as_str(), node.partners[0].as_str()] {
                if super::outer_address(end, links).is_none() {
                    return self.fail(
                        &path,
                        format!(
                            "node `{end}` has no IPv4 address on a point-to-point link \
                             to carry the tunnel from"
                        ),
                    );
                }
            }
        }
        let tunnels = super::tunnels_of(nodes, links);
        if tunnels.len() < tunnelled.len() {
            return self.fail(
                &node_path(&tunnelled[tunnels.len()].name).key("mode"),
                "too many tunnels: no /30 is left for this one",
            );
        }
        let in_use: Vec<IpNet> = nodes
            .iter()
            .flat_map(|n| node_addresses(n, links))
            .collect();
        let mut names: BTreeSet<(String, String)> = BTreeSet::new();
        for node in nodes {
            names.insert((node.name.clone(), "lo".to_string()));
            for bridge in &node.bridges {
                names.insert((node.name.clone(), bridge.name.clone()));
            }
        }
        for link in links {
            for end in [&link.a, &link.b] {
                names.insert((end.node.clone(), end.interface.clone()));
            }
        }
        for tunnel in &tunnels {
            let path = node_path(&tunnel.visited).key("mode");
            let inner = IpNet::V4(tunnel.home_inner.trunc());
            if let Some(used) = in_use
                .iter()
                .find(|a| a.contains(&inner.addr()) || inner.contains(&a.addr()))
            {
                return self.fail(
                    &path,
                    format!(
                        "the tunnel's subnet {inner} overlaps {}, already in the lab",
                        used.trunc()
                    ),
                );
            }
            for (node, interface) in [
                (&tunnel.home, &tunnel.home_interface),
                (&tunnel.visited, &tunnel.visited_interface),
            ] {
                if !names.insert((node.clone(), interface.clone())) {
                    return self.fail(
                        &path,
                        format!(
                            "node `{node}` already has an interface `{interface}`, \
                             the tunnel's name there"
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    fn subscribers(
        &self,
        raw: &BTreeMap<String, RawSubscriber>,
        nodes: &[Node],
    ) -> Result<Vec<Subscriber>> {
        let mut out: Vec<Subscriber> = Vec::new();
        let mut imsis = BTreeSet::new();
        let mut hostnames = BTreeSet::new();
        for (name, sub) in raw {
            let path = FieldPath::default().key("subscribers").key(name);
            self.node_name(name, &path)?;
            if nodes.iter().any(|n| &n.name == name) {
                return self.fail(&path, format!("`{name}` is already the name of a node"));
            }
            let imsi_ok =
                (6..=15).contains(&sub.imsi.len()) && sub.imsi.bytes().all(|b| b.is_ascii_digit());
            if !imsi_ok {
                return self.fail(
                    &path.key("imsi"),
                    format!("IMSI `{}` must be 6 to 15 digits", sub.imsi),
                );
            }
            if !imsis.insert(sub.imsi.clone()) {
                return self.fail(
                    &path.key("imsi"),
                    format!("IMSI {} is already used by another subscriber", sub.imsi),
                );
            }
            if let Some(msisdn) = &sub.msisdn {
                if msisdn.is_empty()
                    || msisdn.len() > 15
                    || !msisdn.bytes().all(|b| b.is_ascii_digit())
                {
                    return self.fail(
                        &path.key("msisdn"),
                        format!("MSISDN `{msisdn}` must be 1 to 15 digits"),
                    );
                }
            }
            let home = match nodes.iter().find(|n| n.name == sub.home) {
                Some(n) if n.role == Role::Home => n,
                Some(_) => {
                    return self.fail(
                        &path.key("home"),
                        format!("node `{}` is not a home network", sub.home),
                    )
                }
                None => {
                    return self.fail(&path.key("home"), format!("unknown node `{}`", sub.home))
                }
            };
            self.domain_name(&sub.hostname, &path.key("hostname"))?;
            let domain = home.domain.as_deref().unwrap_or_default();
            if !sub.hostname.ends_with(&format!(".{domain}")) {
                return self.fail(
                    &path.key("hostname"),
                    format!(
                        "host name `{}` is not under the home domain `{domain}`",
                        sub.hostname
                    ),
                );
            }
            if !hostnames.insert(sub.hostname.clone()) {
                return self.fail(
                    &path.key("hostname"),
                    format!(
                        "host name `{}` is already used by another subscriber",
                        sub.hostname
                    ),
                );
            }
            let k = self.key128(&sub.k, &path.key("k"))?;
            let opc = self.key128(&sub.opc, &path.key("opc"))?;
            // RFC 2181 §8: a TTL is at most 2^31 - 1.
            if let Some(ttl) = sub.ttl.filter(|t| *t > i32::MAX as u32) {
                return self.fail(
                    &path.key("ttl"),
                    format!("a TTL of {ttl} s is more than DNS allows (2147483647 s)"),
                );
            }
            out.push(Subscriber {
                name: name.clone(),
                imsi: sub.imsi.clone(),
                msisdn: sub.msisdn.clone(),
                hostname: sub.hostname.clone(),
                home: sub.home.clone(),
                k,
                opc,
                roaming: sub.roaming,
                packet_data: sub.packet_data,
                http_port: sub.http_port,
                ttl: sub.ttl,
            });
        }
        Ok(out)
    }

    /// Each home network's PLMN: as written, else the common 5-digit prefix of its
    /// subscribers' IMSIs. Subscribers' IMSIs must start with their home's PLMN, and no two
    /// home networks share one.
    fn plmns(
        &self,
        raw: &RawTopology,
        nodes: &mut [Node],
        subscribers: &[Subscriber],
    ) -> Result<()> {
        let mut seen: HashMap<String, String> = HashMap::new();
        for node in nodes.iter_mut() {
            let path = FieldPath::default()
                .key("nodes")
                .key(&node.name)
                .key("plmn");
            let written = raw.nodes[&node.name].plmn.clone();
            if written.is_some() && node.role != Role::Home {
                return self.fail(&path, "only a home network has a PLMN");
            }
            if let Some(hlr) = raw.nodes[&node.name].external_hlr {
                let hpath = FieldPath::default()
                    .key("nodes")
                    .key(&node.name)
                    .key("external_hlr");
                if node.role != Role::Home {
                    return self.fail(&hpath, "only a home network has an HLR");
                }
                if node.services.contains(&Service::Hlr) {
                    return self.fail(&hpath, "the network runs roamlab's HLR already");
                }
                if !node
                    .bridges
                    .iter()
                    .any(|b| b.addresses.iter().any(|a| a.addr() == hlr.ip()))
                {
                    return self.fail(
                        &hpath,
                        format!(
                            "{} is not an address of a bridge of `{}`",
                            hlr.ip(),
                            node.name
                        ),
                    );
                }
                node.external_hlr = Some(hlr);
            }
            if node.role != Role::Home {
                continue;
            }
            let own: Vec<&Subscriber> =
                subscribers.iter().filter(|s| s.home == node.name).collect();
            let plmn = match written {
                Some(p) => {
                    if !(5..=6).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_digit()) {
                        return self.fail(
                            &path,
                            format!("PLMN `{p}` must be 5 or 6 digits (MCC and MNC)"),
                        );
                    }
                    p
                }
                None => match own.first() {
                    Some(first) => first.imsi[..5.min(first.imsi.len())].to_string(),
                    None => continue,
                },
            };
            for sub in own {
                if !sub.imsi.starts_with(&plmn) {
                    let spath = FieldPath::default()
                        .key("subscribers")
                        .key(&sub.name)
                        .key("imsi");
                    return self.fail(
                        &spath,
                        format!(
                            "IMSI {} does not start with its home network's PLMN {plmn}",
                            sub.imsi
                        ),
                    );
                }
            }
            if let Some(other) = seen.insert(plmn.clone(), node.name.clone()) {
                return self.fail(
                    &path,
                    format!("PLMN {plmn} is already the PLMN of `{other}`"),
                );
            }
            node.plmn = Some(plmn);
        }
        Ok(())
    }

    fn key128(&self, hex: &str, path: &FieldPath) -> Result<[u8; 16]> {
        let mut key = [0u8; 16];
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return self.fail(path, "must be 32 hexadecimal digits (128 bits)");
        }
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
        }
        Ok(key)
    }

    fn domain_name(&self, name: &str, path: &FieldPath) -> Result<()> {
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.len() > 253 || name.split('.').count() < 2 || !name.split('.').all(label_ok) {
            return self.fail(
                path,
                format!("`{name}` is not a valid lowercase domain name"),
            );
        }
        Ok(())
    }
}

/// All addresses a node holds, on its bridges and link ends.
pub(crate) fn node_addresses(node: &Node, links: &[Link]) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = node
        .bridges
        .iter()
        .flat_map(|b| b.addresses.iter().copied())
        .collect();
    for link in links {
        for end in [&link.a, &link.b] {
            if end.node == node.name {
                out.extend(end.addresses.iter().copied());
            }
        }
    }
    out
}

/// The /24 reverse zones (`100.51.198.in-addr.arpa`) that cover an IPv4 pool.
fn reverse_zones(pool: Pool) -> Vec<String> {
    let (IpAddr::V4(start), IpAddr::V4(end)) = (pool.start, pool.end) else {
        return Vec::new();
    };
    let (first, last) = (u32::from(start) >> 8, u32::from(end) >> 8);
    (first..=last)
        .map(|net| {
            let [_, a, b, c] = net.to_be_bytes();
            format!("{c}.{b}.{a}.in-addr.arpa")
        })
        .collect()
}

fn node_path(node: &str) -> FieldPath {
    FieldPath::default().key("nodes").key(node)
}

fn endpoint_path(link: usize, end: usize) -> FieldPath {
    FieldPath::default()
        .key("links")
        .index(link)
        .key("endpoints")
        .index(end)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Core => "core",
        Role::Home => "home",
        Role::Visited => "visited",
        Role::Host => "host",
    }
}

fn join(nets: &[&IpNet]) -> String {
    nets.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Union-find over L2 segments: each bridge and each plain link is one, and a link that
/// joins a bridge belongs to that bridge's segment.
#[derive(Default)]
struct Segments {
    parent: Vec<usize>,
    bridges: HashMap<(String, String), usize>,
}

impl Segments {
    fn fresh(&mut self) -> usize {
        self.parent.push(self.parent.len());
        self.parent.len() - 1
    }

    fn bridge(&mut self, node: &str, bridge: &str) -> usize {
        if let Some(id) = self.bridges.get(&(node.to_string(), bridge.to_string())) {
            return *id;
        }
        let id = self.fresh();
        self.bridges
            .insert((node.to_string(), bridge.to_string()), id);
        id
    }

    fn link(&mut self, _index: usize, link: &Link) -> usize {
        let ends: Vec<usize> = [&link.a, &link.b]
            .iter()
            .filter_map(|e| e.bridge.as_ref().map(|b| self.bridge(&e.node, b)))
            .collect();
        match ends.as_slice() {
            [] => self.fresh(),
            [one] => *one,
            [first, second] => {
                let (a, b) = (self.find(*first), self.find(*second));
                self.parent[b] = a;
                a
            }
            _ => unreachable!("a link has two ends"),
        }
    }

    fn find(&self, mut id: usize) -> usize {
        while self.parent[id] != id {
            id = self.parent[id];
        }
        id
    }
}
