//! `roamlab run --report DIR`: one self-contained HTML page of a run — the topology as a
//! picture, the checks with ✓/✗, the sequence diagram of the run's events, and the
//! transcript. Pure: it takes what the run gathered and gives text; it loads nothing from
//! anywhere (the lab is sealed, and so is its report).

use super::file::Scenario;
use super::steps::Outcome;
use crate::cli::{graph, sequence};
use crate::events::Event;
use crate::topology::Topology;

pub(super) fn page(
    scenario: &Scenario,
    topology: &Topology,
    outcomes: &[Outcome],
    events: &[Event],
    transcript: &str,
) -> String {
    let xml = sequence::xml;
    let (lanes, rows) = sequence::rows(events, &sequence::names_of(topology));
    let failed = outcomes.iter().filter(|o| !o.ok).count();
    let verdict = match failed {
        0 => format!("all {} checks passed", outcomes.len()),
        n => format!("{n} of {} checks failed", outcomes.len()),
    };
    let checks: String = outcomes
        .iter()
        .map(|o| {
            let (class, mark) = if o.ok {
                ("ok", "✓")
            } else {
                ("failed", "✗")
            };
            let why = o
                .why
                .as_ref()
                .map(|w| format!(" <span class=\"why\">— {}</span>", xml(w)))
                .unwrap_or_default();
            format!(
                "<li class=\"{class}\"><span class=\"mark\">{mark}</span> {}{why}</li>\n",
                xml(&o.saw)
            )
        })
        .collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <title>roamlab run: {origin}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em; color: #222; }}\n\
         h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.1em; margin-top: 2em; }}\n\
         .verdict.ok {{ color: #1a7f37; }} .verdict.failed {{ color: #c62828; }}\n\
         ul.checks {{ list-style: none; padding: 0; }} li.ok .mark {{ color: #1a7f37; }}\n\
         li.failed {{ color: #c62828; }} .why {{ color: #666; }}\n\
         figure {{ overflow-x: auto; margin: 0; }} pre {{ background: #f6f8fa; padding: 1em; }}\n\
         </style></head><body>\n\
         <h1>roamlab run: {origin}</h1>\n\
         <p class=\"verdict {verdict_class}\">Lab <b>{lab}</b> ({topology_origin}): {verdict}.</p>\n\
         <h2>Topology</h2>\n<figure id=\"topology\">{topology_svg}</figure>\n\
         <h2>Checks</h2>\n<ul class=\"checks\">\n{checks}</ul>\n\
         <h2>Sequence of the run's events</h2>\n<figure id=\"sequence\">{sequence_svg}</figure>\n\
         <h2>Transcript</h2>\n<pre id=\"transcript\">{transcript}</pre>\n\
         </body></html>\n",
        origin = xml(&scenario.origin),
        verdict_class = if failed == 0 { "ok" } else { "failed" },
        lab = xml(&topology.name),
        topology_origin = xml(&scenario.topology_origin),
        topology_svg = graph::svg(topology),
        sequence_svg = sequence::svg(&lanes, &rows),
        transcript = xml(transcript),
    )
}

#[cfg(test)]
mod tests {
    use super::super::steps::outcome;
    use super::*;

    #[test]
    fn the_page_holds_the_topology_the_checks_the_sequence_and_the_transcript() {
        let scenario = super::super::file::demo();
        let imsi = scenario.topology.subscribers[0].imsi.clone();
        let name = scenario.topology.subscribers[0].name.clone();
        let event = |agent: &str, event: &str| -> Event {
            serde_json::from_value(serde_json::json!({
                "ts": 1.0, "agent": agent, "event": event, "terminal": imsi,
                "fields": { "host_name": "phone1.home.example", "address": "198.51.100.100" },
            }))
            .unwrap()
        };
        let events = [
            event("visited/vlr", "Attach request"),
            event("home/hlr", "home DNS record set"),
        ];
        let outcomes = [
            outcome(
                "attach",
                true,
                "attach phone1 → 198.51.100.100".into(),
                None,
            ),
            outcome(
                "lookup",
                false,
                "lookup fixed1 <x> → NXDOMAIN".into(),
                Some("expected 198.51.100.100".into()),
            ),
        ];
        let html = page(
            &scenario,
            &scenario.topology,
            &outcomes,
            &events,
            "attach phone1 → 198.51.100.100\n",
        );
        assert!(html.contains("1 of 2 checks failed"), "{html}");
        assert!(html.contains("lookup fixed1 &lt;x&gt; → NXDOMAIN"));
        assert!(html.contains("<figure id=\"topology\"><svg"));
        assert!(html.contains("<figure id=\"sequence\"><svg"));
        assert!(html.contains("class=\"node\""));
        assert!(
            html.contains(&format!(
                "<text x=\"115\" y=\"28\" text-anchor=\"middle\">{name}</text>"
            )),
            "{html}"
        );
        assert!(html.contains("UPDATE A phone1.home.example 198.51.100.100"));
        assert!(html.contains("<pre id=\"transcript\">attach phone1"));
        // Self-contained: nothing is fetched from anywhere.
        for outside in ["src=", "href=", "@import", "url(http"] {
            assert!(!html.contains(outside), "the page loads {outside}");
        }
    }

    /// What a terminal says reaches the page: a host name it claims (in a DHCP option,
    /// kept in the DHCP server's event) and the answers dig prints. None of it can add
    /// markup or a script to the page.
    #[test]
    fn what_a_terminal_says_cannot_add_markup_to_the_page() {
        let scenario = super::super::file::demo();
        let claim = "</svg><script>alert(1)</script><img src=x>";
        let events: Vec<Event> = vec![serde_json::from_value(serde_json::json!({
            "ts": 1.0, "agent": "visited/dhcp", "event": "DNS change dropped",
            "terminal": scenario.topology.subscribers[0].imsi,
            "fields": { "host_name": claim, "address": claim },
        }))
        .unwrap()];
        let outcomes = [outcome(
            "lookup",
            false,
            format!("lookup fixed2 -x 198.51.100.100 → {claim}"),
            Some(claim.to_string()),
        )];
        let html = page(&scenario, &scenario.topology, &outcomes, &events, claim);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert_eq!(
            html.matches("</svg>").count(),
            2,
            "only the two pictures' own ends"
        );
        assert!(html.contains("&lt;/svg&gt;&lt;script&gt;"));
    }
}
