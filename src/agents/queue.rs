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

/// How long a failed item waits before it is tried again.
const RETRY: Duration = Duration::from_millis(250);

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

    /// Works the queue for ever: the front item is done with `work`, and removed only when
    /// that succeeds.
    pub async fn run<F, Fut>(&self, work: F)
    where
        F: Fn(T) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let mut failing = false;
        loop {
            let front = self.items.lock().expect("lock").front().cloned();
            let Some(item) = front else {
                self.wake.notified().await;
                continue;
            };
            match work(item.clone()).await {
                Ok(()) => {
                    if failing {
                        tracing::info!("queue {}: delivered again", self.path.display());
                        failing = false;
                    }
                    let mut items = self.items.lock().expect("lock");
                    items.pop_front();
                    self.save(&items);
                }
                Err(why) => {
                    if !failing {
                        tracing::warn!(
                            "queue {}: {item:?} failed ({why}); retrying until it succeeds",
                            self.path.display()
                        );
                        failing = true;
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}
