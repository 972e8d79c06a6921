//! Failures and exits: a worker that failed is killed if need be, logged,
//! and replaced after `restart_delay` (a [`Restart`] waits for it), unless a
//! recycle's replacement already takes its place; a worker that exits is
//! taken off the books.
//!
//! An exit on purpose (an `Exit` message, then that exit code) is replaced
//! at once without counting as a crash, unless it comes within
//! [`EARLY_EXIT_WINDOW`] of the worker's spawn: then it is a crash like any
//! other, so that a worker that exits on purpose as soon as it starts (by
//! bug or by design) is restarted with the backoff, never in a fork loop.

use std::time::{Duration, Instant};

use log::Level;

use super::{Action, ExitStatus, Failure, Machine, Phase, State, WorkerId, log};
use crate::backoff::restart_delay;

/// An exit on purpose this soon after the worker's spawn counts as a crash.
///
/// A worker exits on purpose to recycle itself after serving its share
/// (gunicorn's `--max-requests`), which takes far longer than this; one
/// that says `Online`, `Exit` and exits at once would otherwise be respawned
/// in a tight loop (35 ms apart, each spawn costing the master a fork and
/// whatever the worker made it bind). One second bounds such a loop to a
/// spawn a second even before the backoff, and no honest recycle is that
/// short.
pub(crate) const EARLY_EXIT_WINDOW: Duration = Duration::from_millis(1000);

/// A replacement waiting for its restart delay; `streak` carries the
/// crashes in a row on to it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Restart {
    pub(super) due: Instant,
    pub(super) streak: u32,
}

impl Machine {
    /// A live worker failed: kill it and decide on its replacement.
    pub(super) fn kill_as_failed(
        &mut self,
        now: Instant,
        worker: WorkerId,
        why: &str,
        actions: &mut Vec<Action>,
    ) {
        let Some(record) = self.workers.get(&worker) else { return };
        if record.state == State::Killed {
            return;
        }
        let was_live = record.state.is_live();
        self.set_state(worker, State::Killed);
        actions.push(Action::Kill(worker));
        if was_live {
            self.fail(now, worker, why, actions);
        } else {
            let name = self.name(worker);
            log(actions, Level::Warn, format!("{name} {why}; killing it"));
        }
    }

    /// Books a failure of a live worker: log it, stop a recycle whose
    /// replacement it was, and schedule its replacement with backoff; or,
    /// when no worker has ever started and this worker's line has now
    /// failed to start `worker.max_start_failures` times in a row, decide
    /// to give up (`give_up_if_decided` carries it out): stop every worker
    /// and exit 1, naming this failure.
    pub(super) fn fail(
        &mut self,
        now: Instant,
        worker: WorkerId,
        why: &str,
        actions: &mut Vec<Action>,
    ) {
        let name = self.name(worker);
        let Some(record) = self.workers.get(&worker) else { return };
        if self.phase != Phase::Running {
            log(actions, Level::Warn, format!("{name} {why}"));
            return;
        }
        let stable = record
            .started_at
            .is_some_and(|at| now.saturating_duration_since(at) >= self.options.restart.max_delay);
        let streak = if stable { 1 } else { record.streak + 1 };
        if let Some(index) = self.unwanted.iter().position(|unwanted| *unwanted == worker) {
            // A replacement of a recycle that stopped during this event: its
            // old worker serves on, and nothing takes its place.
            self.unwanted.swap_remove(index);
            log(actions, Level::Warn, format!("{name} {why}; not replaced: its recycle stopped"));
            return;
        }
        if self.give_up.is_some() {
            // The shutdown is about to begin; nothing is restarted.
            log(actions, Level::Warn, format!("{name} {why}"));
            return;
        }
        // Before any worker ever started, every failure of a line is a
        // start failure, and its streak counts them: a program that cannot
        // start would otherwise be restarted forever, and a service manager
        // waiting for readiness would wait until its own timeout.
        let limit = self.options.worker.max_start_failures;
        if !self.ever_started && streak >= limit {
            let starts = if streak == 1 { "start" } else { "starts" };
            let failure = format!(
                "no worker could start: {streak} failed {starts} in a row (worker.max_start_failures = {limit}), the last: {name} {why}"
            );
            self.give_up = Some(failure);
            return;
        }
        // A recycle's replacement that fails stops the recycle; if it still
        // had an old worker to replace, that one keeps serving and nothing
        // needs restarting.
        if let Some(pair) = self.replacement_failed(now, worker, why, actions)
            && pair.old.is_some()
        {
            return;
        }
        if self.old_worker_gone(worker) {
            log(actions, Level::Warn, format!("{name} {why}; its replacement is already starting"));
            return;
        }
        let delay =
            restart_delay(self.options.restart.delay, self.options.restart.max_delay, streak);
        log(actions, Level::Warn, format!("{name} {why}; restarting in {} ms", delay.as_millis()));
        self.restarts.push(Restart { due: now + delay, streak });
    }

    /// Gives up, if a failure decided so (see `fail`): the graceful
    /// shutdown, and exit 1 naming that failure. Called once the deadlines
    /// and once the event are handled, not in the middle, so that the
    /// worker whose exit the event reports (`exited`) is not asked to
    /// disconnect, and the event is handled as during a shutdown.
    pub(super) fn give_up_if_decided(
        &mut self,
        now: Instant,
        exited: Option<WorkerId>,
        actions: &mut Vec<Action>,
    ) {
        if let Some(failure) = self.give_up.take() {
            let failure = Failure::NoWorkerStarted(failure);
            self.stop(now, "no worker could start", Some(failure), exited, actions);
        }
    }

    /// A worker was reaped: log how it ended, treat an exit nobody asked
    /// for as a failure (or replace at once a worker that announced it), and
    /// take it off the books.
    ///
    /// The log line says what happened, not what was expected: a worker
    /// asked to disconnect that a signal killed (`SIGTERM` to the whole
    /// process group reaches workers too) or that exited with an error did
    /// not exit "as asked", and one the master killed may have exited on its
    /// own first.
    pub(super) fn on_exit(
        &mut self,
        now: Instant,
        worker: WorkerId,
        status: ExitStatus,
        actions: &mut Vec<Action>,
    ) {
        let name = self.name(worker);
        let Some(record) = self.workers.get(&worker) else { return };
        let (state, exit_code, streak) = (record.state.clone(), record.exit_code, record.streak);
        let lived = now.saturating_duration_since(record.spawned_at);
        match state {
            State::Retiring { .. } => match status {
                ExitStatus::Code(0) => {
                    log(actions, Level::Info, format!("{name} exited ({status}) as asked"))
                }
                ExitStatus::Code(_) => log(
                    actions,
                    Level::Warn,
                    format!("{name} exited ({status}) after disconnect, with an error"),
                ),
                ExitStatus::Signal(signal) => log(
                    actions,
                    Level::Warn,
                    format!(
                        "{name} was killed by signal {signal}{} while draining",
                        signal_name(signal)
                    ),
                ),
            },
            State::Killed if status == ExitStatus::Signal(SIGKILL) => {
                log(actions, Level::Info, format!("{name} exited ({status}) after being killed"))
            }
            State::Killed => log(
                actions,
                Level::Info,
                format!("{name} exited ({status}) as it was being killed"),
            ),
            State::Refused { .. } => {
                log(actions, Level::Info, format!("{name} exited ({status}) after being refused"))
            }
            State::Started
                if exit_code.is_some_and(|code| status == ExitStatus::Code(code))
                    && self.phase == Phase::Running =>
            {
                if lived < EARLY_EXIT_WINDOW {
                    let why = format!(
                        "exited on purpose ({status}) {} ms after its spawn, within {} ms: counted as a crash",
                        lived.as_millis(),
                        EARLY_EXIT_WINDOW.as_millis()
                    );
                    self.fail(now, worker, &why, actions);
                } else {
                    log(
                        actions,
                        Level::Info,
                        format!("{name} exited on purpose ({status}); replacing it"),
                    );
                    self.workers.remove(&worker);
                    if !self.old_worker_gone(worker) {
                        self.spawn(now, streak, actions);
                    }
                    return;
                }
            }
            State::Starting { .. } | State::Started => {
                let why = match exit_code {
                    Some(code) => format!("exited ({status}) after announcing exit code {code}"),
                    None => format!("exited unasked ({status})"),
                };
                self.fail(now, worker, &why, actions);
            }
        }
        self.workers.remove(&worker);
        self.check_done(actions);
    }
}

/// `SIGKILL`'s number, as `ExitStatus::Signal` carries it.
const SIGKILL: i32 = nix::libc::SIGKILL;

/// ` (SIGTERM)` for 15: the name of a signal number, for log lines; empty
/// for a number this platform does not name.
fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map_or_else(|_| String::new(), |signal| format!(" ({})", signal.as_str()))
}
