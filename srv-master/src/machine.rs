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
//! A worker that says `Hello` with another protocol version is `Refused`:
//! it gets a `Refused` message naming both versions and [`REFUSED_GRACE`]
//! to exit by itself, so that its own log says why, before it is killed.
//!
//! # Hostile workers
//!
//! A worker that breaks the protocol (bytes the shell cannot decode, a
//! message before `Hello`, a second `Hello`), closes its channel without
//! exiting, or floods the channel with more than
//! [`MAX_MESSAGES_PER_WINDOW`] messages within [`FLOOD_WINDOW`] (a
//! well-behaved worker sends a handful in its whole life) is killed and
//! replaced like a crashed one.
//!
//! # Counting
//!
//! While running, the number of workers that are starting or started, plus
//! the restarts waiting for their delay, is `target` (`worker.count`, changed
//! by `SIGTTIN`/`SIGTTOU`), plus one while a recycle's replacement starts
//! beside the worker it replaces.
//!
//! # Recycle
//!
//! One worker at a time: spawn a replacement; once *that replacement* has
//! started, retire the old worker and spawn the next replacement while the
//! old one drains. A replacement that fails to start stops the recycle and
//! the remaining old workers keep serving. A `SIGHUP` during a recycle starts
//! over with every live worker as old, so the recycle ends with workers all
//! spawned after the last `SIGHUP`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use log::Level;
use srv_proto::{ListenAddr, ListenError, MasterMessage, PROTOCOL_VERSION, WorkerMessage};

use crate::backoff::restart_delay;
use crate::options::{MAX_WORKERS, Options, Require};

/// A worker's identity within one master; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct WorkerId(pub(crate) u32);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker {}", self.0)
    }
}

/// The signals the master acts on (`SIGCHLD` is the shell's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// `SIGINT`: graceful shutdown; a second one forces it.
    Int,
    /// `SIGTERM`: graceful shutdown; a second one forces it.
    Term,
    /// `SIGHUP`: rolling recycle of every worker.
    Hup,
    /// `SIGTTIN`: one worker more.
    Ttin,
    /// `SIGTTOU`: one worker fewer.
    Ttou,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
            Signal::Hup => "SIGHUP",
            Signal::Ttin => "SIGTTIN",
            Signal::Ttou => "SIGTTOU",
        })
    }
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(signal) => write!(f, "signal {signal}"),
        }
    }
}

/// Something that happened, as the shell reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A signal arrived.
    Signal(Signal),
    /// The worker the machine asked for runs as `pid`.
    Spawned {
        /// The worker.
        worker: WorkerId,
        /// Its process id.
        pid: u32,
    },
    /// The worker the machine asked for could not be started at all.
    SpawnFailed {
        /// The worker.
        worker: WorkerId,
        /// Why, naming the program.
        error: String,
    },
    /// A worker sent a message.
    Message {
        /// The worker.
        worker: WorkerId,
        /// The message.
        message: WorkerMessage,
    },
    /// A worker sent bytes that are not the protocol.
    ProtocolError {
        /// The worker.
        worker: WorkerId,
        /// What was wrong.
        error: String,
    },
    /// The master could not provide the socket a worker asked for (the
    /// worker got the error in its `ListenReply`).
    ListenFailed {
        /// The worker.
        worker: WorkerId,
        /// The address it asked for.
        addr: ListenAddr,
        /// Why, naming the address.
        error: String,
    },
    /// A worker's end of the channel closed.
    ChannelClosed {
        /// The worker.
        worker: WorkerId,
    },
    /// A worker process ended and was reaped.
    Exited {
        /// The worker.
        worker: WorkerId,
        /// How it ended.
        status: ExitStatus,
    },
    /// Time passed; deadlines up to `now` are due.
    Tick,
}

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start a worker process for this id, then report `Spawned` or
    /// `SpawnFailed`.
    Spawn(WorkerId),
    /// Send this message to the worker.
    Send(WorkerId, MasterMessage),
    /// Bind `addr` (or reuse the socket held for it) and send the worker a
    /// `ListenReply` with the socket or the error.
    Listen(WorkerId, ListenAddr),
    /// `SIGKILL` the worker.
    Kill(WorkerId),
    /// Close every listening socket the master holds: it is shutting down,
    /// so new connections should be refused rather than queue for nobody.
    CloseListeners,
    /// Write one log line.
    Log(Level, String),
    /// Every worker is gone after a shutdown: exit with this code.
    Exit(i32),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Spawn(worker) => write!(f, "spawn {worker}"),
            Action::Send(worker, message) => write!(f, "send {worker} {message:?}"),
            Action::Listen(worker, addr) => write!(f, "listen {worker} {addr}"),
            Action::Kill(worker) => write!(f, "kill {worker}"),
            Action::CloseListeners => f.write_str("close listeners"),
            Action::Log(level, line) => write!(f, "log {level}: {line}"),
            Action::Exit(code) => write!(f, "exit {code}"),
        }
    }
}

/// What the master is doing as a whole, as a service manager sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServicePhase {
    /// Not every worker has started yet, ever.
    Starting,
    /// Every worker started once; serving.
    Ready,
    /// A recycle is in progress.
    Reloading,
    /// Shutting down.
    Stopping,
}

/// A summary of the master's state: [`Machine::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status {
    /// What the master is doing.
    pub(crate) phase: ServicePhase,
    /// Workers started and serving.
    pub(crate) started: usize,
    /// Workers wanted.
    pub(crate) target: usize,
    /// Worker processes, in any state.
    pub(crate) workers: usize,
}

impl fmt::Display for Status {
    /// A line for `STATUS=`, such as `4/4 workers ready`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Status { phase, started, target, workers } = *self;
        match phase {
            ServicePhase::Starting => write!(f, "starting: {started}/{target} workers ready"),
            ServicePhase::Ready => write!(f, "{started}/{target} workers ready"),
            ServicePhase::Reloading => write!(f, "recycling: {started}/{target} workers ready"),
            ServicePhase::Stopping => write!(f, "stopping: {workers} workers left"),
        }
    }
}

/// How long a worker whose channel closed may take to exit before it is
/// killed as broken.
pub(crate) const CHANNEL_CLOSE_GRACE: Duration = Duration::from_millis(1000);

/// How long a worker refused for its protocol version may take to exit
/// before it is killed.
pub(crate) const REFUSED_GRACE: Duration = Duration::from_millis(1000);

/// The window over which a worker's messages are counted (see
/// [`MAX_MESSAGES_PER_WINDOW`]).
pub(crate) const FLOOD_WINDOW: Duration = Duration::from_millis(1000);

/// The most messages a worker may send within one [`FLOOD_WINDOW`]; one
/// more floods the channel, and the worker is killed. A well-behaved worker
/// sends `Hello`, a `ListenRequest` and a `Listening` per address, `Online`
/// and maybe `Exit`: a handful in its whole life.
pub(crate) const MAX_MESSAGES_PER_WINDOW: u32 = 1000;

/// The most `ListenRequest`s one worker may send in its life. Each answer
/// carries a duplicated socket that waits in the master until the worker
/// reads it, so a worker that asks without reading could otherwise run the
/// master out of descriptors; a real server listens on a few addresses.
pub(crate) const MAX_LISTEN_REQUESTS: u32 = 64;

#[derive(Debug)]
struct Worker {
    pid: Option<u32>,
    state: State,
    /// Said hello with the right protocol version.
    greeted: bool,
    /// The code from an `Exit` message: the worker meant to exit.
    exit_code: Option<i32>,
    spawned_at: Instant,
    started_at: Option<Instant>,
    /// Crashes in a row of this worker's line of replacements.
    streak: u32,
    /// When the worker closed its channel without exiting, the time by
    /// which it must have exited.
    closed_deadline: Option<Instant>,
    /// When the current [`FLOOD_WINDOW`] began, and the messages in it.
    window_start: Instant,
    window_messages: u32,
    /// `ListenRequest`s so far (see [`MAX_LISTEN_REQUESTS`]).
    listen_requests: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Starting {
        deadline: Instant,
        online: bool,
        listening: bool,
    },
    Started,
    /// Asked to disconnect; killed at `deadline`.
    Retiring {
        deadline: Instant,
    },
    /// Refused for its protocol version; killed at `deadline`.
    Refused {
        deadline: Instant,
    },
    /// `SIGKILL` sent; waiting to be reaped.
    Killed,
}

impl State {
    /// Starting or started: counts towards the target.
    fn is_live(&self) -> bool {
        matches!(self, State::Starting { .. } | State::Started)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    ShuttingDown { forced: bool },
    Exited,
}

#[derive(Debug)]
struct Recycle {
    /// Old workers still to replace, in order.
    queue: VecDeque<WorkerId>,
    /// The replacement starting now and the old worker it replaces (`None`
    /// once that one is gone on its own).
    current: Option<(WorkerId, Option<WorkerId>)>,
    began: Instant,
    replaced: usize,
}

#[derive(Debug, Clone, Copy)]
struct Restart {
    due: Instant,
    streak: u32,
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
    restarts: Vec<Restart>,
    /// Some worker has started at least once.
    ever_started: bool,
    /// All of `worker.count` have been started at once at least once.
    ever_ready: bool,
    /// Why the master is stopping on its own, if it is.
    failure: Option<String>,
}

impl Machine {
    /// A machine that starts `options.worker.count` workers, and its first
    /// actions: one [`Action::Spawn`] per worker.
    ///
    /// `options` must be valid ([`Options::validate`]).
    #[must_use]
    pub(crate) fn new(options: Options, now: Instant) -> (Machine, Vec<Action>) {
        let target = options.worker.count;
        let mut machine = Machine {
            options,
            target,
            next_id: 1,
            workers: BTreeMap::new(),
            phase: Phase::Running,
            recycle: None,
            restarts: Vec::new(),
            ever_started: false,
            ever_ready: false,
            failure: None,
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
    /// except those of a worker whose exit the event reports: it is gone.
    /// Once the machine has returned [`Action::Exit`], it ignores every event.
    pub(crate) fn handle(&mut self, now: Instant, event: Event, actions: &mut Vec<Action>) {
        if self.phase == Phase::Exited {
            return;
        }
        let exiting = match &event {
            Event::Exited { worker, .. } => Some(*worker),
            _ => None,
        };
        self.advance(now, exiting, actions);
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
        }
        self.step_recycle(now, actions);
        if !self.ever_ready && self.is_ready() {
            self.ever_ready = true;
        }
    }

    /// What the master is doing, for a service manager (systemd's
    /// `READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=`).
    pub(crate) fn status(&self) -> Status {
        let phase = match (self.phase, &self.recycle) {
            (Phase::ShuttingDown { .. } | Phase::Exited, _) => ServicePhase::Stopping,
            (Phase::Running, Some(_)) => ServicePhase::Reloading,
            (Phase::Running, None) if self.ever_ready => ServicePhase::Ready,
            (Phase::Running, None) => ServicePhase::Starting,
        };
        Status { phase, started: self.started(), target: self.target, workers: self.workers.len() }
    }

    /// The earliest time at which [`Machine::handle`] has something to do
    /// without any event (then send [`Event::Tick`]).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
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
        workers.chain(restarts).min()
    }

    /// Whether every worker is started and none is pending: all of
    /// `worker.count` serve.
    pub(crate) fn is_ready(&self) -> bool {
        self.phase == Phase::Running
            && self.restarts.is_empty()
            && self.workers.values().filter(|worker| worker.state == State::Started).count()
                >= self.target
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

    /// The number of workers wanted (`worker.count`, as changed by
    /// `SIGTTIN`/`SIGTTOU`). Only the tests ask: the shell reads it in
    /// [`Machine::status`].
    #[cfg(test)]
    pub(crate) fn target(&self) -> usize {
        self.target
    }

    /// Why the master stopped on its own (it then exits 1), `None` after a
    /// shutdown by signal.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// The number of workers that are started and not retiring.
    pub(crate) fn started(&self) -> usize {
        self.workers.values().filter(|worker| worker.state == State::Started).count()
    }

    fn name(&self, worker: WorkerId) -> String {
        match self.workers.get(&worker).and_then(|record| record.pid) {
            Some(pid) => format!("{worker} (pid {pid})"),
            None => worker.to_string(),
        }
    }

    fn spawn(&mut self, now: Instant, streak: u32, actions: &mut Vec<Action>) -> WorkerId {
        let worker = WorkerId(self.next_id);
        self.next_id += 1;
        let deadline = now + self.options.worker.timeout;
        self.workers.insert(
            worker,
            Worker {
                pid: None,
                state: State::Starting { deadline, online: false, listening: false },
                greeted: false,
                exit_code: None,
                spawned_at: now,
                started_at: None,
                streak,
                closed_deadline: None,
                window_start: now,
                window_messages: 0,
                listen_requests: 0,
            },
        );
        actions.push(Action::Spawn(worker));
        worker
    }

    /// Handles every deadline that is due at `now`, but those of `exiting`:
    /// killing a reaped worker would be wrong, and so would its log line.
    fn advance(&mut self, now: Instant, exiting: Option<WorkerId>, actions: &mut Vec<Action>) {
        let due: Vec<(WorkerId, State, Option<Instant>)> = self
            .workers
            .iter()
            .filter(|(id, _)| Some(**id) != exiting)
            .map(|(id, worker)| (*id, worker.state.clone(), worker.closed_deadline))
            .collect();
        for (worker, state, closed_deadline) in due {
            match state {
                State::Starting { deadline, .. } if deadline <= now => {
                    let require = self.options.worker.require;
                    let timeout = self.options.worker.timeout.as_millis();
                    let why = format!("did not report {require} within {timeout} ms");
                    self.kill_as_failed(now, worker, &why, actions);
                }
                State::Retiring { deadline } if deadline <= now => {
                    let name = self.name(worker);
                    log(
                        actions,
                        Level::Warn,
                        format!("{name} did not exit in time after disconnect; killing it"),
                    );
                    self.set_state(worker, State::Killed);
                    actions.push(Action::Kill(worker));
                }
                State::Refused { deadline } if deadline <= now => {
                    let name = self.name(worker);
                    log(
                        actions,
                        Level::Warn,
                        format!("{name} did not exit in time after being refused; killing it"),
                    );
                    self.set_state(worker, State::Killed);
                    actions.push(Action::Kill(worker));
                }
                State::Starting { .. } | State::Started
                    if closed_deadline.is_some_and(|at| at <= now) =>
                {
                    self.kill_as_failed(
                        now,
                        worker,
                        "closed its channel but did not exit",
                        actions,
                    );
                }
                _ => {}
            }
        }
        if self.phase != Phase::Running {
            return;
        }
        let mut due_restarts = Vec::new();
        self.restarts.retain(|restart| {
            let is_due = restart.due <= now;
            if is_due {
                due_restarts.push(*restart);
            }
            !is_due
        });
        for restart in due_restarts {
            self.spawn(now, restart.streak, actions);
        }
    }

    fn set_state(&mut self, worker: WorkerId, state: State) {
        if let Some(record) = self.workers.get_mut(&worker) {
            record.state = state;
        }
    }

    fn on_signal(&mut self, now: Instant, signal: Signal, actions: &mut Vec<Action>) {
        match (signal, self.phase) {
            (Signal::Int | Signal::Term, Phase::Running) => {
                self.stop(now, &signal.to_string(), None, actions);
            }
            (Signal::Int | Signal::Term, Phase::ShuttingDown { .. }) => {
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
            (Signal::Hup, Phase::Running) => self.begin_recycle(now, actions),
            (Signal::Ttin, Phase::Running) => {
                if self.target >= MAX_WORKERS {
                    log(
                        actions,
                        Level::Warn,
                        format!("SIGTTIN ignored: already at {MAX_WORKERS} workers"),
                    );
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
            (Signal::Ttou, Phase::Running) => self.remove_one(now, actions),
            (_, _) => log(actions, Level::Info, format!("{signal} ignored: shutting down")),
        }
    }

    /// Begins the graceful shutdown, because of `cause` (a signal, or a
    /// `failure` that makes the master exit non-zero).
    fn stop(
        &mut self,
        now: Instant,
        cause: &str,
        failure: Option<String>,
        actions: &mut Vec<Action>,
    ) {
        self.phase = Phase::ShuttingDown { forced: false };
        if let Some(failure) = &failure {
            log(actions, Level::Error, format!("{failure}: stopping"));
        }
        self.failure = failure;
        actions.push(Action::CloseListeners);
        self.restarts.clear();
        if let Some(recycle) = self.recycle.take() {
            let left = recycle.queue.len() + usize::from(recycle.current.is_some());
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
        // every worker is gone within shutdown.timeout of the signal.
        for record in self.workers.values_mut() {
            if let State::Retiring { deadline } = &mut record.state {
                *deadline = (*deadline).min(now + timeout);
            }
        }
        let live: Vec<WorkerId> =
            self.workers.iter().filter(|(_, w)| w.state.is_live()).map(|(id, _)| *id).collect();
        for worker in live {
            self.retire(now, worker, timeout, actions);
        }
        self.check_done(actions);
    }

    /// Sends `Disconnect` and gives the worker `grace` to exit.
    fn retire(
        &mut self,
        now: Instant,
        worker: WorkerId,
        grace: Duration,
        actions: &mut Vec<Action>,
    ) {
        let name = self.name(worker);
        log(actions, Level::Info, format!("{name} disconnecting"));
        self.set_state(worker, State::Retiring { deadline: now + grace });
        actions.push(Action::Send(worker, MasterMessage::Disconnect));
    }

    fn begin_recycle(&mut self, now: Instant, actions: &mut Vec<Action>) {
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
    fn step_recycle(&mut self, now: Instant, actions: &mut Vec<Action>) {
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

    fn remove_one(&mut self, now: Instant, actions: &mut Vec<Action>) {
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
        let (in_flight, old_in_flight) = match &self.recycle {
            Some(Recycle { current: Some((replacement, old)), .. }) => (Some(*replacement), *old),
            _ => (None, None),
        };
        let queued = self.recycle.as_mut().and_then(|recycle| recycle.queue.pop_back());
        let victim = queued
            .or_else(|| {
                let others = self.workers.iter().filter(|(id, w)| {
                    w.state.is_live() && Some(**id) != in_flight && Some(**id) != old_in_flight
                });
                // Prefer a worker that is not serving yet, then the newest.
                let starting = others
                    .clone()
                    .filter(|(_, w)| w.state != State::Started)
                    .map(|(id, _)| *id)
                    .next_back();
                starting.or_else(|| others.map(|(id, _)| *id).next_back())
            })
            .or_else(|| {
                if let Some(Recycle { current: Some((_, old)), .. }) = &mut self.recycle {
                    old.take()
                } else {
                    None
                }
            });
        if let Some(worker) = victim {
            self.retire(now, worker, self.options.recycle.timeout, actions);
        }
    }

    fn on_message(
        &mut self,
        now: Instant,
        worker: WorkerId,
        message: WorkerMessage,
        actions: &mut Vec<Action>,
    ) {
        let Some(record) = self.workers.get_mut(&worker) else { return };
        if matches!(record.state, State::Refused { .. }) {
            // It was told to go; what it sent meanwhile (a srv-worker sends
            // its first requests right after `Hello`) is moot.
            return;
        }
        if now.saturating_duration_since(record.window_start) >= FLOOD_WINDOW {
            record.window_start = now;
            record.window_messages = 0;
        }
        record.window_messages = record.window_messages.saturating_add(1);
        if record.window_messages > MAX_MESSAGES_PER_WINDOW {
            // Killed at the first message over the limit; the rest of the
            // flood is ignored.
            let why = format!(
                "flooded the channel: more than {MAX_MESSAGES_PER_WINDOW} messages within {} ms",
                FLOOD_WINDOW.as_millis()
            );
            return self.kill_as_failed(now, worker, &why, actions);
        }
        if !record.greeted {
            let WorkerMessage::Hello { protocol_version, pid } = message else {
                let why = format!("sent {message:?} before Hello");
                return self.kill_as_failed(now, worker, &why, actions);
            };
            if protocol_version != PROTOCOL_VERSION {
                let reason = format!(
                    "protocol version mismatch: worker speaks {protocol_version}, master speaks {PROTOCOL_VERSION}"
                );
                return self.refuse(now, worker, reason, actions);
            }
            record.greeted = true;
            if record.pid.is_some_and(|spawned| spawned != pid) {
                let name = self.name(worker);
                log(actions, Level::Debug, format!("{name} says hello from pid {pid}"));
            }
            return;
        }
        if matches!(message, WorkerMessage::ListenRequest { .. }) {
            record.listen_requests += 1;
            if record.listen_requests > MAX_LISTEN_REQUESTS {
                let why = format!("asked to listen more than {MAX_LISTEN_REQUESTS} times");
                return self.kill_as_failed(now, worker, &why, actions);
            }
        }
        match message {
            WorkerMessage::Hello { .. } => {
                self.kill_as_failed(now, worker, "said Hello twice", actions)
            }
            WorkerMessage::Online => self.progress(now, worker, Require::Online, actions),
            WorkerMessage::Listening { addr } => {
                let name = self.name(worker);
                log(actions, Level::Info, format!("{name} listening on {addr}"));
                self.progress(now, worker, Require::Listen, actions);
            }
            WorkerMessage::ListenRequest { addr } => match (&record.state, self.phase) {
                (State::Killed, _) => {}
                (_, Phase::Running)
                    if self.options.listen.allow.is_empty()
                        || self.options.listen.allow.contains(&addr) =>
                {
                    actions.push(Action::Listen(worker, addr));
                }
                (_, Phase::Running) => {
                    let message = format!("listen {addr}: not in listen.allow");
                    // EACCES: the worker's `io::Error` says "permission denied".
                    let error =
                        ListenError { errno: Some(nix::libc::EACCES), message: message.clone() };
                    let reply =
                        MasterMessage::ListenReply { requested: addr.clone(), result: Err(error) };
                    actions.push(Action::Send(worker, reply));
                    self.listen_failed(now, worker, &addr, &message, actions);
                }
                // The listeners are closed: binding again would reopen them.
                (_, _) => {
                    let error = ListenError {
                        errno: None,
                        message: format!("listen {addr}: the master is shutting down"),
                    };
                    let reply = MasterMessage::ListenReply { requested: addr, result: Err(error) };
                    actions.push(Action::Send(worker, reply));
                }
            },
            WorkerMessage::Exit { code } => record.exit_code = Some(code),
            other => {
                let why = format!("sent a message this master does not handle: {other:?}");
                self.kill_as_failed(now, worker, &why, actions);
            }
        }
    }

    /// A worker could not get the socket it asked for. Before any worker has
    /// served, the configuration cannot work (port in use, permission
    /// denied, not allowed), and restarting workers would only repeat the
    /// failure: fail fast, as a process monitor expects. Once serving, only
    /// that worker fails (it gets the error).
    fn listen_failed(
        &mut self,
        now: Instant,
        worker: WorkerId,
        addr: &ListenAddr,
        error: &str,
        actions: &mut Vec<Action>,
    ) {
        if self.phase == Phase::Running && !self.ever_started {
            let why = format!("cannot listen on {addr}: {error}");
            self.stop(now, &why, Some(why.clone()), actions);
        } else {
            let name = self.name(worker);
            log(actions, Level::Warn, format!("{name}: {error}"));
        }
    }

    /// A worker reached `reached`; it may now count as started.
    fn progress(
        &mut self,
        now: Instant,
        worker: WorkerId,
        reached: Require,
        actions: &mut Vec<Action>,
    ) {
        let require = self.options.worker.require;
        let Some(record) = self.workers.get_mut(&worker) else { return };
        let State::Starting { online, listening, .. } = &mut record.state else { return };
        match reached {
            Require::Online => *online = true,
            // A listening worker is also online: it can serve.
            Require::Listen => (*online, *listening) = (true, true),
        }
        let started = match require {
            Require::Online => *online,
            Require::Listen => *listening,
        };
        if !started {
            return;
        }
        record.state = State::Started;
        record.started_at = Some(now);
        self.ever_started = true;
        let took = now.saturating_duration_since(record.spawned_at).as_millis();
        let name = self.name(worker);
        log(actions, Level::Info, format!("{name} started ({require}) in {took} ms"));
        if let Some(recycle) = &mut self.recycle
            && let Some((replacement, old)) = recycle.current
            && replacement == worker
        {
            recycle.current = None;
            recycle.replaced += 1;
            if let Some(old) = old {
                self.retire(now, old, self.options.recycle.timeout, actions);
            }
        }
    }

    /// Whether `worker` was refused and is being given time to exit.
    fn is_refused(&self, worker: WorkerId) -> bool {
        self.workers.get(&worker).is_some_and(|w| matches!(w.state, State::Refused { .. }))
    }

    /// Refuses a worker for its protocol version: it gets `Refused` with
    /// `reason` and [`REFUSED_GRACE`] to exit, and its replacement is
    /// scheduled like a crashed worker's. A worker not live any more (being
    /// killed, or retiring) is killed at once instead.
    fn refuse(
        &mut self,
        now: Instant,
        worker: WorkerId,
        reason: String,
        actions: &mut Vec<Action>,
    ) {
        if !self.workers.get(&worker).is_some_and(|w| w.state.is_live()) {
            return self.kill_as_failed(now, worker, &reason, actions);
        }
        actions.push(Action::Send(worker, MasterMessage::Refused { reason: reason.clone() }));
        self.set_state(worker, State::Refused { deadline: now + REFUSED_GRACE });
        self.fail(now, worker, &reason, actions);
    }

    /// A live worker failed: kill it and decide on its replacement.
    fn kill_as_failed(
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
    /// replacement it was, and schedule its replacement with backoff.
    fn fail(&mut self, now: Instant, worker: WorkerId, why: &str, actions: &mut Vec<Action>) {
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
        // A recycle's replacement that fails stops the recycle; if it still
        // had an old worker to replace, that one keeps serving and nothing
        // needs restarting.
        let mut needs_replacement = true;
        if let Some(recycle) = &self.recycle
            && let Some((replacement, old)) = recycle.current
            && replacement == worker
        {
            let left = recycle.queue.len() + usize::from(old.is_some());
            self.recycle = None;
            log(
                actions,
                Level::Error,
                format!(
                    "recycle stopped: replacement {name} {why}; {left} old workers keep serving"
                ),
            );
            needs_replacement = old.is_none();
            if !needs_replacement {
                return;
            }
        }
        if let Some(recycle) = &mut self.recycle {
            recycle.queue.retain(|queued| *queued != worker);
            if let Some((_, old)) = &mut recycle.current
                && *old == Some(worker)
            {
                // Its replacement is already starting and takes its place.
                *old = None;
                needs_replacement = false;
            }
        }
        if !needs_replacement {
            log(actions, Level::Warn, format!("{name} {why}; its replacement is already starting"));
            return;
        }
        let delay =
            restart_delay(self.options.restart.delay, self.options.restart.max_delay, streak);
        log(actions, Level::Warn, format!("{name} {why}; restarting in {} ms", delay.as_millis()));
        self.restarts.push(Restart { due: now + delay, streak });
    }

    fn on_exit(
        &mut self,
        now: Instant,
        worker: WorkerId,
        status: ExitStatus,
        actions: &mut Vec<Action>,
    ) {
        let name = self.name(worker);
        let Some(record) = self.workers.get(&worker) else { return };
        let (state, exit_code, streak) = (record.state.clone(), record.exit_code, record.streak);
        match state {
            State::Retiring { .. } => {
                log(actions, Level::Info, format!("{name} exited ({status}) as asked"))
            }
            State::Killed => {
                log(actions, Level::Info, format!("{name} exited ({status}) after being killed"))
            }
            State::Refused { .. } => {
                log(actions, Level::Info, format!("{name} exited ({status}) after being refused"))
            }
            State::Started
                if exit_code.is_some_and(|code| status == ExitStatus::Code(code))
                    && self.phase == Phase::Running =>
            {
                log(
                    actions,
                    Level::Info,
                    format!("{name} exited on purpose ({status}); replacing it"),
                );
                self.workers.remove(&worker);
                let mut replace = true;
                if let Some(recycle) = &mut self.recycle {
                    recycle.queue.retain(|queued| *queued != worker);
                    if let Some((_, old)) = &mut recycle.current
                        && *old == Some(worker)
                    {
                        // Its recycle replacement is already starting.
                        *old = None;
                        replace = false;
                    }
                }
                if replace {
                    self.spawn(now, streak, actions);
                }
                return;
            }
            State::Starting { .. } | State::Started => {
                let why = format!("exited unasked ({status})");
                self.fail(now, worker, &why, actions);
            }
        }
        self.workers.remove(&worker);
        self.check_done(actions);
    }

    fn check_done(&mut self, actions: &mut Vec<Action>) {
        if let Phase::ShuttingDown { forced } = self.phase
            && self.workers.is_empty()
        {
            self.phase = Phase::Exited;
            let how = if forced { "forced shutdown" } else { "shutdown" };
            log(actions, Level::Info, format!("{how} complete: all workers exited"));
            actions.push(Action::Exit(if self.failure.is_some() { 1 } else { 0 }));
        }
    }
}

fn log(actions: &mut Vec<Action>, level: Level, line: String) {
    actions.push(Action::Log(level, line));
}

#[cfg(test)]
mod tests;
