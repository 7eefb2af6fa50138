//! A durable work queue: changes that must reach another party (a DNS server, the HLR)
//! are written to a file before they are tried, retried in order until they succeed, and
//! picked up again after a restart, so none is lost and none is left stale. (Kea's
//! DHCP-DDNS loses its queue on restart.)

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Notify;

use crate::json_file;

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

pub struct DurableQueue<T> {
    path: PathBuf,
    items: Mutex<VecDeque<T>>,
    wake: Notify,
}

impl<T: Serialize + DeserializeOwned + Clone + std::fmt::Debug> DurableQueue<T> {
    /// Opens the queue, with whatever an earlier run left in it.
    pub fn open(path: PathBuf) -> Self {
        let items: VecDeque<T> = json_file::read_json(&path).unwrap_or_default();
        DurableQueue {
            path,
            items: Mutex::new(items),
            wake: Notify::new(),
        }
    }

    fn save(&self, items: &VecDeque<T>) {
        if let Err(e) = json_file::write_private_json(&self.path, items) {
            tracing::error!("cannot save queue {}: {e}", self.path.display());
        }
    }

    pub fn push(&self, item: T) {
        let mut items = self.items.lock().expect("lock");
        items.push_back(item);
        self.save(&items);
        drop(items);
        self.wake.notify_one();
    }

    pub fn len(&self) -> usize {
        self.items.lock().expect("lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Works the queue for ever: the front item is done with `work`, and removed when that
    /// succeeds or is refused for good (`dropped` is told); otherwise it is tried again,
    /// waiting longer after each failure. A log line is written when the queue starts
    /// failing, when the reason changes, and when it delivers again.
    pub async fn run<F, Fut>(&self, work: F, dropped: impl Fn(&T, &str))
    where
        F: Fn(T) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let mut failures: u32 = 0;
        let mut last_reason = String::new();
        loop {
            let front = self.items.lock().expect("lock").front().cloned();
            let Some(item) = front else {
                self.wake.notified().await;
                continue;
            };
            let outcome = work(item.clone()).await;
            if let Err(Failure::Retry(why)) = &outcome {
                if *why != last_reason {
                    tracing::warn!(
                        "queue {}: {item:?} failed ({why}); retrying, backing off up to {:?}",
                        self.path.display(),
                        RETRY_MAX
                    );
                    last_reason = why.clone();
                }
                tokio::time::sleep(backoff(failures)).await;
                failures = failures.saturating_add(1);
                continue;
            }
            if failures > 0 {
                tracing::info!(
                    "queue {}: delivered again after {failures} failed tries",
                    self.path.display()
                );
            }
            if let Err(Failure::Refused(why)) = &outcome {
                tracing::warn!(
                    "queue {}: {item:?} refused for good ({why}); dropped",
                    self.path.display()
                );
                dropped(&item, why);
            }
            failures = 0;
            last_reason.clear();
            let mut items = self.items.lock().expect("lock");
            items.pop_front();
            self.save(&items);
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
        let queue = std::sync::Arc::new(DurableQueue::<u32>::open(dir.join("q.json")));
        for i in [1, 2, 3] {
            queue.push(i);
        }
        let done = std::sync::Arc::new(Mutex::new(Vec::new()));
        let dropped = std::sync::Arc::new(Mutex::new(Vec::new()));
        let tries = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (q, d, x, t) = (queue.clone(), done.clone(), dropped.clone(), tries.clone());
        let worker = tokio::spawn(async move {
            q.run(
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
}
