//! The terminal (patent: mobile terminal 128): attaches to a visited network over its
//! cell's air-interface socket and proves its identity with Milenage. Its SQN_MS (the
//! highest sequence number it accepted) is kept in a state file, as a USIM keeps it.
//!
//! [`Terminal`] is the protocol client (also used by tests as a fake terminal); [`run`]
//! is the agent: attach, report ready, detach at SIGTERM.

use std::path::Path;

use serde_json::json;
use tokio::net::unix::OwnedReadHalf;
use tokio::net::UnixStream;

use super::place::{Link, Place};
use super::signaling::{self, Sender, REQUEST_TIMEOUT};
use crate::contract::configs::{hex_key, TerminalConfig};
use crate::contract::published::TerminalState;
use crate::events::EventLog;
use crate::protocols::gsup::{cause, msg, Message};
use crate::protocols::milenage::{self, Challenge, Milenage};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("{}", reject_text(.0))]
    Rejected(u8),
    #[error(
        "the network failed authentication (MAC failure): it does not know this terminal's key"
    )]
    NetworkNotAuthentic,
    #[error("{0}")]
    Link(String),
}

fn reject_text(c: &u8) -> String {
    format!("{} (GMM cause {c})", cause::name(*c))
}

/// What the network granted.
#[derive(Debug, Clone)]
pub struct Granted {
    pub host_name: Option<String>,
    pub msisdn: Option<String>,
    /// Whether the network granted a packet-data context: without one there is no
    /// address to ask for (claim 13).
    pub packet_data: bool,
}

/// A terminal's link on the cell.
pub struct Terminal {
    reader: OwnedReadHalf,
    air: Sender,
    pub imsi: String,
}

impl Terminal {
    pub async fn connect(cell: &Path, imsi: &str) -> Result<Self, AttachError> {
        let stream = UnixStream::connect(cell).await.map_err(|e| {
            AttachError::Link(format!("cannot reach the cell at {}: {e}", cell.display()))
        })?;
        let (reader, writer) = stream.into_split();
        Ok(Terminal {
            reader,
            air: Sender::new(writer),
            imsi: imsi.to_string(),
        })
    }

    pub async fn send(&self, m: &Message) -> Result<(), AttachError> {
        self.air
            .gsup(m)
            .await
            .map_err(|e| AttachError::Link(e.to_string()))
    }

    pub async fn receive(&mut self) -> Result<Message, AttachError> {
        let bytes = tokio::time::timeout(
            REQUEST_TIMEOUT * 3,
            signaling::next_gsup(&mut self.reader, &self.air),
        )
        .await
        .map_err(|_| AttachError::Link("the network did not answer".into()))?
        .map_err(|e| AttachError::Link(format!("link lost: {e}")))?;
        Message::decode(&bytes)
            .map_err(|e| AttachError::Link(format!("malformed message from the network: {e}")))
    }

    /// The attach procedure. `sqn_ms` is the terminal's highest accepted sequence number,
    /// advanced when a challenge is accepted. Returns the RES it sent last (tests replay it).
    pub async fn attach(
        &mut self,
        keys: &Milenage,
        sqn_ms: &mut u64,
        claim_host_name: Option<&str>,
    ) -> Result<(Granted, Option<[u8; 8]>), AttachError> {
        self.attach_with_mac(keys, sqn_ms, claim_host_name, None)
            .await
    }

    /// Attaches, reporting the terminal's link-layer address on the cell (which the visited
    /// DHCP server authorises by).
    pub async fn attach_with_mac(
        &mut self,
        keys: &Milenage,
        sqn_ms: &mut u64,
        claim_host_name: Option<&str>,
        mac: Option<[u8; 6]>,
    ) -> Result<(Granted, Option<[u8; 8]>), AttachError> {
        let mut request = Message::new(msg::ATTACH_REQUEST, &self.imsi);
        request.host_name = claim_host_name.map(String::from);
        request.terminal_mac = mac;
        self.send(&request).await?;
        let mut last_res = None;
        loop {
            let m = self.receive().await?;
            match m.msg_type {
                msg::AUTH_REQUEST => {
                    let (Some(rand), Some(autn)) = (m.rand, m.autn) else {
                        return Err(AttachError::Link("a challenge without RAND or AUTN".into()));
                    };
                    match milenage::check_challenge(
                        keys,
                        &rand,
                        &autn,
                        &milenage::sqn_bytes(*sqn_ms),
                    ) {
                        Challenge::Accept { res, sqn } => {
                            *sqn_ms = milenage::sqn_value(&sqn);
                            last_res = Some(res);
                            let mut answer = Message::new(msg::AUTH_RESPONSE, &self.imsi);
                            answer.res = Some(res.to_vec());
                            self.send(&answer).await?;
                        }
                        Challenge::SyncFailure { auts } => {
                            let mut answer = Message::new(msg::AUTH_FAILURE, &self.imsi);
                            answer.cause = Some(cause::SYNCH_FAILURE);
                            answer.auts = Some(auts);
                            self.send(&answer).await?;
                        }
                        Challenge::MacFailure => {
                            let mut answer = Message::new(msg::AUTH_FAILURE, &self.imsi);
                            answer.cause = Some(cause::MAC_FAILURE);
                            self.send(&answer).await?;
                            return Err(AttachError::NetworkNotAuthentic);
                        }
                    }
                }
                msg::ATTACH_ACCEPT => {
                    return Ok((
                        Granted {
                            host_name: m.host_name.clone(),
                            msisdn: m.msisdn(),
                            packet_data: !m.pdp_infos.is_empty(),
                        },
                        last_res,
                    ));
                }
                msg::ATTACH_REJECT => {
                    return Err(AttachError::Rejected(
                        m.cause.unwrap_or(cause::PROTOCOL_ERROR),
                    ))
                }
                other => {
                    return Err(AttachError::Link(format!(
                        "unexpected {}",
                        msg::name(other)
                    )))
                }
            }
        }
    }

    /// Detaches and waits for the network's accept.
    pub async fn detach(&mut self) -> Result<(), AttachError> {
        self.send(&Message::new(msg::DETACH_REQUEST, &self.imsi))
            .await?;
        loop {
            let m = self.receive().await?;
            if matches!(m.msg_type, msg::DETACH_ACCEPT | msg::DETACH_INDICATION) {
                return Ok(());
            }
        }
    }
}

/// Keeps the terminal's address: renews it, and when the server refuses it (NAK) or it
/// expires, takes it off the interface and starts over with a new DISCOVER, waiting
/// longer after each failure, so that a terminal never goes on using an address that
/// may be somebody else's now.
async fn hold_address(
    config: TerminalConfig,
    link: Link,
    mac: [u8; 6],
    host_name: Option<String>,
    mut lease: super::dhcp_client::Lease,
    events: std::sync::Arc<EventLog>,
    current: std::sync::Arc<std::sync::Mutex<Option<super::dhcp_client::Lease>>>,
) {
    use super::dhcp_client::{self, Lost};
    loop {
        let lost = dhcp_client::keep(&link, mac, lease.clone()).await;
        *current.lock().expect("lock") = None;
        let why = match lost {
            Lost::Refused => "the server refused it (NAK)",
            Lost::Expired => "it expired",
        };
        if let Err(e) = unconfigure(&link, &lease).await {
            tracing::warn!("cannot remove {}: {e}", lease.address);
        }
        tracing::warn!(address = %lease.address, "address dropped: {why}");
        events.emit(
            "address dropped",
            Some(&config.name),
            json!({"address": lease.address, "why": why}),
        );
        let mut wait = std::time::Duration::from_secs(1);
        lease = loop {
            match dhcp_client::acquire(
                &link,
                mac,
                host_name.as_deref(),
                std::time::Duration::from_secs(8),
            )
            .await
            {
                Ok(l) => break l,
                Err(e) => {
                    tracing::warn!("no new address yet: {e}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(30));
                }
            }
        };
        if let Err(e) = configure(&link, &lease).await {
            tracing::warn!("cannot configure {}: {e}", lease.address);
        }
        tracing::info!(address = %lease.address, "address configured again");
        events.emit(
            "address configured",
            Some(&config.name),
            json!({"address": lease.address, "router": lease.router, "lease_secs": lease.lease_secs}),
        );
        *current.lock().expect("lock") = Some(lease.clone());
        let mut state = TerminalState::read(&config.state_file);
        state.address = Some(lease.address);
        let _ = state.write(&config.state_file);
    }
}

/// Takes a lease's address off the interface (its routes go with it).
async fn unconfigure(link: &Link, lease: &super::dhcp_client::Lease) -> std::io::Result<()> {
    use futures::TryStreamExt;
    let (handle, link) = link.netlink().await?;
    let mut addresses = handle
        .address()
        .get()
        .set_link_index_filter(link.header.index)
        .execute();
    while let Some(a) = addresses.try_next().await.map_err(std::io::Error::other)? {
        let ours = a.attributes.iter().any(|attr| {
            matches!(attr, rtnetlink::packet_route::address::AddressAttribute::Address(ip) if *ip == std::net::IpAddr::V4(lease.address))
        });
        if ours {
            handle
                .address()
                .del(a)
                .execute()
                .await
                .map_err(std::io::Error::other)?;
        }
    }
    Ok(())
}

/// Puts the leased address on the interface and a default route via the router.
async fn configure(link: &Link, lease: &super::dhcp_client::Lease) -> std::io::Result<()> {
    let (handle, link) = link.netlink().await?;
    let index = link.header.index;
    handle
        .address()
        .add(index, lease.address.into(), lease.prefix_len)
        .execute()
        .await
        .map_err(std::io::Error::other)?;
    if let Some(router) = lease.router {
        let route = rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .gateway(router)
            .output_interface(index)
            .build();
        match handle.route().add(route).execute().await {
            // Still there from the address this terminal had before.
            Err(e) if crate::kernel::netlink::errno(&e) == Some(libc::EEXIST) => {}
            other => other.map_err(std::io::Error::other)?,
        }
    }
    Ok(())
}

/// Runs a stock DHCP client once on `interface`, asking for `fqdn` to be put in DNS, and
/// waits until it has configured a lease (it may stay behind as a daemon renewing it).
fn stock_client(
    client: &str,
    interface: &str,
    fqdn: &str,
    work: &std::path::Path,
) -> Result<(), String> {
    let short = fqdn.split('.').next().unwrap_or(fqdn);
    let mut cmd = match client {
        "dhclient" => {
            // dhclient takes the FQDN from a configuration file only.
            let conf = work.join(format!("dhclient-{short}.conf"));
            let text = format!("send fqdn.fqdn \"{fqdn}.\";\nsend fqdn.encoded on;\nsend fqdn.server-update on;\nsend host-name \"{short}\";\n");
            std::fs::write(&conf, text).map_err(|e| e.to_string())?;
            let mut c = std::process::Command::new("dhclient");
            c.args(["-4", "-1", "-v", "-cf"]).arg(&conf);
            c.arg("-lf")
                .arg(work.join(format!("dhclient-{short}.leases")));
            c.arg("-pf").arg(work.join(format!("dhclient-{short}.pid")));
            c.arg(interface);
            c
        }
        "udhcpc" => {
            let mut c = std::process::Command::new("udhcpc");
            c.args([
                "-i", interface, "-n", "-q", "-f", "-t", "5", "-T", "1", "-F", fqdn, "-x",
            ])
            .arg(format!("hostname:{short}"));
            c
        }
        "dhcpcd" => {
            let mut c = std::process::Command::new("dhcpcd");
            c.args([
                "-4",
                "-1",
                "-w",
                "-t",
                "8",
                "-F",
                "both",
                "-h",
                short,
                "-C",
                "resolv.conf",
                "-C",
                "timesyncd",
                interface,
            ]);
            c
        }
        other => {
            return Err(format!(
                "unknown DHCP client {other} (builtin, dhclient, udhcpc or dhcpcd)"
            ))
        }
    };
    let output = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {client}: {e}"))?;
    let said = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    tracing::info!("{client}: {}", said.trim().replace('\n', " | "));
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{client} exited with {}: {}",
            output.status,
            said.lines().last().unwrap_or_default()
        ))
    }
}

/// The IPv4 address (and prefix) a client put on `interface`, and the default gateway.
async fn address_of(
    link: &Link,
) -> std::io::Result<(std::net::Ipv4Addr, u8, Option<std::net::Ipv4Addr>)> {
    use futures::TryStreamExt;
    use rtnetlink::packet_route::address::AddressAttribute;
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
    let interface = link.interface.clone();
    let (handle, link) = link.netlink().await?;
    let mut gateway = None;
    let mut routes = handle
        .route()
        .get(rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new().build())
        .execute();
    while let Some(r) = routes.try_next().await.map_err(std::io::Error::other)? {
        if r.header.destination_prefix_length == 0 {
            for attr in &r.attributes {
                if let RouteAttribute::Gateway(RouteAddress::Inet(gw)) = attr {
                    gateway = Some(*gw);
                }
            }
        }
    }
    let mut addresses = handle
        .address()
        .get()
        .set_link_index_filter(link.header.index)
        .execute();
    while let Some(a) = addresses.try_next().await.map_err(std::io::Error::other)? {
        for attr in &a.attributes {
            if let AddressAttribute::Address(std::net::IpAddr::V4(v4)) = attr {
                return Ok((*v4, a.header.prefix_len, gateway));
            }
        }
    }
    Err(std::io::Error::other(format!(
        "the DHCP client left no IPv4 address on {interface}"
    )))
}

/// The most `GET /bytes/N` sends: enough to time a transfer, not to fill a link for long.
const MAX_HTTP_BYTES: usize = 16 << 20;

/// How many HTTP connections a terminal serves at once, and how long each may last: what
/// a process in the terminal (or anywhere in the lab) can make its server hold, so that a
/// host of many terminals stays fair to the others.
const HTTP_CONNECTIONS: usize = 16;
const HTTP_CONNECTION_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// A mobile server's service: a small HTTP responder that says who it is, or, for
/// `GET /bytes/N`, sends N bytes (at most 16 MiB) to time a transfer by name. Its
/// connections end with it.
async fn serve_http(listener: tokio::net::TcpListener, host_name: String) {
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(HTTP_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        // One over the limit is closed at once rather than left waiting.
        let Ok(permit) = open.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let hello = format!("hello from {host_name}\n");
        connections.spawn(async move {
            let _ = tokio::time::timeout(HTTP_CONNECTION_TIME, answer_http(stream, hello)).await;
            drop(permit);
        });
    }
}

async fn answer_http(mut stream: tokio::net::TcpStream, hello: String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut buf)).await;
    let request = match read {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).to_string(),
        _ => String::new(),
    };
    let size = requested_bytes(&request);
    let length = size.unwrap_or(hello.len());
    let head =
        format!("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {length}\r\n\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    match size {
        None => {
            let _ = stream.write_all(hello.as_bytes()).await;
        }
        Some(mut left) => {
            let chunk = [b'x'; 16 * 1024];
            while left > 0 {
                let n = left.min(chunk.len());
                if stream.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                left -= n;
            }
        }
    }
}

/// N of a `GET /bytes/N` request line, if that is what it asks (and N is not too large).
fn requested_bytes(request: &str) -> Option<usize> {
    let path = request
        .lines()
        .next()?
        .strip_prefix("GET ")?
        .split(' ')
        .next()?;
    let n: usize = path.strip_prefix("/bytes/")?.parse().ok()?;
    (n <= MAX_HTTP_BYTES).then_some(n)
}

/// Records why the attach failed, for `roamlab attach` to say, and gives the error the
/// agent exits with.
fn refused(config: &TerminalConfig, state: &mut TerminalState, why: String) -> std::io::Error {
    state.registered = false;
    state.refused = Some(why.clone());
    if let Err(e) = state.write(&config.state_file) {
        tracing::warn!("cannot record why the attach failed: {e}");
    }
    std::io::Error::other(why)
}

/// Runs the terminal agent: attach, take an address, ready; on SIGTERM release and detach.
pub async fn run(config: TerminalConfig) -> std::io::Result<()> {
    serve(
        config,
        Place::Here,
        crate::agents::shutdown_signal(),
        crate::agents::notify_ready,
    )
    .await
}

/// One terminal, wherever it runs (an agent of its own, or one of a host's): attaches,
/// takes an address, calls `settled`, and stays until `stop`, when it releases its lease
/// and detaches. A failed attach returns the refusal (recorded in its state file first)
/// without calling `settled`. Whatever it started ends with it.
pub async fn serve(
    config: TerminalConfig,
    place: Place,
    stop: impl std::future::Future<Output = ()>,
    settled: impl FnOnce(),
) -> std::io::Result<()> {
    // The lease keeper and the HTTP server, ended (and their sockets closed) with it.
    let mut background = tokio::task::JoinSet::new();
    let outcome = attach_and_stay(config, place, stop, settled, &mut background).await;
    background.shutdown().await;
    outcome
}

async fn attach_and_stay(
    config: TerminalConfig,
    place: Place,
    stop: impl std::future::Future<Output = ()>,
    settled: impl FnOnce(),
    background: &mut tokio::task::JoinSet<()>,
) -> std::io::Result<()> {
    let link = Link {
        place: place.clone(),
        interface: config.interface.clone(),
    };
    let events = std::sync::Arc::new(EventLog::open(
        &config.events_file,
        &format!("{}/terminal", config.name),
    )?);
    let keys = Milenage::new(&hex_key(&config.k)?, &hex_key(&config.opc)?);
    let mut state = TerminalState::read(&config.state_file);
    state.address = None;
    state.refused = None;
    // Started while its link was made: that link, and the cell's record of it, are there
    // once the gate opens.
    if let Err(e) = crate::agents::pass_gate().await {
        return Err(refused(&config, &mut state, e.to_string()));
    }
    let mac = config.mac;
    let mut terminal = match Terminal::connect(&config.cell_socket, &config.imsi).await {
        Ok(t) => t,
        Err(e) => return Err(refused(&config, &mut state, e.to_string())),
    };
    events.emit(
        "attaching",
        Some(&config.name),
        json!({"imsi": config.imsi}),
    );
    let outcome = terminal
        .attach_with_mac(
            &keys,
            &mut state.sqn_ms,
            config.claim_host_name.as_deref(),
            Some(mac),
        )
        .await;
    // The sequence number moves on whatever the outcome, as a USIM's does.
    state.registered = outcome.is_ok();
    if let Err(e) = state.write(&config.state_file) {
        tracing::warn!("cannot keep SQN_MS: {e}");
    }
    let mut granted = match outcome {
        Ok((g, _)) => g,
        Err(e) => {
            events.emit(
                "attach failed",
                Some(&config.name),
                json!({"why": e.to_string()}),
            );
            return Err(refused(&config, &mut state, e.to_string()));
        }
    };
    tracing::info!(host_name = ?granted.host_name, msisdn = ?granted.msisdn, "attached");
    events.emit(
        "attached",
        Some(&config.name),
        json!({"host_name": granted.host_name, "msisdn": granted.msisdn, "packet_data": granted.packet_data}),
    );
    // A network that learns names from its terminals told it none: its DHCP client says
    // its own (option 81), for the network to verify with its home.
    if granted.host_name.is_none() {
        granted.host_name = config.host_name.clone();
    }
    let dhcp = config.dhcp && granted.packet_data;
    if config.dhcp && !dhcp {
        tracing::info!("no packet-data service in the profile: no address asked for");
    }

    // The MAC the built-in client holds a lease with, and that lease as it is now (it
    // changes when the server refuses it and the terminal starts over).
    let mut lease = None;
    let current = std::sync::Arc::new(std::sync::Mutex::new(None));
    if dhcp && config.dhcp_client != "builtin" {
        if !matches!(place, Place::Here) {
            let _ = terminal.detach().await;
            let why = format!(
                "a hosted terminal runs the built-in DHCP client, not {}",
                config.dhcp_client
            );
            return Err(refused(&config, &mut state, why));
        }
        let name = granted.host_name.clone().unwrap_or_default();
        let work = config
            .state_file
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        let (client, interface) = (config.dhcp_client.clone(), config.interface.clone());
        let got =
            tokio::task::spawn_blocking(move || stock_client(&client, &interface, &name, &work))
                .await
                .map_err(std::io::Error::other)?;
        if let Err(why) = got {
            let _ = terminal.detach().await;
            let why = format!("attached, but {} got no address: {why}", config.dhcp_client);
            return Err(refused(&config, &mut state, why));
        }
        let (address, prefix_len, gateway) = address_of(&link).await?;
        // The one-shot clients (udhcpc -q, dhcpcd -1) do not stay to renew; the agent keeps
        // the lease for them (the visited server is the cell's router).
        if let (Some(server), true) = (gateway, config.dhcp_client != "dhclient") {
            let lease = super::dhcp_client::Lease {
                address,
                prefix_len,
                router: Some(server),
                server,
                dns: Vec::new(),
                lease_secs: super::dhcp_client::UNKNOWN_LEASE_SECS,
            };
            background.spawn(hold_address(
                config.clone(),
                link.clone(),
                mac,
                granted.host_name.clone(),
                lease,
                events.clone(),
                current.clone(),
            ));
        }
        tracing::info!(%address, client = %config.dhcp_client, "address configured by a stock DHCP client");
        events.emit(
            "address configured",
            Some(&config.name),
            json!({"address": address, "client": config.dhcp_client}),
        );
        state.address = Some(address);
        state.write(&config.state_file)?;
    } else if dhcp {
        let got = super::dhcp_client::acquire(
            &link,
            mac,
            granted.host_name.as_deref(),
            std::time::Duration::from_secs(8),
        )
        .await;
        let l = match got {
            Ok(l) => l,
            Err(why) => {
                let _ = terminal.detach().await;
                let why = format!("attached, but no address: {why}");
                return Err(refused(&config, &mut state, why));
            }
        };
        configure(&link, &l).await?;
        tracing::info!(address = %l.address, router = ?l.router, lease_secs = l.lease_secs, "address configured");
        events.emit(
            "address configured",
            Some(&config.name),
            json!({"address": l.address, "router": l.router, "lease_secs": l.lease_secs}),
        );
        state.address = Some(l.address);
        state.write(&config.state_file)?;
        *current.lock().expect("lock") = Some(l.clone());
        background.spawn(hold_address(
            config.clone(),
            link.clone(),
            mac,
            granted.host_name.clone(),
            l,
            events.clone(),
            current.clone(),
        ));
        lease = Some(mac);
    }
    if let (Some(port), Some(host)) = (config.http_port, granted.host_name.clone()) {
        match place.tcp_listener(port) {
            Ok(listener) => {
                tracing::info!(port, "serving HTTP");
                background.spawn(serve_http(listener, host));
            }
            Err(e) => tracing::error!("cannot serve HTTP on port {port}: {e}"),
        }
    }
    settled();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => {
                let held = current.lock().expect("lock").clone();
                if let (Some(mac), Some(l)) = (&lease, &held) {
                    match super::dhcp_client::release(&link, *mac, l).await {
                        Ok(()) => events.emit("lease released", Some(&config.name), json!({"address": l.address})),
                        Err(e) => tracing::warn!("release: {e}"),
                    }
                }
                match terminal.detach().await {
                    Ok(()) => events.emit("detached", Some(&config.name), json!({})),
                    Err(e) => tracing::warn!("detach: {e}"),
                }
                break;
            }
            lost = terminal.receive_indication() => {
                let why = match lost {
                    Indication::Detached(why) => why,
                    Indication::LinkLost(e) => {
                        // The cell went away (a VLR restart): attach again, as a phone does
                        // when its network comes back; its registration, lease and name stay.
                        tracing::warn!("cell link lost ({e}); attaching again");
                        events.emit("cell link lost", Some(&config.name), json!({"why": e}));
                        let again = tokio::select! {
                            _ = &mut stop => break,
                            again = reattach(&config, &keys, &mut state, Some(mac)) => again,
                        };
                        match again {
                            Ok(t) => {
                                terminal = t;
                                events.emit("attached again", Some(&config.name), json!({}));
                                continue;
                            }
                            Err(e) => format!("attach again refused: {e}"),
                        }
                    }
                };
                tracing::info!("the network dropped us: {why}");
                events.emit("dropped by the network", Some(&config.name), json!({"why": why}));
                state.registered = false;
                let _ = state.write(&config.state_file);
                // Stay until told to go, so the lab's view of the terminal does not vanish.
                (&mut stop).await;
                break;
            }
        }
    }
    state.address = None;
    state.registered = false;
    let _ = state.write(&config.state_file);
    Ok(())
}

/// How an attached terminal learns that it is attached no more.
enum Indication {
    /// The network detached it (its home registered it elsewhere).
    Detached(String),
    /// The cell's link went away without a word.
    LinkLost(String),
}

/// Connects to the cell again and attaches, retrying while the cell is not there (up to
/// the implicit-detach time a VLR gives a lost terminal), until the network accepts or
/// refuses.
async fn reattach(
    config: &TerminalConfig,
    keys: &Milenage,
    state: &mut TerminalState,
    mac: Option<[u8; 6]>,
) -> Result<Terminal, AttachError> {
    let mut wait = std::time::Duration::from_millis(50);
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let tried = async {
            let mut t = Terminal::connect(&config.cell_socket, &config.imsi).await?;
            t.attach_with_mac(
                keys,
                &mut state.sqn_ms,
                config.claim_host_name.as_deref(),
                mac,
            )
            .await?;
            Ok::<_, AttachError>(t)
        }
        .await;
        if let Err(e) = state.write(&config.state_file) {
            tracing::warn!("cannot keep SQN_MS: {e}");
        }
        match tried {
            Ok(t) => return Ok(t),
            Err(AttachError::Link(e)) if std::time::Instant::now() < give_up => {
                tracing::debug!("cell not back yet: {e}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

impl Terminal {
    /// Waits until the network drops the terminal (detach indication or lost link).
    async fn receive_indication(&mut self) -> Indication {
        loop {
            match signaling::next_gsup(&mut self.reader, &self.air).await {
                Ok(bytes) => {
                    if Message::decode(&bytes).is_ok_and(|m| m.msg_type == msg::DETACH_INDICATION) {
                        return Indication::Detached(
                            "detach indication (registered at another network)".to_string(),
                        );
                    }
                }
                Err(e) => return Indication::LinkLost(e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::requested_bytes;

    /// A process that opens connection after connection to a terminal's HTTP server (a
    /// host serves many terminals' in one process) holds 16 of them at the most: the next
    /// is closed at once, and the server answers again once one of those ends.
    #[tokio::test(flavor = "current_thread")]
    async fn a_terminals_http_server_holds_a_bounded_number_of_connections() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let server = tokio::spawn(super::serve_http(listener, "t1.home.example".into()));
        let mut idle = Vec::new();
        for _ in 0..super::HTTP_CONNECTIONS {
            idle.push(tokio::net::TcpStream::connect(at).await.unwrap());
        }
        // Each of those is now waiting for its request; one more is refused.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut over = tokio::net::TcpStream::connect(at).await.unwrap();
        let mut got = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            over.read_to_end(&mut got),
        )
        .await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the connection over the limit was served: {read:?} {got:?}"
        );
        // One held connection asks and is answered, ending it; then a new one is served.
        let mut first = idle.remove(0);
        first.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        first.read_to_string(&mut answer).await.unwrap();
        assert!(answer.ends_with("hello from t1.home.example\n"), "{answer}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut again = tokio::net::TcpStream::connect(at).await.unwrap();
        again.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        again.read_to_string(&mut answer).await.unwrap();
        assert!(answer.contains("hello from"), "{answer}");
        server.abort();
    }

    #[test]
    fn a_transfer_asks_for_its_size_and_no_more_than_the_limit() {
        assert_eq!(
            requested_bytes("GET /bytes/262144 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(262144)
        );
        assert_eq!(requested_bytes("GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(requested_bytes("GET /bytes/99999999999 HTTP/1.1\r\n"), None);
        assert_eq!(requested_bytes("POST /bytes/10 HTTP/1.1\r\n"), None);
        assert_eq!(requested_bytes(""), None);
    }
}
