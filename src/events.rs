//! The lab's event log: every agent appends one JSON line per event (time, agent, event,
//! terminal, fields) to `events.jsonl` in the lab's state directory, so the flow of an
//! attach can be read, or watched live with `roamlab events --follow`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub fn path(lab_dir: &Path) -> PathBuf {
    lab_dir.join("events.jsonl")
}

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

/// Reads every event of a log, in time order; lines that do not parse are skipped.
pub fn read_all(path: &Path) -> io::Result<Vec<Event>> {
    let file = File::open(path)?;
    let mut events: Vec<Event> = io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    events.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    Ok(events)
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
