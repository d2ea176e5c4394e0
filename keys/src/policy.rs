//! Key renewal policy, as pure time arithmetic (Bitnami §3.3, plus the cutoff).

use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewPolicy {
    /// Make a new key this long after the latest one; `None` (flag value 0) disables renewal.
    pub period: Option<Duration>,
    /// Keys older than this are never the sealing key: a new one is made at start.
    pub cutoff: Option<OffsetDateTime>,
}

impl Default for RenewPolicy {
    fn default() -> Self {
        RenewPolicy { period: Some(Duration::days(30)), cutoff: None }
    }
}

impl RenewPolicy {
    /// Whether a key must be generated now, given the latest key's NotBefore.
    pub fn needs_new_key(&self, latest: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
        match latest {
            None => true,
            Some(nb) => self.cutoff.is_some_and(|c| nb < c) || self.period.is_some_and(|p| now - nb >= p),
        }
    }

    /// How long until the next renewal: `period − age(latest)`, never negative; `None` when
    /// renewal is disabled.
    pub fn next_renewal_in(&self, latest: OffsetDateTime, now: OffsetDateTime) -> Option<Duration> {
        let period = self.period?;
        let due = period - (now - latest);
        Some(if due.is_negative() { Duration::ZERO } else { due })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_one_period_after_the_latest_key() {
        let now = OffsetDateTime::now_utc();
        let p = RenewPolicy::default();
        assert_eq!(p.next_renewal_in(now - Duration::days(10), now), Some(Duration::days(20)));
        assert_eq!(p.next_renewal_in(now - Duration::days(40), now), Some(Duration::ZERO));
        assert!(p.needs_new_key(None, now));
        assert!(p.needs_new_key(Some(now - Duration::days(31)), now));
        assert!(!p.needs_new_key(Some(now - Duration::days(1)), now));
    }

    #[test]
    fn a_zero_period_disables_renewal_but_the_cutoff_still_applies() {
        let now = OffsetDateTime::now_utc();
        let p = RenewPolicy { period: None, cutoff: Some(now - Duration::days(1)) };
        assert_eq!(p.next_renewal_in(now - Duration::days(400), now), None);
        assert!(p.needs_new_key(Some(now - Duration::days(2)), now));
        assert!(!p.needs_new_key(Some(now), now));
    }
}
