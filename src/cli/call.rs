//! `roamlab call FROM TO`: a voice call by host name, and what the wire showed of it.

use anyhow::{bail, Result};

use crate::lab::call::{self, CallReport};

pub fn run(lab: &str, from: &str, to: &str, media_secs: f64, json: bool) -> Result<()> {
    let media = std::time::Duration::from_secs_f64(media_secs);
    let report = call::call(lab, from, to, media)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", describe(&report));
    }
    if !report.succeeded() {
        bail!(
            "call {} → {}: {}",
            report.from,
            report.uri,
            report.why.as_deref().unwrap_or("failed")
        );
    }
    Ok(())
}

/// One line: "call fixed1 → sip:…: set up in 2.1 ms (INVITE → 200 OK); media 50 RTP
/// packets sent, 50 received; media path direct (0 RTP packets through home)".
pub fn describe(r: &CallReport) -> String {
    let setup = match r.setup_ms {
        Some(ms) => format!("set up in {ms:.1} ms (INVITE → 200 OK)"),
        None => format!("not set up: {}", r.why.as_deref().unwrap_or("no answer")),
    };
    format!(
        "call {} → {}: {setup}; media {} RTP packets sent, {} received; media path {} ({} RTP packets through home)",
        r.from, r.uri, r.rtp_sent, r.rtp_received, r.media_path, r.rtp_through_home
    )
}
