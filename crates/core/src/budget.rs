//! Token buckets per key: how a relay (a member, or the auth server) bounds what it passes
//! on for each sender. A bucket fills at `rate` tokens a second up to `burst`; each datagram
//! passed on takes one. The table is bounded: beyond `keys` senders the longest-idle bucket
//! is forgotten (a forgotten sender starts again with a full burst, which is what a new one
//! gets anyway).

use crate::HashMap;
use std::hash::Hash;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

/// Token buckets keyed by sender.
pub(crate) struct Budgets<K> {
    rate: f64,
    burst: f64,
    keys: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: Copy + Eq + Hash> Budgets<K> {
    /// Buckets filling at `rate` a second up to `burst`, for at most `keys` senders.
    pub(crate) fn new(rate: f64, burst: f64, keys: usize) -> Self {
        Budgets {
            rate,
            burst,
            keys: keys.max(1),
            buckets: HashMap::default(),
        }
    }

    /// Whether `key` may pass one more datagram on at `now` (and takes the token if so).
    pub(crate) fn allow(&mut self, key: K, now: Duration) -> bool {
        if self.buckets.len() >= self.keys && !self.buckets.contains_key(&key) {
            let idle = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(&k, _)| k);
            if let Some(idle) = idle {
                self.buckets.remove(&idle);
            }
        }
        let b = self.buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let dt = now.saturating_sub(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets `key`'s bucket.
    pub(crate) fn forget(&mut self, key: &K) {
        self.buckets.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_key_and_the_idle_key_forgotten_beyond_the_table() {
        let mut b = Budgets::new(400.0, 800.0, 2);
        let t = Duration::from_secs(1);
        assert_eq!((0..2000).filter(|_| b.allow(1u32, t)).count(), 800);
        // Another key has its own budget.
        assert!(b.allow(2, t));
        let later = t + Duration::from_millis(100);
        assert_eq!((0..2000).filter(|_| b.allow(1, later)).count(), 40);
        // A third key: the longest idle (2) is forgotten, 1 keeps its empty bucket.
        assert!(b.allow(3, later));
        assert!(!b.allow(1, later));
        assert_eq!(b.buckets.len(), 2);
        b.forget(&1);
        assert!(b.allow(1, later), "a forgotten key starts full");
    }
}
