//! The graceful shutdown: every live worker gets `Disconnect` and
//! `shutdown.timeout` to exit, the listeners close, and the master exits
//! once the last worker is gone. A second `SIGINT` or `SIGTERM` forces it:
//! every worker is killed at once.

use std::time::Instant;

use log::Level;
use srv_proto::MasterMessage;

use super::{Action, Failure, Machine, Phase, Signal, State, WorkerId, log};

impl Machine {
    /// Begins the graceful shutdown, because of `cause` (a signal, or a
    /// `failure` that makes the master exit non-zero). Every live worker is
    /// asked to disconnect but `exited`, whose exit is being reported.
    pub(super) fn stop(
        &mut self,
        now: Instant,
        cause: &str,
        failure: Option<Failure>,
        exited: Option<WorkerId>,
        actions: &mut Vec<Action>,
    ) {
        self.phase = Phase::ShuttingDown { forced: false };
        if let Some(failure) = &failure {
            log(actions, Level::Error, format!("{failure}: stopping"));
        }
        self.failure = failure;
        actions.push(Action::CloseListeners);
        self.restarts.clear();
        self.stop_upgrade(cause, actions);
        if !self.plans.in_flight.is_empty() {
            let left = self.plans.in_flight.len();
            log(
                actions,
                Level::Info,
                format!("planned recycle stopped by {cause} with {left} replacements starting"),
            );
        }
        self.stop_planned();
        if let Some(recycle) = self.recycle.take() {
            let left = recycle.queue.len() + recycle.in_flight.len();
            log(
                actions,
                Level::Info,
                format!("recycle stopped by {cause} with {left} workers not replaced"),
            );
        }
        let timeout = self.options.shutdown.timeout;
        log(
            actions,
            Level::Info,
            format!(
                "{cause}: shutting down {} workers (grace {} ms)",
                self.workers.len(),
                timeout.as_millis()
            ),
        );
        // A worker already retiring (the old worker of a recycle, one that
        // SIGTTOU removed) keeps its grace only as far as the shutdown's:
        // every worker is gone within shutdown.timeout of the signal. One
        // whose version knows its grace is told the shorter one.
        for (&worker, record) in &mut self.workers {
            if let State::Retiring { deadline } = &mut record.state
                && now + timeout < *deadline
            {
                *deadline = now + timeout;
                let told = MasterMessage::disconnect_for(record.protocol_version, timeout);
                if matches!(told, MasterMessage::Disconnect { grace: Some(_) }) {
                    actions.push(Action::Send(worker, told));
                }
            }
        }
        let live: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(id, w)| w.state.is_live() && Some(**id) != exited)
            .map(|(id, _)| *id)
            .collect();
        for worker in live {
            self.retire(now, worker, timeout, actions);
        }
        self.check_done(actions);
    }

    /// A second `SIGINT` or `SIGTERM` during the shutdown: kill every
    /// worker not killed yet.
    pub(super) fn force_stop(&mut self, signal: Signal, actions: &mut Vec<Action>) {
        self.phase = Phase::ShuttingDown { forced: true };
        let left: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.state != State::Killed)
            .map(|(id, _)| *id)
            .collect();
        log(
            actions,
            Level::Warn,
            format!("{signal} again: forcing shutdown, killing {} workers", left.len()),
        );
        for worker in left {
            self.set_state(worker, State::Killed);
            actions.push(Action::Kill(worker));
        }
    }

    /// Once the last worker of a shutdown is gone, and the probe of an
    /// upgrade too: exit, 1 if the master stopped on its own failure.
    pub(super) fn check_done(&mut self, actions: &mut Vec<Action>) {
        if let Phase::ShuttingDown { forced } = self.phase
            && self.workers.is_empty()
            && self.upgrade.is_none()
        {
            self.phase = Phase::Exited;
            let how = if forced { "forced shutdown" } else { "shutdown" };
            log(actions, Level::Info, format!("{how} complete: all workers exited"));
            actions.push(Action::Exit(if self.failure.is_some() { 1 } else { 0 }));
        }
    }
}
