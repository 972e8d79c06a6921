//! The rolling recycle (`SIGHUP`): a queue of old workers and the one
//! replacement in flight. One worker at a time: spawn a replacement; once
//! *that replacement* has started (`progress`), retire the old worker and
//! spawn the next replacement while the old one drains.

use std::collections::VecDeque;
use std::time::Instant;

use log::Level;

use super::{Action, Machine, Phase, WorkerId, log};

/// A recycle in progress.
#[derive(Debug)]
pub(super) struct Recycle {
    /// Old workers still to replace, in order.
    pub(super) queue: VecDeque<WorkerId>,
    /// The replacement starting now and the old worker it replaces (`None`
    /// once that one is gone on its own).
    pub(super) current: Option<(WorkerId, Option<WorkerId>)>,
    pub(super) began: Instant,
    pub(super) replaced: usize,
}

impl Machine {
    /// `SIGHUP`: every live worker is old (a replacement still starting for
    /// an earlier `SIGHUP` is retired); `step_recycle` spawns the first
    /// replacement.
    pub(super) fn begin_recycle(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if let Some(Recycle { current: Some((replacement, Some(_))), .. }) = self.recycle {
            // The replacement in flight was spawned before this SIGHUP and is
            // not serving yet: retire it, and start over with every worker.
            self.retire(now, replacement, self.options.recycle.timeout, actions);
        }
        let queue: VecDeque<WorkerId> =
            self.workers.iter().filter(|(_, w)| w.state.is_live()).map(|(id, _)| *id).collect();
        let restarted = if self.recycle.is_some() { " (starting over)" } else { "" };
        log(actions, Level::Info, format!("SIGHUP: recycling {} workers{restarted}", queue.len()));
        self.recycle = Some(Recycle { queue, current: None, began: now, replaced: 0 });
    }

    /// Starts the next replacement of a recycle when none is in flight.
    pub(super) fn step_recycle(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.phase != Phase::Running {
            return;
        }
        loop {
            let Some(recycle) = &mut self.recycle else { return };
            if recycle.current.is_some() {
                return;
            }
            let Some(old) = recycle.queue.pop_front() else {
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
                recycle.current = Some((replacement, Some(old)));
            }
            return;
        }
    }

    /// Takes `worker`, which is going away on its own (it failed, or exited
    /// on purpose), off the recycle's books: out of the queue, and no longer
    /// the old worker of the replacement in flight. Returns whether it was
    /// that old worker: then its replacement is already starting and takes
    /// its place, so it needs no replacement of its own.
    pub(super) fn old_worker_gone(&mut self, worker: WorkerId) -> bool {
        let Some(recycle) = &mut self.recycle else { return false };
        recycle.queue.retain(|queued| *queued != worker);
        if let Some((_, old)) = &mut recycle.current
            && *old == Some(worker)
        {
            *old = None;
            return true;
        }
        false
    }
}
