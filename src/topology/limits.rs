//! Limits on a topology's size, checked before serde_yaml expands anything: the file's
//! size first, then one pass over the parser's events that counts the YAML nodes the
//! document would expand to (an alias counts as everything its anchor holds, so a
//! "billion laughs" file is refused after reading it once, without building it). Counts
//! of lab objects are checked after parsing, before validation builds anything from them.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

/// A topology file larger than this is refused before it is read.
pub const MAX_BYTES: u64 = 4 * 1024 * 1024;
/// YAML nodes (scalars, mappings, sequences) after aliases are expanded.
pub const MAX_YAML_NODES: u64 = 1_000_000;
/// Namespaces the kernel would make, each with its own netlink connection at `up`.
pub const MAX_NODES: usize = 1024;
pub const MAX_LINKS: usize = 4096;
pub const MAX_SUBSCRIBERS: usize = 100_000;
/// Addresses in one DHCP pool (256 reverse zones at most).
pub const MAX_POOL: u64 = 65_536;

/// Why a document is refused: the limit's name, and where it was passed (line, column).
#[derive(Debug, PartialEq, Eq)]
pub struct Exceeded {
    pub message: String,
    pub line: usize,
    pub col: usize,
}

/// Counts the YAML nodes `source` expands to, refusing it as soon as the count passes
/// [`MAX_YAML_NODES`]. Syntax errors are left to the real parser, which words them better.
pub fn check_expansion(source: &str) -> Result<(), Exceeded> {
    check_expansion_with(source, MAX_YAML_NODES)
}

fn check_expansion_with(source: &str, limit: u64) -> Result<(), Exceeded> {
    // Without an alias (no `*`), a document cannot hold more than about two nodes per byte
    // (`?` alone is a mapping with a null key and value; see `the_bound_holds`): a small
    // one needs no counting. Every topology in daily use is far below it.
    if !source.contains('*') && 2 * source.len() as u64 + 2 <= limit {
        return Ok(());
    }
    count(source, limit).map(drop)
}

/// The nodes `source` expands to, or where it passes `limit`.
fn count(source: &str, limit: u64) -> Result<u64, Exceeded> {
    let mut parser = Parser::new_from_str(source);
    // The size of each anchored node, known when it ends; the stack holds the open
    // collections: (anchor id, the count when it started).
    let mut anchored: HashMap<usize, u64> = HashMap::new();
    let mut open: Vec<(usize, u64)> = Vec::new();
    let mut count: u64 = 0;
    while let Some(Ok((event, span))) = parser.next_event() {
        let added = match event {
            Event::StreamEnd => break,
            Event::Scalar(_, _, anchor, _) => {
                if anchor != 0 {
                    anchored.insert(anchor, 1);
                }
                1
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                open.push((anchor, count));
                1
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, start)) = open.pop() {
                    if anchor != 0 {
                        anchored.insert(anchor, count - start);
                    }
                }
                0
            }
            Event::Alias(anchor) => anchored.get(&anchor).copied().unwrap_or(1),
            _ => 0,
        };
        count = count.saturating_add(added);
        if count > limit {
            return Err(Exceeded {
                message: format!(
                    "the document expands to more than {limit} YAML nodes (aliases included); \
                     the limit keeps a topology from exhausting memory"
                ),
                line: span.start.line(),
                col: span.start.col() + 1,
            });
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_documents_pass() {
        check_expansion(crate::topology::DEFAULT_TOPOLOGY).unwrap();
    }

    #[test]
    fn aliases_count_what_they_expand_to() {
        // Each level holds ten aliases of the one before: 10^6 scalars from ~200 bytes.
        let mut doc = String::from("a0: &a0 [x]\n");
        for level in 1..=6 {
            let prev = level - 1;
            let items = vec![format!("*a{prev}"); 10].join(", ");
            doc.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        let err = check_expansion(&doc).unwrap_err();
        assert!(
            err.message.contains("more than 1000000 YAML nodes"),
            "{err:?}"
        );
        assert_eq!(err.line, 7);
        // Without the last level it is small enough.
        let small: String = doc.lines().take(6).map(|l| format!("{l}\n")).collect();
        check_expansion(&small).unwrap();
    }

    /// The bound the shortcut rests on: without aliases, nodes <= 2 x bytes + 2.
    #[test]
    fn the_bound_holds() {
        for doc in [
            "? a",
            "-",
            "a:",
            "?\n?\n?",
            "- - - -",
            "-\n-\n-",
            "[[[[]]]]",
            "{a, b, c}",
            "a:\nb:\nc:",
            "? ? ? ?",
            "[a,b,c,d]",
            "- {}\n- []\n- ? \n",
            "&x a",
            "!!null",
        ] {
            let nodes = count(doc, u64::MAX).unwrap();
            assert!(nodes >= 1, "{doc:?} did not parse");
            assert!(nodes <= 2 * doc.len() as u64 + 2, "{doc:?}: {nodes} nodes");
        }
    }

    #[test]
    fn counts_plain_nodes_too() {
        let doc: String = (0..100).map(|i| format!("k{i}: v\n")).collect();
        assert!(check_expansion_with(&doc, 150).is_err());
        assert!(check_expansion_with(&doc, 250).is_ok());
    }
}
