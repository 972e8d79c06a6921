//! Planned recycles: a worker above `worker.max_rss`, or older than
//! `worker.max_age`, is replaced as in one step of a `SIGHUP` recycle: its
//! replacement is spawned first, and only once that one has started does
//! the old worker get `Disconnect` and `recycle.timeout` to drain. So the
//! started workers never drop below what they were, and no request is
//! lost.
//!
//! # Memory
//!
//! With `worker.max_rss`, the machine asks the shell for a sample of every
//! started worker's resident memory every [`RSS_SAMPLE_INTERVAL`]
//! ([`Action::SampleRss`]; the shell reads `/proc/<pid>/statm` and answers
//! [`Event::Rss`]). A sample above the limit marks the worker (the figure
//! is logged), and it is replaced as soon as a replacement may start: up
//! to `recycle.parallel` memory replacements at once.
//!
//! # Age
//!
//! With `worker.max_age`, each worker is due for replacement at its spawn
//! plus `max_age` scaled by 0.9 to 1.1, a factor derived from its id (so
//! that workers started together do not rotate together, and the machine
//! stays a pure function of its events: the same ids give the same times).
//! One aged worker is replaced at a time, the oldest due first; a memory
//! replacement may run beside it, within `recycle.parallel` in all.
//!
//! # With everything else
//!
//! - A `SIGHUP` recycle or an upgrade in progress comes first: planned
//!   recycles wait until it is over (a worker marked meanwhile stays
//!   marked, an aged one stays due). A `SIGHUP`, or the exec of an upgrade,
//!   supersedes the planned replacements still starting: they are retired
//!   (their old workers are replaced by the recycle anyway), and one whose
//!   old worker is gone stays, as a worker of its own.
//! - `SIGTTIN` adds a worker as always. `SIGTTOU` removes a worker that is
//!   not part of a planned replacement if there is one, else the newest
//!   pair, replacement and old worker both (see `scaling.rs`).
//! - A shutdown stops them: every live worker, a replacement still
//!   starting included, gets the shutdown's `Disconnect`.
//! - A replacement that fails to start leaves its old worker serving, and
//!   pauses planned recycles for the crash backoff (`restart.delay`,
//!   doubling up to `restart.max_delay` while they keep failing), so a
//!   program that cannot start is not spawned in a tight loop; the next
//!   replacement that starts ends the streak.
//! - An old worker that exits or fails while its replacement starts is
//!   gone: its replacement takes its place.
//!
//! A `worker.max_rss` below what a fresh worker needs replaces every worker
//! about once per sample; each log line gives the figure and the worker's
//! age, which says so.

use std::time::{Duration, Instant};

use log::Level;

use super::recycle::InFlight;
use super::{Action, Machine, Phase, State, WorkerId, log};
use crate::backoff::restart_delay;
use crate::options::RSS_SAMPLE_INTERVAL;

/// A planned replacement in flight: the pair, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Planned {
    pub(super) pair: InFlight,
    pub(super) why: Why,
}

/// Why a worker is replaced on the machine's own initiative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// A sample found it above `worker.max_rss`.
    Memory,
    /// It reached its `worker.max_age`.
    Age,
}

/// The bookkeeping of planned recycles.
#[derive(Debug, Default)]
pub(super) struct Plans {
    /// The replacements starting now, at most `recycle.parallel`.
    pub(super) in_flight: Vec<Planned>,
    /// After a replacement failed to start: no new one before this.
    paused_until: Option<Instant>,
    /// Replacements that failed in a row.
    streak: u32,
    /// When to sample the workers' memory next (`worker.max_rss`).
    next_sample: Option<Instant>,
}

impl Plans {
    /// The planned books of a machine started at `now` with `max_rss`.
    pub(super) fn new(now: Instant, max_rss: Option<u64>) -> Plans {
        Plans { next_sample: max_rss.map(|_| now + RSS_SAMPLE_INTERVAL), ..Plans::default() }
    }
}

/// A number from 0 to 200 for `worker`, spread evenly over the ids: the
/// jitter of its age limit in thousandths, from 900 to 1100. It mixes the
/// id with splitmix64's finaliser, so that neighbouring ids (workers
/// started together) get unrelated numbers.
fn jitter_permille(worker: WorkerId) -> u64 {
    let mut z = u64::from(worker.0).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % 201
}

/// `bytes` in MiB, for log lines.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl Machine {
    /// The age at which `worker` is due for replacement, with its jitter
    /// (see the module docs), if `worker.max_age` is set.
    pub(super) fn age_limit(&self, worker: WorkerId) -> Option<Duration> {
        let max_age = self.options.worker.max_age?;
        let millis = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        let scaled = millis.saturating_mul(900 + jitter_permille(worker)) / 1000;
        Some(Duration::from_millis(scaled))
    }

    /// When `worker` is due for replacement by age.
    fn age_due(&self, worker: WorkerId) -> Option<Instant> {
        Some(self.workers.get(&worker)?.spawned_at + self.age_limit(worker)?)
    }

    /// Whether `worker` is the old worker of a planned replacement.
    fn planned_old(&self, worker: WorkerId) -> bool {
        self.plans.in_flight.iter().any(|planned| planned.pair.old == Some(worker))
    }

    /// Whether something more important runs: planned recycles wait for it.
    fn planned_blocked(&self) -> bool {
        self.phase != Phase::Running
            || self.recycle.is_some()
            || self.upgrade.is_some()
            || self.give_up.is_some()
    }

    /// Started workers that a planned replacement could take, with why.
    fn planned_candidates(&self) -> impl Iterator<Item = (WorkerId, Option<u64>)> + '_ {
        self.workers
            .iter()
            .filter(|(id, worker)| worker.state == State::Started && !self.planned_old(**id))
            .map(|(id, worker)| (*id, worker.over_rss))
    }

    /// The next worker to replace, if one is due: one above the memory
    /// limit first, else the oldest due by age unless an aged one is
    /// being replaced already.
    fn next_planned(&self, now: Instant) -> Option<(WorkerId, Why)> {
        let mut candidates = self.planned_candidates();
        if let Some((worker, _)) = candidates.find(|(_, over)| over.is_some()) {
            return Some((worker, Why::Memory));
        }
        if self.plans.in_flight.iter().any(|planned| planned.why == Why::Age) {
            return None;
        }
        self.planned_candidates()
            .filter_map(|(worker, _)| Some((self.age_due(worker)?, worker)))
            .filter(|(due, _)| *due <= now)
            .min()
            .map(|(_, worker)| (worker, Why::Age))
    }

    /// Starts planned replacements while some are due and fewer than
    /// `recycle.parallel` are in flight (see the module docs).
    pub(super) fn step_planned(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.planned_blocked() {
            return;
        }
        match self.plans.paused_until {
            Some(until) if until > now => return,
            Some(_) => self.plans.paused_until = None,
            None => {}
        }
        while self.plans.in_flight.len() < self.options.recycle.parallel.max(1) {
            let Some((old, why)) = self.next_planned(now) else { return };
            let name = self.name(old);
            if why == Why::Age
                && let (Some(record), Some(limit)) = (self.workers.get(&old), self.age_limit(old))
            {
                let age = now.saturating_duration_since(record.spawned_at).as_millis();
                let max_age = self.options.worker.max_age.unwrap_or_default().as_millis();
                log(
                    actions,
                    Level::Info,
                    format!(
                        "{name} is {age} ms old, over worker.max_age ({max_age} ms, {} ms for it \
                         with its jitter): recycling it",
                        limit.as_millis()
                    ),
                );
            }
            let replacement = self.spawn(now, 0, actions);
            let pair = InFlight { replacement, old: Some(old) };
            self.plans.in_flight.push(Planned { pair, why });
        }
    }

    /// The next time a planned recycle may start without any event: the
    /// end of a pause, or the next worker due by age. None while one could
    /// start only after an event (a replacement starts, a recycle ends).
    pub(super) fn planned_deadline(&self) -> Option<Instant> {
        let sample = self.plans.next_sample.filter(|_| self.phase == Phase::Running);
        if self.planned_blocked()
            || self.plans.in_flight.len() >= self.options.recycle.parallel.max(1)
        {
            return sample;
        }
        if let Some(until) = self.plans.paused_until {
            return sample.into_iter().chain([until]).min();
        }
        let aged = if self.plans.in_flight.iter().any(|planned| planned.why == Why::Age) {
            None
        } else {
            self.planned_candidates().filter_map(|(worker, _)| self.age_due(worker)).min()
        };
        sample.into_iter().chain(aged).min()
    }

    /// Asks the shell for a memory sample of every started worker not
    /// already marked or being replaced, once per [`RSS_SAMPLE_INTERVAL`].
    pub(super) fn sample_if_due(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let Some(due) = self.plans.next_sample else { return };
        if due > now || self.phase != Phase::Running {
            return;
        }
        // From now, not from the missed time: a master that stalled
        // samples once, not once per interval missed.
        self.plans.next_sample = Some(now + RSS_SAMPLE_INTERVAL);
        let sampled: Vec<WorkerId> = self
            .planned_candidates()
            .filter(|(_, over)| over.is_none())
            .map(|(worker, _)| worker)
            .collect();
        actions.extend(sampled.into_iter().map(Action::SampleRss));
    }

    /// A sample of `worker`'s resident memory, in bytes: above
    /// `worker.max_rss`, the worker is marked for replacement.
    pub(super) fn on_rss(
        &mut self,
        now: Instant,
        worker: WorkerId,
        bytes: u64,
        actions: &mut Vec<Action>,
    ) {
        let Some(limit_mib) = self.options.worker.max_rss else { return };
        let old = self.planned_old(worker);
        let name = self.name(worker);
        let Some(record) = self.workers.get_mut(&worker) else { return };
        let limit = limit_mib.saturating_mul(1024 * 1024);
        if record.state != State::Started || record.over_rss.is_some() || old || bytes <= limit {
            return;
        }
        record.over_rss = Some(bytes);
        let age = record.started_at.map_or(0, |at| now.saturating_duration_since(at).as_millis());
        log(
            actions,
            Level::Warn,
            format!(
                "{name} uses {}, over worker.max_rss ({limit_mib} MiB), {age} ms after its \
                 start: recycling it",
                mib(bytes)
            ),
        );
    }

    /// A planned replacement started: its old worker retires, and a streak
    /// of failed replacements ends. Returns whether `worker` was one.
    pub(super) fn planned_started(
        &mut self,
        now: Instant,
        worker: WorkerId,
        actions: &mut Vec<Action>,
    ) -> bool {
        let Some(index) =
            self.plans.in_flight.iter().position(|planned| planned.pair.replacement == worker)
        else {
            return false;
        };
        let planned = self.plans.in_flight.swap_remove(index);
        self.plans.streak = 0;
        if let Some(old) = planned.pair.old {
            self.retire(now, old, self.options.recycle.timeout, actions);
        }
        true
    }

    /// A planned replacement failed to start: its old worker serves on,
    /// and planned recycles pause for the crash backoff. Returns its pair,
    /// if `worker` was one.
    pub(super) fn planned_failed(
        &mut self,
        now: Instant,
        worker: WorkerId,
        why: &str,
        actions: &mut Vec<Action>,
    ) -> Option<InFlight> {
        let index =
            self.plans.in_flight.iter().position(|planned| planned.pair.replacement == worker)?;
        let planned = self.plans.in_flight.swap_remove(index);
        self.plans.streak = self.plans.streak.saturating_add(1);
        let delay = restart_delay(
            self.options.restart.delay,
            self.options.restart.max_delay,
            self.plans.streak,
        );
        self.plans.paused_until = Some(now + delay);
        let name = self.name(worker);
        let serves_on = match planned.pair.old {
            Some(old) => format!("{} serves on", self.name(old)),
            None => "it takes the place of its old worker, which is gone".to_owned(),
        };
        log(
            actions,
            Level::Error,
            format!(
                "planned recycle paused: replacement {name} {why}; {serves_on}; planned recycles \
                 resume in {} ms",
                delay.as_millis()
            ),
        );
        Some(planned.pair)
    }

    /// Takes `worker`, gone on its own, off the planned books: its
    /// replacement, if one is starting, takes its place. Returns whether it
    /// had one.
    pub(super) fn planned_old_gone(&mut self, worker: WorkerId) -> bool {
        for planned in &mut self.plans.in_flight {
            if planned.pair.old == Some(worker) {
                planned.pair.old = None;
                return true;
            }
        }
        false
    }

    /// A `SIGHUP` or the exec of an upgrade supersedes the planned
    /// replacements still starting (see the module docs).
    pub(super) fn supersede_planned(&mut self, now: Instant, actions: &mut Vec<Action>) {
        for planned in std::mem::take(&mut self.plans.in_flight) {
            if planned.pair.old.is_some() {
                self.retire(now, planned.pair.replacement, self.options.recycle.timeout, actions);
            }
        }
    }

    /// Whether the machine waits for nothing but time: no planned
    /// replacement starting, no worker marked, no pause, and no deadline
    /// but those that come back forever while all is well (the next
    /// sample, the next worker's age, the watchdog's). Only the tests ask,
    /// to tell a settled master from one with work left.
    #[cfg(test)]
    pub(crate) fn quiet(&self) -> bool {
        self.plans.in_flight.is_empty()
            && self.plans.paused_until.is_none()
            && self.workers.values().all(|worker| worker.over_rss.is_none())
            && self.pending_deadline().is_none()
    }

    /// At a shutdown: nothing planned goes on.
    pub(super) fn stop_planned(&mut self) {
        self.plans.in_flight.clear();
        self.plans.paused_until = None;
        self.plans.next_sample = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jitter_spreads_neighbouring_ids_over_the_whole_range() {
        let jitters: Vec<u64> = (1..=1000).map(|id| jitter_permille(WorkerId(id))).collect();
        assert!(jitters.iter().all(|jitter| *jitter <= 200));
        // Every fifth of the range is used, about evenly.
        for fifth in 0..5 {
            let range = fifth * 40..(fifth + 1) * 40 + u64::from(fifth == 4);
            let n = jitters.iter().filter(|jitter| range.contains(jitter)).count();
            assert!((150..=250).contains(&n), "{n} jitters in {range:?}");
        }
        // Four workers started together get four different limits.
        let first: Vec<u64> = (1..=4).map(|id| jitter_permille(WorkerId(id))).collect();
        let mut distinct = first.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "{first:?}");
    }
}
