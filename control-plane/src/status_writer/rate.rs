//! A token bucket: at most `burst` writes at once, `qps` per second sustained.

use std::time::Duration;
use tokio::time::Instant;

/// The bucket.
#[derive(Debug)]
pub(super) struct Limiter {
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Limiter {
    /// A full bucket.
    pub(super) fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps: qps.max(0.001),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Waits for a token and takes it.
    pub(super) async fn acquire(&mut self) {
        loop {
            let now = Instant::now();
            let refill = now.duration_since(self.last).as_secs_f64() * self.qps;
            self.tokens = (self.tokens + refill).min(self.burst);
            self.last = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                return;
            }
            let wait = (1.0 - self.tokens) / self.qps;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_qps() {
        let mut limiter = Limiter::new(10.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst needs no wait");
        for _ in 0..5 {
            limiter.acquire().await;
        }
        let waited = start.elapsed().as_secs_f64();
        assert!(
            (0.49..0.52).contains(&waited),
            "5 more at 10/s take 0.5 s, took {waited}"
        );
    }
}
