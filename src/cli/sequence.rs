//! A run's events as a sequence diagram: lanes for the terminals and the agents (VLR, HLR,
//! DHCP server, DNS servers), an arrow for each message one sent another, a note for what
//! happened inside one. As Mermaid text (`roamlab events --format mermaid`) or a
//! self-contained SVG (`--format svg`). Pure: events in, text out.
//!
//! Each VLR↔HLR message is drawn once, from the VLR's record (the HLR logs the same
//! message); the HLR's DNS writes go to its home DNS, the DHCP server's leases to the
//! terminal and its reverse records to its own network's DNS.

use std::collections::HashMap;

use crate::events::Event;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    Message {
        from: String,
        to: String,
        label: String,
    },
    Note {
        over: String,
        label: String,
    },
}

/// Subscribers' names by IMSI, for the terminals' lanes.
pub fn names_of(topology: &crate::topology::Topology) -> HashMap<String, String> {
    topology
        .subscribers
        .iter()
        .map(|s| (s.imsi.clone(), s.name.clone()))
        .collect()
}

/// The lanes in order of first appearance, and the rows. `names` maps IMSIs to
/// subscribers' names, for the terminals' lanes.
pub fn rows(events: &[Event], names: &HashMap<String, String>) -> (Vec<String>, Vec<Row>) {
    let mut lanes: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for e in events {
        let Some(row) = row(e, names) else { continue };
        let ends = match &row {
            Row::Message { from, to, .. } => vec![from.clone(), to.clone()],
            Row::Note { over, .. } => vec![over.clone()],
        };
        for lane in ends {
            if !lanes.contains(&lane) {
                lanes.push(lane);
            }
        }
        rows.push(row);
    }
    (lanes, rows)
}

fn field<'a>(e: &'a Event, key: &str) -> Option<&'a str> {
    e.fields.get(key).and_then(|v| v.as_str())
}

fn row(e: &Event, names: &HashMap<String, String>) -> Option<Row> {
    let (node, kind) = e.agent.split_once('/')?;
    let terminal = e
        .terminal
        .as_ref()
        .map(|t| names.get(t).cloned().unwrap_or_else(|| t.clone()));
    let message = |from: String, to: String, label: String| Some(Row::Message { from, to, label });
    let agent = e.agent.clone();
    let who = terminal
        .clone()
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    match kind {
        "vlr" => {
            if let Some(to) = field(e, "to") {
                return message(agent, format!("{to}/hlr"), format!("{}{who}", e.event));
            }
            if let Some(from) = field(e, "from") {
                return message(format!("{from}/hlr"), agent, format!("{}{who}", e.event));
            }
            // The air interface: the terminal's messages and the VLR's answers.
            let from_terminal = e.event.starts_with("Attach request")
                || e.event == "Authentication response"
                || e.event == "Detach request";
            let to_terminal = e.event.starts_with("Attach accept")
                || e.event.starts_with("Attach reject")
                || e.event == "Authentication request"
                || e.event == "Detach accept"
                || e.event == "Detach indication";
            match (terminal, from_terminal, to_terminal) {
                (Some(t), true, _) => message(t, agent, e.event.clone()),
                (Some(t), _, true) => message(agent, t, e.event.clone()),
                _ => Some(Row::Note {
                    over: agent,
                    label: format!("{}{who}", e.event),
                }),
            }
        }
        "hlr" => {
            // The VLR's record draws the messages of the private network.
            if field(e, "to").is_some() || field(e, "from").is_some() {
                return None;
            }
            let dns = format!("{node}/dns");
            match e.event.as_str() {
                "home DNS record set" => message(
                    agent,
                    dns,
                    format!(
                        "UPDATE A {} {}",
                        field(e, "host_name").unwrap_or("?"),
                        e.fields
                            .get("address")
                            .and_then(|a| a.as_str())
                            .unwrap_or("?")
                    ),
                ),
                "home DNS record removed" => message(
                    agent,
                    dns,
                    format!("UPDATE delete A {}", field(e, "host_name").unwrap_or("?")),
                ),
                _ => Some(Row::Note {
                    over: agent,
                    label: format!("{}{who}", e.event),
                }),
            }
        }
        "dhcp" => {
            let dns = format!("{node}/dns");
            let address = field(e, "address").unwrap_or("?");
            match (e.event.as_str(), terminal) {
                ("lease bound", Some(t)) => message(agent, t, format!("DHCPACK {address}")),
                ("visited DNS reverse record set", _) => message(
                    agent,
                    dns,
                    format!(
                        "UPDATE PTR {address} {}",
                        field(e, "host_name").unwrap_or("?")
                    ),
                ),
                ("visited DNS reverse record removed", _) => {
                    message(agent, dns, format!("UPDATE delete PTR {address}"))
                }
                _ => Some(Row::Note {
                    over: agent,
                    label: format!("{}{who}", e.event),
                }),
            }
        }
        // A terminal's own log: on its lane, the same as its messages'.
        "terminal" => Some(Row::Note {
            over: node.to_string(),
            label: e.event.clone(),
        }),
        _ => Some(Row::Note {
            over: agent,
            label: format!("{}{who}", e.event),
        }),
    }
}

/// A lane's id in Mermaid: letters, digits and `_` only.
fn id(lane: &str) -> String {
    lane.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Mermaid's text has no escape for `;` and `#` in labels: they are left out.
fn mermaid_text(label: &str) -> String {
    label.replace([';', '#'], " ")
}

pub fn mermaid(lanes: &[String], rows: &[Row]) -> String {
    let mut out = String::from("sequenceDiagram\n");
    for lane in lanes {
        out.push_str(&format!("    participant {} as {lane}\n", id(lane)));
    }
    for row in rows {
        match row {
            Row::Message { from, to, label } => out.push_str(&format!(
                "    {}->>{}: {}\n",
                id(from),
                id(to),
                mermaid_text(label)
            )),
            Row::Note { over, label } => out.push_str(&format!(
                "    Note over {}: {}\n",
                id(over),
                mermaid_text(label)
            )),
        }
    }
    out
}

/// Text made safe inside XML (an attribute or an element).
pub(super) fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained SVG: a column per lane, a row per message or note.
pub fn svg(lanes: &[String], rows: &[Row]) -> String {
    const LANE: usize = 190;
    const ROW: usize = 34;
    const TOP: usize = 60;
    let width = LANE * lanes.len().max(1) + 40;
    let height = TOP + ROW * (rows.len() + 1) + 20;
    let x = |lane: &str| 20 + LANE / 2 + LANE * lanes.iter().position(|l| l == lane).unwrap_or(0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <defs><marker id=\"arrow\" markerWidth=\"10\" markerHeight=\"8\" refX=\"10\" refY=\"4\" \
         orient=\"auto\"><path d=\"M0,0 L10,4 L0,8 z\" fill=\"#333\"/></marker></defs>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for lane in lanes {
        let cx = x(lane);
        out.push_str(&format!(
            "<g class=\"lane\"><rect x=\"{}\" y=\"10\" width=\"{}\" height=\"26\" rx=\"4\" \
             fill=\"#e8eef8\" stroke=\"#4a6fa5\"/><text x=\"{cx}\" y=\"28\" \
             text-anchor=\"middle\">{}</text><line x1=\"{cx}\" y1=\"36\" x2=\"{cx}\" y2=\"{}\" \
             stroke=\"#999\" stroke-dasharray=\"4 3\"/></g>\n",
            cx - LANE / 2 + 10,
            LANE - 20,
            xml(lane),
            height - 10
        ));
    }
    for (i, row) in rows.iter().enumerate() {
        let y = TOP + ROW * i + ROW / 2;
        match row {
            Row::Message { from, to, label } => {
                let (x1, x2) = (x(from), x(to));
                let (x1, x2) = if x1 == x2 { (x1, x1 + 30) } else { (x1, x2) };
                out.push_str(&format!(
                    "<g class=\"message\"><line x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" \
                     stroke=\"#333\" marker-end=\"url(#arrow)\"/><text x=\"{}\" y=\"{}\" \
                     text-anchor=\"middle\">{}</text></g>\n",
                    (x1 + x2) / 2,
                    y - 5,
                    xml(label)
                ));
            }
            Row::Note { over, label } => {
                let cx = x(over);
                out.push_str(&format!(
                    "<g class=\"note\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"22\" \
                     fill=\"#fff8d6\" stroke=\"#c9a227\"/><text x=\"{cx}\" y=\"{}\" \
                     text-anchor=\"middle\">{}</text></g>\n",
                    cx - LANE / 2 + 6,
                    y - 12,
                    LANE - 12,
                    y + 3,
                    xml(label)
                ));
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(agent: &str, name: &str, terminal: Option<&str>, fields: serde_json::Value) -> Event {
        Event {
            ts: 0.0,
            agent: agent.into(),
            event: name.into(),
            terminal: terminal.map(str::to_string),
            fields: fields.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn an_attach_is_drawn_once_per_message_between_the_right_lanes() {
        let imsi = "001010000000001";
        let events = [
            event(
                "visited/vlr",
                "Attach request",
                Some(imsi),
                serde_json::json!({}),
            ),
            event(
                "visited/vlr",
                "SendAuthInfo request",
                Some(imsi),
                serde_json::json!({"to": "home"}),
            ),
            event(
                "home/hlr",
                "SendAuthInfo request",
                Some("visited"),
                serde_json::json!({"from": "visited"}),
            ),
            event(
                "visited/vlr",
                "SendAuthInfo result",
                Some(imsi),
                serde_json::json!({"from": "home"}),
            ),
            event(
                "visited/dhcp",
                "lease bound",
                Some(imsi),
                serde_json::json!({"address": "198.51.100.100"}),
            ),
            event(
                "home/hlr",
                "home DNS record set",
                None,
                serde_json::json!({"host_name": "phone1.home.example", "address": "198.51.100.100"}),
            ),
            event(
                "visited/dhcp",
                "visited DNS reverse record set",
                Some(imsi),
                serde_json::json!({"address": "198.51.100.100", "host_name": "phone1.home.example"}),
            ),
            event(
                "visited/vlr",
                "radio link lost",
                Some(imsi),
                serde_json::json!({}),
            ),
        ];
        let names = HashMap::from([(imsi.to_string(), "phone1".to_string())]);
        let (lanes, rows) = rows(&events, &names);
        assert_eq!(
            lanes,
            [
                "phone1",
                "visited/vlr",
                "home/hlr",
                "visited/dhcp",
                "home/dns",
                "visited/dns"
            ]
        );
        assert_eq!(
            rows.len(),
            7,
            "the HLR's copy of a message is not drawn again"
        );
        let text = mermaid(&lanes, &rows);
        assert!(
            text.starts_with("sequenceDiagram\n    participant phone1 as phone1\n"),
            "{text}"
        );
        assert!(
            text.contains("    phone1->>visited_vlr: Attach request\n"),
            "{text}"
        );
        assert!(
            text.contains("    visited_vlr->>home_hlr: SendAuthInfo request (phone1)\n"),
            "{text}"
        );
        assert!(
            text.contains("    home_hlr->>visited_vlr: SendAuthInfo result (phone1)\n"),
            "{text}"
        );
        assert!(
            text.contains("    visited_dhcp->>phone1: DHCPACK 198.51.100.100\n"),
            "{text}"
        );
        assert!(
            text.contains("    home_hlr->>home_dns: UPDATE A phone1.home.example 198.51.100.100\n"),
            "{text}"
        );
        assert!(
            text.contains("    Note over visited_vlr: radio link lost (phone1)\n"),
            "{text}"
        );
        let picture = svg(&lanes, &rows);
        assert_eq!(picture.matches("class=\"lane\"").count(), 6);
        assert_eq!(picture.matches("class=\"message\"").count(), 6);
        assert_eq!(picture.matches("class=\"note\"").count(), 1);
        assert!(picture.contains("UPDATE PTR 198.51.100.100 phone1.home.example"));
    }

    #[test]
    fn labels_cannot_break_out_of_the_svg() {
        let events = [event("x/dns", "<script>&\"", None, serde_json::json!({}))];
        let (lanes, rows) = rows(&events, &HashMap::new());
        let picture = svg(&lanes, &rows);
        assert!(!picture.contains("<script>"));
        assert!(picture.contains("&lt;script&gt;&amp;&quot;"));
    }
}
