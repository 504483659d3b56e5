//! A worker's leases: tokens taken from the shared tables in batches and spent locally, so a
//! request on a hot key touches only this core's map (no lock, no atomic).
//!
//! Why the global rate still holds: every admitted request spends a token that was taken from
//! the shared bucket, so the total admitted over any window is at most rate × window + burst,
//! exactly, wherever the key's connections land. The error is the other way: tokens a worker has
//! leased but not spent are unavailable to the others. A lease is at most `batch` tokens and is
//! returned when it is `LEASE_TTL` old (by the worker's periodic sweep, or on its next use), so
//! at any time at most (W − 1) × batch tokens sit idle elsewhere, for at most `LEASE_TTL`.
//! `batch` is 1% of what the key may use in 10 s, split over the workers (at least 1): the
//! shortfall over a 10 s window is then at most ~1% plus what rounding leaves.
//!
//! A key whose shared bucket is empty is refused locally until the time a token is due, without
//! asking the table again.

use std::collections::VecDeque;
use std::sync::Arc;

use super::table::Table;
use crate::hash::FxHashMap;

/// Unspent tokens go back after this long (ns).
pub const LEASE_TTL: u64 = 50_000_000;
/// Leases a worker keeps (bounded: a flood of keys cannot grow it).
pub const MAX_LEASES: usize = 65_536;

struct Lease {
    /// Where the tokens came from (and go back to).
    table: Arc<Table>,
    tokens: u64,
    /// When the tokens were taken.
    taken: u64,
    /// Refuse without asking until then (the shared bucket was empty).
    denied_until: u64,
    /// Tokens left in the shared bucket at the last grant (for the RateLimit field).
    left: u64,
    /// Nanoseconds until full, at the last grant.
    until_full: u64,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted; roughly this many tokens remain, and the bucket is full again in this many ns.
    Admit { remaining: u64, reset_ns: u64 },
    /// Refused; a token is due in this many ns.
    Refuse { retry_ns: u64 },
}

#[derive(Default)]
pub struct Leases {
    map: FxHashMap<u64, Lease>,
    /// Keys holding tokens, oldest lease first (for the sweep).
    held: VecDeque<(u64, u64)>,
    /// Keys in insertion order (for the bound).
    order: VecDeque<u64>,
}

/// The batch for a table's rate with `workers` workers: 1% of ten seconds' tokens per worker.
pub fn batch_for(t: &Table, workers: usize) -> u64 {
    let ten_s = 10.0 * t.rate.per_second();
    ((ten_s * 0.01) / workers.max(1) as f64).floor().clamp(1.0, t.rate.burst as f64) as u64
}

impl Leases {
    /// Check one request on `key` (already hashed with the table's id) against `table`.
    pub fn check(&mut self, table: &Arc<Table>, key: u64, now: u64, batch: u64) -> Verdict {
        if let Some(l) = self.map.get_mut(&key) {
            if l.tokens > 0 && now.saturating_sub(l.taken) < LEASE_TTL {
                l.tokens -= 1;
                return Verdict::Admit { remaining: l.left + l.tokens, reset_ns: l.until_full };
            }
            if now < l.denied_until {
                return Verdict::Refuse { retry_ns: l.denied_until - now };
            }
        }
        self.refill(table, key, now, batch)
    }

    #[cold]
    fn refill(&mut self, table: &Arc<Table>, key: u64, now: u64, batch: u64) -> Verdict {
        if let Some(l) = self.map.get_mut(&key) {
            l.table.give_back(key, now, std::mem::take(&mut l.tokens));
        }
        let g = table.lease(key, now, batch);
        if !self.map.contains_key(&key) {
            self.make_room(now);
            self.order.push_back(key);
        }
        let l = self.map.entry(key).or_insert_with(|| Lease {
            table: table.clone(),
            tokens: 0,
            taken: 0,
            denied_until: 0,
            left: 0,
            until_full: 0,
        });
        l.left = g.left;
        l.until_full = g.until_full;
        if g.tokens == 0 {
            l.tokens = 0;
            l.denied_until = now + g.wait.max(1);
            return Verdict::Refuse { retry_ns: g.wait.max(1) };
        }
        l.tokens = g.tokens - 1;
        l.taken = now;
        l.denied_until = 0;
        if l.tokens > 0 {
            self.held.push_back((key, now));
        }
        Verdict::Admit { remaining: g.left + g.tokens - 1, reset_ns: g.until_full }
    }

    fn make_room(&mut self, now: u64) {
        while self.map.len() >= MAX_LEASES {
            let Some(k) = self.order.pop_front() else { break };
            if let Some(l) = self.map.remove(&k) {
                l.table.give_back(k, now, l.tokens);
            }
        }
    }

    /// Return the tokens of leases older than `LEASE_TTL` (the worker's periodic task).
    pub fn sweep(&mut self, now: u64) {
        while let Some(&(key, taken)) = self.held.front() {
            if now.saturating_sub(taken) < LEASE_TTL {
                break;
            }
            self.held.pop_front();
            if let Some(l) = self.map.get_mut(&key) {
                if l.taken == taken && l.tokens > 0 {
                    l.table.give_back(key, now, std::mem::take(&mut l.tokens));
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
    use super::super::gcra::Rate;
    use super::*;

    const S: u64 = 1_000_000_000;

    /// Offer 3x the limit for 10 s from `workers` workers, `spread` = requests alternate over
    /// the workers (else all on worker 0); returns the admitted count.
    fn run(workers: usize, spread: bool, mode: &str) -> u64 {
        let rate = Rate::new(100, S, 100);
        let shared = Arc::new(Table::new(rate, 1024));
        let per_core: Vec<Arc<Table>> = (0..workers)
            .map(|_| match mode {
                "split" => Table::new(Rate::new(100 / workers as u64, S, 100 / workers as u64), 1024),
                _ => Table::new(rate, 1024),
            })
            .map(Arc::new)
            .collect();
        let mut leases: Vec<Leases> = (0..workers).map(|_| Leases::default()).collect();
        let batch = if mode == "lease" { batch_for(&shared, workers) } else { 1 };
        let mut admitted = 0;
        let step = S / 300;
        for i in 0..3000u64 {
            let now = S + i * step;
            let w = if spread { i as usize % workers } else { 0 };
            let table = if mode == "lease" { &shared } else { &per_core[w] };
            if let Verdict::Admit { .. } = leases[w].check(table, 42, now, batch) {
                admitted += 1;
            }
            for l in leases.iter_mut() {
                l.sweep(now);
            }
        }
        admitted
    }

    #[test]
    fn leases_hold_the_global_rate_where_naive_splits_do_not() {
        // Limit 100/s, burst 100, offered 300/s for 10 s: at most 1,100 may pass; ±5% of 1,000.
        for spread in [false, true] {
            let a = run(2, spread, "lease");
            assert!((950..=1100).contains(&a), "leases, spread={spread}: {a}");
        }
        // Each core R/W: a client on one core gets half its limit.
        let one = run(2, false, "split");
        assert!(one < 600, "R/W per core, one core: {one}");
        // Each core R: a client spread over the cores gets W times its limit.
        let spread = run(2, true, "each");
        assert!(spread > 1900, "R per core, spread: {spread}");
    }

    #[test]
    fn the_shared_bucket_is_asked_once_per_batch() {
        let t = Arc::new(Table::new(Rate::new(100_000, S, 100_000), 1024));
        let mut l = Leases::default();
        let b = batch_for(&t, 2);
        assert_eq!(b, 5000);
        for i in 0..b {
            assert!(matches!(l.check(&t, 7, S + i, b), Verdict::Admit { .. }));
        }
        // One lease taken: the shared bucket lost exactly one batch.
        assert_eq!(t.lease(7, S + b, 0).left, 100_000 - b);
    }

    #[test]
    fn refused_locally_until_a_token_is_due() {
        let t = Arc::new(Table::new(Rate::new(1, S, 1), 1024));
        let mut l = Leases::default();
        assert!(matches!(l.check(&t, 1, S, 1), Verdict::Admit { .. }));
        assert_eq!(l.check(&t, 1, S, 1), Verdict::Refuse { retry_ns: S });
        assert_eq!(l.check(&t, 1, S + S / 2, 1), Verdict::Refuse { retry_ns: S / 2 });
        assert!(matches!(l.check(&t, 1, 2 * S, 1), Verdict::Admit { .. }));
    }
}
