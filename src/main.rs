fn main() {
    let cli = roamlab::cli::Cli::from_args();
    // An attach of one terminal forks, while this process has one thread and has done
    // nothing, the child that will run the terminal's agent without `exec`.
    if cli.starts_one_agent() && nix::unistd::geteuid().is_root() {
        roamlab::supervisor::zygote::fork_for_next_agent(run_agent);
    }
    init_tracing(&cli);
    if let Err(error) = roamlab::cli::run(cli) {
        eprintln!("roamlab: error: {error:#}");
        std::process::exit(roamlab::cli::exit_code(&error));
    }
}

/// Runs an agent's command line in a zygote's child (see `supervisor::zygote`), as `main`
/// runs it in an agent started with `exec`; gives its exit code.
fn run_agent(args: &[String]) -> i32 {
    let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    let Some(cli) = roamlab::cli::Cli::agent_line(&args) else {
        eprintln!("roamlab: error: not an agent's command line: {args:?}");
        return 2;
    };
    init_tracing(&cli);
    match roamlab::cli::run(cli) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("roamlab: error: {error:#}");
            roamlab::cli::exit_code(&error)
        }
    }
}

fn init_tracing(cli: &roamlab::cli::Cli) {
    // Agents write to their log files, where their life story is wanted; verbs stay quiet.
    // hickory-server warns "unexpected lookup skip" on every positive answer when a
    // dnssec feature is built in and no NSEC setting is made; that is noise, not news. It
    // also logs every request at info, which costs a busy server a third of its speed:
    // ROAMLAB_LOG=info,hickory_server::server=info turns that back on. The recursor warns
    // "lookup error" on every host name it is asked about, when it probes the name for a
    // zone cut (an NS query) and finds none, as it should: that too is noise.
    let default = if cli.is_agent() {
        "info,hickory_server::zone_handler::catalog=error,hickory_server::server=warn,\
         hickory_resolver::recursor::handle=error"
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
}
