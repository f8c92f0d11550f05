//! Signups per client address: a token bucket per address, so that a script cannot
//! mint accounts (or probe which emails have one) faster than the operator allows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

const MAX_TRACKED: usize = 100_000;

pub struct SignupLimiter {
    per_hour: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl SignupLimiter {
    pub fn new(per_hour: u32) -> SignupLimiter {
        SignupLimiter {
            per_hour: f64::from(per_hour),
            buckets: Mutex::default(),
        }
    }

    /// Takes one signup for `addr`; `Err(seconds)` tells when the next is allowed.
    pub fn take(&self, addr: IpAddr) -> Result<(), u64> {
        self.take_at(addr, Instant::now())
    }

    fn take_at(&self, addr: IpAddr, now: Instant) -> Result<(), u64> {
        let per_second = self.per_hour / 3600.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED {
            let full = self.per_hour;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_second < full
            });
        }
        let (tokens, at) = buckets.entry(addr).or_insert((self.per_hour, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(self.per_hour);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else if per_second > 0.0 {
            Err(((1.0 - *tokens) / per_second).ceil() as u64)
        } else {
            Err(3600)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_the_hourly_budget_then_refills() {
        let l = SignupLimiter::new(3);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take_at(a, t0).is_ok());
        }
        let wait = l.take_at(a, t0).unwrap_err();
        assert!((1..=1200).contains(&wait), "{wait}");
        assert!(l.take_at(b, t0).is_ok(), "addresses are independent");
        assert!(l.take_at(a, t0 + Duration::from_secs(1200)).is_ok());
    }
}
