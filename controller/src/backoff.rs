//! Retry delays after a failed reconcile, per object: exponential from one second to a minute,
//! with jitter. A fixed 10 s retry dominated recovery after a control-plane outage (issue #15's
//! fault tests: 11–18 s from recovery to convergence); a short first retry brings an object back
//! within about a second, and the doubling plus jitter keep an object that keeps failing, or
//! thousands failing at once, from hammering an API server that is struggling.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::Mutex;
use std::time::Duration;

/// The first retry's upper bound; each further failure doubles it.
const BASE: Duration = Duration::from_secs(1);
/// No retry waits longer than this.
const MAX: Duration = Duration::from_secs(60);
/// Objects tracked at most: beyond it the table starts again (every object retries from BASE),
/// so a storm of failures across many objects cannot grow memory without bound.
const MAX_TRACKED: usize = 100_000;

/// Failures in a row, by object (`namespace/name`).
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
    jitter: std::hash::RandomState,
}

impl Backoff {
    /// One more failure of `object`: how long to wait before trying it again.
    pub fn failed(&self, object: &str) -> Duration {
        let attempt = {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if failures.len() >= MAX_TRACKED && !failures.contains_key(object) {
                failures.clear();
            }
            let n = failures.entry(object.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        delay(attempt, self.jitter.hash_one((object, attempt)))
    }

    /// `object` reconciled: its next failure starts from the shortest delay again.
    pub fn succeeded(&self, object: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(object);
    }
}

/// The delay after the `attempt`-th failure in a row (1-based): a point in the upper half of
/// `min(BASE × 2^(attempt−1), MAX)` chosen by `jitter`.
fn delay(attempt: u32, jitter: u64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(6);
    let ceiling = BASE.saturating_mul(1 << doublings).min(MAX);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    let floor = ms / 2;
    Duration::from_millis(floor + jitter % (ms - floor + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_about_a_second_to_a_minute_and_stay_in_the_upper_half() {
        for jitter in [0, 1, 499, 500, 12_345, u64::MAX] {
            let ceilings = [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000];
            for (i, ceiling) in ceilings.into_iter().enumerate() {
                let d = delay(u32::try_from(i).unwrap() + 1, jitter).as_millis();
                assert!((ceiling / 2..=ceiling).contains(&d), "attempt {} jitter {jitter}: {d} ms", i + 1);
            }
        }
        assert!(delay(u32::MAX, u64::MAX) <= MAX);
    }

    #[test]
    fn a_success_starts_an_object_over_and_objects_do_not_share_a_count() {
        let b = Backoff::default();
        for _ in 0..5 {
            b.failed("ns/a");
        }
        assert!(b.failed("ns/a") >= Duration::from_secs(16), "the sixth failure in a row waits 16–32 s");
        assert!(b.failed("ns/b") <= BASE, "another object starts at the shortest delay");
        b.succeeded("ns/a");
        assert!(b.failed("ns/a") <= BASE, "after a success, from the start again");
    }

    #[test]
    fn the_table_is_bounded() {
        let b = Backoff::default();
        for i in 0..MAX_TRACKED + 10 {
            b.failed(&format!("ns/{i}"));
        }
        assert!(b.failures.lock().unwrap().len() <= MAX_TRACKED);
    }
}
