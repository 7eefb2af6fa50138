//! What the lab's verbs say to a host of many terminals over its control socket, a line
//! each way: `start` (then a `settled NAME` line as each terminal's attach ends, and `end`),
//! and `stop NAME…` (detach them) or `drop NAME…` (their radio links just go), each
//! answered `done` once those terminals' sockets are closed.

/// A command to a terminal host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Attach every terminal, reporting each as it settles.
    Start,
    /// Release each one's lease and detach it.
    Stop(Vec<String>),
    /// End them without a word to the network (the lab moves them elsewhere).
    Drop(Vec<String>),
}

/// The answer to `start`, once per terminal: its attach ended (attached, or refused: its
/// state file says which).
pub const SETTLED: &str = "settled";
/// Every terminal has settled.
pub const END: &str = "end";
/// The terminals of a `stop` or `drop` are gone.
pub const DONE: &str = "done";

/// The most bytes a command line may have (a thousand names fit).
pub const MAX_LINE: usize = 64 * 1024;

impl Command {
    pub fn line(&self) -> String {
        match self {
            Command::Start => "start\n".to_string(),
            Command::Stop(names) => format!("stop {}\n", names.join(" ")),
            Command::Drop(names) => format!("drop {}\n", names.join(" ")),
        }
    }

    pub fn parse(line: &str) -> Result<Self, String> {
        let mut words = line.split_ascii_whitespace();
        let verb = words.next().unwrap_or_default();
        let names: Vec<String> = words.map(String::from).collect();
        match (verb, names.is_empty()) {
            ("start", true) => Ok(Command::Start),
            ("stop", false) => Ok(Command::Stop(names)),
            ("drop", false) => Ok(Command::Drop(names)),
            _ => Err(format!(
                "unknown command {:?} (start, stop NAME…, drop NAME…)",
                line.chars().take(40).collect::<String>()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_back_as_written() {
        for c in [
            Command::Start,
            Command::Stop(vec!["t1".into(), "t2".into()]),
            Command::Drop(vec!["t3".into()]),
        ] {
            assert_eq!(Command::parse(&c.line()), Ok(c));
        }
    }

    #[test]
    fn a_command_without_its_names_or_with_a_stray_word_is_refused() {
        for bad in [
            "",
            "stop",
            "drop \n",
            "start t1",
            "attach t1",
            "\u{0}\u{ff}",
        ] {
            assert!(Command::parse(bad).is_err(), "{bad:?}");
        }
    }
}
