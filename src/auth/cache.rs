//! Per-core cache of verified tokens: a client that repeats its token pays a hash lookup and a
//! comparison instead of a signature check. Owned by one worker (no lock, no atomic).
//!
//! Keyed by a seeded hash of (policy, token); an entry also stores the whole token, so a hash
//! collision is a miss, never someone else's verification. An entry is valid until the token's
//! `exp` plus leeway, and only under the key-set version it was verified with. Bounded: when
//! full, the oldest entry goes first (FIFO).

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

use crate::hash::FxHashMap;

use super::Principal;

/// Entries per worker.
pub const CAPACITY: usize = 10_000;

struct Entry {
    policy: u64,
    token: Box<[u8]>,
    /// Unix seconds after which the token is no longer valid.
    valid_until: u64,
    key_version: u64,
    principal: Rc<Principal>,
}

pub struct TokenCache {
    seed: foldhash::fast::RandomState,
    map: FxHashMap<u64, Entry>,
    /// Keys in insertion order, for eviction.
    order: VecDeque<u64>,
    capacity: usize,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::with_capacity(CAPACITY)
    }
}

impl TokenCache {
    pub fn with_capacity(capacity: usize) -> Self {
        TokenCache {
            seed: foldhash::fast::RandomState::default(),
            map: FxHashMap::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn key(&self, policy: u64, token: &[u8]) -> u64 {
        let mut h = self.seed.build_hasher();
        h.write_u64(policy);
        h.write(token);
        h.finish()
    }

    /// The principal of a token verified earlier, if still valid at `now` under `key_version`.
    pub fn get(&mut self, policy: u64, token: &[u8], now: u64, key_version: u64) -> Option<Rc<Principal>> {
        let k = self.key(policy, token);
        let e = self.map.get(&k)?;
        if e.policy != policy || *e.token != *token {
            return None;
        }
        if now > e.valid_until || e.key_version != key_version {
            // Left in place: `put` overwrites it, eviction removes it; the map and the eviction
            // order never disagree about which keys are held.
            return None;
        }
        Some(e.principal.clone())
    }

    pub fn put(&mut self, policy: u64, token: &[u8], valid_until: u64, key_version: u64, principal: Rc<Principal>) {
        let k = self.key(policy, token);
        let e = Entry { policy, token: token.into(), valid_until, key_version, principal };
        if self.map.insert(k, e).is_none() {
            self.order.push_back(k);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Rc<Principal> {
        Rc::new(Principal::default())
    }

    #[test]
    fn hit_until_expiry_and_only_under_the_same_keys() {
        let mut c = TokenCache::with_capacity(4);
        c.put(1, b"tok", 100, 7, p());
        assert!(c.get(1, b"tok", 100, 7).is_some());
        assert!(c.get(2, b"tok", 100, 7).is_none(), "another policy");
        assert!(c.get(1, b"tok2", 100, 7).is_none());
        assert!(c.get(1, b"tok", 100, 8).is_none(), "keys changed");
        c.put(1, b"tok", 100, 7, p());
        assert!(c.get(1, b"tok", 101, 7).is_none(), "expired");
    }

    #[test]
    fn bounded_oldest_first() {
        let mut c = TokenCache::with_capacity(3);
        for i in 0..10u8 {
            c.put(1, &[i], 100, 1, p());
            assert!(c.len() <= 3);
        }
        assert!(c.get(1, &[9], 0, 1).is_some());
        assert!(c.get(1, &[0], 0, 1).is_none());
    }
}
