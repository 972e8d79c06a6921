//! The master's decisions: a pure state machine from [`Event`]s to
//! [`Action`]s.
//!
//! No I/O, no clock reads, no syscalls: `now` comes in with every event,
//! deadlines go out through [`Machine::next_deadline`], and everything the
//! master does is an [`Action`] for the shell to carry out. A worker crash
//! is a state transition, not an error, so nothing here returns `Result`.
//!
//! # Worker lifecycle
//!
//! `Starting → Started → Retiring → (exited)`, with `Killed` reachable from
//! every live state. `worker.require` decides which message moves a worker
//! from `Starting` to `Started`. A worker leaves this machine's books only
//! when the shell reports that it exited (it was reaped).
//!
//! A worker that says `Hello` with a protocol version this master does not
//! speak (outside `MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION`) is `Refused`:
//! it gets a `Refused` message naming the versions and [`REFUSED_GRACE`]
//! to exit by itself, so that its own log says why, before it is killed.
//! The master remembers the version of every other worker, and sends each
//! the form of `Disconnect` it decodes: with the grace it is given (the
//! deadline `Retiring` holds) from protocol 2 on.
//!
//! # Hostile workers
//!
//! A worker that breaks the protocol (bytes the shell cannot decode, a
//! message before `Hello`, a second `Hello`), closes its channel without
//! exiting, or floods the channel with more than
//! [`MAX_MESSAGES_PER_WINDOW`] messages within [`FLOOD_WINDOW`] (a
//! well-behaved worker sends a handful in its whole life) is killed and
//! replaced like a crashed one. So is a worker that exits on purpose within
//! [`EARLY_EXIT_WINDOW`] of its spawn: it is restarted with the crash
//! backoff, never respawned in a tight loop.
//!
//! # Giving up
//!
//! Before any worker has ever started, the configuration or the program may
//! simply not work. A listen failure then stops the master at once; and once
//! a line of replacements has failed to start `worker.max_start_failures`
//! times in a row (exited, crashed or refused before reaching
//! `worker.require`, timed out, or not spawned at all), the master gives
//! up: the graceful shutdown, then exit 1 with the last failure as the
//! reason ([`Machine::failure`]), which the shell returns as the error and
//! the `STATUS=` line shows. The decision is carried out once the deadlines
//! due, and then the event, are handled, never in the middle of either: a
//! worker whose exit the event reports is gone, and is not asked to
//! disconnect. After the first start, failures are restarted with the
//! backoff however many there are.
//!
//! # Counting
//!
//! While running, the number of workers that are starting or started, plus
//! the restarts waiting for their delay, is `target` (`worker.count`, changed
//! by `SIGTTIN`/`SIGTTOU`), plus up to `recycle.parallel` while a recycle's
//! or planned recycles' replacements start beside the workers they replace.
//!
//! # Recycle
//!
//! `recycle.parallel` workers at a time (one by default): spawn that many
//! replacements, each paired with one old worker; once *a replacement* has
//! started, retire its own old worker and spawn the next replacement while
//! the old one drains. An old worker leaves only once a started worker took
//! its place, so the started workers never drop below the target because of
//! a recycle. A replacement that fails to start stops the recycle: the
//! other replacements still starting are retired, and the remaining old
//! workers keep serving. A `SIGHUP` during a recycle starts over with every
//! live worker as old, so the recycle ends with workers all spawned after
//! the last `SIGHUP`.
//!
//! # Hung workers, memory and age
//!
//! `worker.watchdog`: a started worker silent (no `Alive`) for its period
//! is killed as hung and replaced like a crash (`watchdog.rs`).
//! `worker.max_rss` and `worker.max_age`: a worker above the memory limit
//! (sampled once a second by the shell) or past its jittered age is
//! replaced as in one step of a recycle, replacement first; these planned
//! recycles yield to a `SIGHUP` recycle and an upgrade (`planned.rs`).
//!
//! # Upgrade
//!
//! `SIGUSR2` probes the program on disk and, if it is a compatible srv
//! master whose options are valid, has the shell re-execute it in place with
//! the machine's [`Handover`]; the new master's machine
//! ([`Machine::adopt`]) recycles every worker. See `upgrade.rs`.
//!
//! # Files
//!
//! [`Machine`] is one type whose `impl` is split by concern:
//!
//! - this file: its state, its entry points (`new`, `handle`, the queries)
//!   and the dispatch of signals;
//! - `vocabulary.rs`: the events, actions and status it speaks in;
//! - `worker.rs`: one worker's record and states, and what every concern
//!   does to a worker: spawn, start, retire, and kill at a deadline;
//! - `messages.rs`: what a worker says, and the limits on it;
//! - `failure.rs`: failures, exits and restarts;
//! - `recycle.rs`: the rolling recycle, `recycle.parallel` at a time;
//! - `watchdog.rs`: hung workers (`worker.watchdog`);
//! - `planned.rs`: planned recycles (`worker.max_rss`, `worker.max_age`);
//! - `scaling.rs`: `SIGTTIN` and `SIGTTOU`;
//! - `shutdown.rs`: the graceful shutdown, and the forced one;
//! - `upgrade.rs`: the upgrade in place (`SIGUSR2`) and the handover.
//!
//! [`REFUSED_GRACE`]: messages::REFUSED_GRACE
//! [`MAX_MESSAGES_PER_WINDOW`]: messages::MAX_MESSAGES_PER_WINDOW
//! [`FLOOD_WINDOW`]: messages::FLOOD_WINDOW
//! [`EARLY_EXIT_WINDOW`]: failure::EARLY_EXIT_WINDOW

mod failure;
mod messages;
mod planned;
mod recycle;
mod scaling;
mod shutdown;
mod upgrade;
mod vocabulary;
mod watchdog;
mod worker;

use std::collections::BTreeMap;
use std::time::Instant;

use log::Level;

use crate::options::Options;

use self::failure::Restart;
use self::planned::Plans;
use self::recycle::Recycle;
use self::upgrade::Upgrade;
pub(crate) use self::upgrade::{HANDOVER_VERSION, Handover};
#[cfg(test)]
pub(crate) use self::upgrade::{HandedState, HandedWorker};
pub(crate) use self::vocabulary::{
    Action, Event, ExitStatus, Failure, ProbeReport, ServicePhase, Signal, Status, Upgrading,
    WorkerId,
};
use self::worker::{CHANNEL_CLOSE_GRACE, State, Worker};

/// The master as a whole: running, shutting down (forced by a second
/// signal), or done (it returned `Action::Exit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    ShuttingDown { forced: bool },
    Exited,
}

/// The master's state: workers, the operation in progress, and pending
/// restarts.
///
/// The shell feeds it every [`Event`] with the current time and carries out
/// the [`Action`]s it returns.
#[derive(Debug)]
pub(crate) struct Machine {
    options: Options,
    target: usize,
    next_id: u32,
    workers: BTreeMap<WorkerId, Worker>,
    phase: Phase,
    recycle: Option<Recycle>,
    /// Replacements of a recycle that stopped while they were starting,
    /// to retire (see `recycle.rs`); empty between events.
    unwanted: Vec<WorkerId>,
    restarts: Vec<Restart>,
    /// Some worker has started at least once.
    ever_started: bool,
    /// All of `worker.count` have been started at once at least once.
    ever_ready: bool,
    /// Why the master is stopping on its own, if it is.
    failure: Option<Failure>,
    /// Why the master gives up, decided by a failure (see `fail`) and
    /// carried out by `give_up_if_decided` once the deadlines, or the
    /// event, that decided it are handled.
    give_up: Option<String>,
    /// The upgrade in progress (`SIGUSR2`).
    upgrade: Option<Upgrade>,
    /// How the last upgrade went wrong (`failed: ...`, `incomplete:
    /// ...`), until the next one begins; the status shows it.
    upgrade_failure: Option<String>,
    /// Replacements the machine starts on its own: a worker above
    /// `worker.max_rss` or older than `worker.max_age` (`planned.rs`).
    plans: Plans,
    /// The latest time an event was handled at: how long the master did
    /// not run, if it stalls (`watchdog.rs`).
    last_handled: Instant,
}

impl Machine {
    /// A machine that starts `options.worker.count` workers, and its first
    /// actions: one [`Action::Spawn`] per worker.
    ///
    /// `options` must be valid ([`Options::validate`]).
    #[must_use]
    pub(crate) fn new(options: Options, now: Instant) -> (Machine, Vec<Action>) {
        let target = options.worker.count;
        let options_max_rss = options.worker.max_rss;
        let mut machine = Machine {
            options,
            target,
            next_id: 1,
            workers: BTreeMap::new(),
            phase: Phase::Running,
            recycle: None,
            unwanted: Vec::new(),
            restarts: Vec::new(),
            ever_started: false,
            ever_ready: false,
            failure: None,
            give_up: None,
            upgrade: None,
            upgrade_failure: None,
            plans: Plans::new(now, options_max_rss),
            last_handled: now,
        };
        let mut actions = Vec::new();
        for _ in 0..target {
            machine.spawn(now, 0, &mut actions);
        }
        (machine, actions)
    }

    /// Handles one event at `now`, appending what to do to `actions`.
    ///
    /// Deadlines that are due at `now` are handled first, whatever the event,
    /// except those of a worker or a probe whose exit the event reports: it
    /// is gone.
    /// Once the machine has returned [`Action::Exit`], it ignores every event.
    pub(crate) fn handle(&mut self, now: Instant, event: Event, actions: &mut Vec<Action>) {
        if self.phase == Phase::Exited {
            return;
        }
        let exiting = match &event {
            Event::Exited { worker, .. } => Some(*worker),
            _ => None,
        };
        // Nor is a probe whose end the event reports killed, at its deadline
        // or by a shutdown: it is gone, and what it reported is judged.
        if let Event::ProbeExited { .. } | Event::ProbeSpawnFailed { .. } = event {
            self.probe_gone();
        }
        // Before any deadline is judged: a stall of the master's own is
        // not its workers' silence.
        self.forgive_stall(now, actions);
        self.advance(now, exiting, matches!(event, Event::Tick), actions);
        self.advance_upgrade(now, actions);
        self.give_up_if_decided(now, exiting, actions);
        self.retire_unwanted(now, exiting, actions);
        match event {
            Event::Tick => {}
            Event::Signal(signal) => self.on_signal(now, signal, actions),
            Event::Spawned { worker, pid } => {
                if let Some(record) = self.workers.get_mut(&worker) {
                    record.pid = Some(pid);
                    // `worker.timeout` counts from when the process exists:
                    // a fork slowed by a busy machine is not the worker's.
                    record.spawned_at = now;
                    if let State::Starting { deadline, .. } = &mut record.state {
                        *deadline = now + self.options.worker.timeout;
                    }
                    log(actions, Level::Info, format!("{worker} spawned (pid {pid})"));
                }
            }
            Event::SpawnFailed { worker, error } => {
                if let Some(record) = self.workers.get(&worker) {
                    let why = format!("could not be spawned: {error}");
                    // A worker retired (or killed) before its spawn was
                    // reported is not wanted any more: nothing to replace.
                    if record.state.is_live() {
                        self.fail(now, worker, &why, actions);
                    } else {
                        log(actions, Level::Warn, format!("{worker} {why}"));
                    }
                    self.workers.remove(&worker);
                    self.check_done(actions);
                }
            }
            Event::Message { worker, message } => self.on_message(now, worker, message, actions),
            Event::ProtocolError { worker, error } => {
                // A refused worker may speak another protocol: only its exit
                // (or the refusal's deadline) matters now.
                if !self.is_refused(worker) {
                    let why = format!("broke the protocol: {error}");
                    self.kill_as_failed(now, worker, &why, actions);
                }
            }
            Event::ListenFailed { worker, addr, error } => {
                self.listen_failed(now, worker, &addr, &error, actions);
            }
            Event::ChannelClosed { worker } => {
                if let Some(record) = self.workers.get_mut(&worker)
                    && record.state.is_live()
                    && record.closed_deadline.is_none()
                {
                    record.closed_deadline = Some(now + CHANNEL_CLOSE_GRACE);
                }
            }
            Event::Exited { worker, status } => self.on_exit(now, worker, status, actions),
            Event::Rss { worker, bytes } => self.on_rss(now, worker, bytes, actions),
            Event::ProbeSpawned { pid, program } => {
                self.probe_spawned(now, pid, &program, actions);
            }
            Event::ProbeSpawnFailed { error } => self.probe_spawn_failed(now, &error, actions),
            Event::ProbeExited { status, report, output } => {
                self.probe_exited(now, status, &report, &output, actions);
            }
            Event::ExecFailed { error } => self.exec_failed(now, &error, actions),
        }
        self.give_up_if_decided(now, None, actions);
        self.retire_unwanted(now, None, actions);
        self.step_recycle(now, actions);
        self.finish_upgrade_if_recycled(now, actions);
        self.step_planned(now, actions);
        // After the event: a worker whose exit it reports is not sampled.
        self.sample_if_due(now, actions);
        if !self.ever_ready && self.is_ready() {
            self.ever_ready = true;
        }
    }

    /// What the master is doing, for a service manager (systemd's
    /// `READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=`).
    pub(crate) fn status(&self) -> Status {
        let reloading = self.recycle.is_some() || self.upgrade.is_some();
        let phase = match (self.phase, reloading) {
            (Phase::ShuttingDown { .. } | Phase::Exited, _) => ServicePhase::Stopping,
            (Phase::Running, true) => ServicePhase::Reloading,
            (Phase::Running, false) if self.ever_ready => ServicePhase::Ready,
            (Phase::Running, false) => ServicePhase::Starting,
        };
        Status {
            phase,
            started: self.started(),
            target: self.target,
            workers: self.workers.len(),
            failure: self.failure.as_ref().map(ToString::to_string),
            upgrading: self.upgrading(),
            upgrade_failure: self.upgrade_failure.clone(),
        }
    }

    /// The earliest time at which [`Machine::handle`] has something to do
    /// without any event (then send [`Event::Tick`]).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let watchdogs = self.workers.values().filter_map(|worker| worker.watchdog_deadline());
        let periodic = watchdogs.chain(self.planned_deadline());
        self.pending_deadline().into_iter().chain(periodic).min()
    }

    /// [`Machine::next_deadline`] but for the watchdog's: what a report
    /// read from a worker must be handled before. Hangs are judged only at
    /// a [`Event::Tick`] (see `watchdog.rs`), which the shell sends once
    /// every report of its turn is handled, so a report needs no stamp
    /// before a watchdog deadline, and gets its true time.
    pub(crate) fn report_deadline(&self) -> Option<Instant> {
        self.pending_deadline().into_iter().chain(self.planned_deadline()).min()
    }

    /// [`Machine::next_deadline`] but for those that come back forever
    /// while all is well: the watchdog's of each started worker, and those
    /// of planned recycles (the next memory sample, the next worker's age).
    fn pending_deadline(&self) -> Option<Instant> {
        let workers = self.workers.values().flat_map(|worker| {
            let state = match worker.state {
                State::Starting { deadline, .. }
                | State::Retiring { deadline }
                | State::Refused { deadline } => Some(deadline),
                State::Started | State::Killed => None,
            };
            // Only a live worker is killed at its closed deadline (`advance`);
            // once it retires or is killed, that deadline is moot and, left
            // here, would stay due forever: a zero poll timeout, a busy loop.
            let closed = worker.closed_deadline.filter(|_| worker.state.is_live());
            state.into_iter().chain(closed)
        });
        let restarts = self.restarts.iter().map(|restart| restart.due);
        workers.chain(restarts).chain(self.upgrade_deadline()).min()
    }

    /// Whether every worker is started and none is pending: all of
    /// `worker.count` serve.
    pub(crate) fn is_ready(&self) -> bool {
        self.phase == Phase::Running && self.restarts.is_empty() && self.started() >= self.target
    }

    /// Whether a recycle is in progress.
    ///
    /// It ends when the last replacement has started; the last old worker
    /// may still be draining then. Only the tests ask: the shell reads it in
    /// [`Machine::status`].
    #[cfg(test)]
    pub(crate) fn is_recycling(&self) -> bool {
        self.recycle.is_some()
    }

    /// How many planned replacements (`worker.max_rss`, `worker.max_age`)
    /// are starting. Only the tests ask.
    #[cfg(test)]
    pub(crate) fn planned_in_flight(&self) -> usize {
        self.plans.in_flight.len()
    }

    /// The number of workers wanted (`worker.count`, as changed by
    /// `SIGTTIN`/`SIGTTOU`). Only the tests ask: the shell reads it in
    /// [`Machine::status`].
    #[cfg(test)]
    pub(crate) fn target(&self) -> usize {
        self.target
    }

    /// Why the master stopped on its own (it then exits 1), `None` after a
    /// shutdown by signal.
    pub(crate) fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// The number of workers that are started and not retiring.
    pub(crate) fn started(&self) -> usize {
        self.workers.values().filter(|worker| worker.state == State::Started).count()
    }

    /// What a signal does depends on the phase: while running, each starts
    /// its operation; while shutting down, a second `SIGINT` or `SIGTERM`
    /// forces the shutdown and the others are logged and ignored.
    fn on_signal(&mut self, now: Instant, signal: Signal, actions: &mut Vec<Action>) {
        match (signal, self.phase) {
            (Signal::Int | Signal::Term, Phase::Running) => {
                self.stop(now, &signal.to_string(), None, None, actions);
            }
            (Signal::Int | Signal::Term, Phase::ShuttingDown { .. }) => {
                self.force_stop(signal, actions);
            }
            (Signal::Hup, Phase::Running) => {
                if !self.defer_hup(actions) {
                    self.begin_recycle(now, actions);
                }
            }
            (Signal::Usr2, Phase::Running) => self.begin_upgrade(now, actions),
            (Signal::Ttin, Phase::Running) => self.add_one(now, actions),
            (Signal::Ttou, Phase::Running) => self.remove_one(now, actions),
            (_, _) => log(actions, Level::Info, format!("{signal} ignored: shutting down")),
        }
    }
}

fn log(actions: &mut Vec<Action>, level: Level, line: String) {
    actions.push(Action::Log(level, line));
}

#[cfg(test)]
mod tests;
