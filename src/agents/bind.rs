//! BIND 9 as a lab's DNS server (`{ kind: dns, server: bind }`): the dns agent writes a
//! named.conf for the zones, keys and address the hickory server would have served (the
//! same zone files, each zone open to updates signed with its own TSIG key only), runs
//! `named -g` in the node, says it is ready once named answers the first zone's SOA, and
//! stops it on SIGTERM. The HLR's and DHCP server's updates reach it unchanged.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

use crate::contract::configs::DnsAgentConfig;

/// Why named could not serve: in words, for the agent's log and `up`'s error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NamedError(String);

/// How long named has to answer its first query.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// named.conf for `config`, with the agent's own files in `dir` and each key's secret
/// (base64) by key name.
pub fn named_conf(config: &DnsAgentConfig, dir: &Path, secrets: &[(String, String)]) -> String {
    let mut out = format!(
        "options {{\n\
         \tdirectory \"{dir}\";\n\
         \tlisten-on port 53 {{ {listen}; }};\n\
         \tlisten-on-v6 {{ none; }};\n\
         \trecursion no;\n\
         \tallow-transfer {{ none; }};\n\
         \tnotify no;\n\
         \tdnssec-validation no;\n\
         \tpid-file none;\n\
         \tsession-keyfile none;\n\
         }};\n\
         controls {{ }};\n",
        dir = dir.display(),
        listen = config.listen,
    );
    for (name, secret) in secrets {
        out.push_str(&format!(
            "key \"{name}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret}\";\n}};\n"
        ));
    }
    for zone in &config.zones {
        let name = zone.origin.trim_end_matches('.');
        let name = if name.is_empty() { "." } else { name };
        let update = match &zone.update_key {
            Some(key) => format!("\tallow-update {{ key \"{}\"; }};\n", key.name),
            None => "\tallow-update { none; };\n".to_string(),
        };
        out.push_str(&format!(
            "zone \"{name}\" {{\n\ttype primary;\n\tfile \"{file}\";\n\tjournal \"{file}.jnl\";\n{update}}};\n",
            file = zone.zone_file.display(),
        ));
    }
    out
}

/// The agent's directory: where its zone files are.
fn agent_dir(config: &DnsAgentConfig) -> Option<PathBuf> {
    config
        .zones
        .first()
        .and_then(|z| z.zone_file.parent())
        .map(Path::to_path_buf)
}

pub async fn run(config: &DnsAgentConfig) -> Result<(), NamedError> {
    let named = NamedError;
    if config.resolver.is_some() {
        return Err(named(
            "the lab's resolver is hickory's: named serves zones only".into(),
        ));
    }
    let dir = agent_dir(config).ok_or_else(|| named("no zone to serve".into()))?;
    let mut secrets: Vec<(String, String)> = Vec::new();
    for key in config.zones.iter().filter_map(|z| z.update_key.as_ref()) {
        if secrets.iter().any(|(n, _)| *n == key.name) {
            continue;
        }
        let raw =
            std::fs::read(&key.file).map_err(|e| named(format!("{}: {e}", key.file.display())))?;
        secrets.push((key.name.clone(), data_encoding::BASE64.encode(&raw)));
    }
    let conf = dir.join("named.conf");
    std::fs::write(&conf, named_conf(config, &dir, &secrets))
        .map_err(|e| named(format!("{}: {e}", conf.display())))?;
    let program = ["/usr/sbin/named", "/usr/bin/named"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| named("BIND is not installed (Debian package bind9)".into()))?;
    // -g: in the foreground, logging to stderr (the agent's log); IPv4 only.
    let mut child = tokio::process::Command::new(program)
        .arg("-g")
        .arg("-4")
        .arg("-c")
        .arg(&conf)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| named(format!("cannot run {program}: {e}")))?;
    let first = config
        .zones
        .first()
        .map(|z| z.origin.clone())
        .unwrap_or_default();
    let server = SocketAddr::new(config.listen, 53);
    let started = tokio::time::Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(named(format!(
                "exited before it answered ({status}){}",
                apparmor_hint()
            )));
        }
        if answers(server, &first).await {
            break;
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill().await;
            return Err(named(format!(
                "did not answer {first} SOA at {server} within {START_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(listen = %config.listen, "named ready");
    super::notify_ready();
    tokio::select! {
        status = child.wait() => Err(named(format!("exited ({})", status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())))),
        _ = super::shutdown_signal() => {
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                Ok(_) => Ok(()),
                Err(_) => {
                    let _ = child.kill().await;
                    Ok(())
                }
            }
        }
    }
}

/// Debian's named runs under an AppArmor profile that confines it to /etc/bind,
/// /var/cache/bind and /var/lib/bind: where AppArmor is on, that is the likely cause of a
/// named that cannot read the lab's files.
fn apparmor_hint() -> &'static str {
    let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y");
    if enabled {
        "; AppArmor is on, and Debian's profile for named forbids it the lab's files in \
         /run/roamlab: `aa-complain /usr/sbin/named` lets it run (see its log above)"
    } else {
        ""
    }
}

/// Whether `server` answers a SOA query for `zone` (with any response) within 200 ms.
async fn answers(server: SocketAddr, zone: &str) -> bool {
    let Ok(name) = Name::from_ascii(zone) else {
        return false;
    };
    let mut query = Message::new(0x5eed, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(name, RecordType::SOA));
    let Ok(bytes) = query.to_vec() else {
        return false;
    };
    let Ok(socket) = tokio::net::UdpSocket::bind(SocketAddr::new(server.ip(), 0)).await else {
        return false;
    };
    if socket.send_to(&bytes, server).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    matches!(
        tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await,
        Ok(Ok(n)) if n >= 12 && buf[..2] == [0x5e, 0xed]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::configs::{KeyRef, ZoneConfig};

    #[test]
    fn each_zone_is_open_to_its_own_key_only() {
        let zone = |origin: &str, key: Option<&str>| ZoneConfig {
            origin: origin.into(),
            zone_file: format!("/run/roamlab/l/dns-home/{origin}zone").into(),
            journal: "/unused".into(),
            update_key: key.map(|k| KeyRef {
                name: k.into(),
                file: "/k".into(),
            }),
            dynamic_ttl: 10,
        };
        let config = DnsAgentConfig {
            server: crate::topology::DnsServer::Bind,
            listen: "192.0.2.53".parse().unwrap(),
            zones: vec![
                zone("home.example.", Some("roamlab-home")),
                zone("64.18.198.in-addr.arpa.", Some("roamlab-tunnelled")),
            ],
            resolver: None,
        };
        let secrets = [
            ("roamlab-home".to_string(), "aG9tZQ==".to_string()),
            ("roamlab-tunnelled".to_string(), "dHVu".to_string()),
        ];
        let conf = named_conf(&config, Path::new("/run/roamlab/l/dns-home"), &secrets);
        assert!(
            conf.contains("listen-on port 53 { 192.0.2.53; };"),
            "{conf}"
        );
        assert!(conf.contains("recursion no;"), "{conf}");
        assert!(
            conf.contains(
                "key \"roamlab-home\" {\n\talgorithm hmac-sha256;\n\tsecret \"aG9tZQ==\";\n};"
            ),
            "{conf}"
        );
        assert!(conf.contains("zone \"home.example\" {\n\ttype primary;\n\tfile \"/run/roamlab/l/dns-home/home.example.zone\";"), "{conf}");
        let reverse = conf
            .split("zone \"64.18.198.in-addr.arpa\"")
            .nth(1)
            .unwrap();
        assert!(
            reverse.contains("allow-update { key \"roamlab-tunnelled\"; };"),
            "{conf}"
        );
        assert!(!reverse.contains("roamlab-home"), "{conf}");
    }
}
