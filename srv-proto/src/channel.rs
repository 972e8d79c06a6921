//! [`Channel`]: one end of the master–worker socket, with framing and
//! descriptor bookkeeping.
//!
//! Works on blocking and non-blocking sockets alike: blocking versus not is
//! the caller's choice, and `WouldBlock` comes back unchanged.
//!
//! Outgoing frames queue in the channel until the socket takes them, so a
//! non-blocking sender never loses a partly written frame; a frame's
//! descriptors are duplicated when it is queued and go with its first byte.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use crate::frame::{self, DecodeError, Decoder};
use crate::message::{MasterMessage, WorkerMessage};

/// A message type of the protocol: it knows how many descriptors travel
/// with it.
pub trait Message: serde::Serialize + serde::de::DeserializeOwned {
    /// How many file descriptors travel with this message.
    fn fd_count(&self) -> usize;
}

impl Message for WorkerMessage {
    fn fd_count(&self) -> usize {
        WorkerMessage::fd_count(self)
    }
}

impl Message for MasterMessage {
    fn fd_count(&self) -> usize {
        MasterMessage::fd_count(self)
    }
}

/// The most received descriptors a channel holds before frames claim them;
/// a peer that sends more is broken or hostile, and would otherwise run this
/// process out of descriptors a few bytes at a time.
pub const MAX_QUEUED_FDS: usize = 16;

/// What one [`Channel::receive`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// This many bytes; take the messages with [`Channel::next_message`].
    Bytes(usize),
    /// The peer closed its end (end of file).
    Closed,
}

#[derive(Debug)]
struct Outgoing {
    bytes: Vec<u8>,
    sent: usize,
    fds: Vec<OwnedFd>,
}

/// One end of the socket between a master and a worker.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use srv_proto::{Channel, MasterMessage, Received, WorkerMessage};
///
/// let (a, b) = UnixStream::pair().unwrap();
/// let (mut master, mut worker) = (Channel::new(a), Channel::new(b));
/// worker.send(&WorkerMessage::Online, &[]).unwrap();
/// assert!(matches!(master.receive().unwrap(), Received::Bytes(_)));
/// let (message, fds) = master.next_message::<WorkerMessage>().unwrap().unwrap();
/// assert_eq!((message, fds.len()), (WorkerMessage::Online, 0));
/// # let _ = MasterMessage::Disconnect;
/// ```
#[derive(Debug)]
pub struct Channel {
    stream: UnixStream,
    decoder: Decoder,
    fds: VecDeque<OwnedFd>,
    outgoing: VecDeque<Outgoing>,
}

impl Channel {
    /// Wraps one end of the socket.
    pub fn new(stream: UnixStream) -> Channel {
        Channel { stream, decoder: Decoder::new(), fds: VecDeque::new(), outgoing: VecDeque::new() }
    }

    /// The socket, for registering with an event loop.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Queues `message` with `fds` (duplicated) and writes as much as the
    /// socket takes.
    ///
    /// Returns `true` when everything queued has been written, `false` when
    /// some waits for [`Channel::flush`] (non-blocking sockets only).
    ///
    /// # Errors
    ///
    /// A message too large to frame (`InvalidData`), a failure to duplicate a
    /// descriptor, or the socket's write error (the peer is gone).
    pub fn send<M: Message>(&mut self, message: &M, fds: &[BorrowedFd<'_>]) -> io::Result<bool> {
        debug_assert_eq!(message.fd_count(), fds.len(), "descriptor count must match the message");
        let mut bytes = Vec::new();
        frame::encode(message, &mut bytes)?;
        let fds = fds.iter().map(|fd| fd.try_clone_to_owned()).collect::<io::Result<Vec<_>>>()?;
        self.outgoing.push_back(Outgoing { bytes, sent: 0, fds });
        self.flush()
    }

    /// Writes queued frames until done or the socket would block.
    ///
    /// Returns `true` when the queue is empty.
    ///
    /// # Errors
    ///
    /// The socket's write error, except `WouldBlock` and `Interrupted`.
    pub fn flush(&mut self) -> io::Result<bool> {
        while let Some(front) = self.outgoing.front_mut() {
            let fds: Vec<BorrowedFd<'_>> = if front.sent == 0 {
                front.fds.iter().map(AsFd::as_fd).collect()
            } else {
                Vec::new()
            };
            match crate::fd::send_with_fds(self.stream.as_fd(), &front.bytes[front.sent..], &fds) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    front.sent += n;
                    if front.sent == front.bytes.len() {
                        self.outgoing.pop_front();
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) => return Err(error),
            }
        }
        Ok(true)
    }

    /// Whether frames wait to be written.
    pub fn has_outgoing(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Bytes received but not yet returned as messages: once
    /// [`Channel::next_message`] returned `Ok(None)`, the start of a frame
    /// still incomplete. Non-zero at end of file, it means the peer closed
    /// its end in the middle of a frame.
    pub fn pending(&self) -> usize {
        self.decoder.pending()
    }

    /// Reads once from the socket into the decoder.
    ///
    /// Non-blocking callers repeat until `WouldBlock`, taking messages with
    /// [`Channel::next_message`] in between.
    ///
    /// # Errors
    ///
    /// The read error, `WouldBlock` included; `InvalidData` when the peer
    /// sent too many descriptors at once.
    pub fn receive(&mut self) -> io::Result<Received> {
        let mut buf = [0u8; 16 * 1024];
        let n = crate::fd::recv_with_fds(self.stream.as_fd(), &mut buf, &mut self.fds)?;
        if self.fds.len() > MAX_QUEUED_FDS {
            let count = self.fds.len();
            self.fds.clear();
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("peer sent {count} file descriptors that no frame has claimed"),
            ));
        }
        if n == 0 {
            return Ok(Received::Closed);
        }
        self.decoder.push(&buf[..n]);
        Ok(Received::Bytes(n))
    }

    /// The next complete message with its descriptors, `Ok(None)` when more
    /// bytes are needed.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] for an oversized frame, an undecodable message, a
    /// frame whose descriptors did not arrive, or descriptors that no frame
    /// claims. All mean the peer is broken or hostile.
    pub fn next_message<M: Message>(&mut self) -> Result<Option<(M, Vec<OwnedFd>)>, DecodeError> {
        let Some(message) = self.decoder.next_message::<M>()? else {
            if !self.fds.is_empty() && self.decoder.pending() == 0 {
                let count = self.fds.len();
                self.fds.clear();
                return Err(DecodeError::UnexpectedFds { count });
            }
            return Ok(None);
        };
        let expected = message.fd_count();
        if self.fds.len() < expected {
            return Err(DecodeError::MissingFds { expected, got: self.fds.len() });
        }
        Ok(Some((message, self.fds.drain(..expected).collect())))
    }
}
