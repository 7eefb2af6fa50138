//! The DNS agent: hickory-server answering on UDP and TCP port 53 of its node.
//!
//! Each zone is a sqlite-backed zone handler: the zone file seeds it, the journal keeps
//! every update (so updates survive a restart), and only TSIG-signed updates with the
//! zone's key are accepted (hickory refuses unsigned ones, and answers NOTAUTH to a bad
//! signature or unknown key). On the core a second server, on its own address, is the
//! lab's recursive resolver, iterating from the lab's root and querying nothing outside
//! the lab.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{LowerName, Name};
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::resolver::recursor::{RecursiveConfig, RecursorOptions};
use hickory_server::server::RequestHandler;
use hickory_server::store::recursor::RecursiveZoneHandler;
use hickory_server::store::sqlite::{Journal, SqliteConfig, SqliteZoneHandler, TsigKeyConfig};
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

use hickory_proto::rr::TSigner;

use crate::contract::configs::{DnsAgentConfig, ResolverConfig};
use crate::dns::guard::{self, Guarded};

/// Idle TCP connections are closed after this.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
const TCP_RESPONSE_BUFFER: usize = 64;
/// hickory's recommended fudge (RFC 8945): signatures this far off in time are accepted.
const TSIG_FUDGE: u16 = 300;

#[derive(Debug, thiserror::Error)]
pub enum DnsAgentError {
    #[error("zone {zone}: {cause}")]
    Zone { zone: String, cause: String },
    #[error("{0}")]
    Privileges(String),
    #[error("cannot bind {proto} {addr}: {cause}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("resolver: {0}")]
    Resolver(String),
    #[error("server: {0}")]
    Serve(String),
    #[error("named: {0}")]
    Named(String),
}

/// Binds UDP and TCP on `addr`, naming the address in any failure.
async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsAgentError> {
    let udp = UdpSocket::bind(addr)
        .await
        .map_err(|cause| DnsAgentError::Bind {
            proto: "udp",
            addr,
            cause,
        })?;
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|cause| DnsAgentError::Bind {
            proto: "tcp",
            addr,
            cause,
        })?;
    Ok((udp, tcp))
}

fn serve<H: RequestHandler>(handler: H, udp: UdpSocket, tcp: TcpListener) -> Server<H> {
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);
    server
}

async fn authoritative_catalog(config: &DnsAgentConfig) -> Result<Catalog, DnsAgentError> {
    let mut catalog = Catalog::new();
    for zone in &config.zones {
        let fail = |cause: String| DnsAgentError::Zone {
            zone: zone.origin.clone(),
            cause,
        };
        let origin = Name::from_str(&zone.origin).map_err(|e| fail(e.to_string()))?;
        let sqlite = SqliteConfig {
            zone_path: zone.zone_file.clone(),
            journal_path: zone.journal.clone(),
            allow_update: zone.update_key.is_some(),
            tsig_keys: zone
                .update_key
                .iter()
                .map(|k| TsigKeyConfig {
                    name: k.name.clone(),
                    key_file: k.file.clone(),
                    algorithm: TsigAlgorithm::HmacSha256,
                    fudge: TSIG_FUDGE,
                })
                .collect(),
        };
        let mut handler = SqliteZoneHandler::<TokioRuntimeProvider>::try_from_config(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
            false,
            None,
            &sqlite,
            None,
        )
        .await
        .map_err(fail)?;
        if zone.update_key.is_some() {
            handler
                .set_journal(fast_journal(&zone.journal).map_err(fail)?)
                .await;
        }
        let handler: Arc<dyn ZoneHandler> = Arc::new(handler);
        catalog.upsert(LowerName::from(origin), vec![handler]);
    }
    Ok(catalog)
}

/// The zone's journal in write-ahead-log mode without an fsync per commit: an update is
/// durable once written (it survives the agent being killed), and the disk is not waited
/// for on every update. A lab does not outlive its host anyway.
fn fast_journal(path: &std::path::Path) -> Result<Journal, String> {
    let journal =
        Journal::from_file(path).map_err(|e| format!("journal {}: {e}", path.display()))?;
    {
        let conn = journal.conn();
        let pragma = |name: &str, value: &str| {
            conn.pragma_update(None, name, value)
                .map_err(|e| format!("journal {}: pragma {name}={value}: {e}", path.display()))
        };
        pragma("journal_mode", "WAL")?;
        pragma("synchronous", "NORMAL")?;
    }
    Ok(journal)
}

async fn resolver_catalog(config: &ResolverConfig) -> Result<Catalog, DnsAgentError> {
    let options = RecursorOptions {
        // The lab uses documentation and benchmark ranges that the recursor's default
        // filters deny; allow exactly the lab's networks and nothing else.
        allow_server: config.allow_servers.clone(),
        deny_server: vec![
            "0.0.0.0/0".parse().expect("net"),
            "::/0".parse().expect("net"),
        ],
        ..RecursorOptions::default()
    };
    let recursive = RecursiveConfig {
        roots: config.roots_file.clone(),
        dnssec_policy: Default::default(),
        options,
    };
    let handler = RecursiveZoneHandler::try_from_config(
        Name::root(),
        ZoneType::External,
        recursive,
        None,
        TokioRuntimeProvider::default(),
    )
    .await
    .map_err(DnsAgentError::Resolver)?;
    let handler: Arc<dyn ZoneHandler> = Arc::new(handler);
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::from(Name::root()), vec![handler]);
    Ok(catalog)
}

/// The keys the zones accept updates signed with, for the replay and algorithm checks.
fn update_signers(config: &DnsAgentConfig) -> Result<Vec<TSigner>, DnsAgentError> {
    let mut signers = Vec::new();
    for zone in &config.zones {
        if let Some(key) = &zone.update_key {
            let fail = |cause: String| DnsAgentError::Zone {
                zone: zone.origin.clone(),
                cause,
            };
            let secret = std::fs::read(&key.file)
                .map_err(|e| fail(format!("{}: {e}", key.file.display())))?;
            signers.push(guard::signer(&key.name, secret, TSIG_FUDGE).map_err(fail)?);
        }
    }
    Ok(signers)
}

/// Runs until SIGTERM: loads the zones, binds, reports ready, serves.
pub async fn run(config: DnsAgentConfig) -> Result<(), DnsAgentError> {
    if config.server == crate::topology::DnsServer::Bind {
        return super::bind::run(&config)
            .await
            .map_err(|e| DnsAgentError::Named(e.to_string()));
    }
    let catalog = authoritative_catalog(&config).await?;
    let guarded = Guarded::new(catalog, update_signers(&config)?);
    let (udp, tcp) = bind(SocketAddr::new(config.listen, 53)).await?;
    let mut authority = serve(guarded, udp, tcp);
    let mut resolver_server = None;
    if let Some(resolver) = &config.resolver {
        let catalog = resolver_catalog(resolver).await?;
        let (udp, tcp) = bind(SocketAddr::new(resolver.listen, 53)).await?;
        resolver_server = Some(serve(catalog, udp, tcp));
        tracing::info!(listen = %resolver.listen, "recursive resolver ready");
    }
    let zones: Vec<&str> = config.zones.iter().map(|z| z.origin.as_str()).collect();
    tracing::info!(listen = %config.listen, ?zones, "dns agent ready");
    super::drop_privileges().map_err(|e| DnsAgentError::Privileges(e.to_string()))?;
    super::notify_ready();
    super::shutdown_signal().await;
    tracing::info!("dns agent stopping");
    authority
        .shutdown_gracefully()
        .await
        .map_err(|e| DnsAgentError::Serve(e.to_string()))?;
    if let Some(server) = &mut resolver_server {
        server
            .shutdown_gracefully()
            .await
            .map_err(|e| DnsAgentError::Serve(e.to_string()))?;
    }
    Ok(())
}
