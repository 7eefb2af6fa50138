//! A host of many terminals: one process instead of one per terminal, so that what a
//! thousand terminals cost is their namespaces and sockets, not a thousand processes. Each
//! terminal is [`terminal::serve`] on a task of its own, its sockets opened inside its own
//! namespace ([`Place::Namespace`]), with its own Milenage state, lease and DHCP client;
//! one that fails ends alone. The lab's verbs drive the host through its control socket
//! ([`host_control`]); SIGTERM detaches every terminal it still has.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::place::Place;
use super::terminal;
use crate::contract::configs::{HostedTerminal, TerminalHostConfig};
use crate::contract::host_control::{self, Command};
use crate::contract::published::TerminalState;

/// How long the host waits for `start`: the verb that spawned it says it once the host is
/// recorded in the lab's state, so a host whose verb died before (kill -9) is nobody's,
/// and ends by itself.
const START_WITHIN: Duration = Duration::from_secs(10);

/// A terminal the host runs: dropping `stop` (or sending on it) detaches it.
struct Hosted {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

type Table = Arc<Mutex<HashMap<String, Hosted>>>;

pub async fn run(config: TerminalHostConfig) -> io::Result<()> {
    // A socket or two a terminal: as many descriptors as the system lets it have.
    raise_open_files_limit()?;
    let listener = bind_control(&config.control_socket)?;
    // Its terminals' keys are in its memory: nothing behind /proc/<pid> of it for anyone.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    super::notify_ready();
    let started = tokio::time::timeout(START_WITHIN, wait_for_start(&listener)).await;
    let Ok(Ok(mut starter)) = started else {
        tracing::warn!("not told to start within {START_WITHIN:?}: nobody's; ending");
        return Ok(());
    };

    let table: Table = Arc::default();
    // Names of terminals that ended, and a wake-up after each command.
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<String>();
    let slots = Arc::new(Semaphore::new(config.parallel.max(1)));
    let mut settling = futures::stream::FuturesUnordered::new();
    for hosted in config.terminals {
        let name = hosted.config.name.clone();
        let (stop, stopped) = oneshot::channel();
        let (settled_tx, settled) = oneshot::channel::<()>();
        let task = tokio::spawn(
            host_one(hosted, slots.clone(), stopped, settled_tx, ended_tx.clone())
                .instrument(tracing::info_span!("terminal", name = %name)),
        );
        table
            .lock()
            .expect("table")
            .insert(name.clone(), Hosted { stop, task });
        settling.push(async move {
            let _ = settled.await;
            name
        });
    }
    // Each terminal's attach, as it ends, for the verb that started them.
    let reporter = tokio::spawn(async move {
        let mut alive = true;
        while let Some(name) = settling.next().await {
            let line = format!("{} {name}\n", host_control::SETTLED);
            alive = alive && starter.write_all(line.as_bytes()).await.is_ok();
        }
        let _ = starter
            .write_all(format!("{}\n", host_control::END).as_bytes())
            .await;
    });

    let stop_all = super::shutdown_signal();
    tokio::pin!(stop_all);
    loop {
        tokio::select! {
            _ = &mut stop_all => {
                let names: Vec<String> = table.lock().expect("table").keys().cloned().collect();
                finish(&table, &names, true).await;
                break;
            }
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(serve_control(stream, table.clone(), ended_tx.clone()));
                }
            }
            Some(name) = ended.recv() => {
                let mut table = table.lock().expect("table");
                // A terminal that ended by itself (a refused attach) leaves the table.
                if table.get(&name).is_some_and(|h| h.task.is_finished()) {
                    table.remove(&name);
                }
                if table.is_empty() {
                    break;
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), reporter).await;
    let _ = std::fs::remove_file(&config.control_socket);
    Ok(())
}

fn raise_open_files_limit() -> io::Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)
}

/// The control socket, for root alone (its directory is the host's, 0700).
fn bind_control(path: &std::path::Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The first connection that says `start` (anything else said before it is refused).
async fn wait_for_start(listener: &UnixListener) -> io::Result<UnixStream> {
    loop {
        let (stream, _) = listener.accept().await?;
        let mut reader = BufReader::new(stream);
        match read_command(&mut reader).await {
            Ok(Command::Start) => return Ok(reader.into_inner()),
            Ok(other) => tracing::warn!("{other:?} before start: refused"),
            Err(e) => tracing::warn!("control: {e}"),
        }
    }
}

async fn read_command(reader: &mut BufReader<UnixStream>) -> Result<Command, String> {
    let mut line = Vec::new();
    let mut limited = (&mut *reader).take(host_control::MAX_LINE as u64);
    tokio::io::AsyncBufReadExt::read_until(&mut limited, b'\n', &mut line)
        .await
        .map_err(|e| e.to_string())?;
    Command::parse(&String::from_utf8_lossy(&line))
}

/// One command on the control socket: `stop` or `drop` some terminals, answered `done`.
async fn serve_control(stream: UnixStream, table: Table, ended: mpsc::UnboundedSender<String>) {
    let mut reader = BufReader::new(stream);
    let command = read_command(&mut reader).await;
    let answer = match command {
        Ok(Command::Stop(names)) => {
            finish(&table, &names, true).await;
            host_control::DONE.to_string()
        }
        Ok(Command::Drop(names)) => {
            finish(&table, &names, false).await;
            host_control::DONE.to_string()
        }
        Ok(Command::Start) => "error: started already".to_string(),
        Err(e) => format!("error: {e}"),
    };
    let _ = reader
        .get_mut()
        .write_all(format!("{answer}\n").as_bytes())
        .await;
    // The main loop looks again whether any terminal is left.
    let _ = ended.send(String::new());
}

/// Ends the named terminals, side by side: `graceful`, each releases its lease and detaches;
/// otherwise its task is aborted (its link to the cell just closes). Returns once they are
/// gone, their sockets closed. Names the host does not have are already gone.
async fn finish(table: &Table, names: &[String], graceful: bool) {
    let taken: Vec<Hosted> = {
        let mut table = table.lock().expect("table");
        names.iter().filter_map(|n| table.remove(n)).collect()
    };
    let tasks = taken.into_iter().map(|h| {
        if graceful {
            let _ = h.stop.send(());
        } else {
            h.task.abort();
        }
        h.task
    });
    futures::future::join_all(tasks).await;
}

/// One terminal's life in the host: waits for an attach slot, runs the terminal in its
/// own namespace, frees the slot once its attach has settled, and says when it ends.
async fn host_one(
    hosted: HostedTerminal,
    slots: Arc<Semaphore>,
    stopped: oneshot::Receiver<()>,
    settled: oneshot::Sender<()>,
    ended: mpsc::UnboundedSender<String>,
) {
    let name = hosted.config.name.clone();
    let slot = slots.acquire_owned().await.ok();
    let state_file = hosted.config.state_file.clone();
    let outcome = match Place::namespace(&hosted.namespace) {
        Ok(place) => {
            let stop = async {
                let _ = stopped.await;
            };
            let settled = move || {
                drop(slot);
                let _ = settled.send(());
            };
            terminal::serve(hosted.config, place, stop, settled).await
        }
        Err(e) => {
            let why = format!("cannot enter its namespace {}: {e}", hosted.namespace);
            let mut state = TerminalState::read(&state_file);
            state.refused = Some(why.clone());
            let _ = state.write(&state_file);
            Err(io::Error::other(why))
        }
    };
    if let Err(e) = outcome {
        tracing::warn!("ended: {e}");
    }
    let _ = ended.send(name);
}
