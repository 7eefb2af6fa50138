//! A durable work queue: changes that must reach another party (a DNS server, the HLR)
//! are written to a journal before they are tried, retried until they succeed, and picked
//! up again after a restart, so none is lost and none is left stale. (Kea's DHCP-DDNS loses
//! its queue on restart, and drops what overflows it.) Changes to different names go side
//! by side; the changes to one name go in order.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Notify;

use crate::journal::{Journal, Value};

/// How long a failed item first waits before it is tried again; each further failure
/// doubles the wait, up to [`RETRY_MAX`].
const RETRY: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Why an item did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The other party could not be reached or could not do it now: try again.
    Retry(String),
    /// The other party refused it for good: trying again cannot succeed, and the items
    /// behind it must not wait for it.
    Refused(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry(why) | Failure::Refused(why) => f.write_str(why),
        }
    }
}

impl From<String> for Failure {
    fn from(why: String) -> Self {
        Failure::Retry(why)
    }
}

/// How a failed DNS update counts: a server that answered NOTAUTH, REFUSED, NOTZONE or
/// FORMERR will answer the same again; anything else (no answer, SERVFAIL) may pass later.
pub fn dns_failure(e: crate::dns::update::UpdateError) -> Failure {
    use crate::dns::update::UpdateError;
    match &e {
        UpdateError::Refused { for_good: true, .. } | UpdateError::Invalid(_) => {
            Failure::Refused(e.to_string())
        }
        _ => Failure::Retry(e.to_string()),
    }
}

/// The wait before try number `failures + 1`.
fn backoff(failures: u32) -> Duration {
    RETRY
        .saturating_mul(1u32 << failures.min(16))
        .min(RETRY_MAX)
}

/// How many items a queue's owner lets wait before it slows its own clients down (a DHCP
/// server stays silent to new clients, an HLR answers congestion): work waits in the
/// queue, never in a buffer that can overflow.
pub const MAX_BACKLOG: usize = 2048;

/// What a worked item came to: its place in the queue, and its last outcome.
type Done<T> = (u64, T, Result<(), Failure>, u32);

/// Items kept in a journal (a line per item pushed and per item done), worked by up to
/// `lanes` at once; items with the same key are worked one after the other, in order.
pub struct DurableQueue<T: Value> {
    journal: Mutex<Journal<u64, T>>,
    path: PathBuf,
    /// Which items go in order (those of one key), and how many of each key wait.
    key: fn(&T) -> String,
    waiting: Mutex<HashMap<String, usize>>,
    next: AtomicU64,
    wake: Notify,
}

impl<T: Value + std::fmt::Debug> DurableQueue<T> {
    /// Opens the queue, with whatever an earlier run left in it; `key` says which items
    /// must go in order (those with the same key).
    pub fn open(path: PathBuf, key: fn(&T) -> String) -> std::io::Result<Self> {
        let journal = Journal::open(&path)?;
        let next = journal.records().keys().next_back().map_or(0, |k| k + 1);
        let mut waiting = HashMap::new();
        for item in journal.records().values() {
            *waiting.entry(key(item)).or_default() += 1;
        }
        Ok(DurableQueue {
            journal: Mutex::new(journal),
            path,
            key,
            waiting: Mutex::new(waiting),
            next: AtomicU64::new(next),
            wake: Notify::new(),
        })
    }

    fn put(&self, seq: u64, item: Option<&T>) {
        let mut journal = self.journal.lock().expect("lock");
        if let Err(e) = journal.put(&seq, item) {
            tracing::error!("cannot save queue {}: {e}", self.path.display());
        }
    }

    pub fn push(&self, item: T) {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        *self
            .waiting
            .lock()
            .expect("lock")
            .entry((self.key)(&item))
            .or_default() += 1;
        self.put(seq, Some(&item));
        self.wake.notify_one();
    }

    /// How many items of `key` wait (or are being worked).
    pub fn waiting(&self, key: &str) -> usize {
        self.waiting
            .lock()
            .expect("lock")
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    fn done(&self, seq: u64, item: &T) {
        let mut waiting = self.waiting.lock().expect("lock");
        let key = (self.key)(item);
        if let Some(n) = waiting.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                waiting.remove(&key);
            }
        }
        drop(waiting);
        self.put(seq, None);
    }

    pub fn len(&self) -> usize {
        self.journal.lock().expect("lock").records().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items that may start now: in queue order, the first waiting item of each key
    /// that has none in flight, up to `room` of them.
    fn startable(&self, in_flight: &HashSet<String>, room: usize) -> Vec<(u64, T, String)> {
        let journal = self.journal.lock().expect("lock");
        let mut held: HashSet<String> = in_flight.clone();
        let mut out = Vec::new();
        for (seq, item) in journal.records() {
            if out.len() >= room {
                break;
            }
            let k = (self.key)(item);
            if held.insert(k.clone()) {
                out.push((*seq, item.clone(), k));
            }
        }
        out
    }

    /// Works the queue for ever, `lanes` items at a time (one per key): an item is done
    /// with `work`, and removed when that succeeds or is refused for good (`dropped` is
    /// told); otherwise it is tried again, waiting longer after each failure, while other
    /// keys' items go on. A log line is written when the queue starts failing, when the
    /// reason changes, and when it delivers again.
    pub async fn run<F, Fut>(&self, lanes: usize, work: F, dropped: impl Fn(&T, &str))
    where
        F: Fn(T) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let last_reason = Mutex::new(String::new());
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut running = FuturesUnordered::new();
        loop {
            let room = lanes.max(1).saturating_sub(running.len());
            for (seq, item, k) in self.startable(&in_flight, room) {
                in_flight.insert(k);
                running.push(self.work_one(seq, item, &work, &last_reason));
            }
            let done: Done<T> = if running.is_empty() {
                self.wake.notified().await;
                continue;
            } else {
                tokio::select! {
                    Some(done) = running.next() => done,
                    _ = self.wake.notified() => continue,
                }
            };
            let (seq, item, outcome, failures) = done;
            in_flight.remove(&(self.key)(&item));
            if failures > 0 {
                tracing::info!(
                    "queue {}: delivered again after {failures} failed tries",
                    self.path.display()
                );
                last_reason.lock().expect("lock").clear();
            }
            if let Err(Failure::Refused(why)) = &outcome {
                tracing::warn!(
                    "queue {}: {item:?} refused for good ({why}); dropped",
                    self.path.display()
                );
                dropped(&item, why);
            }
            self.done(seq, &item);
        }
    }

    /// Tries one item until it succeeds or is refused for good.
    async fn work_one<F, Fut>(
        &self,
        seq: u64,
        item: T,
        work: &F,
        last_reason: &Mutex<String>,
    ) -> Done<T>
    where
        F: Fn(T) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let mut failures: u32 = 0;
        loop {
            match work(item.clone()).await {
                Err(Failure::Retry(why)) => {
                    {
                        let mut last = last_reason.lock().expect("lock");
                        if *last != why {
                            tracing::warn!(
                                "queue {}: {item:?} failed ({why}); retrying, backing off up to {:?}",
                                self.path.display(),
                                RETRY_MAX
                            );
                            *last = why;
                        }
                    }
                    tokio::time::sleep(backoff(failures)).await;
                    failures = failures.saturating_add(1);
                }
                outcome => return (seq, item, outcome, failures),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), RETRY);
        assert_eq!(backoff(1), RETRY * 2);
        assert_eq!(backoff(3), RETRY * 8);
        assert_eq!(backoff(10), RETRY_MAX);
        assert_eq!(backoff(u32::MAX), RETRY_MAX);
    }

    /// A change refused for good is dropped, and the ones behind it go through.
    #[tokio::test(flavor = "current_thread")]
    async fn a_refused_item_never_blocks_the_ones_behind_it() {
        let dir = std::env::temp_dir().join(format!("roamlab-queue-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let queue = std::sync::Arc::new(
            DurableQueue::<u32>::open(dir.join("q.jsonl"), |_| String::new()).unwrap(),
        );
        for i in [1, 2, 3] {
            queue.push(i);
        }
        let done = std::sync::Arc::new(Mutex::new(Vec::new()));
        let dropped = std::sync::Arc::new(Mutex::new(Vec::new()));
        let tries = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (q, d, x, t) = (queue.clone(), done.clone(), dropped.clone(), tries.clone());
        let worker = tokio::spawn(async move {
            q.run(
                1,
                |i| {
                    let (d, t) = (d.clone(), t.clone());
                    async move {
                        match i {
                            1 => Err(Failure::Refused("no such subscriber".into())),
                            // Fails twice, then goes through.
                            2 if t.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 => {
                                Err(Failure::Retry("down".into()))
                            }
                            _ => {
                                d.lock().unwrap().push(i);
                                Ok(())
                            }
                        }
                    }
                },
                move |i, why| x.lock().unwrap().push((*i, why.to_string())),
            )
            .await
        });
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if queue.is_empty() {
                break;
            }
        }
        worker.abort();
        assert_eq!(*done.lock().unwrap(), [2, 3]);
        assert_eq!(
            *dropped.lock().unwrap(),
            [(1, "no such subscriber".to_string())]
        );
        assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn by_letter(item: &(char, u32)) -> String {
        item.0.to_string()
    }

    /// One key's items go in order, one at a time, while another key's go past a failing
    /// one; what is left is found again when the queue is opened anew.
    #[tokio::test(flavor = "current_thread")]
    async fn keys_go_side_by_side_and_each_key_in_order() {
        let dir = std::env::temp_dir().join(format!("roamlab-lanes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("q.jsonl");
        {
            let queue = DurableQueue::<(char, u32)>::open(path.clone(), by_letter).unwrap();
            for item in [('a', 1), ('b', 1), ('a', 2), ('b', 2), ('c', 1)] {
                queue.push(item);
            }
        }
        let queue =
            std::sync::Arc::new(DurableQueue::<(char, u32)>::open(path, by_letter).unwrap());
        assert_eq!(queue.len(), 5, "the journal keeps what was pushed");
        assert_eq!((queue.waiting("a"), queue.waiting("c")), (2, 1));
        let done = std::sync::Arc::new(Mutex::new(Vec::new()));
        let a_tries = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (q, d, t) = (queue.clone(), done.clone(), a_tries.clone());
        let worker = tokio::spawn(async move {
            q.run(
                4,
                |item| {
                    let (d, t) = (d.clone(), t.clone());
                    async move {
                        // a's first item fails twice before it goes through.
                        if item == ('a', 1) && t.fetch_add(1, Ordering::SeqCst) < 2 {
                            return Err(Failure::Retry("down".into()));
                        }
                        d.lock().unwrap().push(item);
                        Ok(())
                    }
                },
                |_, _| {},
            )
            .await
        });
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if queue.is_empty() {
                break;
            }
        }
        worker.abort();
        let done = done.lock().unwrap().clone();
        assert_eq!(done.len(), 5);
        assert_eq!(queue.waiting("a"), 0);
        let of = |k: char| {
            done.iter()
                .filter(|i| i.0 == k)
                .map(|i| i.1)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            (of('a'), of('b'), of('c')),
            (vec![1, 2], vec![1, 2], vec![1])
        );
        assert_eq!(
            done.iter().position(|i| *i == ('a', 1)),
            Some(3),
            "b and c went past a's failing item: {done:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
