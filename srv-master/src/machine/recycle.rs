//! The rolling recycle (`SIGHUP`): a queue of old workers and the
//! replacements in flight, at most `recycle.parallel` of them. Each
//! replacement is paired with one old worker; once *that replacement* has
//! started (`progress`), its old worker retires and the next replacement is
//! spawned while the old one drains. So at least the workers that were
//! serving keep serving: an old worker leaves only once a started worker
//! has taken its place.

use std::collections::VecDeque;
use std::time::Instant;

use log::Level;

use super::{Action, Machine, Phase, WorkerId, log};

/// A recycle in progress.
#[derive(Debug)]
pub(super) struct Recycle {
    /// Old workers still to replace, in order.
    pub(super) queue: VecDeque<WorkerId>,
    /// The replacements starting now, each with the old worker it replaces
    /// (`None` once that one is gone on its own); at most
    /// `recycle.parallel`.
    pub(super) in_flight: Vec<InFlight>,
    pub(super) began: Instant,
    pub(super) replaced: usize,
}

/// One replacement starting, and the old worker it will retire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InFlight {
    pub(super) replacement: WorkerId,
    pub(super) old: Option<WorkerId>,
}

impl Recycle {
    /// The pair whose replacement is `worker`, if any.
    pub(super) fn replacing(&self, worker: WorkerId) -> Option<InFlight> {
        self.in_flight.iter().copied().find(|pair| pair.replacement == worker)
    }
}

impl Machine {
    /// `SIGHUP`: every live worker is old (a replacement still starting for
    /// an earlier `SIGHUP` is retired); `step_recycle` spawns the first
    /// replacements.
    pub(super) fn begin_recycle(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.supersede_planned(now, actions);
        let restarted = self.recycle.is_some();
        let in_flight = self.recycle.take().map(|recycle| recycle.in_flight).unwrap_or_default();
        for pair in in_flight {
            // A replacement spawned before this SIGHUP that is not serving
            // yet: retire it (its old worker serves on and is in the new
            // queue). One whose old worker is gone takes that worker's
            // place: it stays, and is replaced in turn.
            if pair.old.is_some() {
                self.retire(now, pair.replacement, self.options.recycle.timeout, actions);
            }
        }
        let queue: VecDeque<WorkerId> =
            self.workers.iter().filter(|(_, w)| w.state.is_live()).map(|(id, _)| *id).collect();
        let restarted = if restarted { " (starting over)" } else { "" };
        let parallel = self.options.recycle.parallel;
        let at_once = if parallel > 1 { format!(", {parallel} at a time") } else { String::new() };
        log(
            actions,
            Level::Info,
            format!("SIGHUP: recycling {} workers{at_once}{restarted}", queue.len()),
        );
        self.recycle = Some(Recycle { queue, in_flight: Vec::new(), began: now, replaced: 0 });
    }

    /// Starts replacements until `recycle.parallel` are in flight or the
    /// queue is empty; ends the recycle when nothing is left to do.
    pub(super) fn step_recycle(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.phase != Phase::Running {
            return;
        }
        let parallel = self.options.recycle.parallel.max(1);
        loop {
            let Some(recycle) = &mut self.recycle else { return };
            if recycle.in_flight.len() >= parallel {
                return;
            }
            let Some(old) = recycle.queue.pop_front() else {
                if !recycle.in_flight.is_empty() {
                    return;
                }
                let took = now.saturating_duration_since(recycle.began).as_millis();
                let replaced = recycle.replaced;
                self.recycle = None;
                log(
                    actions,
                    Level::Info,
                    format!("recycle complete: {replaced} workers replaced in {took} ms"),
                );
                return;
            };
            if !self.workers.get(&old).is_some_and(|w| w.state.is_live()) {
                continue;
            }
            let replacement = self.spawn(now, 0, actions);
            if let Some(recycle) = &mut self.recycle {
                recycle.in_flight.push(InFlight { replacement, old: Some(old) });
            }
        }
    }

    /// A replacement of the recycle started: its old worker retires.
    pub(super) fn replacement_started(
        &mut self,
        now: Instant,
        worker: WorkerId,
        actions: &mut Vec<Action>,
    ) {
        if self.planned_started(now, worker, actions) {
            return;
        }
        let Some(recycle) = &mut self.recycle else { return };
        let Some(pair) = recycle.replacing(worker) else { return };
        recycle.in_flight.retain(|in_flight| in_flight.replacement != worker);
        recycle.replaced += 1;
        if let Some(old) = pair.old {
            self.retire(now, old, self.options.recycle.timeout, actions);
        }
    }

    /// A replacement failed to start. A planned one pauses planned
    /// recycles (`planned_failed`). One of the recycle stops it, and every
    /// old worker not yet retired keeps serving. The other replacements
    /// still starting are not wanted any more, so that the workers are the
    /// target again: they are retired by `retire_unwanted`, before the
    /// event when the deadlines stopped the recycle (but the worker whose
    /// exit the event reports), else after it. Returns the failed
    /// replacement's pair, if it was one, after logging why the recycle
    /// stopped.
    pub(super) fn replacement_failed(
        &mut self,
        now: Instant,
        worker: WorkerId,
        why: &str,
        actions: &mut Vec<Action>,
    ) -> Option<InFlight> {
        if let Some(pair) = self.planned_failed(now, worker, why, actions) {
            return Some(pair);
        }
        let pair = self.recycle.as_ref()?.replacing(worker)?;
        let recycle = self.recycle.take()?;
        let others: Vec<InFlight> =
            recycle.in_flight.iter().copied().filter(|other| other.replacement != worker).collect();
        let left = recycle.queue.len()
            + recycle.in_flight.iter().filter(|in_flight| in_flight.old.is_some()).count();
        let name = self.name(worker);
        log(
            actions,
            Level::Error,
            format!("recycle stopped: replacement {name} {why}; {left} old workers keep serving"),
        );
        // One whose old worker is gone takes that worker's place: it stays.
        self.unwanted.extend(
            others.iter().filter(|other| other.old.is_some()).map(|other| other.replacement),
        );
        Some(pair)
    }

    /// Retires the replacements of a stopped recycle (see
    /// `replacement_failed`) that are still live, but `exiting`, whose exit
    /// the event reports: it stays on the list until the event is handled,
    /// so that its exit is not taken for a failure to replace.
    pub(super) fn retire_unwanted(
        &mut self,
        now: Instant,
        exiting: Option<WorkerId>,
        actions: &mut Vec<Action>,
    ) {
        for worker in std::mem::take(&mut self.unwanted) {
            if Some(worker) == exiting {
                self.unwanted.push(worker);
            } else if self.workers.get(&worker).is_some_and(|w| w.state.is_live()) {
                self.retire(now, worker, self.options.recycle.timeout, actions);
            }
        }
    }

    /// Takes `worker`, which is going away on its own (it failed, or exited
    /// on purpose), off the recycle's books: out of the queue, and no longer
    /// the old worker of a replacement in flight. Returns whether it was
    /// such an old worker: then its replacement is already starting and
    /// takes its place, so it needs no replacement of its own.
    pub(super) fn old_worker_gone(&mut self, worker: WorkerId) -> bool {
        if self.planned_old_gone(worker) {
            return true;
        }
        let Some(recycle) = &mut self.recycle else { return false };
        recycle.queue.retain(|queued| *queued != worker);
        for pair in &mut recycle.in_flight {
            if pair.old == Some(worker) {
                pair.old = None;
                return true;
            }
        }
        false
    }
}
