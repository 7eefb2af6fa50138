//! Log lines at a bounded rate: the first event from a source is logged at once, the rest
//! within an interval are only counted, and the count goes out with the next line. A flood
//! of refused packets or failed accepts then costs a line per source per interval, not a
//! line per packet.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Sources remembered at once; past that the oldest quiet ones are forgotten.
const MAX_SOURCES: usize = 4096;

#[derive(Debug)]
pub struct RateLimited<K> {
    interval: Duration,
    sources: HashMap<K, (Instant, u64)>,
}

impl<K: Hash + Eq + Clone> RateLimited<K> {
    pub fn new(interval: Duration) -> Self {
        RateLimited {
            interval,
            sources: HashMap::new(),
        }
    }

    /// Counts one event from `source` at `now`. Returns `Some(n)` when a line should be
    /// written now, `n` being how many events from that source it stands for (the
    /// suppressed ones since the last line, and this one).
    pub fn note(&mut self, source: &K, now: Instant) -> Option<u64> {
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(source) {
            let interval = self.interval;
            self.sources
                .retain(|_, (last, _)| now.duration_since(*last) < interval);
            if self.sources.len() >= MAX_SOURCES {
                // Still full of active sources: drop one to stay bounded.
                if let Some(k) = self.sources.keys().next().cloned() {
                    self.sources.remove(&k);
                }
            }
        }
        match self.sources.get_mut(source) {
            Some((last, pending)) if now.duration_since(*last) < self.interval => {
                *pending += 1;
                None
            }
            Some((last, pending)) => {
                let n = *pending + 1;
                *last = now;
                *pending = 0;
                Some(n)
            }
            None => {
                self.sources.insert(source.clone(), (now, 0));
                Some(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_source_per_interval_with_a_count() {
        let t0 = Instant::now();
        let mut r = RateLimited::new(Duration::from_secs(10));
        assert_eq!(r.note(&"a", t0), Some(1));
        for i in 1..1000 {
            assert_eq!(r.note(&"a", t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(r.note(&"b", t0), Some(1), "another source is its own");
        assert_eq!(r.note(&"a", t0 + Duration::from_secs(11)), Some(1000));
        assert_eq!(r.note(&"a", t0 + Duration::from_secs(12)), None);
    }

    #[test]
    fn memory_is_bounded() {
        let t0 = Instant::now();
        let mut r = RateLimited::new(Duration::from_secs(10));
        for i in 0..(MAX_SOURCES * 3) {
            r.note(&i, t0);
        }
        assert!(r.sources.len() <= MAX_SOURCES);
    }
}
