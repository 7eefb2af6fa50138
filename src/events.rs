//! The lab's event log: every agent appends one JSON line per event (time, agent, event,
//! terminal, fields) to the lab's event log ([`LabDir::events`]), so the flow of an
//! attach can be read, or watched live with `roamlab events --follow`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::contract::LabDir;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// Seconds since the Unix epoch, with microseconds.
    pub ts: f64,
    pub agent: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// Makes the log if it is not there yet (root only), so that it can be granted to a
/// confined agent before any agent has written to it.
pub fn create(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

/// An agent's handle on the log. Each event is one `write` on an O_APPEND file, so lines
/// from several agents never interleave.
pub struct EventLog {
    agent: String,
    file: Option<Mutex<File>>,
}

impl EventLog {
    pub fn open(path: &Path, agent: &str) -> io::Result<Self> {
        // IMSIs and MSISDNs: readable by root only.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(EventLog {
            agent: agent.to_string(),
            file: Some(Mutex::new(file)),
        })
    }

    /// A log that records nothing (for tests and tools).
    pub fn discard(agent: &str) -> Self {
        EventLog {
            agent: agent.to_string(),
            file: None,
        }
    }

    pub fn emit(&self, event: &str, terminal: Option<&str>, fields: serde_json::Value) {
        let Some(file) = &self.file else { return };
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let fields = match fields {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        let e = Event {
            ts,
            agent: self.agent.clone(),
            event: event.to_string(),
            terminal: terminal.map(String::from),
            fields,
        };
        if let Ok(mut line) = serde_json::to_vec(&e) {
            line.push(b'\n');
            if let Ok(mut f) = file.lock() {
                let _ = f.write_all(&line);
            }
        }
    }
}

/// Every event of a lab, in time order: its agents' log and each terminal's own (see
/// [`Tail`]); lines that do not parse are skipped.
pub fn read_all(lab: &LabDir) -> io::Result<Vec<Event>> {
    File::open(lab.events())
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", lab.events().display())))?;
    let mut tail = Tail::new(lab);
    let mut events = tail.poll();
    events.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    Ok(events)
}

/// Reads a lab's event logs as they grow. A terminal (the subscriber's device, which the
/// lab does not trust) writes only to a log of its own, and every line read from it is
/// put in that terminal's name, whatever it says: it can speak for itself, never for an
/// agent of the networks or for another terminal.
pub struct Tail {
    main: PathBuf,
    terminals: PathBuf,
    offsets: std::collections::HashMap<PathBuf, u64>,
}

impl Tail {
    /// Reading starts at the beginning of every log.
    pub fn new(lab: &LabDir) -> Self {
        Tail {
            main: lab.events(),
            terminals: lab.terminals(),
            offsets: Default::default(),
        }
    }

    /// Skips what the logs hold now: later polls return only what is added.
    pub fn skip_to_end(&mut self) {
        for (path, _) in self.sources() {
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            self.offsets.insert(path, len);
        }
    }

    fn sources(&self) -> Vec<(PathBuf, Option<String>)> {
        let mut all = vec![(self.main.clone(), None)];
        for entry in std::fs::read_dir(&self.terminals)
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(name) = entry.file_name().into_string() {
                all.push((entry.path().join("events.jsonl"), Some(name)));
            }
        }
        all
    }

    /// The whole lines added to the logs since the last poll.
    pub fn poll(&mut self) -> Vec<Event> {
        use std::io::{Read, Seek};
        let mut events = Vec::new();
        for (path, terminal) in self.sources() {
            let Ok(mut file) = File::open(&path) else {
                continue;
            };
            let at = self.offsets.get(&path).copied().unwrap_or(0);
            if file.seek(io::SeekFrom::Start(at)).is_err() {
                continue;
            }
            let mut text = Vec::new();
            if file.read_to_end(&mut text).is_err() {
                continue;
            }
            // A line still being written waits for the next poll.
            let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            self.offsets.insert(path, at + whole as u64);
            for line in text[..whole].split(|b| *b == b'\n') {
                let Ok(mut e) = serde_json::from_slice::<Event>(line) else {
                    continue;
                };
                if let Some(name) = &terminal {
                    e.agent = format!("{name}/terminal");
                    e.terminal = Some(name.clone());
                }
                events.push(e);
            }
        }
        events
    }
}

/// One event for people: `06:31:02.123456  visited/vlr  Attach accept  phone1  msisdn=…`.
pub fn format(e: &Event) -> String {
    let secs = e.ts.rem_euclid(86_400.0);
    let (h, m, s) = (
        (secs / 3600.0) as u64,
        ((secs % 3600.0) / 60.0) as u64,
        secs % 60.0,
    );
    let fields: Vec<String> = e
        .fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    format!(
        "{h:02}:{m:02}:{s:09.6}  {:<20} {:<30} {:<16} {}",
        e.agent,
        e.event,
        e.terminal.as_deref().unwrap_or("-"),
        fields.join(" ")
    )
    .trim_end()
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A terminal writes its own log; what it writes there is read in its name only, so it
    /// cannot forge an HLR's or another terminal's events.
    #[test]
    fn a_terminals_lines_are_read_in_its_name() {
        let dir = std::env::temp_dir().join(format!("roamlab-events-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("terminals/phone1")).unwrap();
        let lab = LabDir::at(&dir);
        let main = lab.events();
        EventLog::open(&main, "home/hlr").unwrap().emit(
            "UpdateLocation result",
            Some("phone1"),
            serde_json::json!({}),
        );
        let forged = EventLog::open(&lab.terminal_events("phone1"), "home/hlr").unwrap();
        forged.emit(
            "home DNS record set",
            Some("server1"),
            serde_json::json!({}),
        );
        let mut tail = Tail::new(&lab);
        let all = tail.poll();
        assert_eq!(all.len(), 2);
        let from_terminal = all
            .iter()
            .find(|e| e.event == "home DNS record set")
            .unwrap();
        assert_eq!(from_terminal.agent, "phone1/terminal");
        assert_eq!(from_terminal.terminal.as_deref(), Some("phone1"));
        assert!(tail.poll().is_empty(), "read twice");
        forged.emit("attached", None, serde_json::json!({}));
        assert_eq!(tail.poll().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn events_are_readable_lines() {
        let e = Event {
            ts: 3_600.0 * 6.0 + 61.5,
            agent: "visited/vlr".into(),
            event: "Attach accept".into(),
            terminal: Some("001010000000001".into()),
            fields: serde_json::json!({"host_name": "phone1.home.example"})
                .as_object()
                .unwrap()
                .clone(),
        };
        assert_eq!(
            format(&e),
            "06:01:01.500000  visited/vlr          Attach accept                  001010000000001  host_name=phone1.home.example"
        );
    }
}
