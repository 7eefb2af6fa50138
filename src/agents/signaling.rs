//! The private signaling network of the lab (patent: private network 124): Unix-domain
//! stream sockets in the lab's state directory, mode 0600, which the lab's IP network has
//! no route to. This module holds what every end of it shares: binding and serving a
//! socket within limits, the kernel's word on who a peer is, IPA framing with GSUP on
//! top, and the identity exchange.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::contract::{AgentKind, LabDir};
use crate::protocols::gsup::Message;
use crate::protocols::ipa::{self, Frame, IpaError};

/// How long a request may wait for its answer before it fails with a cause.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a new peer has to identify itself (or a terminal to speak) before it is dropped.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(3);

/// Binds a Unix socket readable and writable by root only, replacing a stale one (its
/// directory is made, root only, if it is not there).
pub fn bind_private(path: &Path) -> io::Result<tokio::net::UnixListener> {
    if let Some(parent) = path.parent() {
        crate::json_file::private_dir(parent)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// How many connections a listener serves at once, and from one peer process.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub total: usize,
    pub per_peer: usize,
}

/// Accepts connections for ever and hands each to `serve` on a task of its own, within
/// `limits` (a connection over a limit is closed at once; the refusals are logged at a
/// bounded rate, per peer). Running out of descriptors or memory (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM) is logged and waited out, never the end of the listener.
pub async fn serve_connections<F, Fut>(
    listener: tokio::net::UnixListener,
    what: &'static str,
    limits: Limits,
    serve: F,
) where
    F: Fn(tokio::net::UnixStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use std::collections::HashMap;
    use std::time::Instant;
    let open = Arc::new(std::sync::Mutex::new(HashMap::<i32, usize>::new()));
    let mut refusals = super::ratelimit::RateLimited::new(Duration::from_secs(10));
    let mut failures = super::ratelimit::RateLimited::new(Duration::from_secs(10));
    let mut backoff = Duration::from_millis(5);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(5);
                stream
            }
            Err(e) => {
                let kind = e.raw_os_error().unwrap_or(0);
                if let Some(n) = failures.note(&kind, Instant::now()) {
                    tracing::warn!(
                        "{what}: accept failed ({e}), {n} time(s); waiting and serving on"
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let pid = stream.peer_cred().ok().and_then(|c| c.pid()).unwrap_or(0);
        let admitted = {
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            let total: usize = open.values().sum();
            let mine = open.entry(pid).or_insert(0);
            if total >= limits.total || *mine >= limits.per_peer {
                false
            } else {
                *mine += 1;
                true
            }
        };
        if !admitted {
            if let Some(n) = refusals.note(&pid, Instant::now()) {
                tracing::warn!(
                    peer_pid = pid,
                    "{what}: connection refused: over the limit of {} per peer or {} in all ({n} refused)",
                    limits.per_peer,
                    limits.total
                );
            }
            continue;
        }
        let work = serve(stream);
        let open = open.clone();
        tokio::spawn(async move {
            work.await;
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = open.get_mut(&pid) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&pid);
                }
            }
        });
    }
}

/// Which of the lab's agents of `kind` the peer of `stream` is — the node it serves — by
/// what the kernel says of the process, not by anything it sends: it holds no capability
/// and may gain none (every agent gives its up once bound, see
/// [`super::drop_privileges`]; a process in a node keeps some), it is in our PID
/// namespace (a process in a node has one of its own), and it was started as
/// `roamlab agent KIND --config <lab>/<kind>-<node>/config.json`. Only the agents granted
/// a socket's directory see the socket at all (see `lab::agent_view`); this check is what
/// keeps everything else that might, off it. Agents are not dumpable, so nothing of theirs
/// behind /proc/<pid> (root, fds, exe) is open to another agent: only status and cmdline.
pub fn peer_agent(stream: &tokio::net::UnixStream, kind: AgentKind) -> Result<String, String> {
    let pid = stream
        .peer_cred()
        .ok()
        .and_then(|c| c.pid())
        .ok_or("the peer's credentials are unknown")?;
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    if crate::kernel::privileges::capabilities_held(&status)
        || !status.lines().any(|l| l == "NoNewPrivs:\t1")
    {
        return Err(format!(
            "process {pid} holds capabilities (the lab's agents give theirs up)"
        ));
    }
    // NSpid lists the process's pid in each PID namespace from ours down to its own.
    let namespaces = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| v.split_whitespace().count())
        .unwrap_or(0);
    if namespaces != 1 {
        return Err(format!("process {pid} is confined (a process of a node)"));
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| e.to_string())?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    if args.get(1) != Some(&&b"agent"[..]) || args.get(2) != Some(&kind.as_str().as_bytes()) {
        return Err(format!("process {pid} is not a {} agent", kind.as_str()));
    }
    args.windows(2)
        .find(|w| w[0] == b"--config")
        .map(|w| PathBuf::from(String::from_utf8_lossy(w[1]).to_string()))
        .and_then(|config| LabDir::node_of_config(&config, kind))
        .ok_or_else(|| {
            format!(
                "process {pid} names no configuration of a {} agent",
                kind.as_str()
            )
        })
}

/// The sending half of a signaling link (a Unix socket, or TCP to an external HLR),
/// shareable between tasks.
#[derive(Clone)]
pub struct Sender(Arc<Mutex<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>>);

impl Sender {
    pub fn new(half: impl tokio::io::AsyncWrite + Send + Unpin + 'static) -> Self {
        Sender(Arc::new(Mutex::new(Box::new(half))))
    }

    pub async fn frame(&self, frame: &Frame) -> Result<(), IpaError> {
        let mut w = self.0.lock().await;
        ipa::write_frame(&mut *w, frame).await
    }

    pub async fn gsup(&self, message: &Message) -> Result<(), IpaError> {
        let bytes = message
            .try_encode()
            .map_err(|e| IpaError::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        self.frame(&Frame::Gsup(bytes)).await
    }
}

/// Reads frames until a GSUP one arrives, answering pings on the way.
pub async fn next_gsup<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    sender: &Sender,
) -> Result<Vec<u8>, IpaError> {
    loop {
        match ipa::read_frame(reader).await? {
            Frame::Gsup(bytes) => return Ok(bytes),
            Frame::Ping => sender.frame(&Frame::Pong).await?,
            _ => {}
        }
    }
}

/// Server side of the identity exchange, after ID_GET: reads frames until the peer's
/// ID_RESP and returns the name it claims (none if it closes or sends garbage first).
pub async fn claimed_identity<R: tokio::io::AsyncRead + Unpin>(reader: &mut R) -> Option<String> {
    loop {
        match ipa::read_frame(reader).await {
            Ok(Frame::IdResp(items)) => return identity_of(&items),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// The name an ID_RESP claims, as libosmocore's IPA server reads it: the serial number, or
/// else the unit name without the `-00-00-00-00-00-00` suffix libosmocore appends.
pub fn identity_of(items: &[(u8, String)]) -> Option<String> {
    let tag = |t: u8| {
        items
            .iter()
            .find(|(tag, v)| *tag == t && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    tag(ipa::TAG_SERIAL).or_else(|| {
        tag(ipa::TAG_UNIT_NAME).map(|n| n.trim_end_matches("-00-00-00-00-00-00").to_string())
    })
}

/// How long a client waits for ID_ACK or ID_NACK after its identity: roamlab's HLR
/// answers at once; osmo-hlr never does, and the link is up all the same.
const ID_ACK_WAIT: Duration = Duration::from_millis(200);

/// Client side of the identity exchange, as libosmocore's GSUP client does it: answers
/// ID_GET with every tag asked for that it has (unit name and serial number: `name`; unit
/// ID: `0/0/0`), then takes ID_ACK, or silence, as accepted, and ID_NACK as refused.
pub async fn identify<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    sender: &Sender,
    name: &str,
) -> Result<(), String> {
    let asked = async {
        loop {
            match ipa::read_frame(reader).await.map_err(|e| e.to_string())? {
                Frame::IdGet(tags) => return Ok::<_, String>(tags),
                Frame::Ping => sender
                    .frame(&Frame::Pong)
                    .await
                    .map_err(|e| e.to_string())?,
                _ => {}
            }
        }
    };
    let tags = tokio::time::timeout(HELLO_TIMEOUT, asked)
        .await
        .unwrap_or_else(|_| Err("no identity exchange".to_string()))?;
    let items: Vec<(u8, String)> = tags
        .iter()
        .filter_map(|tag| match *tag {
            ipa::TAG_UNIT_NAME | ipa::TAG_SERIAL => Some((*tag, name.to_string())),
            ipa::TAG_UNIT_ID => Some((*tag, "0/0/0".to_string())),
            _ => None,
        })
        .collect();
    sender
        .frame(&Frame::IdResp(items))
        .await
        .map_err(|e| e.to_string())?;
    let answer = async {
        loop {
            match ipa::read_frame(reader).await.map_err(|e| e.to_string())? {
                Frame::IdAck => return Ok(()),
                Frame::IdNack => {
                    return Err("the HLR refused our identity (no roaming agreement)".to_string())
                }
                Frame::Ping => sender
                    .frame(&Frame::Pong)
                    .await
                    .map_err(|e| e.to_string())?,
                _ => {}
            }
        }
    };
    tokio::time::timeout(ID_ACK_WAIT, answer)
        .await
        .unwrap_or(Ok(()))
}

/// The VLR's end of the private network's tap ([`crate::contract::tap`]): each message is
/// one datagram to the capture's socket, if one is listening; never waits, never fails.
pub struct Tap {
    path: Option<std::path::PathBuf>,
    socket: Option<std::os::unix::net::UnixDatagram>,
}

impl Tap {
    pub fn new(path: Option<std::path::PathBuf>) -> Self {
        let socket = std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|_| s))
            .ok();
        Tap { path, socket }
    }

    pub fn message(&self, to_hlr: bool, home: &str, message: &Message) {
        // No capture, no copy: the common case costs one stat.
        if !self.listened() {
            return;
        }
        let Ok(gsup) = message.try_encode() else {
            return;
        };
        self.bytes(to_hlr, home, &gsup);
    }

    fn listened(&self) -> bool {
        self.socket.is_some() && self.path.as_ref().is_some_and(|p| p.exists())
    }

    pub fn bytes(&self, to_hlr: bool, home: &str, gsup: &[u8]) {
        let (Some(path), Some(socket)) = (&self.path, &self.socket) else {
            return;
        };
        if !path.exists() {
            return;
        }
        let at_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let record = crate::contract::tap::TapRecord {
            to_hlr,
            at_ns,
            home: home.to_string(),
            gsup: gsup.to_vec(),
        };
        let _ = socket.send_to(&record.encode(), path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_known_by_serial_number_then_unit_name() {
        let libosmocore = [
            (ipa::TAG_UNIT_NAME, "visited-00-00-00-00-00-00".to_string()),
            (ipa::TAG_SERIAL, "visited".to_string()),
        ];
        assert_eq!(identity_of(&libosmocore).as_deref(), Some("visited"));
        let name_only = [(ipa::TAG_UNIT_NAME, "visited-00-00-00-00-00-00".to_string())];
        assert_eq!(identity_of(&name_only).as_deref(), Some("visited"));
        assert_eq!(identity_of(&[(ipa::TAG_UNIT_ID, "0/0/0".into())]), None);
    }
}
