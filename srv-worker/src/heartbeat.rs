//! The heartbeat of a watched worker (`worker.watchdog`): proof, sent to
//! the master as `Alive`, that the server's serving loop still runs.
//!
//! # Where the proof comes from
//!
//! A thread whose only job is to tick would keep ticking while the server
//! is deadlocked, and prove nothing; so srv-worker never sends a heartbeat
//! on its own. The proof comes from where the work happens:
//!
//! - a server with its own loop calls [`Worker::alive`] from that loop, at
//!   least every [`Worker::heartbeat_interval`] (a `poll` timeout of that
//!   length does it while the loop waits);
//! - with the `tokio` feature, [`Worker::spawn_heartbeat`] runs the calls
//!   as a task on the server's tokio runtime, and srv-worker's `serve`
//!   helpers (`hyper`, `axum`, `actix`) start it: a runtime whose threads
//!   are all blocked runs no task, so it misses its heartbeats.
//!
//! # Timing
//!
//! The master announces its period `P` at the spawn (`SRV_WATCHDOG_MS`).
//! [`Worker::alive`] sends at most one `Alive` per `P / 4` and the loop
//! calls it at least every `P / 4`: a serving loop that runs sends one at
//! least every `P / 2`, half the period, so a late turn or a busy master
//! does not make it look hung; a loop that stops at time `t` sent its last
//! one after `t - P / 4`, and the master kills it by `t + P`, plus a turn
//! of its loop.
//!
//! # Cost and limits
//!
//! Unwatched (no master, a master without a watchdog, or one of protocol
//! 1), [`Worker::alive`] returns at once. Watched, a call reads the clock
//! under an uncontended lock, and one in `P / 4` writes 5 bytes to the
//! channel. The write is blocking, as every report to the master is: a
//! master stopped for hours with the channel's buffer full (some 40,000
//! heartbeats) would block the loop, and a master that stopped reading is
//! a master in trouble anyway. After the disconnect nothing is sent: a
//! retiring worker is under its grace, not the watchdog.

use std::io;
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use srv_proto::{Channel, WorkerMessage};

use crate::shared::Shared;

/// How many heartbeats per watchdog period a worker is asked for (see the
/// module docs).
const PER_PERIOD: u32 = 4;

/// What a watched worker needs to send its heartbeat.
#[derive(Debug)]
pub(crate) struct Beat {
    writer: Arc<Mutex<Channel>>,
    shared: Arc<Shared>,
    /// The watchdog period over [`PER_PERIOD`].
    every: Duration,
    /// When the last `Alive` went out.
    last: Mutex<Option<Instant>>,
}

impl Beat {
    /// The heartbeat of a worker its master watches every `period`.
    pub(crate) fn new(writer: Arc<Mutex<Channel>>, shared: Arc<Shared>, period: Duration) -> Beat {
        Beat { writer, shared, every: period / PER_PERIOD, last: Mutex::new(None) }
    }

    /// How often the serving loop must call [`Beat::alive`].
    pub(crate) fn every(&self) -> Duration {
        self.every
    }

    /// Sends `Alive` unless one went out less than [`Beat::every`] ago, or
    /// the worker is disconnected.
    pub(crate) fn alive(&self) -> io::Result<()> {
        if self.shared.reason().is_some() {
            return Ok(());
        }
        let mut last = match self.last.try_lock() {
            Ok(last) => last,
            // Another thread is proving the same thing right now.
            Err(TryLockError::WouldBlock) => return Ok(()),
            Err(TryLockError::Poisoned(poison)) => poison.into_inner(),
        };
        let now = Instant::now();
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.every) {
            return Ok(());
        }
        *last = Some(now);
        let mut writer = self.writer.lock().unwrap_or_else(|poison| poison.into_inner());
        writer.send(&WorkerMessage::Alive, &[]).map(drop).map_err(|error| {
            io::Error::new(error.kind(), format!("cannot report to the master: {error}"))
        })
    }
}

/// The task of [`Worker::spawn_heartbeat`](crate::Worker::spawn_heartbeat):
/// aborted when dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let worker = srv_worker::Worker::standalone();
/// let heartbeat = worker.spawn_heartbeat(); // standalone: no task at all
/// // ... serve; the task ends with `heartbeat`:
/// drop(heartbeat);
/// # }
/// ```
#[cfg(feature = "tokio")]
#[derive(Debug)]
#[must_use = "the heartbeat stops when this is dropped"]
pub struct Heartbeat {
    task: Option<tokio::task::JoinHandle<()>>,
}

#[cfg(feature = "tokio")]
impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[cfg(feature = "tokio")]
impl Heartbeat {
    /// Spawns the heartbeat of `beat`, if any, on the current runtime.
    pub(crate) fn spawn(beat: Option<Arc<Beat>>) -> Heartbeat {
        let task = beat.map(|beat| {
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(beat.every());
                // A runtime that was blocked owes no burst of heartbeats:
                // the next one proves it runs again.
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    if let Err(error) = beat.alive() {
                        // The master is gone: the disconnect follows.
                        log::debug!("srv: heartbeat: {error}");
                        return;
                    }
                }
            })
        });
        Heartbeat { task }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use srv_proto::MasterMessage;

    use super::*;

    /// A watched worker's heartbeat, and the master's end of its channel.
    fn beat(period: Duration) -> (Beat, Channel, Arc<Shared>) {
        let (master_end, worker_end) = UnixStream::pair().unwrap();
        let shared = Shared::start(Channel::new(worker_end.try_clone().unwrap())).unwrap();
        let writer = Arc::new(Mutex::new(Channel::new(worker_end)));
        let beat = Beat::new(writer, Arc::clone(&shared), period);
        (beat, Channel::new(master_end), shared)
    }

    /// The number of `Alive` messages waiting on the master's end.
    fn alives(master: &mut Channel) -> usize {
        master.stream().set_nonblocking(true).unwrap();
        let _ = master.receive();
        let mut n = 0;
        while let Some((message, _)) = master.next_message::<WorkerMessage>().unwrap() {
            assert_eq!(message, WorkerMessage::Alive);
            n += 1;
        }
        n
    }

    #[test]
    fn calls_are_sent_at_most_once_per_quarter_period() {
        let (beat, mut master, _shared) = beat(Duration::from_millis(400));
        assert_eq!(beat.every(), Duration::from_millis(100));
        for _ in 0..1000 {
            beat.alive().unwrap();
        }
        assert_eq!(alives(&mut master), 1);
        std::thread::sleep(beat.every());
        beat.alive().unwrap();
        beat.alive().unwrap();
        assert_eq!(alives(&mut master), 1);
    }

    /// Runs `beat` as the tokio task for 300 ms, blocks the runtime's only
    /// thread for 600 ms, runs it 300 ms more; returns when each `Alive`
    /// reached the master's end, from a thread of the test's own, relative
    /// to the block's start, in ms.
    #[cfg(feature = "tokio")]
    fn heartbeats_around_a_blocked_runtime(period: Duration) -> Vec<i128> {
        let (beat, mut master, _shared) = beat(period);
        let reader = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let until = Instant::now() + Duration::from_millis(1300);
            master.stream().set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            while Instant::now() < until {
                let _ = master.receive();
                while let Ok(Some((message, _))) = master.next_message::<WorkerMessage>() {
                    assert_eq!(message, WorkerMessage::Alive);
                    seen.push(Instant::now());
                }
            }
            seen
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let blocked_at = runtime.block_on(async move {
            let _heartbeat = Heartbeat::spawn(Some(Arc::new(beat)));
            tokio::time::sleep(Duration::from_millis(300)).await;
            let blocked_at = Instant::now();
            // A handler that blocks: no task runs meanwhile.
            std::thread::sleep(Duration::from_millis(600));
            tokio::time::sleep(Duration::from_millis(300)).await;
            blocked_at
        });
        let seen = reader.join().unwrap();
        seen.iter()
            .map(|at| {
                let ms = |d: Duration| i128::try_from(d.as_millis()).unwrap();
                ms(at.saturating_duration_since(blocked_at))
                    - ms(blocked_at.saturating_duration_since(*at))
            })
            .collect()
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn the_task_misses_its_heartbeats_while_the_runtime_is_blocked_and_resumes() {
        // Every 100 ms while the runtime runs; none while it is blocked. The
        // reader may see the one sent as the block began a little late: the
        // first 150 ms of the block do not count.
        let seen = heartbeats_around_a_blocked_runtime(Duration::from_millis(400));
        let before = seen.iter().filter(|ms| **ms < 0).count();
        let during = seen.iter().filter(|ms| (150..590).contains(*ms)).count();
        let after = seen.iter().filter(|ms| **ms >= 600).count();
        assert!(before >= 2, "{seen:?}");
        assert_eq!(during, 0, "{seen:?}");
        assert!(after >= 1, "{seen:?}");
    }

    #[test]
    fn nothing_is_sent_after_the_disconnect() {
        let (beat, mut master, shared) = beat(Duration::from_millis(400));
        master.send(&MasterMessage::Disconnect { grace: None }, &[]).unwrap();
        shared.wait();
        beat.alive().unwrap();
        assert_eq!(alives(&mut master), 0);
    }
}
