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
pub const MIN_BACKOFF_STEP: Duration = Duration::from_millis(100);

/// The delay before restarting after the `streak`-th crash in a row.
pub fn restart_delay(base: Duration, cap: Duration, streak: u32) -> Duration {
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
    fn huge_streaks_do_not_overflow() {
        let cap = Duration::from_secs(60);
        assert_eq!(restart_delay(Duration::from_secs(1), cap, u32::MAX), cap);
        assert_eq!(restart_delay(Duration::from_secs(1), cap, 40), cap);
    }
}
