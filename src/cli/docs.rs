//! Shell completions and the man pages, generated from the same definitions as `--help`,
//! so they never drift from the verbs they describe.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::Cli;

/// Writes `shell`'s completion script for roamlab to standard output.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut command, "roamlab", &mut out);
    out.flush().context("write the completions")
}

/// Writes roamlab's man pages (roff, section 1): with `dir`, `roamlab.1` and one
/// `roamlab-VERB.1` per verb (as the top page's list names them) into it; without, the
/// top page to standard output.
pub fn man(dir: Option<&Path>) -> Result<()> {
    let command = Cli::command();
    let Some(dir) = dir else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(command)
            .render(&mut out)
            .context("write the man page")?;
        return out.flush().context("write the man page");
    };
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let verbs: Vec<clap::Command> = command
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .cloned()
        .collect();
    let pages =
        std::iter::once(("roamlab".to_string(), command)).chain(verbs.into_iter().map(|verb| {
            let name = format!("roamlab-{}", verb.get_name());
            let title = format!("roamlab {}", verb.get_name());
            let page = verb
                .name(name.clone())
                .bin_name(title)
                .version(env!("CARGO_PKG_VERSION"))
                .disable_version_flag(true);
            (name, page)
        }));
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut roff = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut roff)
            .and_then(|_| std::fs::write(&path, roff))
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
