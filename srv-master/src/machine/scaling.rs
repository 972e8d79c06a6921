//! Scaling: `SIGTTIN` adds one worker (up to `MAX_WORKERS`); `SIGTTOU`
//! removes one (a pending restart first, then a worker still starting, then
//! the newest), never the last.

use std::time::Instant;

use log::Level;

use super::recycle::InFlight;
use super::{Action, Machine, State, WorkerId, log};
use crate::options::MAX_WORKERS;

impl Machine {
    /// `SIGTTIN`: one worker more, up to [`MAX_WORKERS`].
    pub(super) fn add_one(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.target >= MAX_WORKERS {
            log(actions, Level::Warn, format!("SIGTTIN ignored: already at {MAX_WORKERS} workers"));
            return;
        }
        self.target += 1;
        log(
            actions,
            Level::Info,
            format!("SIGTTIN: workers {} -> {}", self.target - 1, self.target),
        );
        self.spawn(now, 0, actions);
    }

    /// `SIGTTOU`: one worker fewer, never fewer than one.
    pub(super) fn remove_one(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.target <= 1 {
            log(actions, Level::Warn, "SIGTTOU ignored: already at 1 worker".to_owned());
            return;
        }
        self.target -= 1;
        log(
            actions,
            Level::Info,
            format!("SIGTTOU: workers {} -> {}", self.target + 1, self.target),
        );
        if self.restarts.pop().is_some() {
            return;
        }
        let planned = self.plans.in_flight.iter().map(|planned| planned.pair);
        let in_flight: Vec<InFlight> = self
            .recycle
            .as_ref()
            .map(|recycle| recycle.in_flight.clone())
            .unwrap_or_default()
            .into_iter()
            .chain(planned)
            .collect();
        let is_in_flight = |id: WorkerId| {
            in_flight.iter().any(|pair| pair.replacement == id || pair.old == Some(id))
        };
        let queued = self.recycle.as_mut().and_then(|recycle| recycle.queue.pop_back());
        let victim = queued.or_else(|| {
            let others =
                self.workers.iter().filter(|(id, w)| w.state.is_live() && !is_in_flight(**id));
            // Prefer a worker that is not serving yet, then the newest.
            let starting = others
                .clone()
                .filter(|(_, w)| w.state != State::Started)
                .map(|(id, _)| *id)
                .next_back();
            starting.or_else(|| others.map(|(id, _)| *id).next_back())
        });
        if let Some(worker) = victim {
            self.retire(now, worker, self.options.recycle.timeout, actions);
            return;
        }
        // Only workers of the recycle are left, each pair of a replacement
        // and its old worker one of the target: the newest pair goes, both
        // of them (the old one alone would leave its replacement one too
        // many; the replacement alone would leave an old worker behind).
        let newest = self.recycle.as_mut().and_then(|recycle| recycle.in_flight.pop());
        let Some(pair) = newest.or_else(|| self.plans.in_flight.pop().map(|planned| planned.pair))
        else {
            return;
        };
        for worker in pair.old.into_iter().chain([pair.replacement]) {
            self.retire(now, worker, self.options.recycle.timeout, actions);
        }
    }
}
