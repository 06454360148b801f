//! The request budget of one ApsaraMQ instance: a token bucket at `qps` (burst of one second's
//! worth) that adapts to the server's limit and pauses on a throttled answer, with exponential
//! backoff and jitter.
//!
//! Alibaba Cloud limits OpenAPI calls per account and per API (the 4.x `ons` API publishes 10–50
//! QPS per user and operation; 5.x publishes no table), answers over the limit with a
//! `Throttling*` code or HTTP 429, and may say when to come back (`x-acs-retry-after`, in
//! milliseconds). A throttled answer pauses every call of the instance: for the server's
//! `retry-after` when it gives one, else 1 s doubling per consecutive throttle up to 30 s, each
//! ±20 % so that several exporters do not come back in step. It also lowers the rate to 70 %
//! (not below 0.5/s), and each successful answer raises it by 0.02/s back towards `qps`
//! (additive increase, multiplicative decrease): a fixed rate above the server's limit would
//! be throttled again on every resume, and exponential pauses alone then collapse the
//! throughput (measured: 2 requests/s against a 10/s limit, BENCHMARKS.md). Answers to calls
//! that were already in flight when the pause began neither lower the rate again nor lengthen
//! the backoff.

use std::sync::Mutex;
use std::time::Duration;

// tokio's clock, so that tests can run it paused.
use tokio::time::Instant;

/// The lowest rate a throttled budget falls to, requests per second.
const MIN_RATE: f64 = 0.5;
/// What a throttled answer leaves of the rate.
const DECREASE: f64 = 0.7;
/// What each successful answer adds to the rate, requests per second.
const INCREASE: f64 = 0.02;

/// A token bucket with a pause and an adaptive rate.
pub struct Budget {
    max_rate: f64,
    state: Mutex<State>,
}

struct State {
    /// The current rate, ≤ `max_rate`; its burst is one second's worth (at least 1).
    rate: f64,
    tokens: f64,
    refilled: Instant,
    paused_until: Option<Instant>,
    /// Consecutive throttled answers (reset by any success).
    throttled_in_a_row: u32,
}

impl Budget {
    pub fn new(qps: f64) -> Budget {
        Budget {
            max_rate: qps,
            state: Mutex::new(State {
                rate: qps,
                tokens: qps.max(1.0),
                refilled: Instant::now(),
                paused_until: None,
                throttled_in_a_row: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one request's token, waiting for it, unless it would come after `cutoff`: then
    /// returns false at once (the cycle has no budget left for this call).
    pub async fn take(&self, cutoff: Instant) -> bool {
        loop {
            let wait_until = {
                let mut s = self.lock();
                let now = Instant::now();
                let elapsed = now.saturating_duration_since(s.refilled).as_secs_f64();
                s.tokens = (s.tokens + elapsed * s.rate).min(s.rate.max(1.0));
                s.refilled = now;
                match s.paused_until {
                    Some(until) if until > now => until,
                    _ if s.tokens >= 1.0 => {
                        s.tokens -= 1.0;
                        return true;
                    }
                    _ => now + Duration::from_secs_f64((1.0 - s.tokens) / s.rate),
                }
            };
            if wait_until > cutoff {
                return false;
            }
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// A throttled answer: pause every call for `retry_after` (the server's word) or the
    /// backoff, with jitter. Returns the pause.
    pub fn throttled(&self, retry_after: Option<Duration>) -> Duration {
        let mut s = self.lock();
        let now = Instant::now();
        let pausing = s.paused_until.filter(|until| *until > now);
        if let (Some(until), None) = (pausing, retry_after) {
            // A call sent before the pause began: the pause already answers it.
            return until - now;
        }
        if pausing.is_none() {
            s.throttled_in_a_row = s.throttled_in_a_row.saturating_add(1);
            s.rate = (s.rate * DECREASE).max(MIN_RATE.min(self.max_rate));
        }
        let base = retry_after.unwrap_or_else(|| backoff(s.throttled_in_a_row));
        let pause = base.mul_f64(1.0 + 0.2 * (2.0 * unit_random() - 1.0));
        let until = now + pause;
        s.paused_until = Some(pausing.map_or(until, |p| p.max(until)));
        s.tokens = 0.0;
        pause
    }

    /// A successful answer ends a run of throttles and raises the rate a little.
    pub fn succeeded(&self) {
        let mut s = self.lock();
        s.throttled_in_a_row = 0;
        s.rate = (s.rate + INCREASE).min(self.max_rate);
    }

    /// The current rate, requests per second.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }
}

/// 1 s, 2 s, 4 s, … up to 30 s for the n-th throttle in a row (n ≥ 1).
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs((1u64 << n.saturating_sub(1).min(5)).min(30))
}

/// A uniformly distributed number in [0, 1) that differs between calls and processes (for
/// jitter; nothing here needs to be unpredictable).
pub fn unit_random() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// 64 bits that differ between calls and between processes: SplitMix64 over a counter seeded
/// from the clock and the pid. Used for signature nonces (which must be unique, not secret) and
/// jitter.
pub fn random_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    if STATE.load(Ordering::Relaxed) == 0 {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (u64::from(std::process::id()) << 32);
        let _ = STATE.compare_exchange(0, seed | 1, Ordering::Relaxed, Ordering::Relaxed);
    }
    let mut z = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_spends_its_burst_then_paces_at_the_rate() {
        let b = Budget::new(5.0);
        let start = Instant::now();
        let far = start + Duration::from_secs(100);
        for _ in 0..5 {
            assert!(b.take(far).await);
        }
        assert!(start.elapsed() < Duration::from_millis(1));
        for _ in 0..10 {
            assert!(b.take(far).await);
        }
        let spent = start.elapsed().as_secs_f64();
        assert!((1.9..2.1).contains(&spent), "{spent}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_token_is_taken_past_the_cutoff() {
        let b = Budget::new(1.0);
        let now = Instant::now();
        assert!(b.take(now).await);
        assert!(!b.take(now + Duration::from_millis(500)).await);
        assert!(b.take(now + Duration::from_millis(1500)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_pauses_for_the_servers_retry_after_with_jitter() {
        let b = Budget::new(100.0);
        let pause = b.throttled(Some(Duration::from_secs(2)));
        assert!((1.6..=2.4).contains(&pause.as_secs_f64()), "{pause:?}");
        let start = Instant::now();
        assert!(b.take(start + Duration::from_secs(10)).await);
        assert!(start.elapsed() >= pause - Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_thirty_seconds_for_throttles_in_a_row() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        let b = Budget::new(1.0);
        let first = b.throttled(None);
        assert!((0.8..=1.2).contains(&first.as_secs_f64()), "{first:?}");
        // Answers to calls already in flight: the same pause, not a longer one.
        let again = b.throttled(None);
        assert!(again <= first, "{again:?} > {first:?}");
        tokio::time::advance(first).await;
        let second = b.throttled(None).as_secs_f64();
        assert!((1.6..=2.4).contains(&second), "{second}");
        b.succeeded();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(b.throttled(None).as_secs_f64() <= 1.2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_lowers_the_rate_once_and_successes_raise_it_back() {
        let b = Budget::new(20.0);
        b.throttled(None);
        assert!((b.rate() - 14.0).abs() < 1e-9, "{}", b.rate());
        // In-flight answers during the pause do not lower it again.
        b.throttled(None);
        b.throttled(None);
        assert!((b.rate() - 14.0).abs() < 1e-9, "{}", b.rate());
        for _ in 0..100 {
            b.succeeded();
        }
        assert!((b.rate() - 16.0).abs() < 1e-9, "{}", b.rate());
        for _ in 0..1000 {
            b.succeeded();
        }
        assert_eq!(b.rate(), 20.0);
        // Never below 0.5/s, however often it is throttled.
        // (Each advance outlasts the longest pause, 30 s + 20 % jitter.)
        for _ in 0..50 {
            tokio::time::advance(Duration::from_secs(37)).await;
            b.throttled(None);
        }
        assert_eq!(b.rate(), MIN_RATE);
        // The bucket paces at the lowered rate.
        tokio::time::advance(Duration::from_secs(37)).await;
        let start = Instant::now();
        let far = start + Duration::from_secs(100);
        assert!(b.take(far).await);
        assert!(b.take(far).await);
        let spent = start.elapsed().as_secs_f64();
        assert!((1.9..2.1).contains(&spent), "{spent}");
    }

    #[test]
    fn random_numbers_differ() {
        let a: std::collections::HashSet<u64> = (0..1000).map(|_| random_u64()).collect();
        assert_eq!(a.len(), 1000);
        assert!((0..1000)
            .map(|_| unit_random())
            .all(|x| (0.0..1.0).contains(&x)));
    }
}
