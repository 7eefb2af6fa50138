//! `roamlab graph`: the topology as Graphviz dot or a Mermaid flowchart.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lab_graphs() {
        let t = Topology::builtin();
        insta::assert_snapshot!("dot", dot(&t));
        insta::assert_snapshot!("mermaid", mermaid(&t));
    }
}
