//! One worker's books: its record ([`Worker`]), its [`State`]s and the
//! transitions every concern shares: spawn, start (`progress`), retire, and
//! the deadlines (`advance`), where a worker too slow to start, to exit
//! after `Disconnect` or a refusal, or to exit after closing its channel,
//! or a started worker silent past its watchdog (see `watchdog.rs`), is
//! killed.

use std::time::{Duration, Instant};

use log::Level;
use srv_proto::MasterMessage;

use super::{Action, Machine, Phase, WorkerId, log};
use crate::options::Require;

/// How long a worker whose channel closed may take to exit before it is
/// killed as broken.
pub(crate) const CHANNEL_CLOSE_GRACE: Duration = Duration::from_millis(1000);

/// What the machine knows about one worker, from `Spawn` until it is
/// reaped.
#[derive(Debug)]
pub(super) struct Worker {
    pub(super) pid: Option<u32>,
    pub(super) state: State,
    /// The protocol version of its `Hello`, once it said one this master
    /// speaks: which form of `Disconnect` it decodes.
    pub(super) protocol_version: Option<u32>,
    /// The code from an `Exit` message: the worker meant to exit.
    pub(super) exit_code: Option<i32>,
    pub(super) spawned_at: Instant,
    pub(super) started_at: Option<Instant>,
    /// Crashes in a row of this worker's line of replacements.
    pub(super) streak: u32,
    /// When the worker closed its channel without exiting, the time by
    /// which it must have exited.
    pub(super) closed_deadline: Option<Instant>,
    /// When the current [`FLOOD_WINDOW`](super::messages::FLOOD_WINDOW)
    /// began, and the messages in it.
    pub(super) window_start: Instant,
    pub(super) window_messages: u32,
    /// `ListenRequest`s so far (see
    /// [`MAX_LISTEN_REQUESTS`](super::messages::MAX_LISTEN_REQUESTS)).
    pub(super) listen_requests: u32,
    /// When it reached each step of its start, for the debug line that
    /// breaks a start down.
    pub(super) timeline: Timeline,
    /// The watchdog period it was told at its spawn (`worker.watchdog`),
    /// if any: it is watched with this one, whatever the options of a
    /// master that adopts it later.
    pub(super) watchdog: Option<Duration>,
    /// When it last proved alive: its start, then each `Alive`.
    pub(super) heard_at: Option<Instant>,
    /// It sent at least one `Alive`.
    pub(super) heartbeat_seen: bool,
    /// What its resident memory was when a sample first found it above
    /// `worker.max_rss` (bytes): it is to be replaced (see `planned.rs`).
    pub(super) over_rss: Option<u64>,
}

/// When a worker first said each message of its start; logged at debug
/// level once it started, as offsets from `spawned_at` (the moment its
/// spawn returned: the program was executed). So an operator sees where a
/// slow start spends its time: loading the program (until `Hello`), its own
/// initialisation (until it asks for a socket), the listen round trip
/// through the master, and what it does before `Online`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Timeline {
    pub(super) hello: Option<Instant>,
    pub(super) listen_request: Option<Instant>,
    pub(super) listening: Option<Instant>,
    pub(super) online: Option<Instant>,
}

impl Timeline {
    /// `hello +0.61 ms, listen request +0.63 ms, ...`: the steps reached,
    /// in the order of their time, each as milliseconds since `since`.
    fn describe(&self, since: Instant) -> String {
        let mut steps: Vec<(&str, Instant)> = [
            ("hello", self.hello),
            ("listen request", self.listen_request),
            ("listening", self.listening),
            ("online", self.online),
        ]
        .into_iter()
        .filter_map(|(name, at)| Some((name, at?)))
        .collect();
        steps.sort_by_key(|(_, at)| *at);
        let steps: Vec<String> = steps
            .into_iter()
            .map(|(name, at)| {
                let ms = at.saturating_duration_since(since).as_secs_f64() * 1000.0;
                format!("{name} +{ms:.2} ms")
            })
            .collect();
        if steps.is_empty() { "no message".to_owned() } else { steps.join(", ") }
    }
}

/// Where a worker is in its life (see "Worker lifecycle" in the module
/// docs of `machine`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
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
    pub(super) fn is_live(&self) -> bool {
        matches!(self, State::Starting { .. } | State::Started)
    }
}

impl Machine {
    /// `worker N (pid P)` for log lines, or `worker N` before its spawn is
    /// reported.
    pub(super) fn name(&self, worker: WorkerId) -> String {
        match self.workers.get(&worker).and_then(|record| record.pid) {
            Some(pid) => format!("{worker} (pid {pid})"),
            None => worker.to_string(),
        }
    }

    /// Books a new worker, `Starting`, and asks the shell to spawn it.
    pub(super) fn spawn(
        &mut self,
        now: Instant,
        streak: u32,
        actions: &mut Vec<Action>,
    ) -> WorkerId {
        let worker = WorkerId(self.next_id);
        self.next_id += 1;
        let deadline = now + self.options.worker.timeout;
        self.workers.insert(
            worker,
            Worker {
                pid: None,
                state: State::Starting { deadline, online: false, listening: false },
                protocol_version: None,
                exit_code: None,
                spawned_at: now,
                started_at: None,
                streak,
                closed_deadline: None,
                window_start: now,
                window_messages: 0,
                listen_requests: 0,
                timeline: Timeline::default(),
                watchdog: self.options.worker.watchdog,
                heard_at: None,
                heartbeat_seen: false,
                over_rss: None,
            },
        );
        actions.push(Action::Spawn(worker));
        worker
    }

    /// Handles every deadline that is due at `now`, but those of `exiting`:
    /// killing a reaped worker would be wrong, and so would its log line.
    pub(super) fn advance(
        &mut self,
        now: Instant,
        exiting: Option<WorkerId>,
        tick: bool,
        actions: &mut Vec<Action>,
    ) {
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
                State::Retiring { deadline } | State::Refused { deadline } if deadline <= now => {
                    let after = match state {
                        State::Refused { .. } => "being refused",
                        _ => "disconnect",
                    };
                    let name = self.name(worker);
                    log(
                        actions,
                        Level::Warn,
                        format!("{name} did not exit in time after {after}; killing it"),
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
                // Hangs are judged at a `Tick` only (see `watchdog.rs`).
                State::Started if tick => {
                    if let Some(why) = self.hung(now, worker) {
                        self.kill_as_failed(now, worker, &why, actions);
                    }
                }
                _ => {}
            }
        }
        // A master about to give up starts nothing more.
        if self.phase != Phase::Running || self.give_up.is_some() {
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

    /// Sets a booked worker's state; a worker off the books stays off.
    pub(super) fn set_state(&mut self, worker: WorkerId, state: State) {
        if let Some(record) = self.workers.get_mut(&worker) {
            record.state = state;
        }
    }

    /// Sends `Disconnect` and gives the worker `grace` to exit. The message
    /// says so to a worker whose protocol version can decode it.
    pub(super) fn retire(
        &mut self,
        now: Instant,
        worker: WorkerId,
        grace: Duration,
        actions: &mut Vec<Action>,
    ) {
        let name = self.name(worker);
        log(actions, Level::Info, format!("{name} disconnecting"));
        self.set_state(worker, State::Retiring { deadline: now + grace });
        let version = self.workers.get(&worker).and_then(|record| record.protocol_version);
        actions.push(Action::Send(worker, MasterMessage::disconnect_for(version, grace)));
    }

    /// A worker reached `reached`; it may now count as started.
    pub(super) fn progress(
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
        // The watchdog counts from the start: `worker.timeout` covered the
        // time before.
        record.heard_at = Some(now);
        self.ever_started = true;
        let took = now.saturating_duration_since(record.spawned_at).as_millis();
        let timeline = record.timeline.describe(record.spawned_at);
        let name = self.name(worker);
        log(actions, Level::Info, format!("{name} started ({require}) in {took} ms"));
        log(actions, Level::Debug, format!("{name} start after its exec: {timeline}"));
        self.replacement_started(now, worker, actions);
    }
}
