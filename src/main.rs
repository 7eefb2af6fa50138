fn main() {
    let cli = roamlab::cli::Cli::from_args();
    // Agents write to their log files, where their life story is wanted; verbs stay quiet.
    // hickory-server warns "unexpected lookup skip" on every positive answer when a
    // dnssec feature is built in and no NSEC setting is made; that is noise, not news. It
    // also logs every request at info, which costs a busy server a third of its speed:
    // ROAMLAB_LOG=info,hickory_server::server=info turns that back on.
    let default = if cli.is_agent() {
        "info,hickory_server::zone_handler::catalog=error,hickory_server::server=warn"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROAMLAB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Agents write into log files: no colour codes there.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(!cli.is_agent())
        .with_writer(std::io::stderr)
        .init();
    if let Err(error) = roamlab::cli::run(cli) {
        eprintln!("roamlab: error: {error:#}");
        std::process::exit(roamlab::cli::exit_code(&error));
    }
}
