//! The shared allowance: one GCRA bucket per key for one rate, in a sharded, bounded table that
//! every worker leases tokens from. A worker touches it once per batch of tokens (a short mutex
//! hold on one shard), never per request.
//!
//! Bounded: each shard holds at most `max_keys / SHARDS` keys. When full, one key goes, chosen
//! by CLOCK (second chance): a key used again since the hand last passed it is spared once (a
//! new key enters unmarked). So a flood of new keys, each used once, evicts itself, while a key
//! in use keeps its bucket as long as it is used once per turn of the hand. A key evicted while its bucket was not full starts full again: at most one extra
//! burst for it (counted in `evicted_busy`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::gcra::{Bucket, Rate};
use crate::hash::FxHashMap;

pub const SHARDS: usize = 64;

static TABLE_IDS: AtomicU64 = AtomicU64::new(1);

struct Shard {
    /// Each key's bucket and whether it was touched since the hand last passed.
    buckets: FxHashMap<u64, (Bucket, bool)>,
    /// Keys in insertion order (for eviction).
    order: VecDeque<u64>,
}

pub struct Table {
    /// Unique per table (process-wide): workers' leases are keyed by it.
    pub id: u64,
    pub rate: Rate,
    per_shard: usize,
    shards: Vec<Mutex<Shard>>,
    /// Busy keys evicted because their shard was full of busy keys.
    pub evicted_busy: AtomicU64,
}

/// What a lease request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub tokens: u64,
    /// Tokens left in the shared bucket after the grant.
    pub left: u64,
    /// Nanoseconds until a token is available (when none was granted).
    pub wait: u64,
    /// Nanoseconds until the bucket is full again.
    pub until_full: u64,
}

impl Table {
    pub fn new(rate: Rate, max_keys: usize) -> Table {
        Table {
            id: TABLE_IDS.fetch_add(1, Ordering::Relaxed),
            rate,
            per_shard: (max_keys / SHARDS).max(1),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard { buckets: FxHashMap::default(), order: VecDeque::new() }))
                .collect(),
            evicted_busy: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Shard> {
        // The high bits pick the shard; the map hashes the whole key.
        let i = (key >> 58) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take up to `want` tokens for `key` at `now`.
    pub fn lease(&self, key: u64, now: u64, want: u64) -> Grant {
        let r = self.rate;
        let mut s = self.shard(key);
        if !s.buckets.contains_key(&key) {
            // A new key enters untouched: only a second visit marks it as in use, so a flood of
            // one-time keys is what the hand evicts first.
            self.make_room(&mut s, now);
            s.order.push_back(key);
        }
        let (b, _) = match s.buckets.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => {
                let v = o.into_mut();
                v.1 = true;
                v
            }
            std::collections::hash_map::Entry::Vacant(v) => v.insert((Bucket::default(), false)),
        };
        let tokens = b.take(r, now, want);
        Grant { tokens, left: b.available(r, now), wait: b.wait(r, now), until_full: b.until_full(now) }
    }

    /// Return `k` unused tokens of `key`.
    pub fn give_back(&self, key: u64, now: u64, k: u64) {
        if k == 0 {
            return;
        }
        let r = self.rate;
        if let Some((b, _)) = self.shard(key).buckets.get_mut(&key) {
            b.give_back(r, now, k);
        }
    }

    fn make_room(&self, s: &mut Shard, now: u64) {
        while s.buckets.len() >= self.per_shard {
            let Some(k) = s.order.pop_front() else { break };
            match s.buckets.get_mut(&k) {
                Some((_, touched)) if *touched => {
                    *touched = false;
                    s.order.push_back(k);
                }
                Some((b, _)) => {
                    if !b.is_full(now) {
                        self.evicted_busy.fetch_add(1, Ordering::Relaxed);
                    }
                    s.buckets.remove(&k);
                }
                None => {}
            }
        }
    }

    /// Keys held (all shards).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).buckets.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most keys this table holds.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn bounded_under_a_flood_and_active_keys_keep_their_bucket() {
        let t = Table::new(Rate::new(10, S, 10), 64 * 1024);
        let hot = 0x1234_5678_9abc_def0u64;
        let mut admitted = 0;
        // A million distinct keys, one request each, over 10 s; meanwhile the hot key asks at
        // 3x its rate (10/s, burst 10).
        for i in 0..1_000_000u64 {
            let now = S + i * 10_000;
            t.lease(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), now, 1);
            if i % 333 == 0 {
                admitted += t.lease(hot, now, 1).tokens;
            }
        }
        assert!(t.len() <= t.capacity(), "{} keys", t.len());
        assert!(admitted <= 10 * 10 + 10, "the hot key kept its limit: {admitted}");
        assert!(admitted >= 10 * 10, "and its rate: {admitted}");
    }
}
