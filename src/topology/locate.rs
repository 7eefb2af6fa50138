//! Maps a field path (`links[2].endpoints[0].addresses[1]`) back to its line and column in
//! the YAML text, so errors found after parsing can still point into the file.

use std::fmt;

use saphyr_parser::{Event, Parser, Span, StrInput};

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path into the document, printed the way users write it: `nodes.core.bridges[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    pub fn key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Seg::Key(key.to_string()));
        next
    }

    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Seg::Index(index));
        next
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Line and column (both 1-based) where the value at `path` starts, if the path exists.
pub fn locate(source: &str, path: &FieldPath) -> Option<(usize, usize)> {
    let mut parser = Parser::new_from_str(source);
    loop {
        match parser.next_event()?.ok()? {
            (Event::DocumentStart(_), _) => break,
            (Event::StreamEnd, _) => return None,
            _ => {}
        }
    }
    let span = walk(&mut parser, &path.0)?;
    Some((span.start.line(), span.start.col() + 1))
}

/// Reads one node; returns the span of the node the remaining path points at.
fn walk(parser: &mut Parser<'_, StrInput<'_>>, path: &[Seg]) -> Option<Span> {
    let (event, span) = parser.next_event()?.ok()?;
    if path.is_empty() {
        skip_rest(parser, &event)?;
        return Some(span);
    }
    match (event, &path[0]) {
        (Event::MappingStart(..), Seg::Key(want)) => loop {
            let (key, _) = parser.next_event()?.ok()?;
            match key {
                Event::MappingEnd => return None,
                Event::Scalar(ref k, ..) if k == want => return walk(parser, &path[1..]),
                other => {
                    skip_rest(parser, &other)?;
                    skip_node(parser)?;
                }
            }
        },
        (Event::SequenceStart(..), Seg::Index(want)) => {
            for _ in 0..*want {
                let (item, _) = parser.next_event()?.ok()?;
                if matches!(item, Event::SequenceEnd) {
                    return None;
                }
                skip_rest(parser, &item)?;
            }
            walk(parser, &path[1..])
        }
        _ => None,
    }
}

/// Skips a whole node whose first event has not been read yet.
fn skip_node(parser: &mut Parser<'_, StrInput<'_>>) -> Option<()> {
    let (event, _) = parser.next_event()?.ok()?;
    skip_rest(parser, &event)
}

/// Skips the rest of a node whose first event was `first`.
fn skip_rest(parser: &mut Parser<'_, StrInput<'_>>, first: &Event<'_>) -> Option<()> {
    if !matches!(first, Event::MappingStart(..) | Event::SequenceStart(..)) {
        return Some(());
    }
    let mut depth = 1usize;
    while depth > 0 {
        match parser.next_event()?.ok()?.0 {
            Event::MappingStart(..) | Event::SequenceStart(..) => depth += 1,
            Event::MappingEnd | Event::SequenceEnd => depth -= 1,
            Event::StreamEnd => return None,
            _ => {}
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: lab\nnodes:\n  core:\n    role: core\nlinks:\n  - endpoints:\n      - { node: a, addresses: [192.0.2.1/24] }\n      - node: b\n        addresses:\n          - 192.0.2.2/24\n";

    fn path(segs: &[Seg]) -> FieldPath {
        FieldPath(segs.to_vec())
    }

    #[test]
    fn finds_block_and_flow_values() {
        use Seg::*;
        assert_eq!(locate(DOC, &path(&[Key("name".into())])), Some((1, 7)));
        let role = path(&[Key("nodes".into()), Key("core".into()), Key("role".into())]);
        assert_eq!(locate(DOC, &role), Some((4, 11)));
        let flow = path(&[
            Key("links".into()),
            Index(0),
            Key("endpoints".into()),
            Index(0),
            Key("addresses".into()),
            Index(0),
        ]);
        assert_eq!(locate(DOC, &flow), Some((7, 32)));
        let block = path(&[
            Key("links".into()),
            Index(0),
            Key("endpoints".into()),
            Index(1),
            Key("addresses".into()),
            Index(0),
        ]);
        assert_eq!(locate(DOC, &block), Some((10, 13)));
    }

    #[test]
    fn missing_paths_are_none() {
        use Seg::*;
        assert_eq!(locate(DOC, &path(&[Key("nope".into())])), None);
        assert_eq!(locate(DOC, &path(&[Key("links".into()), Index(5)])), None);
    }

    #[test]
    fn displays_like_users_write_it() {
        use Seg::*;
        let p = path(&[Key("links".into()), Index(2), Key("impairment".into())]);
        assert_eq!(p.to_string(), "links[2].impairment");
    }
}
