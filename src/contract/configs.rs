//! What each agent is told: the configuration files `up` and `attach` write into the lab's
//! directory and `roamlab agent KIND --config FILE` reads. One type per agent, unknown
//! fields refused, each read by [`load`] alone.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use crate::topology::{Mode, NameSource};

/// Reads an agent's configuration; errors name the file.
pub fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<T> {
    crate::json_file::read_json(path)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlrConfig {
    /// The home network's node name.
    pub name: String,
    pub socket: PathBuf,
    /// Sequence numbers and locations, kept across restarts.
    pub state_file: PathBuf,
    pub events_file: PathBuf,
    /// VLRs (visited networks) with a roaming agreement.
    pub partners: Vec<String>,
    /// The address pools of those networks: the only session addresses they may report.
    #[serde(default)]
    pub partner_pools: Vec<PartnerPool>,
    pub subscribers: Vec<SubscriberRecord>,
    /// The home DNS zone the HLR keeps terminals' forward records in.
    pub dns: Option<DnsTarget>,
}

/// An address range a visited network leases from: session addresses it reports must lie
/// in one of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerPool {
    pub network: String,
    pub start: IpAddr,
    pub end: IpAddr,
}

/// A zone an agent updates by TSIG-signed RFC 2136, and the key to sign with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsTarget {
    pub server: SocketAddr,
    pub zone: String,
    pub key_name: String,
    pub key_file: PathBuf,
    pub ttl: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberRecord {
    pub name: String,
    pub imsi: String,
    pub msisdn: Option<String>,
    pub host_name: String,
    /// K and OPc, hex.
    pub k: String,
    pub opc: String,
    pub roaming: bool,
    pub packet_data: bool,
    /// The TTL of its home record, when not the zone's (0: never cached).
    #[serde(default)]
    pub ttl: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlrConfig {
    pub name: String,
    pub cell_socket: PathBuf,
    /// Where the visited network's DHCP agent reaches the VLR.
    pub local_socket: PathBuf,
    pub attached_file: PathBuf,
    /// The terminals' links on the cell, as the lab made them (one file per IMSI).
    pub cell_links: PathBuf,
    pub events_file: PathBuf,
    pub partners: Vec<PartnerHlr>,
    /// How long a terminal whose radio link is lost stays registered (seconds).
    pub implicit_detach_s: u64,
    /// Where it takes a terminal's host name from.
    #[serde(default)]
    pub name_source: NameSource,
    /// Where a running `roamlab capture signaling` takes copies of its GSUP messages.
    #[serde(default)]
    pub gsup_tap: Option<PathBuf>,
}

/// A home network this VLR has an agreement with, and how to reach its HLR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerHlr {
    pub network: String,
    pub plmn: String,
    pub socket: PathBuf,
    /// An HLR that is not roamlab's, reached over TCP (GSUP over IPA, as osmo-hlr serves it)
    /// instead of the private network's socket.
    #[serde(default)]
    pub address: Option<SocketAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpConfig {
    /// The visited network's node name.
    pub name: String,
    /// The cell bridge it serves.
    pub interface: String,
    pub server_ip: Ipv4Addr,
    pub prefix_len: u8,
    pub pool_start: Ipv4Addr,
    pub pool_end: Ipv4Addr,
    pub router: Ipv4Addr,
    pub dns_servers: Vec<Ipv4Addr>,
    pub lease_secs: u64,
    /// Answers a DISCOVER that asks for Rapid Commit (RFC 4039) with a committed ACK.
    #[serde(default)]
    pub rapid_commit: bool,
    pub vlr_attached: PathBuf,
    pub vlr_local_socket: PathBuf,
    pub leases_file: PathBuf,
    pub probation_file: PathBuf,
    /// Addresses held for the subscribers whose leases ended.
    pub held_file: PathBuf,
    pub queue_file: PathBuf,
    /// Reverse zones of the pool, served by the visited DNS.
    pub reverse_zones: Vec<DnsTarget>,
    pub events_file: PathBuf,
    /// The relay agents it answers (RFC 2131 §4.1).
    #[serde(default)]
    pub relays: Vec<RelayConfig>,
    /// Where its network takes a terminal's host name from: with `terminal`, from the
    /// client's option 81 or 12 when the VLR has none, and the home network verifies it.
    #[serde(default)]
    pub name_source: NameSource,
    /// With `no-update`, nothing is reported to the home network: only the reverse record
    /// is written, in the visited DNS.
    #[serde(default)]
    pub mode: Mode,
}

/// A relay agent the DHCP server answers, and the segment it relays.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// The relay's address: relayed requests must come from it, replies go to it.
    pub address: Ipv4Addr,
    /// The server's interface towards the relay, and its own address there (the server
    /// identifier its relayed clients see).
    pub interface: String,
    pub local: Ipv4Addr,
    /// The relayed clients' subnet, pool and router.
    pub subnet: ipnet::Ipv4Net,
    pub pool_start: Ipv4Addr,
    pub pool_end: Ipv4Addr,
    pub router: Ipv4Addr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalConfig {
    pub name: String,
    pub imsi: String,
    pub k: String,
    pub opc: String,
    /// The host name the terminal says is its own at attach (claim 23), if it says one.
    pub claim_host_name: Option<String>,
    /// Its own host name, as its user set it up: what its DHCP client says in option 81
    /// when the network told it none (a network that learns names from terminals).
    #[serde(default)]
    pub host_name: Option<String>,
    pub cell_socket: PathBuf,
    /// The highest sequence number the terminal has accepted (its SQN_MS), kept across
    /// attaches as a USIM keeps it.
    pub state_file: PathBuf,
    pub events_file: PathBuf,
    /// Its link into the cell.
    pub interface: String,
    /// Take an address by DHCP after attaching.
    pub dhcp: bool,
    /// Which DHCP client: builtin, dhclient, udhcpc or dhcpcd.
    #[serde(default = "builtin_client")]
    pub dhcp_client: String,
    /// Serve HTTP on this port (a mobile server, claim 21).
    pub http_port: Option<u16>,
    /// Its link's address, chosen with the link (its cell port is locked to it).
    pub mac: [u8; 6],
}

/// A host of many terminals: one process, each terminal still in its own namespace with
/// its own link, sockets, Milenage state and DHCP client (see `agents::terminal_host`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalHostConfig {
    pub name: String,
    /// Where the lab's verbs start, watch and stop its terminals (in its own 0700 directory).
    pub control_socket: PathBuf,
    /// How many of its terminals attach at a time.
    pub parallel: usize,
    pub terminals: Vec<HostedTerminal>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostedTerminal {
    /// The terminal's network namespace, which its sockets are opened in.
    pub namespace: String,
    pub config: TerminalConfig,
}

fn builtin_client() -> String {
    "builtin".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsAgentConfig {
    /// The software that serves: roamlab's hickory server, or BIND 9's named.
    #[serde(default)]
    pub server: crate::topology::DnsServer,
    /// Where the authoritative server answers (UDP and TCP port 53).
    pub listen: IpAddr,
    pub zones: Vec<ZoneConfig>,
    pub resolver: Option<ResolverConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Fully qualified: `home.example.`.
    pub origin: String,
    pub zone_file: PathBuf,
    /// The sqlite journal: updates live here and survive restarts of the agent.
    pub journal: PathBuf,
    /// The key that may update this zone; no key, no updates.
    pub update_key: Option<KeyRef>,
    /// TTL the lab's own updaters give dynamic records.
    pub dynamic_ttl: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    pub name: String,
    pub file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {
    pub listen: IpAddr,
    pub roots_file: PathBuf,
    /// The only networks the resolver may query: the lab's own.
    pub allow_servers: Vec<IpNet>,
}

impl DnsAgentConfig {
    /// The zone configuration for a zone name (with or without the trailing dot).
    pub fn zone(&self, name: &str) -> Option<&ZoneConfig> {
        let want = format!("{}.", name.trim_end_matches('.'));
        self.zones
            .iter()
            .find(|z| z.origin.eq_ignore_ascii_case(&want))
    }
}

/// A 128-bit key (K, OPc) from 32 hex digits.
pub fn hex_key(hex: &str) -> io::Result<[u8; 16]> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.as_bytes())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a key is not 32 hex digits"))
}

pub fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_with_an_unknown_field_is_refused_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("roamlab-configs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(
            &path,
            r#"{"listen":"192.0.2.1","zones":[],"resolver":null,"forward_to":"192.0.2.9"}"#,
        )
        .unwrap();
        let e = load::<DnsAgentConfig>(&path).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("forward_to"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_are_32_hex_digits() {
        assert_eq!(hex_key(&hex(&[7; 16])).unwrap(), [7; 16]);
        assert!(hex_key("00").is_err());
        assert!(hex_key("zz000000000000000000000000000000").is_err());
    }
}
