//! State shared between a [`crate::Worker`] and the thread that reads its
//! master's messages.
//!
//! The reader thread owns the receiving half of the channel. It records a
//! disconnect once (the first reason wins), then wakes every kind of waiter:
//! threads blocked in `wait` (a condition variable), futures (stored
//! wakers) and poll loops (a byte written to a pipe, created only when
//! someone asks for its descriptor). A `listen` call parks on the same
//! condition variable until its reply arrives.
//!
//! # Races
//!
//! `listen` marks itself as waiting *before* sending its request, so a reply
//! that arrives at once finds a waiter. It waits at most
//! [`LISTEN_REPLY_TIMEOUT`]; a reply that comes later, or for another
//! address, finds no waiter and is dropped, socket included. The pipe and the disconnect reason
//! are checked and written under the state lock, so whichever of
//! "disconnect" and "create the pipe" comes second writes the byte.

use std::io::{self, PipeReader, PipeWriter, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use srv_proto::{Channel, ListenAddr, MasterMessage, Received};

use crate::{DisconnectReason, Listener};

#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    pipe: OnceLock<(PipeReader, PipeWriter)>,
}

#[derive(Debug, Default)]
struct State {
    reason: Option<DisconnectReason>,
    /// When the reason was recorded.
    disconnected_at: Option<Instant>,
    /// When the master kills this worker, as far as it said (the earliest,
    /// if it said more than once: a shutdown can cut a recycle's grace).
    deadline: Option<Instant>,
    wakers: Vec<Waker>,
    reply: Reply,
}

/// How long `listen` waits for the master's reply: the master answers at
/// once, so this is only a bound on a master that never will.
pub(crate) const LISTEN_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
enum Reply {
    #[default]
    Idle,
    /// For this address.
    Waiting(ListenAddr),
    Ready(io::Result<Listener>),
}

impl Shared {
    pub(crate) fn standalone() -> Arc<Shared> {
        Arc::new(Shared { state: Mutex::default(), changed: Condvar::new(), pipe: OnceLock::new() })
    }

    pub(crate) fn start(channel: Channel) -> io::Result<Arc<Shared>> {
        let shared = Shared::standalone();
        let for_reader = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("srv-worker-channel".into())
            .spawn(move || for_reader.read_loop(channel))?;
        Ok(shared)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn read_loop(&self, mut channel: Channel) {
        loop {
            match channel.receive() {
                Ok(Received::Bytes(_)) => {}
                Ok(Received::Closed) => return self.disconnect(DisconnectReason::MasterGone),
                // A master that dies with some of this worker's messages
                // unread resets the connection instead of closing it.
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                    return self.disconnect(DisconnectReason::MasterGone);
                }
                Err(error) => {
                    let reason = format!("cannot read: {error}");
                    return self.disconnect(DisconnectReason::ChannelBroken(reason));
                }
            }
            loop {
                match channel.next_message::<MasterMessage>() {
                    Ok(Some((message, fds))) => self.handle(message, fds),
                    Ok(None) => break,
                    Err(srv_proto::DecodeError::Message(error)) => {
                        // Framing is intact: a newer master may have sent a
                        // message this worker does not know. Say so and go on.
                        log::error!(
                            "srv: ignoring a message from the master this worker cannot decode: {error}"
                        );
                    }
                    Err(error) => {
                        return self.disconnect(DisconnectReason::ChannelBroken(error.to_string()));
                    }
                }
            }
        }
    }

    fn handle(&self, message: MasterMessage, mut fds: Vec<std::os::fd::OwnedFd>) {
        match message {
            MasterMessage::Disconnect { grace } => {
                if let Some(grace) = grace {
                    self.set_deadline(grace);
                }
                self.disconnect(DisconnectReason::Requested);
            }
            MasterMessage::Refused { reason } => {
                log::error!("srv: the master refused this worker: {reason}");
                self.disconnect(DisconnectReason::Refused(reason));
            }
            MasterMessage::ListenReply { requested, result } => {
                let res = match (result, fds.pop()) {
                    (Ok(actual), Some(fd)) => Ok(Listener::from_fd(&actual, fd)),
                    (Ok(_), None) => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("listen {requested}: the master sent no socket"),
                    )),
                    (Err(error), _) => Err(io::Error::from(error)),
                };
                let mut state = self.lock();
                if matches!(&state.reply, Reply::Waiting(waited) if *waited == requested) {
                    state.reply = Reply::Ready(res);
                    self.changed.notify_all();
                } else {
                    log::error!(
                        "srv: ignoring a listen reply for {requested} that nobody waits for"
                    );
                }
            }
            other => log::error!("srv: ignoring an unexpected message from the master: {other:?}"),
        }
    }

    pub(crate) fn disconnect(&self, reason: DisconnectReason) {
        let mut state = self.lock();
        if state.reason.is_some() {
            return;
        }
        // After `Requested` or `Terminated` the master still answers.
        let master_gone = matches!(
            reason,
            DisconnectReason::MasterGone
                | DisconnectReason::Refused(_)
                | DisconnectReason::ChannelBroken(_)
        );
        if master_gone && matches!(state.reply, Reply::Waiting(_)) {
            let error = io::Error::new(io::ErrorKind::BrokenPipe, format!("master gone: {reason}"));
            state.reply = Reply::Ready(Err(error));
        }
        state.reason = Some(reason);
        state.disconnected_at = Some(Instant::now());
        for waker in state.wakers.drain(..) {
            waker.wake();
        }
        self.changed.notify_all();
        self.ring(&state);
    }

    /// Writes the byte that makes the pipe readable, if the pipe exists.
    /// Called with the state lock held (see "Races" above).
    fn ring(&self, _state: &State) {
        if let Some((_, writer)) = self.pipe.get() {
            // A full pipe is readable already; nothing else can fail here.
            let _ = { writer }.write(&[1]);
        }
    }

    /// Records the master's deadline, `grace` from now: the master counted
    /// it from just before it sent the message, so this is at most a
    /// transit later than its own. A grace too large for the clock is no
    /// deadline at all.
    fn set_deadline(&self, grace: Duration) {
        let Some(deadline) = Instant::now().checked_add(grace) else { return };
        let mut state = self.lock();
        state.deadline = Some(state.deadline.map_or(deadline, |known| known.min(deadline)));
    }

    pub(crate) fn reason(&self) -> Option<DisconnectReason> {
        self.lock().reason.clone()
    }

    /// When the disconnect was recorded, and the master's deadline if it
    /// gave one.
    pub(crate) fn drain_times(&self) -> (Option<Instant>, Option<Instant>) {
        let state = self.lock();
        (state.disconnected_at, state.deadline)
    }

    pub(crate) fn wait(&self) -> DisconnectReason {
        let mut state = self.lock();
        loop {
            if let Some(reason) = &state.reason {
                return reason.clone();
            }
            state = self.changed.wait(state).unwrap_or_else(|poison| poison.into_inner());
        }
    }

    pub(crate) fn poll_reason(&self, waker: &Waker) -> Poll<DisconnectReason> {
        let mut state = self.lock();
        if let Some(reason) = &state.reason {
            return Poll::Ready(reason.clone());
        }
        if !state.wakers.iter().any(|known| known.will_wake(waker)) {
            state.wakers.push(waker.clone());
        }
        Poll::Pending
    }

    pub(crate) fn fd(&self) -> io::Result<BorrowedFd<'_>> {
        if self.pipe.get().is_none() {
            let pipe = io::pipe()?;
            if self.pipe.set(pipe).is_ok() {
                let state = self.lock();
                if state.reason.is_some() {
                    self.ring(&state);
                }
            }
        }
        let (reader, _) = self.pipe.get().expect("the pipe was set just above");
        Ok(reader.as_fd())
    }

    pub(crate) fn expect_reply(&self, addr: &ListenAddr) {
        self.lock().reply = Reply::Waiting(addr.clone());
    }

    pub(crate) fn wait_reply(&self, addr: &ListenAddr, timeout: Duration) -> io::Result<Listener> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            match std::mem::take(&mut state.reply) {
                Reply::Ready(res) => return res,
                Reply::Waiting(waited) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "listen {addr}: no reply from the master within {} s",
                                timeout.as_secs()
                            ),
                        ));
                    }
                    state.reply = Reply::Waiting(waited);
                    state = match self.changed.wait_timeout(state, deadline - now) {
                        Ok((state, _)) => state,
                        Err(poison) => poison.into_inner().0,
                    };
                }
                Reply::Idle => {
                    return Err(io::Error::other(format!(
                        "listen {addr}: no reply from the master"
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listen_reply_that_never_comes_times_out() {
        let shared = Shared::standalone();
        let addr: ListenAddr = "127.0.0.1:0".parse().unwrap();
        shared.expect_reply(&addr);
        let error = shared.wait_reply(&addr, Duration::from_millis(50)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(error.to_string().starts_with("listen 127.0.0.1:0: no reply"), "{error}");
    }

    #[test]
    fn a_reply_for_another_address_is_not_taken() {
        let shared = Shared::standalone();
        let (waited, other): (ListenAddr, ListenAddr) =
            ("127.0.0.1:0".parse().unwrap(), "127.0.0.2:0".parse().unwrap());
        shared.expect_reply(&waited);
        let error = srv_proto::ListenError { errno: None, message: "late".to_owned() };
        let late = MasterMessage::ListenReply { requested: other, result: Err(error) };
        shared.handle(late, Vec::new());
        let error = shared.wait_reply(&waited, Duration::from_millis(50)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
    }
}
