//! The watchdog (`worker.watchdog`): a started worker proves, with `Alive`,
//! that its serving loop runs; one silent for a whole period is hung, and is
//! killed and replaced like a crashed worker (with the crash backoff).
//!
//! # Who is watched
//!
//! A worker is watched with the period it was told at its spawn
//! (`SRV_WATCHDOG_MS`, [`Worker::watchdog`]), so a master adopted through
//! an upgrade watches each worker as that worker knows it is watched; and
//! only once it said `Hello` with protocol [`ALIVE_VERSION`] or later: a
//! worker of protocol 1 cannot send `Alive`, and is never watched. Only a
//! started worker: a starting one is under `worker.timeout`, a retiring one
//! under its grace, and neither has a serving loop to prove. Nor one that
//! announced its exit (`Exit`, which srv-worker sends when a `SIGTERM`
//! disconnects it): it finishes its requests on its own, and a
//! disconnected srv-worker sends no more heartbeats.
//!
//! # When
//!
//! The period counts from the worker's start, then from each `Alive`, at
//! the time the shell read it. Hangs are judged only at an `Event::Tick`,
//! which the shell sends at the end of each turn, once every message read
//! in the turn is handled: a master that stalls does not charge its stall
//! to a worker whose heartbeat waited in its channel. So a worker whose
//! loop stopped is killed one period after
//! the last heartbeat it sent. srv-worker sends at most one heartbeat per
//! quarter period and asks the loop to prove itself at least that often
//! (`srv_worker::Worker::alive`): a running loop is heard at least every
//! half period, and one that stops is killed within one period of its
//! stop, plus a turn of the master's loop.
//!
//! # When the master itself did not run
//!
//! A master that was not running cannot tell a hung worker from one that
//! did not run either: `Ctrl+Z` and `fg`, `docker pause`, `systemctl
//! freeze`, a `SIGSTOP` to the process group stop the workers with the
//! master, and on the way back every worker's last heartbeat is older than
//! a period. So a master that handles an event more than [`STALL`] after
//! its own next deadline (the latest it meant to wake up) stalled: the time
//! since the event it handled before does not count against any watched
//! worker (its last heartbeat moves forward by that time, and the stall is
//! logged). Each worker then has what was left of its period when the
//! master stopped running; one that does not prove alive within it is
//! killed as hung, one period after the stall at most.
//!
//! # What else
//!
//! `Alive` from a worker of protocol 1 is a protocol error (the message
//! does not exist in that version). `Alive` from a worker that is not
//! watched (not told a period, or not started yet) is harmless and
//! ignored; like any message it counts towards the flood limit, which a
//! heartbeat a few times per period never comes near.
//!
//! [`ALIVE_VERSION`]: srv_proto::message::ALIVE_VERSION
//! [`Worker::watchdog`]: super::worker::Worker::watchdog

use std::time::{Duration, Instant};

use log::Level;
use srv_proto::message::ALIVE_VERSION;

use super::worker::Worker;
use super::{Action, Machine, State, WorkerId, log};

/// How late past its own next deadline the master may handle an event
/// before it counts as stalled (see the module docs): well above a turn of
/// a busy loop, well below the shortest period
/// ([`MIN_WATCHDOG`](crate::options::MIN_WATCHDOG)).
pub(crate) const STALL: Duration = Duration::from_millis(250);

impl Worker {
    /// When this worker is hung unless it proves alive first, if it is
    /// watched (see the module docs).
    pub(super) fn watchdog_deadline(&self) -> Option<Instant> {
        if self.state != State::Started
            || self.protocol_version.is_none_or(|version| version < ALIVE_VERSION)
            || self.exit_code.is_some()
        {
            return None;
        }
        Some(self.heard_at? + self.watchdog?)
    }
}

impl Machine {
    /// Before an event at `now`: if the master stalled since the last one
    /// (see the module docs), the watched workers are not charged for it.
    pub(super) fn forgive_stall(&mut self, now: Instant, actions: &mut Vec<Action>) {
        // Events a worker reported may be stamped a little before the one
        // handled last (just before a deadline still due): the latest wins.
        let last = self.last_handled;
        self.last_handled = now.max(last);
        let Some(expected) = self.next_deadline() else { return };
        if now <= expected + STALL {
            return;
        }
        let stalled = now.saturating_duration_since(last);
        let mut forgiven = 0;
        for worker in self.workers.values_mut() {
            if worker.watchdog_deadline().is_some()
                && let Some(heard_at) = &mut worker.heard_at
            {
                // Never after `now`: it was at or before `last`.
                *heard_at += stalled;
                forgiven += 1;
            }
        }
        if forgiven > 0 {
            let late = now.saturating_duration_since(expected).as_millis();
            log(
                actions,
                Level::Warn,
                format!(
                    "the master did not run for {} ms ({late} ms past its deadline: stopped, \
                     frozen or starved); the watchdog does not count it against the \
                     workers it watches ({forgiven})",
                    stalled.as_millis()
                ),
            );
        }
    }

    /// A worker sent `Alive`.
    pub(super) fn on_alive(&mut self, now: Instant, worker: WorkerId, actions: &mut Vec<Action>) {
        let Some(record) = self.workers.get_mut(&worker) else { return };
        if record.protocol_version.is_some_and(|version| version < ALIVE_VERSION) {
            let why = format!(
                "broke the protocol: sent Alive, which its protocol version {} does not have",
                record.protocol_version.unwrap_or_default()
            );
            return self.kill_as_failed(now, worker, &why, actions);
        }
        record.heartbeat_seen = true;
        if record.state == State::Started {
            record.heard_at = Some(now);
        }
    }

    /// Why `worker` is hung at `now`, if it is: the log line of its kill.
    pub(super) fn hung(&self, now: Instant, worker: WorkerId) -> Option<String> {
        let record = self.workers.get(&worker)?;
        let deadline = record.watchdog_deadline()?;
        if deadline > now {
            return None;
        }
        let silent = now.saturating_duration_since(record.heard_at?).as_millis();
        let period = record.watchdog?.as_millis();
        let never = if record.heartbeat_seen {
            ""
        } else {
            " and never sent a heartbeat (its serving loop must call Worker::alive)"
        };
        Some(format!("hung: silent for {silent} ms (worker.watchdog = {period} ms){never}"))
    }
}
