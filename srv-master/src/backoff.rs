//! The restart delay after a crash: `restart.delay`, doubling with each
//! crash in a row of one worker's line of replacements, capped at
//! `restart.max_delay`.
//!
//! Pure arithmetic, no clock. A streak of 1 is the first crash and waits
//! exactly `restart.delay`. From the second crash on, the delay doubles from
//! at least [`MIN_BACKOFF_STEP`], so that even `restart.delay = 0` cannot turn
//! a worker that crashes at start into a tight fork loop.

use std::time::Duration;

/// The smallest step the doubling starts from.
pub(crate) const MIN_BACKOFF_STEP: Duration = Duration::from_millis(100);

/// The delay before restarting after the `streak`-th crash in a row.
///
/// `base` is `restart.delay` and `cap` is `restart.max_delay`; a streak of 0
/// counts as 1. The result never exceeds `cap`, however long the streak.
pub(crate) fn restart_delay(base: Duration, cap: Duration, streak: u32) -> Duration {
    if streak <= 1 {
        return base.min(cap);
    }
    let step = base.max(MIN_BACKOFF_STEP);
    let factor = 1u32.checked_shl(streak - 1).unwrap_or(u32::MAX);
    step.checked_mul(factor).unwrap_or(cap).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delays(base_ms: u64, cap_ms: u64) -> Vec<u128> {
        let (base, cap) = (Duration::from_millis(base_ms), Duration::from_millis(cap_ms));
        (1..=8).map(|streak| restart_delay(base, cap, streak).as_millis()).collect()
    }

    #[test]
    fn first_crash_waits_the_base_delay_then_doubles_to_the_cap() {
        assert_eq!(delays(5000, 60000), [5000, 10000, 20000, 40000, 60000, 60000, 60000, 60000]);
    }

    #[test]
    fn zero_base_still_backs_off() {
        assert_eq!(delays(0, 1000), [0, 200, 400, 800, 1000, 1000, 1000, 1000]);
    }

    #[test]
    fn a_zero_base_restarts_at_once_after_the_first_crash_only() {
        let cap = Duration::from_secs(60);
        assert_eq!(restart_delay(Duration::ZERO, cap, 1), Duration::ZERO);
        assert_eq!(restart_delay(Duration::ZERO, cap, 2), MIN_BACKOFF_STEP * 2);
        assert_eq!(restart_delay(Duration::ZERO, cap, 3), MIN_BACKOFF_STEP * 4);
    }

    #[test]
    fn the_default_delays_double_from_5_s_to_the_60_s_cap() {
        let restart = crate::Options::default().restart;
        let (base, cap) = (restart.delay, restart.max_delay);
        let delays = (1..=6).map(|streak| restart_delay(base, cap, streak).as_secs());
        assert_eq!(delays.collect::<Vec<_>>(), [5, 10, 20, 40, 60, 60]);
    }

    #[test]
    fn huge_streaks_do_not_overflow() {
        let cap = Duration::from_secs(60);
        assert_eq!(restart_delay(Duration::from_secs(1), cap, u32::MAX), cap);
        assert_eq!(restart_delay(Duration::from_secs(1), cap, 40), cap);
    }
}
