//! What a worker says, and the rules it must keep: `Hello` first, once, with
//! this master's protocol version (or it is refused, and gets
//! [`REFUSED_GRACE`] to exit); at most [`MAX_MESSAGES_PER_WINDOW`] messages
//! within a [`FLOOD_WINDOW`]; at most [`MAX_LISTEN_REQUESTS`] listen
//! requests, each for an address `listen.allow` permits. A worker that breaks
//! a rule is killed and replaced like a crashed one.

use std::time::{Duration, Instant};

use log::Level;
use srv_proto::{
    ListenAddr, ListenError, MIN_PROTOCOL_VERSION, MasterMessage, PROTOCOL_VERSION, WorkerMessage,
};

use super::{Action, Failure, Machine, Phase, State, WorkerId, log};
use crate::options::Require;

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

impl Machine {
    /// A message from a worker, checked against the rules in the module
    /// docs before it counts.
    pub(super) fn on_message(
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
        if record.protocol_version.is_none() {
            let WorkerMessage::Hello { protocol_version, pid } = message else {
                let why = format!("sent {message:?} before Hello");
                return self.kill_as_failed(now, worker, &why, actions);
            };
            if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&protocol_version) {
                let reason = format!(
                    "protocol version mismatch: worker speaks {protocol_version}, master speaks {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}"
                );
                return self.refuse(now, worker, reason, actions);
            }
            record.protocol_version = Some(protocol_version);
            record.timeline.hello = Some(now);
            if record.pid.is_some_and(|spawned| spawned != pid) {
                let name = self.name(worker);
                log(actions, Level::Debug, format!("{name} says hello from pid {pid}"));
            }
            return;
        }
        let timeline = &mut record.timeline;
        let step = match message {
            WorkerMessage::ListenRequest { .. } => Some(&mut timeline.listen_request),
            WorkerMessage::Listening { .. } => Some(&mut timeline.listening),
            WorkerMessage::Online => Some(&mut timeline.online),
            _ => None,
        };
        if let Some(step) = step {
            step.get_or_insert(now);
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
                    let error = ListenError { errno: Some(nix::libc::EACCES), message };
                    let reply = MasterMessage::ListenReply {
                        requested: addr.clone(),
                        result: Err(error.clone()),
                    };
                    actions.push(Action::Send(worker, reply));
                    self.listen_failed(now, worker, &addr, &error, actions);
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
            WorkerMessage::Alive => self.on_alive(now, worker, actions),
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
    pub(super) fn listen_failed(
        &mut self,
        now: Instant,
        worker: WorkerId,
        addr: &ListenAddr,
        error: &ListenError,
        actions: &mut Vec<Action>,
    ) {
        if self.phase == Phase::Running && !self.ever_started {
            let failure = Failure::Listen { addr: addr.clone(), error: error.clone() };
            self.stop(now, &failure.to_string(), Some(failure), None, actions);
        } else {
            let name = self.name(worker);
            log(actions, Level::Warn, format!("{name}: {error}"));
        }
    }

    /// Whether `worker` was refused and is being given time to exit.
    pub(super) fn is_refused(&self, worker: WorkerId) -> bool {
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
}
