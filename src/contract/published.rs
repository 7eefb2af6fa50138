//! What agents publish for the lab and for each other: the VLR's registrations (read by
//! its node's DHCP agent and by `status`) and a terminal's state (read by `attach` and
//! `status`). One type each, with one reader.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::json_file;

/// The environment variable naming the descriptor an agent writes `READY` to once its
/// sockets are bound.
pub const READY_FD_ENV: &str = "ROAMLAB_READY_FD";
/// Where an agent started ahead of what it needs finds its gate: a pipe it reads one byte
/// from before it goes on (end of file: its start was called off).
pub const GATE_FD_ENV: &str = "ROAMLAB_GATE_FD";

/// A terminal in the VLR's list: its registration, kept on disk so that a restarted VLR
/// resumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachedTerminal {
    pub imsi: String,
    /// The terminal's link-layer address on the cell, as it reported it.
    pub mac: Option<String>,
    pub host_name: Option<String>,
    pub msisdn: Option<String>,
    pub home: String,
    pub since: f64,
    /// Whether the home network's subscriber data granted a packet-data context (a PDP
    /// context; claim 13): only then does the visited DHCP server lease an address.
    #[serde(default = "granted")]
    pub packet_data: bool,
}

/// Registrations published before the field existed had packet data.
fn granted() -> bool {
    true
}

/// A VLR's registrations as it publishes them: a journal keyed by IMSI, appended to on
/// each change (its DHCP agent follows it line by line).
pub type AttachedJournal = crate::journal::Journal<String, AttachedTerminal>;
pub type AttachedFollower = crate::journal::Follower<String, AttachedTerminal>;

/// Reads a VLR's list of registrations whole (none if it has not written one yet).
pub fn read_attached(path: &Path) -> Vec<AttachedTerminal> {
    crate::journal::read::<String, AttachedTerminal>(path)
        .map(|m| m.into_values().collect())
        .unwrap_or_default()
}

/// Publishes `list` as the VLR's registrations: a line for each that changed.
pub fn write_attached(journal: &mut AttachedJournal, list: &[AttachedTerminal]) -> io::Result<()> {
    let now = list.iter().map(|t| (t.imsi.clone(), t.clone())).collect();
    journal.sync(&now)
}

/// What a terminal keeps between runs (its SQN_MS) and tells the lab: its address, whether
/// it is registered, and why the network refused it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct TerminalState {
    pub sqn_ms: u64,
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
    /// Whether the network has it registered (false once it was detached or refused).
    #[serde(default)]
    pub registered: bool,
    /// Why its last attach failed, in words for `roamlab attach` to print.
    #[serde(default)]
    pub refused: Option<String>,
}

impl TerminalState {
    /// A terminal's state, or the state of one that has never run.
    pub fn read(path: &Path) -> Self {
        json_file::read_json(path).unwrap_or_default()
    }

    pub fn write(&self, path: &Path) -> io::Result<()> {
        json_file::write_private_json(path, self)
    }

    /// Why the last attach failed, as the lab shows it to the operator: the terminal (which
    /// the lab does not trust) writes this file, so control characters are dropped, to keep
    /// it from writing to the operator's terminal, and the text is cut short.
    pub fn refusal(&self) -> Option<String> {
        const MAX_CHARS: usize = 300;
        self.refused.as_ref().map(|why| {
            why.chars()
                .filter(|c| !c.is_control())
                .take(MAX_CHARS)
                .collect()
        })
    }
}

/// The file in a VLR's `links` directory that holds the link of the terminal with `imsi`.
pub fn cell_link_file(links: &Path, imsi: &str) -> PathBuf {
    links.join(format!("{imsi}.json"))
}

/// The link-layer address of the link the lab made for `imsi` in `links`, if it made one.
/// The IMSI may come from a terminal: only one of digits names a file.
pub fn read_cell_link(links: &Path, imsi: &str) -> Option<[u8; 6]> {
    if imsi.is_empty() || !imsi.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    json_file::read_json(&cell_link_file(links, imsi)).ok()
}

pub fn write_cell_link(path: &Path, mac: &[u8; 6]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        json_file::private_dir(dir)?;
    }
    json_file::write_private_json(path, mac)
}

/// A link-layer address as the published lists write it: `02:00:00:00:00:01`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell link is found by an IMSI of digits only: a terminal's IMSI never names a
    /// file outside the links directory.
    #[test]
    fn cell_links_are_named_by_digits_only() {
        let dir = std::env::temp_dir().join(format!("roamlab-links-{}", std::process::id()));
        let links = dir.join("links");
        write_cell_link(
            &cell_link_file(&links, "001010000000001"),
            &[2, 0, 0, 0, 0, 1],
        )
        .unwrap();
        write_cell_link(&dir.join("outside.json"), &[2, 0, 0, 0, 0, 9]).unwrap();
        assert_eq!(
            read_cell_link(&links, "001010000000001"),
            Some([2, 0, 0, 0, 0, 1])
        );
        assert_eq!(read_cell_link(&links, "001010000000002"), None);
        assert_eq!(read_cell_link(&links, "../outside"), None);
        assert_eq!(read_cell_link(&links, ""), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_lists_read_back_what_was_written() {
        let dir = std::env::temp_dir().join(format!("roamlab-published-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("attached.jsonl");
        assert!(read_attached(&path).is_empty());
        let list = vec![AttachedTerminal {
            imsi: "001010000000001".into(),
            mac: Some(format_mac(&[2, 0, 0, 0, 0, 1])),
            host_name: Some("phone1".into()),
            msisdn: None,
            home: "home".into(),
            since: 1.5,
            packet_data: false,
        }];
        write_attached(&mut AttachedJournal::open(&path).unwrap(), &list).unwrap();
        assert_eq!(read_attached(&path), list);
        assert_eq!(list[0].mac.as_deref(), Some("02:00:00:00:00:01"));
        // A registration written before packet_data was published had it.
        let old = r#"{"imsi":"1","mac":null,"host_name":null,"msisdn":null,"home":"h","since":0}"#;
        assert!(
            serde_json::from_str::<AttachedTerminal>(old)
                .unwrap()
                .packet_data
        );
        let state_path = dir.join("state.json");
        let state = TerminalState {
            sqn_ms: 9,
            refused: Some("no roaming agreement".into()),
            ..Default::default()
        };
        state.write(&state_path).unwrap();
        assert_eq!(TerminalState::read(&state_path), state);
        let hostile = TerminalState {
            refused: Some(format!("\u{1b}[2J\u{7}refused\r\n{}", "x".repeat(1000))),
            ..Default::default()
        };
        let shown = hostile.refusal().unwrap();
        assert!(shown.starts_with("[2Jrefused"), "{shown:?}");
        assert!(!shown.chars().any(char::is_control) && shown.chars().count() == 300);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
