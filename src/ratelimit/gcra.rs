//! The token bucket, as GCRA (the generic cell rate algorithm): one number per key, the
//! theoretical arrival time `tat`, in nanoseconds of a monotonic clock. Integer arithmetic only,
//! and time is an argument (no clock is read here), so the arithmetic is tested with a fake clock.
//!
//! A bucket of `burst` tokens refilled at one token per `interval` ns holds, at time `now`,
//! `(now + burst·interval − max(tat, now)) / interval` tokens. Taking `k` tokens moves `tat` by
//! `k·interval`; returning them moves it back (never below `now`: a bucket holds at most `burst`).

/// A rate: one token every `interval` ns, at most `burst` held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub interval: u64,
    pub burst: u64,
}

impl Rate {
    /// `count` per `period_ns`, with `burst` (≥ 1). The interval is at least 1 ns.
    pub fn new(count: u64, period_ns: u64, burst: u64) -> Rate {
        Rate { interval: (period_ns / count.max(1)).max(1), burst: burst.max(1) }
    }

    /// Tokens per second (for headers and messages).
    pub fn per_second(&self) -> f64 {
        1e9 / self.interval as f64
    }
}

/// One key's bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bucket {
    pub tat: u64,
}

impl Bucket {
    /// Whole tokens available at `now`.
    pub fn available(&self, r: Rate, now: u64) -> u64 {
        let base = self.tat.max(now);
        let ceiling = now.saturating_add(r.burst.saturating_mul(r.interval));
        ceiling.saturating_sub(base) / r.interval
    }

    /// Take up to `want` tokens; returns how many were taken.
    pub fn take(&mut self, r: Rate, now: u64, want: u64) -> u64 {
        let k = self.available(r, now).min(want);
        if k > 0 {
            self.tat = self.tat.max(now).saturating_add(k.saturating_mul(r.interval));
        }
        k
    }

    /// Give back `k` unused tokens.
    pub fn give_back(&mut self, r: Rate, now: u64, k: u64) {
        self.tat = self.tat.saturating_sub(k.saturating_mul(r.interval)).max(now.min(self.tat));
    }

    /// Nanoseconds from `now` until one token is available (0 if one is).
    pub fn wait(&self, r: Rate, now: u64) -> u64 {
        let base = self.tat.max(now);
        // A token is available once base + interval <= now + burst·interval.
        base.saturating_add(r.interval).saturating_sub(now.saturating_add(r.burst.saturating_mul(r.interval)))
    }

    /// Nanoseconds from `now` until the bucket is full again.
    pub fn until_full(&self, now: u64) -> u64 {
        self.tat.saturating_sub(now)
    }

    /// Full at `now` (an idle key: forgetting it loses nothing).
    pub fn is_full(&self, now: u64) -> bool {
        self.tat <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn burst_then_refill() {
        let r = Rate::new(10, S, 5); // 10/s, burst 5
        let mut b = Bucket::default();
        let t0 = 100 * S;
        assert_eq!(b.available(r, t0), 5);
        assert_eq!(b.take(r, t0, 3), 3);
        assert_eq!(b.take(r, t0, 3), 2, "only the burst");
        assert_eq!(b.take(r, t0, 1), 0);
        assert_eq!(b.wait(r, t0), S / 10, "next token in 100 ms");
        assert_eq!(b.take(r, t0 + S / 10 - 1, 1), 0);
        assert_eq!(b.take(r, t0 + S / 10, 1), 1);
        assert_eq!(b.wait(r, t0 + S / 10), S / 10);
    }

    #[test]
    fn long_idle_refills_to_burst_only() {
        let r = Rate::new(10, S, 5);
        let mut b = Bucket::default();
        assert_eq!(b.take(r, S, 5), 5);
        assert_eq!(b.available(r, 1_000_000 * S), 5, "never more than the burst");
        assert!(b.is_full(1_000_000 * S));
    }

    #[test]
    fn clock_going_backwards_grants_nothing_extra() {
        // The clock is monotonic; if a caller passes an older `now` anyway, the bucket does not
        // refill for it.
        let r = Rate::new(10, S, 2);
        let mut b = Bucket::default();
        assert_eq!(b.take(r, 10 * S, 2), 2);
        assert_eq!(b.take(r, 9 * S, 1), 0, "earlier time: still empty");
        assert_eq!(b.take(r, 10 * S, 1), 0);
    }

    #[test]
    fn give_back_restores_but_not_beyond_full() {
        let r = Rate::new(10, S, 5);
        let mut b = Bucket::default();
        let t = 50 * S;
        b.take(r, t, 4);
        b.give_back(r, t, 2);
        assert_eq!(b.available(r, t), 3);
        b.give_back(r, t, 100);
        assert_eq!(b.available(r, t), 5);
    }

    #[test]
    fn extreme_rates_do_not_overflow() {
        let fast = Rate::new(u64::MAX, S, u64::MAX);
        let mut b = Bucket::default();
        assert!(b.take(fast, u64::MAX / 2, 1_000_000) > 0);
        // 1 per hour, 30 years into the process's clock.
        let slow = Rate::new(1, 3600 * S, 1);
        let late = 30 * 365 * 24 * 3600 * S;
        let mut b = Bucket::default();
        assert_eq!(b.take(slow, late, 5), 1);
        assert_eq!(b.take(slow, late + 3599 * S, 5), 0);
        assert_eq!(b.take(slow, late + 3600 * S, 5), 1);
        assert_eq!(Rate::new(0, S, 0), Rate { interval: S, burst: 1 });
    }

    #[test]
    fn admitted_over_a_window_never_exceeds_rate_times_window_plus_burst() {
        let r = Rate::new(100, S, 20);
        let mut b = Bucket::default();
        let mut admitted = 0;
        // 3x the rate for 10 s.
        for i in 0..3000u64 {
            admitted += b.take(r, 7 * S + i * S / 300, 1);
        }
        assert!(admitted <= 100 * 10 + 20, "{admitted}");
        assert!(admitted >= 100 * 10, "{admitted}");
    }
}
