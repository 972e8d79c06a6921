//! `SIGTERM` as a disconnect: what [`crate::Worker::from_env`] installs so
//! that a worker that gets `SIGTERM` drains instead of dying with its
//! requests in flight.
//!
//! # Why a worker gets `SIGTERM`
//!
//! Service managers stop a service by signalling its whole process group or
//! cgroup: systemd's default `KillMode=control-group`, `timeout`,
//! `kill -- -PGID`, supervisord's `stopasgroup`. The master gets `SIGTERM`
//! too and begins the graceful shutdown, but a worker that kept the default
//! disposition died at once, losing every request in flight. An operator
//! may also send `SIGTERM` to one worker by pid.
//!
//! # What happens
//!
//! The first `SIGTERM` disconnects the worker
//! ([`DisconnectReason::Terminated`]), exactly as a `Disconnect` from the
//! master would: the server stops accepting, finishes its requests and
//! returns from `main`. The worker also tells the master, with
//! `Exit { code: 0 }`, that it is about to exit on purpose, so that a worker
//! signalled alone is replaced as soon as it exits, without counting a
//! crash (within a second of its spawn it does count as one: the master's
//! early-exit rule). When the whole group was signalled, the master is
//! shutting down too and books the exit as asked.
//!
//! A second `SIGTERM` ends the process at once, by the signal's default
//! action, as a second `SIGTERM` to the master forces its shutdown: a
//! worker stuck in its drain can still be stopped the usual way.
//!
//! # How
//!
//! signal-hook, already the master's signal crate, offers all of it through
//! safe functions (this crate forbids `unsafe`): a conditional default
//! action armed by a flag (its documented "second Ctrl+C" idiom), and an
//! iterator whose handler only writes to a self-pipe. A small thread waits
//! on that iterator, because recording a disconnect takes locks and writes
//! to the channel, which a signal handler must never do. signal-hook chains
//! handlers, so a program that registers its own `SIGTERM` action through
//! signal-hook or tokio (which uses the same registry) gets the signal as
//! well; a handler installed with a bare `sigaction` afterwards replaces
//! this one.

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use signal_hook::consts::{SIGHUP, SIGTERM, SIGUSR2};
use signal_hook::iterator::Signals;
use srv_proto::{Channel, WorkerMessage};

use crate::DisconnectReason;
use crate::shared::Shared;

/// What a worker does with `SIGTERM`: [`crate::Worker::from_env_with`].
///
/// ```
/// use srv_worker::{Sigterm, Worker};
///
/// // A server with its own SIGTERM handling keeps it:
/// let worker = Worker::from_env_with(Sigterm::Leave)?.unwrap_or_else(Worker::standalone);
/// worker.online()?;
/// assert_eq!(Sigterm::default(), Sigterm::Disconnect); // what `Worker::from_env` does
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Sigterm {
    /// The first `SIGTERM` disconnects the worker
    /// ([`DisconnectReason::Terminated`]) and tells the master it will exit
    /// on purpose; a second one ends the process at once. What
    /// [`crate::Worker::from_env`] does.
    #[default]
    Disconnect,
    /// Install nothing for `SIGTERM`: it keeps whatever disposition the program
    /// gives it. By default that ends the worker at once, with its requests
    /// in flight, when a service manager signals the whole process group.
    Leave,
}

/// Makes `SIGTERM` disconnect this worker (see the module docs): `shared`
/// records the disconnect and `writer` carries `Exit { code: 0 }` to the
/// master.
///
/// # Errors
///
/// The handler cannot be registered, or the thread cannot be started.
pub(crate) fn disconnect_on_sigterm(
    shared: Arc<Shared>,
    writer: Arc<Mutex<Channel>>,
) -> io::Result<()> {
    let armed = Arc::new(AtomicBool::new(false));
    // The order matters: on the first signal the default action is not
    // armed yet when it is checked, then the flag arms it for the second.
    signal_hook::flag::register_conditional_default(SIGTERM, Arc::clone(&armed))?;
    signal_hook::flag::register(SIGTERM, armed)?;
    let mut signals = Signals::new([SIGTERM])?;
    std::thread::Builder::new().name("srv-worker-sigterm".into()).spawn(move || {
        if signals.forever().next().is_none() {
            return;
        }
        log::info!("srv: SIGTERM: this worker stops accepting and finishes its requests");
        shared.disconnect(DisconnectReason::Terminated);
        let mut writer = writer.lock().unwrap_or_else(|poison| poison.into_inner());
        // A master that is gone needs no report; the disconnect stands.
        if let Err(error) = writer.send(&WorkerMessage::Exit { code: 0 }, &[]) {
            log::debug!("srv: cannot tell the master about SIGTERM: {error}");
        }
        // Dropping `signals` unregisters its handler; the armed default
        // action stays, for the second SIGTERM.
    })?;
    Ok(())
}

/// Catches `SIGHUP` and `SIGUSR2` and does nothing with them: they are
/// the master's (recycle, upgrade in place), and a worker that kept their
/// default action died when they were sent to the whole process group
/// (`kill -HUP -- -PGID`, a terminal's hangup), losing its requests in
/// flight while the master recycled it anyway.
///
/// A handler, not `SIG_IGN`: a caught signal's disposition goes back to the
/// default in the worker's own children at `exec`, where an ignored one
/// would be inherited. signal-hook chains handlers, so a program that
/// registers its own action for either (signal-hook, tokio) still gets the
/// signal. `SIGTTIN` and `SIGTTOU` are left alone: a handler for them
/// would make a write to a terminal with `tostop` retry forever.
///
/// # Errors
///
/// A handler cannot be registered.
pub(crate) fn leave_master_signals_to_the_master() -> io::Result<()> {
    for signal in [SIGHUP, SIGUSR2] {
        // The flag is never read: the handler only has to exist.
        signal_hook::flag::register(signal, Arc::new(AtomicBool::new(false)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use srv_proto::{Channel, Received, WorkerMessage};

    use super::*;
    use crate::Worker;

    /// Reads the next message the worker sent, within a deadline.
    fn next_message(master: &mut Channel) -> WorkerMessage {
        loop {
            if let Some((message, _)) = master.next_message::<WorkerMessage>().unwrap() {
                return message;
            }
            match master.receive().unwrap() {
                Received::Bytes(_) => {}
                Received::Closed => panic!("the worker closed the channel"),
            }
        }
    }

    /// The only test of this binary that raises `SIGTERM`: after it, a
    /// second one would end the test process.
    #[test]
    fn sigterm_disconnects_the_worker_and_tells_the_master_it_will_exit_0() {
        let (master_end, worker_end) = UnixStream::pair().unwrap();
        master_end.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let worker = Worker::connect(worker_end, Some(1)).unwrap();
        let link = worker.link.as_ref().unwrap();
        disconnect_on_sigterm(Arc::clone(&worker.shared), Arc::clone(&link.writer)).unwrap();
        let mut master = Channel::new(master_end);
        assert!(matches!(next_message(&mut master), WorkerMessage::Hello { .. }));
        assert!(!worker.is_disconnected());

        signal_hook::low_level::raise(SIGTERM).unwrap();
        assert_eq!(worker.wait_disconnect(), DisconnectReason::Terminated);
        assert_eq!(next_message(&mut master), WorkerMessage::Exit { code: 0 });
    }
}
