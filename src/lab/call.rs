//! `roamlab call FROM TO`: a SIP call by host name ([0030]) from a node or terminal to a
//! terminal, with Debian's baresip at both ends (a 440 Hz tone each way, G.711, no sound
//! card). Everything reported is read off the wire by packet sockets: the set-up time from
//! the caller's INVITE to the 200 OK that answers it, the RTP packets each way, and how
//! many of them passed through the callee's home router (the media path).
//!
//! Both user agents are processes of their nodes, confined like anything `roamlab exec`
//! runs: each sees its own configuration directory and nothing else of the lab.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{io_err, terminals, LabError};
use crate::contract::LabDir;
use crate::kernel::packets::PacketSocket;
use crate::protocols::{sip, udp};
use crate::supervisor::enter::{self, NodeEntry, View};

const SIP_PORT: u16 = 5060;
/// How long the callee has to open its SIP port, and the caller to get an answer.
const START_TIMEOUT: Duration = Duration::from_secs(5);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Packets a watcher keeps at most (a minute of a call's media, both ways).
const MAX_SEEN: usize = 20_000;

/// What a call did, as the wire showed it.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    pub from: String,
    pub to: String,
    pub uri: String,
    /// The caller's INVITE → the 200 OK that answers it (ms), seen at the caller.
    pub setup_ms: Option<f64>,
    pub established: bool,
    /// RTP packets seen at the caller: sent to the callee, and received from it.
    pub rtp_sent: usize,
    pub rtp_received: usize,
    /// RTP packets of the call that the callee's home router received.
    pub rtp_through_home: usize,
    /// `direct`, or `through home` when the home router carried the media.
    pub media_path: String,
    /// Why the call was not set up, or carried no media.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl CallReport {
    pub fn succeeded(&self) -> bool {
        self.established && self.rtp_sent > 0 && self.rtp_received > 0
    }
}

/// Calls terminal `to` from `from` (a node of the lab, or an attached terminal), lets the
/// media flow for `media`, hangs up and reports.
pub fn call(lab: &str, from: &str, to: &str, media: Duration) -> Result<CallReport, LabError> {
    let (state, topology) = terminals::load(lab)?;
    let callee = state
        .terminals
        .iter()
        .find(|t| t.name == to)
        .ok_or_else(|| fail(lab, format!("`{to}` is not an attached terminal")))?;
    let subscriber = topology
        .subscribers
        .iter()
        .find(|s| s.name == to)
        .ok_or_else(|| fail(lab, format!("`{to}` is no subscriber of the lab")))?;
    let caller_ns = match state.terminals.iter().find(|t| t.name == from) {
        Some(t) => t.namespace.clone(),
        None if topology.node(from).is_some() => topology.namespace(from),
        None => {
            return Err(fail(
                lab,
                format!("`{from}` is neither a node nor an attached terminal of the lab"),
            ))
        }
    };
    let baresip = which("baresip").ok_or_else(|| {
        fail(
            lab,
            "baresip is not installed (Debian package baresip-core; scripts/install-deps.sh installs it)",
        )
    })?;
    let uri = format!("sip:{}@{}", subscriber.name, subscriber.hostname);
    let dir = LabDir::of(lab);
    let number = std::process::id();
    let ends = [
        (dir.call_end(number, "callee"), to, ";answermode=auto"),
        (dir.call_end(number, "caller"), from, ""),
    ];
    for (path, who, extra) in &ends {
        write_config(path, who, &subscriber.hostname, extra)
            .map_err(io_err(lab, "write a user agent's configuration"))?;
    }
    let watch =
        |ns: &str| Watcher::start(ns).map_err(io_err(lab, format!("watch packets in {ns}")));
    let at_caller = watch(&caller_ns)?;
    let at_home = watch(&topology.namespace(&subscriber.home))?;

    let result = (|| {
        let mut callee_ua = start_ua(&baresip, &callee.namespace, &ends[0].0, None)
            .map_err(io_err(lab, format!("start a user agent in {to}")))?;
        let listening = wait_until(START_TIMEOUT, || listens_on(callee_ua.id(), SIP_PORT));
        if !listening {
            stop(&mut callee_ua);
            // Its directory goes with the call: what it said goes in the message.
            let said = std::fs::read_to_string(ends[0].0.join("log")).unwrap_or_default();
            let last = said
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(fail(
                lab,
                format!("{to}'s user agent did not open SIP port {SIP_PORT}: {last}"),
            ));
        }
        let mut caller_ua = match start_ua(&baresip, &caller_ns, &ends[1].0, Some(&uri)) {
            Ok(child) => child,
            Err(e) => {
                stop(&mut callee_ua);
                return Err(io_err(lab, format!("start a user agent in {from}"))(e));
            }
        };
        let answered = wait_until(ANSWER_TIMEOUT, || at_caller.answered());
        if answered {
            std::thread::sleep(media);
        }
        // The caller hangs up first (its BYE ends the call at both ends).
        stop(&mut caller_ua);
        stop(&mut callee_ua);
        Ok(())
    })();
    let caller_seen = at_caller.finish();
    let home_seen = at_home.finish();
    let _ = std::fs::remove_dir_all(&ends[0].0);
    let _ = std::fs::remove_dir_all(&ends[1].0);
    result?;
    Ok(report(from, to, uri, &caller_seen, &home_seen))
}

fn fail(lab: &str, why: impl Into<String>) -> LabError {
    io_err(lab, "call")(std::io::Error::other(why.into()))
}

/// The caller's first INVITE, and the final answer to it from where it was sent (another
/// host's forged answer does not count): when it came and its code.
fn answer(caller: &[Seen]) -> (Option<&Seen>, Option<(Duration, u16)>) {
    let invite = caller.iter().find(|s| {
        !s.incoming
            && s.dst.port() == SIP_PORT
            && matches!(sip::start(&s.head), Some(sip::Start::Request { method }) if method == "INVITE")
    });
    let Some(invite) = invite else {
        return (None, None);
    };
    let answer = caller.iter().find_map(|s| match sip::start(&s.head) {
        Some(sip::Start::Response {
            code,
            to_method: Some(m),
        }) if s.incoming && s.src == invite.dst && m == "INVITE" && code >= 200 => {
            Some((s.at, code))
        }
        _ => None,
    });
    (Some(invite), answer)
}

/// Reads the call off the packets seen at the caller and at the callee's home.
fn report(from: &str, to: &str, uri: String, caller: &[Seen], home: &[Seen]) -> CallReport {
    let (invite, final_answer) = answer(caller);
    let mut report = CallReport {
        from: from.to_string(),
        to: to.to_string(),
        uri,
        setup_ms: None,
        established: false,
        rtp_sent: 0,
        rtp_received: 0,
        rtp_through_home: 0,
        media_path: "none".to_string(),
        why: None,
    };
    let Some(invite) = invite else {
        report.why = Some(format!(
            "the caller sent no INVITE: it could not resolve {}",
            report.uri
        ));
        return report;
    };
    let (caller_ip, callee_ip) = (*invite.src.ip(), *invite.dst.ip());
    match final_answer {
        Some((at, 200)) => {
            report.established = true;
            report.setup_ms = Some(at.saturating_sub(invite.at).as_secs_f64() * 1000.0);
        }
        Some((_, code)) => report.why = Some(format!("the callee answered {code}")),
        None => report.why = Some(format!("no answer to the INVITE sent to {callee_ip}")),
    }
    let media = |s: &&Seen, from: Ipv4Addr, to: Ipv4Addr| {
        *s.src.ip() == from
            && *s.dst.ip() == to
            && s.src.port() != SIP_PORT
            && s.dst.port() != SIP_PORT
    };
    report.rtp_sent = caller
        .iter()
        .filter(|s| !s.incoming && media(s, caller_ip, callee_ip))
        .count();
    report.rtp_received = caller
        .iter()
        .filter(|s| s.incoming && media(s, callee_ip, caller_ip))
        .count();
    report.rtp_through_home = home
        .iter()
        .filter(|s| {
            s.incoming && (media(s, caller_ip, callee_ip) || media(s, callee_ip, caller_ip))
        })
        .count();
    report.media_path = match (
        report.rtp_sent + report.rtp_received,
        report.rtp_through_home,
    ) {
        (0, _) => "none",
        (_, 0) => "direct",
        _ => "through home",
    }
    .to_string();
    if report.established
        && report.why.is_none()
        && (report.rtp_sent == 0 || report.rtp_received == 0)
    {
        report.why = Some(format!(
            "media flowed one way only ({} packets sent, {} received)",
            report.rtp_sent, report.rtp_received
        ));
    }
    report
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// A baresip configuration: SIP on UDP 5060, a 440 Hz tone as the microphone, what is
/// heard written to a file, G.711 only, and the account of this end.
fn write_config(dir: &Path, who: &str, callee_host: &str, extra: &str) -> std::io::Result<()> {
    crate::json_file::private_dir(dir)?;
    let config = format!(
        "poll_method epoll\nsip_listen 0.0.0.0:{SIP_PORT}\nsip_trans_def udp\n\
         audio_source ausine,440\naudio_player aufile,{heard}\naudio_alert aufile,/dev/null\n\
         ausrc_srate 48000\nausrc_channels 2\nauplay_srate 48000\nauplay_channels 2\n\
         module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule ausine.so\nmodule aufile.so\n\
         module_app account.so\nmodule_app menu.so\n",
        heard = dir.join("heard.wav").display()
    );
    std::fs::write(dir.join("config"), config)?;
    // The caller registers nowhere (regint=0): its address of record is never looked up.
    let host = if extra.is_empty() {
        "lab.example"
    } else {
        callee_host
    };
    std::fs::write(
        dir.join("accounts"),
        format!("<sip:{who}@{host}>;regint=0;audio_codecs=PCMU{extra}\n"),
    )
}

/// Starts baresip in `namespace`, confined to its configuration directory; with `dial`, it
/// calls that URI at once.
fn start_ua(
    program: &Path,
    namespace: &str,
    dir: &Path,
    dial: Option<&str>,
) -> std::io::Result<Child> {
    let entry = NodeEntry::prepare_with(
        namespace,
        &View::Confined {
            grants: vec![dir.to_path_buf()],
        },
    )?;
    let log = std::fs::File::create(dir.join("log"))?;
    let mut cmd = Command::new(program);
    cmd.arg("-f").arg(dir);
    if let Some(uri) = dial {
        cmd.arg("-e").arg(format!("/dial {uri}"));
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    entry.apply_to(&mut cmd);
    std::thread::spawn(move || {
        enter::new_pid_namespace_for_children()?;
        cmd.spawn()
    })
    .join()
    .map_err(|_| std::io::Error::other("spawn thread panicked"))?
}

/// SIGTERM (baresip hangs up and quits), then SIGKILL if it lingers.
fn stop(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let gone = wait_until(Duration::from_secs(2), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !gone {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

/// Whether process `pid` has a UDP socket bound to `port` (its namespace's /proc/net/udp).
fn listens_on(pid: u32, port: u16) -> bool {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/udp")).unwrap_or_default();
    let wanted = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .any(|local| local.ends_with(&wanted))
}

/// One UDP datagram seen by a watcher.
#[derive(Debug, Clone)]
struct Seen {
    /// When the kernel took the packet in or sent it (CLOCK_REALTIME): a reader that falls
    /// behind does not move it.
    at: Duration,
    /// Received by the namespace (not one it sent).
    incoming: bool,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    /// The first bytes of the payload: a SIP message's head.
    head: Vec<u8>,
}

/// A packet socket in one namespace, read on a thread of its own until finished.
struct Watcher {
    stop: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Watcher {
    fn start(namespace: &str) -> std::io::Result<Self> {
        let socket = PacketSocket::open_in(namespace, None)?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || read_packets(&socket, &stop, &seen))
        };
        Ok(Watcher { stop, seen, thread })
    }

    /// Whether the INVITE has had its final answer.
    fn answered(&self) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        answer(&seen).1.is_some()
    }

    fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn read_packets(socket: &PacketSocket, stop: &AtomicBool, seen: &std::sync::Mutex<Vec<Seen>>) {
    while !stop.load(Ordering::SeqCst) {
        let Some(packet) = socket.recv() else {
            continue;
        };
        if packet.protocol != libc::ETH_P_IP as u16 {
            continue;
        }
        let Some(datagram) = udp::parse(&packet.data) else {
            continue;
        };
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() < MAX_SEEN {
            seen.push(Seen {
                at: packet.at,
                incoming: !packet.outgoing(),
                src: datagram.src,
                dst: datagram.dst,
                head: datagram.payload[..datagram.payload.len().min(512)].to_vec(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(at: Duration, incoming: bool, src: &str, dst: &str, head: &str) -> Seen {
        Seen {
            at,
            incoming,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            head: head.as_bytes().to_vec(),
        }
    }

    /// Set-up time from the INVITE to the callee's own 200 OK; a 200 OK another host sent
    /// first does not count, and media is counted by direction and at home.
    #[test]
    fn reads_the_call_off_the_wire_and_ignores_a_forged_answer() {
        let ms = Duration::from_millis;
        let (caller, callee, other) = ("203.0.113.10", "198.18.64.100", "203.0.113.20");
        let ok = "SIP/2.0 200 OK\r\nCSeq: 7 INVITE\r\n\r\n";
        let at_caller = vec![
            seen(
                ms(1),
                true,
                &format!("{other}:5060"),
                &format!("{caller}:5060"),
                ok,
            ),
            seen(
                ms(2),
                false,
                &format!("{caller}:5060"),
                &format!("{callee}:5060"),
                "INVITE sip:phone1@phone1.home.example SIP/2.0\r\nCSeq: 7 INVITE\r\n\r\n",
            ),
            seen(
                ms(3),
                true,
                &format!("{other}:5060"),
                &format!("{caller}:5060"),
                ok,
            ),
            seen(
                ms(5),
                true,
                &format!("{callee}:5060"),
                &format!("{caller}:5060"),
                "SIP/2.0 180 Ringing\r\nCSeq: 7 INVITE\r\n\r\n",
            ),
            seen(
                ms(9),
                true,
                &format!("{callee}:5060"),
                &format!("{caller}:5060"),
                ok,
            ),
            seen(
                ms(30),
                false,
                &format!("{caller}:4000"),
                &format!("{callee}:5000"),
                "rtp",
            ),
            seen(
                ms(31),
                true,
                &format!("{callee}:5000"),
                &format!("{caller}:4000"),
                "rtp",
            ),
            seen(
                ms(50),
                false,
                &format!("{caller}:4000"),
                &format!("{callee}:5000"),
                "rtp",
            ),
        ];
        let at_home = vec![
            seen(
                ms(30),
                true,
                &format!("{caller}:4000"),
                &format!("{callee}:5000"),
                "rtp",
            ),
            seen(
                ms(30),
                false,
                &format!("{caller}:4000"),
                &format!("{callee}:5000"),
                "rtp",
            ),
        ];
        let r = report(
            "fixed1",
            "phone1",
            "sip:phone1@phone1.home.example".into(),
            &at_caller,
            &at_home,
        );
        assert!(r.established);
        assert_eq!(r.setup_ms, Some(7.0));
        assert_eq!((r.rtp_sent, r.rtp_received, r.rtp_through_home), (2, 1, 1));
        assert_eq!(r.media_path, "through home");
        assert!(r.succeeded());
    }

    #[test]
    fn a_call_without_an_invite_or_an_answer_says_why() {
        let r = report(
            "fixed1",
            "phone1",
            "sip:phone1@phone1.home.example".into(),
            &[],
            &[],
        );
        assert!(!r.succeeded());
        assert!(r.why.unwrap().contains("sent no INVITE"));
        let t0 = Duration::ZERO;
        let busy = vec![
            seen(
                t0,
                false,
                "203.0.113.10:5060",
                "198.18.64.100:5060",
                "INVITE sip:x SIP/2.0\r\n\r\n",
            ),
            seen(
                t0,
                true,
                "198.18.64.100:5060",
                "203.0.113.10:5060",
                "SIP/2.0 486 Busy Here\r\nCSeq: 1 INVITE\r\n\r\n",
            ),
        ];
        let r = report("fixed1", "phone1", "sip:x".into(), &busy, &[]);
        assert!(!r.established);
        assert_eq!(r.why.as_deref(), Some("the callee answered 486"));
    }
}
