//! The request budget of one ApsaraMQ instance: a token bucket at `qps` (burst of one second's
//! worth) that a throttled answer pauses, with exponential backoff and jitter.
//!
//! Alibaba Cloud limits OpenAPI calls per account and per API (the 4.x `ons` API publishes 10–50
//! QPS per user and operation; 5.x publishes no table), answers over the limit with a
//! `Throttling*` code or HTTP 429, and may say when to come back (`x-acs-retry-after`, in
//! milliseconds). A throttled answer pauses every call of the instance: for the server's
//! `retry-after` when it gives one, else 1 s doubling per consecutive throttle up to 30 s, each
//! ±20 % so that several exporters do not come back in step.

use std::sync::Mutex;
use std::time::Duration;

// tokio's clock, so that tests can run it paused.
use tokio::time::Instant;

/// A token bucket with a pause.
pub struct Budget {
    rate: f64,
    burst: f64,
    state: Mutex<State>,
}

struct State {
    tokens: f64,
    refilled: Instant,
    paused_until: Option<Instant>,
    /// Consecutive throttled answers (reset by any success).
    throttled_in_a_row: u32,
}

impl Budget {
    pub fn new(qps: f64) -> Budget {
        let burst = qps.max(1.0);
        Budget {
            rate: qps,
            burst,
            state: Mutex::new(State {
                tokens: burst,
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
                s.tokens = (s.tokens + elapsed * self.rate).min(self.burst);
                s.refilled = now;
                match s.paused_until {
                    Some(until) if until > now => until,
                    _ if s.tokens >= 1.0 => {
                        s.tokens -= 1.0;
                        return true;
                    }
                    _ => now + Duration::from_secs_f64((1.0 - s.tokens) / self.rate),
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
        s.throttled_in_a_row = s.throttled_in_a_row.saturating_add(1);
        let base = retry_after.unwrap_or_else(|| backoff(s.throttled_in_a_row));
        let pause = base.mul_f64(1.0 + 0.2 * (2.0 * unit_random() - 1.0));
        let until = Instant::now() + pause;
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
        s.tokens = 0.0;
        pause
    }

    /// A successful answer ends a run of throttles.
    pub fn succeeded(&self) {
        self.lock().throttled_in_a_row = 0;
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

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        let b = Budget::new(1.0);
        let first = b.throttled(None).as_secs_f64();
        let second = b.throttled(None).as_secs_f64();
        assert!((0.8..=1.2).contains(&first) && (1.6..=2.4).contains(&second));
        b.succeeded();
        assert!(b.throttled(None).as_secs_f64() <= 1.2);
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
