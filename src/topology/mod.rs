//! The lab's topology: the YAML file, its validation, and the typed model every later
//! stage (plan, supervisor, agents) reads.
//!
//! A file is parsed into [`raw`] structs (unknown fields refused), then validated as a
//! whole by [`validate`] before anything touches the kernel.

pub mod limits;
pub(crate) mod locate;
pub mod raw;
mod units;
mod validate;

pub(crate) use validate::node_addresses;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

pub use validate::{TopologyError, DEFAULT_LEASE_SECS, MAX_IFNAME};

/// The default lab (the patent's Fig. 4), embedded so `roamlab up` needs no file.
pub const DEFAULT_TOPOLOGY: &str = include_str!("../../topologies/roaming.yaml");
/// How the embedded default lab is named in messages.
pub const DEFAULT_SOURCE: &str = "<built-in roaming.yaml>";
/// The lab `roamlab compare` runs: a terminal in every mode, side by side.
pub const COMPARE_TOPOLOGY: &str = include_str!("../../topologies/compare.yaml");
pub const COMPARE_SOURCE: &str = "<built-in compare.yaml>";

/// A validated lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Topology {
    pub name: String,
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
    pub subscribers: Vec<Subscriber>,
    /// Every DNS zone of the lab and the node that serves it.
    pub zones: Vec<Zone>,
}

/// TTL of records added by dynamic update, unless a zone says otherwise (seconds).
pub const DEFAULT_DYNAMIC_TTL: u32 = 10;
/// SOA minimum: how long resolvers may cache a negative answer (seconds).
pub const DEFAULT_NEGATIVE_TTL: u32 = 10;
/// How long a VLR keeps a terminal whose radio link is lost (seconds): its name points at
/// a dead address meanwhile, so short; a real network's is its periodic update timer.
pub const DEFAULT_IMPLICIT_DETACH_S: u64 = 10;

/// A DNS zone and its authoritative server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    /// Without the trailing dot; the root is ".".
    pub name: String,
    /// The node whose dns service serves it.
    pub server: String,
    pub records: Vec<StaticRecord>,
    pub ttl: u32,
    pub negative_ttl: u32,
    /// The node whose key signs updates of the zone, when not its server's: a tunnel-mode
    /// visited network names its terminals' home addresses in its home's reverse zone,
    /// with a key that opens that zone only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

impl Zone {
    pub fn derived(name: String, server: &str) -> Self {
        Zone {
            name,
            server: server.to_string(),
            updated_by: None,
            records: Vec::new(),
            ttl: DEFAULT_DYNAMIC_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
        }
    }

    /// The node whose key opens the zone to updates: its server's, unless it names another.
    pub fn signer(&self) -> &str {
        self.updated_by.as_deref().unwrap_or(&self.server)
    }

    /// The zone's name as a fully qualified domain name: `home.example.`, `.`.
    pub fn fqdn(&self) -> String {
        if self.name == "." {
            ".".to_string()
        } else {
            format!("{}.", self.name)
        }
    }
}

/// A static record of a written-out zone: `www 300 A 192.0.2.80`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticRecord {
    /// Relative to the zone (`@` for the apex), or absolute with a trailing dot.
    pub name: String,
    pub ttl: Option<u32>,
    pub rtype: String,
    pub data: String,
}

impl StaticRecord {
    const TYPES: [&'static str; 7] = ["A", "AAAA", "CNAME", "PTR", "NS", "TXT", "MX"];

    /// Parses `NAME [TTL] [IN] TYPE DATA…`.
    pub fn parse(line: &str) -> Result<Self, String> {
        let mut words = line.split_whitespace().peekable();
        let name = words.next().ok_or("an empty record")?.to_string();
        let ttl = match words.peek().and_then(|w| w.parse::<u32>().ok()) {
            Some(t) => {
                words.next();
                Some(t)
            }
            None => None,
        };
        if words.peek().is_some_and(|w| w.eq_ignore_ascii_case("IN")) {
            words.next();
        }
        let rtype = words
            .next()
            .ok_or_else(|| format!("`{line}`: no record type"))?
            .to_ascii_uppercase();
        if !Self::TYPES.contains(&rtype.as_str()) {
            return Err(format!(
                "`{line}`: record type {rtype} is not one of {}",
                Self::TYPES.join(", ")
            ));
        }
        let data: Vec<&str> = words.collect();
        if data.is_empty() {
            return Err(format!("`{line}`: no record data"));
        }
        let data = data.join(" ");
        let bad_ip = match rtype.as_str() {
            "A" => data.parse::<std::net::Ipv4Addr>().is_err(),
            "AAAA" => data.parse::<std::net::Ipv6Addr>().is_err(),
            _ => false,
        };
        if bad_ip {
            return Err(format!(
                "`{line}`: `{data}` is not an address for an {rtype} record"
            ));
        }
        // The DNS agent reads the record with hickory's zone parser: so does validation, so
        // that whatever passes here loads there (a name like `w=ww` does not).
        let origin = hickory_proto::rr::Name::from_ascii("example.").expect("a name");
        if let Err(e) = hickory_proto::serialize::txt::Parser::new(
            format!("$TTL 300\n{line}\n"),
            None,
            Some(origin),
        )
        .parse()
        {
            return Err(format!("`{line}`: {e}"));
        }
        Ok(StaticRecord {
            name,
            ttl,
            rtype,
            data,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The IP network joining all others (patent: IP network 134).
    Core,
    /// A subscriber's home network (home router 112, HLR, home DNS).
    Home,
    /// A network terminals roam into (visited router 120, VLR, DHCP, visited DNS).
    Visited,
    /// A plain host such as the fixed hosts 130, 132.
    Host,
}

impl Role {
    /// Routers forward packets between their links.
    pub fn forwards(self) -> bool {
        !matches!(self, Role::Host)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub role: Role,
    pub domain: Option<String>,
    /// A home network's PLMN (MCC+MNC).
    pub plmn: Option<String>,
    pub bridges: Vec<Bridge>,
    pub services: Vec<Service>,
    pub partners: Vec<String>,
    /// A home network's HLR that roamlab does not run: a GSUP server at this address.
    pub external_hlr: Option<std::net::SocketAddr>,
    /// Explicit routes; `None` means computed.
    pub routes: Option<Vec<StaticRoute>>,
    /// A visited network's way of serving roaming terminals.
    pub mode: Mode,
}

impl Node {
    /// Its VLR's settings, if it runs one: the implicit-detach time and the name source.
    pub fn vlr(&self) -> Option<(u64, NameSource)> {
        self.services.iter().find_map(|s| match s {
            Service::Vlr {
                implicit_detach_s,
                name_source,
            } => Some((*implicit_detach_s, *name_source)),
            _ => None,
        })
    }

    /// The home networks whose HLRs this node's VLR registers terminals at: a visited
    /// network's partners, or a home network itself (its own cell, Fig. 2).
    pub fn hlr_partners(&self) -> Vec<&str> {
        match self.role {
            Role::Home => vec![self.name.as_str()],
            _ => self.partners.iter().map(String::as_str).collect(),
        }
    }

    /// Every pool the node leases from: its bridges' (the cell's) and its DHCP relays'.
    pub fn pools(&self) -> Vec<Pool> {
        let relayed = self.services.iter().flat_map(|s| match s {
            Service::Dhcp { relays, .. } => relays.iter().map(|r| r.pool).collect(),
            _ => Vec::new(),
        });
        self.bridges
            .iter()
            .filter_map(|b| b.pool)
            .chain(relayed)
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bridge {
    pub name: String,
    pub addresses: Vec<IpNet>,
    pub pool: Option<Pool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub start: IpAddr,
    pub end: IpAddr,
}

/// A DHCP relay agent (RFC 2131 §4.1) on a link of the visited node, and the subnet whose
/// clients it relays. The subnet is not routed beyond the relay: the lab leases and names
/// its clients (a load generator such as perfdhcp is one), it does not carry their traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    pub address: std::net::Ipv4Addr,
    pub subnet: ipnet::Ipv4Net,
    pub pool: Pool,
    pub router: std::net::Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticRoute {
    pub to: IpNet,
    pub via: IpAddr,
}

/// Where a visited network learns a terminal's host name (claims 24 and 23): from its home
/// network's HLR, or from the terminal itself (at attach, or in its DHCP option 81 or 12),
/// verified by the home network before anything is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NameSource {
    #[default]
    Hlr,
    Terminal,
}

/// How a visited network serves its roaming terminals: the patent's method, or the
/// background art the patent argues against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The method: a local address, named in the home DNS (by the HLR) and in the visited
    /// DNS (the reverse record).
    #[default]
    Method,
    /// [0011]–[0012]: a local address that only the visited DNS associates with the host
    /// name; the home DNS, which owns the name, is not told, so forward lookups fail.
    NoUpdate,
    /// Fig. 3 / [0010]: the terminal gets a home address (the cell's subnets belong to the
    /// one partner home network), named at home forward and reverse; a kernel tunnel
    /// between the home and visited routers carries its traffic, so every packet to or
    /// from it detours through home.
    Tunnel,
}

/// The tunnel of a visited network in tunnel mode (Fig. 3): between its router and its
/// home partner's, carrying the cell's home addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tunnel {
    pub visited: String,
    pub home: String,
    /// The interface's name at each end: `tnl-<the other end>`.
    pub home_interface: String,
    pub visited_interface: String,
    /// The outer addresses: each router's first address on a point-to-point link.
    pub home_local: Ipv4Addr,
    pub visited_local: Ipv4Addr,
    /// The tunnel's own /30, one end each (198.19.255.252/30 for the first tunnel, the
    /// next /30 down for each further one).
    pub home_inner: Ipv4Net,
    pub visited_inner: Ipv4Net,
    /// The cell's subnets: home addresses, reached through home and the tunnel.
    pub cell_nets: Vec<Ipv4Net>,
    /// The tunnel's key (the VXLAN network identifier where VXLAN carries it).
    pub id: u32,
}

/// Routing table of a tunnel-mode visited router for the traffic its cell sends: every
/// packet from a home address goes back through the tunnel.
pub const TUNNEL_TABLE: u32 = 100;

/// The software behind a dns service: roamlab's hickory server, or BIND 9's named run in
/// the node with the same zones, keys and TTLs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsServer {
    #[default]
    Hickory,
    Bind,
}

/// A service a node runs. Agents for each kind are started by the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Service {
    /// An authoritative DNS server for the zones the lab gives this node; on the core it
    /// may also run the lab's recursive resolver.
    Dns {
        address: IpAddr,
        resolver: Option<IpAddr>,
        server: DnsServer,
    },
    Hlr,
    /// The visited network's VLR; a terminal whose radio link is lost stays registered
    /// for `implicit_detach_s`, then both its records go. Its network learns host names
    /// from `name_source`.
    Vlr {
        implicit_detach_s: u64,
        name_source: NameSource,
    },
    /// The visited network's DHCP server, granting leases of `lease_secs` on its cell
    /// and to the clients of its relays.
    Dhcp {
        lease_secs: u64,
        relays: Vec<Relay>,
        /// A DISCOVER with Rapid Commit (RFC 4039) is answered with a committed ACK.
        rapid_commit: bool,
    },
    Echo {
        name: String,
        address: Option<IpAddr>,
        port: u16,
        ready_after_ms: u64,
    },
}

impl Service {
    /// The agent's name, unique within its node.
    pub fn name(&self) -> &str {
        match self {
            Service::Dns { .. } => "dns",
            Service::Hlr => "hlr",
            Service::Vlr { .. } => "vlr",
            Service::Dhcp { .. } => "dhcp",
            Service::Echo { name, .. } => name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Service::Dns { .. } => "dns",
            Service::Hlr => "hlr",
            Service::Vlr { .. } => "vlr",
            Service::Dhcp { .. } => "dhcp",
            Service::Echo { .. } => "echo",
        }
    }
}

/// A veth link between two nodes; either end may join a bridge of its node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Link {
    pub a: Endpoint,
    pub b: Endpoint,
    pub impairment: Option<Impairment>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    pub node: String,
    /// The veth's name inside the node (resolved by the naming rule when not given).
    pub interface: String,
    pub bridge: Option<String>,
    pub addresses: Vec<IpNet>,
}

/// Link impairment, applied with netem on both ends at `up`; a rate limit alone is applied
/// with tbf, which kernels without netem may still have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Impairment {
    pub delay_us: u64,
    pub jitter_us: u64,
    /// Loss probability in percent.
    pub loss_percent: f64,
    /// Rate limit in bits per second.
    pub rate_bps: u64,
}

/// A subscriber of a home network; its terminal attaches to visited networks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscriber {
    pub name: String,
    pub imsi: String,
    pub msisdn: Option<String>,
    pub hostname: String,
    pub home: String,
    #[serde(skip)]
    pub k: [u8; 16],
    #[serde(skip)]
    pub opc: [u8; 16],
    pub roaming: bool,
    pub packet_data: bool,
    pub http_port: Option<u16>,
    /// The TTL of its home record, when not its home zone's.
    pub ttl: Option<u32>,
}

impl Topology {
    /// Parses and validates a topology; `origin` names the source in errors.
    pub fn parse(source: &str, origin: &str) -> Result<Self, TopologyError> {
        validate::parse(source, origin)
    }

    /// Reads, parses and validates a topology file.
    pub fn load(path: &Path) -> Result<Self, TopologyError> {
        let source = Self::read_source(path)?;
        Self::parse(&source, &path.display().to_string())
    }

    /// Reads a topology file's text: refused unread when larger than the limit, and
    /// refused when it is not UTF-8 (both are bad input: exit status 2).
    pub fn read_source(path: &Path) -> Result<String, TopologyError> {
        let fail = |cause: String| TopologyError::Read {
            file: path.display().to_string(),
            cause,
        };
        let size = std::fs::metadata(path)
            .map_err(|e| fail(e.to_string()))?
            .len();
        if size > limits::MAX_BYTES {
            return Err(fail(format!(
                "{size} bytes is more than the limit of {} bytes",
                limits::MAX_BYTES
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| {
            fail(format!(
                "not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ))
        })
    }

    /// The embedded default lab.
    pub fn builtin() -> Self {
        Self::parse(DEFAULT_TOPOLOGY, DEFAULT_SOURCE).expect("the built-in topology is valid")
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The dns service of a node, if it runs one: (server address, resolver address).
    pub fn dns_of(&self, node: &str) -> Option<(IpAddr, Option<IpAddr>)> {
        self.node(node)?.services.iter().find_map(|s| match s {
            Service::Dns {
                address, resolver, ..
            } => Some((*address, *resolver)),
            _ => None,
        })
    }

    /// The lab's recursive resolver, if it has one.
    pub fn resolver(&self) -> Option<IpAddr> {
        self.nodes
            .iter()
            .find_map(|n| self.dns_of(&n.name).and_then(|(_, r)| r))
    }

    /// The namespace a node lives in: `<lab>-<node>`.
    pub fn namespace(&self, node: &str) -> String {
        namespace_name(&self.name, node)
    }

    /// The tunnels of the visited networks in tunnel mode. Validation made sure each has
    /// one home partner, both routers an outer address, and a /30 nothing else uses.
    pub fn tunnels(&self) -> Vec<Tunnel> {
        tunnels_of(&self.nodes, &self.links)
    }
}

/// The inner /30 of the `i`th tunnel: counted down from the top of 198.18.0.0/15.
fn tunnel_inner(i: usize) -> Option<(Ipv4Net, Ipv4Net)> {
    let base = u32::from(Ipv4Addr::new(198, 19, 255, 252)).checked_sub(4 * i as u32)?;
    if base < u32::from(Ipv4Addr::new(198, 18, 0, 0)) {
        return None;
    }
    let end = |offset| Ipv4Net::new(Ipv4Addr::from(base + offset), 30).expect("a /30");
    Some((end(1), end(2)))
}

/// A node's first IPv4 address on a point-to-point link: where its tunnel starts.
pub(crate) fn outer_address(node: &str, links: &[Link]) -> Option<Ipv4Addr> {
    links
        .iter()
        .flat_map(|l| [&l.a, &l.b])
        .filter(|e| e.node == node && e.bridge.is_none())
        .flat_map(|e| &e.addresses)
        .find_map(|a| match a {
            IpNet::V4(v4) => Some(v4.addr()),
            IpNet::V6(_) => None,
        })
}

pub(crate) fn tunnels_of(nodes: &[Node], links: &[Link]) -> Vec<Tunnel> {
    let tunnelled = nodes
        .iter()
        .filter(|n| n.role == Role::Visited && n.mode == Mode::Tunnel);
    let mut out = Vec::new();
    for (i, visited) in tunnelled.enumerate() {
        let Some(home) = visited.partners.first() else {
            continue;
        };
        let (Some(home_local), Some(visited_local), Some((home_inner, visited_inner))) = (
            outer_address(home, links),
            outer_address(&visited.name, links),
            tunnel_inner(i),
        ) else {
            continue;
        };
        let cell_nets = visited
            .bridges
            .iter()
            .filter(|b| b.pool.is_some())
            .flat_map(|b| &b.addresses)
            .filter_map(|a| match a {
                IpNet::V4(v4) => Some(v4.trunc()),
                IpNet::V6(_) => None,
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        out.push(Tunnel {
            visited: visited.name.clone(),
            home: home.clone(),
            home_interface: tunnel_interface(&visited.name),
            visited_interface: tunnel_interface(home),
            home_local,
            visited_local,
            home_inner,
            visited_inner,
            cell_nets,
            id: 100 + i as u32,
        });
    }
    out
}

/// `tnl-<peer>`, cut to the kernel's 15 characters.
fn tunnel_interface(peer: &str) -> String {
    let mut name = format!("tnl-{peer}");
    name.truncate(15);
    name
}

/// The naming rule for namespaces: `<lab>-<node>`. Lab names hold no `-`, so the prefix
/// `<lab>-` finds every namespace of one lab and of no other.
pub fn namespace_name(lab: &str, node: &str) -> String {
    format!("{lab}-{node}")
}
