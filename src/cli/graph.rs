//! `roamlab graph`: the topology as Graphviz dot or a Mermaid flowchart, and as a
//! self-contained SVG for reports (homes left, core in the middle, visited networks right,
//! plain hosts below the core).

use crate::topology::{Endpoint, Topology};

fn end_label(end: &Endpoint) -> String {
    let addrs: Vec<String> = end.addresses.iter().map(|a| a.to_string()).collect();
    if addrs.is_empty() {
        end.interface.clone()
    } else {
        format!("{} {}", end.interface, addrs.join(" "))
    }
}

/// The graph node a link end attaches to: the node itself, or its bridge.
fn anchor(end: &Endpoint, sep: &str) -> String {
    match &end.bridge {
        Some(b) => format!("{}{sep}{b}", end.node),
        None => end.node.clone(),
    }
}

pub fn dot(topology: &Topology) -> String {
    let mut out = format!("graph \"{}\" {{\n  node [shape=box];\n", topology.name);
    for node in &topology.nodes {
        let role = serde_json::to_value(node.role)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let services: Vec<&str> = node.services.iter().map(|s| s.name()).collect();
        let mut label = format!("{}\\n{role}", node.name);
        if !services.is_empty() {
            label.push_str(&format!("\\n[{}]", services.join(", ")));
        }
        out.push_str(&format!("  \"{}\" [label=\"{label}\"];\n", node.name));
        for bridge in &node.bridges {
            let addrs: Vec<String> = bridge.addresses.iter().map(|a| a.to_string()).collect();
            out.push_str(&format!(
                "  \"{}:{}\" [shape=ellipse, label=\"{}\\n{}\"];\n  \"{}\" -- \"{}:{}\" [style=dashed];\n",
                node.name, bridge.name, bridge.name, addrs.join(" "), node.name, node.name, bridge.name
            ));
        }
    }
    for link in &topology.links {
        out.push_str(&format!(
            "  \"{}\" -- \"{}\" [taillabel=\"{}\", headlabel=\"{}\"];\n",
            anchor(&link.a, ":"),
            anchor(&link.b, ":"),
            end_label(&link.a),
            end_label(&link.b)
        ));
    }
    out.push_str("}\n");
    out
}

pub fn mermaid(topology: &Topology) -> String {
    let id = |s: &str| s.replace(['-', ':'], "_");
    let mut out = String::from("flowchart LR\n");
    for node in &topology.nodes {
        out.push_str(&format!("  {}[\"{}\"]\n", id(&node.name), node.name));
        for bridge in &node.bridges {
            let addrs: Vec<String> = bridge.addresses.iter().map(|a| a.to_string()).collect();
            let bid = id(&format!("{}_{}", node.name, bridge.name));
            out.push_str(&format!(
                "  {bid}([\"{} {}\"])\n  {} -.- {bid}\n",
                bridge.name,
                addrs.join(" "),
                id(&node.name)
            ));
        }
    }
    for link in &topology.links {
        out.push_str(&format!(
            "  {} ---|\"{} / {}\"| {}\n",
            id(&anchor(&link.a, "_")),
            end_label(&link.a),
            end_label(&link.b),
            id(&anchor(&link.b, "_"))
        ));
    }
    out
}

/// A self-contained SVG of the topology: a box per node (name, role, services, bridges'
/// addresses), a line per link with its ends' addresses.
pub fn svg(topology: &Topology) -> String {
    use crate::topology::Role;
    const W: usize = 230;
    const H: usize = 92;
    const GAP_X: usize = 120;
    const GAP_Y: usize = 50;
    let xml = super::sequence::xml;
    let mut rows = [0usize; 3];
    let mut places = std::collections::HashMap::new();
    for node in topology.nodes.iter().filter(|n| n.role != Role::Host) {
        let column = match node.role {
            Role::Home => 0,
            Role::Visited => 2,
            _ => 1,
        };
        let y = 20 + rows[column] * (H + GAP_Y);
        rows[column] += 1;
        places.insert(node.name.clone(), (20 + column * (W + GAP_X), y));
    }
    // Plain hosts in a row of their own below the networks, so no link crosses a box.
    let width = 40 + 3 * W + 2 * GAP_X;
    let hosts: Vec<&str> = topology
        .nodes
        .iter()
        .filter(|n| n.role == Role::Host)
        .map(|n| n.name.as_str())
        .collect();
    let networks_rows = rows.iter().max().copied().unwrap_or(0);
    let host_y = 20 + networks_rows * (H + GAP_Y);
    let per_row = (width - 40 + GAP_X / 2) / (W + GAP_X / 2);
    for (i, host) in hosts.iter().enumerate() {
        let (row, slot) = (i / per_row, i % per_row);
        let in_row = (hosts.len() - row * per_row).min(per_row);
        let span = in_row * W + (in_row - 1) * GAP_X / 2;
        let x = (width - span) / 2 + slot * (W + GAP_X / 2);
        places.insert(host.to_string(), (x, host_y + row * (H + GAP_Y)));
    }
    let host_rows = hosts.len().div_ceil(per_row.max(1));
    let height = 40 + (networks_rows + host_rows).max(1) * (H + GAP_Y) - GAP_Y;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let centre = |name: &str| {
        places
            .get(name)
            .map(|(x, y)| (x + W / 2, y + H / 2))
            .unwrap_or((0, 0))
    };
    for link in &topology.links {
        let ((x1, y1), (x2, y2)) = (centre(&link.a.node), centre(&link.b.node));
        out.push_str(&format!(
            "<g class=\"link\"><line x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" \
             stroke=\"#4a6fa5\" stroke-width=\"2\"/>"
        ));
        // Each end's addresses just outside its own box, along the line.
        // Two ends' labels share the gap between boxes: one above the line, one below.
        for (end, from, to, below) in [
            (&link.a, (x1, y1), (x2, y2), false),
            (&link.b, (x2, y2), (x1, y1), true),
        ] {
            if end.addresses.is_empty() {
                continue;
            }
            let (dx, dy) = (to.0 as f64 - from.0 as f64, to.1 as f64 - from.1 as f64);
            let length = dx.hypot(dy).max(1.0);
            let (ux, uy) = (dx / length, dy / length);
            let exit =
                ((W as f64 / 2.0) / ux.abs().max(1e-9)).min((H as f64 / 2.0) / uy.abs().max(1e-9));
            let (px, py) = (
                from.0 as f64 + ux * (exit + 6.0),
                from.1 as f64 + uy * (exit + 12.0),
            );
            let anchor = if ux < -0.3 { "end" } else { "start" };
            let (px, py) = match (ux.abs() > 0.3, below) {
                (true, false) => (px, py - 5.0),
                (true, true) => (px, py + 13.0),
                (false, _) => (px + 5.0, py),
            };
            let addresses: Vec<String> = end.addresses.iter().map(|a| a.to_string()).collect();
            out.push_str(&format!(
                "<text x=\"{px:.0}\" y=\"{py:.0}\" text-anchor=\"{anchor}\" font-size=\"10\" \
                 fill=\"#333\">{}</text>",
                xml(&addresses.join(" "))
            ));
        }
        out.push_str("</g>\n");
    }
    for node in &topology.nodes {
        let (x, y) = places[&node.name];
        let role = serde_json::to_value(node.role)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let services: Vec<&str> = node.services.iter().map(|s| s.name()).collect();
        let mut lines = vec![match services.is_empty() {
            true => role,
            false => format!("{role} · {}", services.join(", ")),
        }];
        for bridge in &node.bridges {
            // Wrapped to fit the box: a bridge's addresses two to a line.
            let addrs: Vec<String> = bridge.addresses.iter().map(|a| a.to_string()).collect();
            for (i, pair) in addrs.chunks(2).enumerate() {
                let lead = if i == 0 {
                    format!("{}:", bridge.name)
                } else {
                    String::new()
                };
                lines.push(format!("{lead} {}", pair.join(" ")).trim().to_string());
            }
        }
        out.push_str(&format!(
            "<g class=\"node\"><rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"6\" \
             fill=\"#e8eef8\" stroke=\"#4a6fa5\"/><text x=\"{}\" y=\"{}\" \
             text-anchor=\"middle\" font-weight=\"bold\">{}</text>",
            x + W / 2,
            y + 18,
            xml(&node.name)
        ));
        for (i, line) in lines.iter().take(4).enumerate() {
            out.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
                x + W / 2,
                y + 36 + 14 * i,
                xml(line)
            ));
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lab_graphs() {
        let t = Topology::builtin();
        insta::assert_snapshot!("dot", dot(&t));
        insta::assert_snapshot!("mermaid", mermaid(&t));
        insta::assert_snapshot!("svg", svg(&t));
    }
}
