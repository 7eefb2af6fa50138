//! The topology file exactly as written: serde structs that refuse unknown fields.
//!
//! Nothing here is checked beyond its YAML shape; `validate` turns it into the typed
//! [`super::Topology`].

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Deserialize;

/// A whole topology file.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a topology: a mapping with name, nodes, links and subscribers"
)]
pub struct RawTopology {
    pub name: String,
    #[serde(default)]
    pub nodes: BTreeMap<String, RawNode>,
    #[serde(default)]
    pub links: Vec<RawLink>,
    #[serde(default)]
    pub subscribers: BTreeMap<String, RawSubscriber>,
    /// DNS zones written out in full; they add to, or replace by name, the derived ones.
    #[serde(default)]
    pub zones: Vec<RawZone>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a zone: a mapping with name, server, records, ttl and negative_ttl"
)]
pub struct RawZone {
    pub name: String,
    /// The node whose dns service is authoritative for the zone.
    pub server: String,
    /// Static records, zone-file style: `www 300 A 192.0.2.80` (names relative to the zone).
    #[serde(default)]
    pub records: Vec<String>,
    /// TTL of records added by dynamic update, in seconds.
    #[serde(default)]
    pub ttl: Option<u32>,
    /// How long a negative answer may be cached (SOA minimum), in seconds.
    #[serde(default)]
    pub negative_ttl: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a node: a mapping with role, domain, plmn, bridges, services, partners or routes"
)]
pub struct RawNode {
    #[serde(default)]
    pub role: Option<String>,
    /// DNS domain a home or visited network owns.
    #[serde(default)]
    pub domain: Option<String>,
    /// LAN segments inside this node, as bridges.
    #[serde(default)]
    pub bridges: BTreeMap<String, RawBridge>,
    #[serde(default)]
    pub services: Vec<RawService>,
    /// A home network's PLMN (MCC+MNC, 5 or 6 digits): its subscribers' IMSIs start with
    /// it, and visited networks route their signaling by it.
    #[serde(default)]
    pub plmn: Option<String>,
    /// Home networks this visited network has a roaming agreement with.
    #[serde(default)]
    pub partners: Vec<String>,
    /// A home network whose HLR is not roamlab's but a GSUP server at this address
    /// (osmo-hlr listens on TCP 4222), which its partners' VLRs reach over TCP.
    #[serde(default)]
    pub external_hlr: Option<std::net::SocketAddr>,
    /// When given, replaces the computed routes of this node.
    #[serde(default)]
    pub routes: Option<Vec<RawRoute>>,
    /// A visited network's way of serving roaming terminals: `method` (default) or
    /// `no-update` (the background art of [0011]–[0012]) or `tunnel` (Fig. 3).
    #[serde(default)]
    pub mode: Option<super::Mode>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a bridge: a mapping with addresses and pool"
)]
pub struct RawBridge {
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    #[serde(default)]
    pub pool: Option<RawPool>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a pool: a mapping with start and end"
)]
pub struct RawPool {
    pub start: std::net::IpAddr,
    pub end: std::net::IpAddr,
}

/// A DHCP relay agent and the subnet whose clients it relays.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a relay: a mapping with address, subnet, pool and router"
)]
pub struct RawRelay {
    /// The relay agent's address on a link of the visited node: where relayed requests
    /// come from and where replies go.
    pub address: std::net::IpAddr,
    /// The relayed clients' subnet: a request whose giaddr is the relay's address or lies
    /// in it is leased an address from `pool`.
    pub subnet: IpNet,
    pub pool: RawPool,
    /// The router handed to relayed clients (default: the subnet's first host).
    #[serde(default)]
    pub router: Option<std::net::IpAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a route: a mapping with to and via")]
pub struct RawRoute {
    pub to: IpNet,
    pub via: std::net::IpAddr,
}

/// A service a node runs; its fields depend on its kind.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RawService {
    Dns {
        /// Where the authoritative server listens (default: the node's address ending in
        /// .53, else its first LAN address).
        #[serde(default)]
        address: Option<std::net::IpAddr>,
        /// Also run the lab's recursive resolver here (core only).
        #[serde(default)]
        resolver: Option<std::net::IpAddr>,
        /// The server software: `hickory` (default) or `bind` (BIND 9's named).
        #[serde(default)]
        server: super::DnsServer,
    },
    Hlr {},
    Vlr {
        /// How long a terminal whose radio link is lost stays registered, in seconds
        /// (default 10).
        #[serde(default)]
        implicit_detach_s: Option<u64>,
        /// Where this network learns a terminal's host name: `hlr` (default) or `terminal`.
        #[serde(default)]
        name_source: super::NameSource,
    },
    Dhcp {
        /// Lease time granted, in seconds (default 600).
        #[serde(default)]
        lease_secs: Option<u64>,
        /// Relay agents (RFC 2131 §4.1) this server answers, each for a subnet of its own.
        #[serde(default)]
        relays: Vec<RawRelay>,
        /// Whether a DISCOVER that asks for Rapid Commit (RFC 4039) is answered with a
        /// committed ACK at once, in two messages instead of four (default true).
        #[serde(default)]
        rapid_commit: Option<bool>,
    },
    /// The built-in TCP echo agent, used to prove the supervisor.
    Echo {
        #[serde(default)]
        name: Option<String>,
        port: u16,
        #[serde(default)]
        address: Option<std::net::IpAddr>,
        /// Delay before the agent reports ready (tests the readiness wait).
        #[serde(default)]
        ready_after_ms: Option<u64>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a link: a mapping with endpoints and impairment"
)]
pub struct RawLink {
    pub endpoints: Vec<RawEndpoint>,
    #[serde(default)]
    pub impairment: Option<RawImpairment>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an endpoint: a mapping with node, interface, bridge and addresses"
)]
pub struct RawEndpoint {
    pub node: String,
    /// Interface name in the node; defaults by the naming rule.
    #[serde(default)]
    pub interface: Option<String>,
    /// Joins this bridge of the node instead of ending in a plain interface.
    #[serde(default)]
    pub bridge: Option<String>,
    #[serde(default)]
    pub addresses: Vec<IpNet>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an impairment: a mapping with delay, jitter, loss and rate"
)]
pub struct RawImpairment {
    #[serde(default)]
    pub delay: Option<String>,
    #[serde(default)]
    pub jitter: Option<String>,
    #[serde(default)]
    pub loss: Option<String>,
    #[serde(default)]
    pub rate: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a subscriber: a mapping with imsi, msisdn, hostname, home, k, opc, roaming, packet_data, http_port and ttl"
)]
pub struct RawSubscriber {
    pub imsi: String,
    #[serde(default)]
    pub msisdn: Option<String>,
    pub hostname: String,
    pub home: String,
    pub k: String,
    pub opc: String,
    #[serde(default = "yes")]
    pub roaming: bool,
    #[serde(default = "yes")]
    pub packet_data: bool,
    /// The terminal serves HTTP on this port once it has an address (a mobile server).
    #[serde(default)]
    pub http_port: Option<u16>,
    /// The TTL of its home record, in seconds, when not its home zone's (0: never cached).
    #[serde(default)]
    pub ttl: Option<u32>,
}

fn yes() -> bool {
    true
}
