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
///
/// [`WorkerMessage`] and [`MasterMessage`] implement it; [`Channel::send`]
/// and [`Channel::next_message`] take any `Message`.
///
/// ```
/// use srv_proto::{MasterMessage, Message, WorkerMessage};
///
/// fn descriptors<M: Message>(messages: &[M]) -> usize {
///     messages.iter().map(Message::fd_count).sum()
/// }
/// assert_eq!(descriptors(&[WorkerMessage::Online, WorkerMessage::Exit { code: 0 }]), 0);
/// let granted = MasterMessage::ListenReply {
///     requested: "127.0.0.1:0".parse().unwrap(),
///     result: Ok("127.0.0.1:8080".parse().unwrap()),
/// };
/// assert_eq!(descriptors(&[granted, MasterMessage::Disconnect { grace: None }]), 1);
/// ```
pub trait Message: serde::Serialize + serde::de::DeserializeOwned {
    /// How many file descriptors travel with this message.
    ///
    /// ```
    /// use srv_proto::{Message, WorkerMessage};
    /// assert_eq!(Message::fd_count(&WorkerMessage::Online), 0);
    /// ```
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
///
/// [`Channel::receive`] fails with `InvalidData`, and closes them all, when
/// more than this many wait for a frame:
///
/// ```
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// use srv_proto::{Channel, MAX_QUEUED_FDS, fd};
///
/// let (a, b) = UnixStream::pair()?;
/// let mut channel = Channel::new(a);
/// // A hostile peer sends descriptors, four at a time (`fd::MAX_FDS_PER_MESSAGE`),
/// // with no frame to claim them.
/// for _ in 0..=MAX_QUEUED_FDS / 4 {
///     fd::send_with_fds(b.as_fd(), &[0], &[b.as_fd(); 4])?;
/// }
/// for _ in 0..MAX_QUEUED_FDS / 4 {
///     channel.receive()?;
/// }
/// assert_eq!(channel.receive().unwrap_err().kind(), std::io::ErrorKind::InvalidData);
/// # Ok::<(), std::io::Error>(())
/// ```
pub const MAX_QUEUED_FDS: usize = 16;

/// What one [`Channel::receive`] got.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use srv_proto::{Channel, Received, WorkerMessage};
///
/// let (a, b) = UnixStream::pair()?;
/// let (mut master, mut worker) = (Channel::new(a), Channel::new(b));
/// worker.send(&WorkerMessage::Online, &[])?;
/// drop(worker); // the worker exits
/// assert!(matches!(master.receive()?, Received::Bytes(n) if n > 0));
/// assert_eq!(master.receive()?, Received::Closed);
/// # Ok::<(), std::io::Error>(())
/// ```
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
/// # let _ = MasterMessage::Disconnect { grace: None };
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
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use srv_proto::Channel;
    ///
    /// let (master_end, worker_end) = UnixStream::pair()?;
    /// let master = Channel::new(master_end);
    /// assert!(!master.has_outgoing());
    /// # drop(worker_end);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(stream: UnixStream) -> Channel {
        Channel { stream, decoder: Decoder::new(), fds: VecDeque::new(), outgoing: VecDeque::new() }
    }

    /// The socket, for registering with an event loop or making it
    /// non-blocking.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use srv_proto::Channel;
    ///
    /// let (a, _b) = UnixStream::pair()?;
    /// let mut channel = Channel::new(a);
    /// channel.stream().set_nonblocking(true)?;
    /// // Nothing was sent yet: the read would block.
    /// assert_eq!(channel.receive().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Queues `message` with `fds` (duplicated) and writes as much as the
    /// socket takes.
    ///
    /// Returns `true` when everything queued has been written, `false` when
    /// some waits for [`Channel::flush`] (non-blocking sockets only).
    ///
    /// The master sends a listening socket with its `ListenReply`:
    ///
    /// ```
    /// use std::net::TcpListener;
    /// use std::os::fd::AsFd;
    /// use std::os::unix::net::UnixStream;
    /// use srv_proto::{Channel, MasterMessage};
    ///
    /// # let (a, b) = UnixStream::pair()?;
    /// # let (mut master, mut worker) = (Channel::new(a), Channel::new(b));
    /// let socket = TcpListener::bind("127.0.0.1:0")?;
    /// let result = Ok(socket.local_addr()?.into());
    /// let requested = "127.0.0.1:0".parse().unwrap();
    /// let reply = MasterMessage::ListenReply { requested, result };
    /// assert!(master.send(&reply, &[socket.as_fd()])?);
    ///
    /// worker.receive()?;
    /// let (message, mut fds) = worker.next_message::<MasterMessage>()?.unwrap();
    /// assert_eq!(message, reply);
    /// let shared = TcpListener::from(fds.pop().unwrap()); // the same kernel socket
    /// assert_eq!(shared.local_addr()?, socket.local_addr()?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A message too large to frame (`InvalidData`), a failure to duplicate a
    /// descriptor, or the socket's write error (the peer is gone).
    pub fn send<M: Message>(&mut self, message: &M, fds: &[BorrowedFd<'_>]) -> io::Result<bool> {
        let fds = fds.iter().map(|fd| fd.try_clone_to_owned()).collect::<io::Result<Vec<_>>>()?;
        self.send_owned(message, fds)
    }

    /// [`Channel::send`] with descriptors the caller already owns: they are
    /// queued as they are, without duplicating them, and closed once sent
    /// (or when the channel is dropped).
    ///
    /// A sender near its descriptor limit duplicates a socket once, and
    /// knows whether that worked, before it commits to a reply:
    ///
    /// ```
    /// use std::net::TcpListener;
    /// use std::os::fd::AsFd;
    /// use std::os::unix::net::UnixStream;
    /// use srv_proto::{Channel, ListenError, MasterMessage};
    ///
    /// # let (a, b) = UnixStream::pair()?;
    /// # let (mut master, mut worker) = (Channel::new(a), Channel::new(b));
    /// let socket = TcpListener::bind("127.0.0.1:0")?;
    /// let requested: srv_proto::ListenAddr = "127.0.0.1:0".parse().unwrap();
    /// match socket.as_fd().try_clone_to_owned() {
    ///     Ok(copy) => {
    ///         let result = Ok(socket.local_addr()?.into());
    ///         master.send_owned(&MasterMessage::ListenReply { requested, result }, vec![copy])?;
    ///     }
    ///     Err(error) => {
    ///         let error = ListenError { errno: error.raw_os_error(), message: error.to_string() };
    ///         master.send(&MasterMessage::ListenReply { requested, result: Err(error) }, &[])?;
    ///     }
    /// }
    /// worker.receive()?;
    /// let (_, fds) = worker.next_message::<MasterMessage>()?.unwrap();
    /// assert_eq!(fds.len(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Channel::send`], but for the duplication.
    pub fn send_owned<M: Message>(&mut self, message: &M, fds: Vec<OwnedFd>) -> io::Result<bool> {
        debug_assert_eq!(message.fd_count(), fds.len(), "descriptor count must match the message");
        let mut bytes = Vec::new();
        frame::encode(message, &mut bytes)?;
        self.outgoing.push_back(Outgoing { bytes, sent: 0, fds });
        self.flush()
    }

    /// Writes queued frames until done or the socket would block.
    ///
    /// Returns `true` when the queue is empty.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use srv_proto::{Channel, MasterMessage};
    ///
    /// let (a, b) = UnixStream::pair()?;
    /// a.set_nonblocking(true)?;
    /// let (mut master, mut worker) = (Channel::new(a), Channel::new(b));
    /// let big = MasterMessage::Refused { reason: "x".repeat(60_000) };
    /// while master.send(&big, &[])? {} // until the socket buffer is full
    /// while !master.flush()? {
    ///     worker.receive()?; // the peer reads, which makes room
    ///     while worker.next_message::<MasterMessage>()?.is_some() {}
    /// }
    /// assert!(!master.has_outgoing());
    /// # Ok::<(), std::io::Error>(())
    /// ```
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

    /// Whether frames wait to be written: an event loop then waits for the
    /// socket to be writable and calls [`Channel::flush`].
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use srv_proto::{Channel, MasterMessage};
    ///
    /// let (a, _b) = UnixStream::pair()?;
    /// a.set_nonblocking(true)?;
    /// let mut master = Channel::new(a);
    /// assert!(!master.has_outgoing());
    /// let big = MasterMessage::Refused { reason: "x".repeat(60_000) };
    /// while master.send(&big, &[])? {} // nobody reads: the socket fills up
    /// assert!(master.has_outgoing());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn has_outgoing(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Bytes received but not yet returned as messages: once
    /// [`Channel::next_message`] returned `Ok(None)`, the start of a frame
    /// still incomplete. Non-zero at end of file, it means the peer closed
    /// its end in the middle of a frame.
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    /// use srv_proto::{Channel, Received, WorkerMessage, frame};
    ///
    /// let (a, mut b) = UnixStream::pair()?;
    /// let mut master = Channel::new(a);
    /// let mut bytes = Vec::new();
    /// frame::encode(&WorkerMessage::Exit { code: 0 }, &mut bytes)?;
    /// b.write_all(&bytes[..3])?; // the worker dies in the middle of a frame
    /// drop(b);
    /// while let Received::Bytes(_) = master.receive()? {
    ///     assert!(master.next_message::<WorkerMessage>()?.is_none());
    /// }
    /// assert_eq!(master.pending(), 3); // a protocol error, not a clean close
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pending(&self) -> usize {
        self.decoder.pending()
    }

    /// The bytes received but not yet returned as messages (see
    /// [`Channel::pending`]), for [`Channel::resume`].
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    /// use srv_proto::{Channel, WorkerMessage, frame};
    ///
    /// let (a, mut b) = UnixStream::pair()?;
    /// let mut master = Channel::new(a);
    /// let mut bytes = Vec::new();
    /// frame::encode(&WorkerMessage::Exit { code: 0 }, &mut bytes)?;
    /// b.write_all(&bytes[..3])?;
    /// master.receive()?;
    /// assert!(master.next_message::<WorkerMessage>()?.is_none());
    /// assert_eq!(master.unread(), &bytes[..3]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn unread(&self) -> &[u8] {
        self.decoder.unread()
    }

    /// The frames waiting to be written, in order: for each, the bytes still
    /// to write and the descriptors still to send with them (none once the
    /// frame is partly written: they went with its first byte). With
    /// [`Channel::unread`], what [`Channel::resume`] needs to go on in
    /// another process.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use srv_proto::{Channel, MasterMessage};
    ///
    /// let (a, _b) = UnixStream::pair()?;
    /// a.set_nonblocking(true)?;
    /// let mut master = Channel::new(a);
    /// let big = MasterMessage::Refused { reason: "x".repeat(60_000) };
    /// while master.send(&big, &[])? {} // nobody reads: the socket fills up
    /// let (bytes, fds) = master.queued().next().unwrap();
    /// assert!(!bytes.is_empty() && bytes.len() <= 60_010);
    /// assert!(fds.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn queued(&self) -> impl Iterator<Item = (&[u8], &[OwnedFd])> + '_ {
        self.outgoing.iter().map(|frame| {
            let fds: &[OwnedFd] = if frame.sent == 0 { &frame.fds } else { &[] };
            (&frame.bytes[frame.sent..], fds)
        })
    }

    /// A channel that goes on where another left off: its decoder is fed
    /// `unread` first (what [`Channel::unread`] returned there), and
    /// `queued` (what [`Channel::queued`] returned, with the descriptors
    /// owned here) is written before anything sent here. So a process can
    /// hand its end of a channel to another (a master that re-executes
    /// itself) without losing or splitting a frame in either direction.
    ///
    /// The descriptors that arrived and no frame has claimed yet are not
    /// carried over; a frame that claims some fails with
    /// [`DecodeError::MissingFds`].
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    /// use srv_proto::{Channel, WorkerMessage, frame};
    ///
    /// let (a, mut b) = UnixStream::pair()?;
    /// let mut before = Channel::new(a);
    /// let mut bytes = Vec::new();
    /// frame::encode(&WorkerMessage::Exit { code: 7 }, &mut bytes)?;
    /// b.write_all(&bytes[..3])?; // half a frame arrives before the handover
    /// before.receive()?;
    /// assert!(before.next_message::<WorkerMessage>()?.is_none());
    /// let unread = before.unread().to_vec();
    /// let stream = before.stream().try_clone()?;
    /// drop(before);
    ///
    /// let mut after = Channel::resume(stream, &unread, Vec::new());
    /// b.write_all(&bytes[3..])?; // the rest arrives after it
    /// after.receive()?;
    /// let (message, _) = after.next_message::<WorkerMessage>()?.unwrap();
    /// assert_eq!(message, WorkerMessage::Exit { code: 7 });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn resume(
        stream: UnixStream,
        unread: &[u8],
        queued: Vec<(Vec<u8>, Vec<OwnedFd>)>,
    ) -> Channel {
        let mut channel = Channel::new(stream);
        channel.decoder.push(unread);
        channel.outgoing = queued
            .into_iter()
            .filter(|(bytes, _)| !bytes.is_empty())
            .map(|(bytes, fds)| Outgoing { bytes, sent: 0, fds })
            .collect();
        channel
    }

    /// Reads once from the socket into the decoder.
    ///
    /// Non-blocking callers repeat until `WouldBlock`, taking messages with
    /// [`Channel::next_message`] in between.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use srv_proto::{Channel, Received, WorkerMessage};
    ///
    /// let (a, b) = UnixStream::pair()?;
    /// let (mut master, mut worker) = (Channel::new(a), Channel::new(b));
    /// worker.send(&WorkerMessage::Exit { code: 0 }, &[])?;
    /// drop(worker);
    /// while let Received::Bytes(_) = master.receive()? {
    ///     while let Some((message, _fds)) = master.next_message::<WorkerMessage>()? {
    ///         assert_eq!(message, WorkerMessage::Exit { code: 0 });
    ///     }
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
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
    /// A frame that arrives in pieces is returned once it is complete:
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    /// use srv_proto::{Channel, WorkerMessage, frame};
    ///
    /// let (a, mut b) = UnixStream::pair()?;
    /// let mut master = Channel::new(a);
    /// let mut bytes = Vec::new();
    /// frame::encode(&WorkerMessage::Exit { code: 3 }, &mut bytes)?;
    /// b.write_all(&bytes[..2])?;
    /// master.receive()?;
    /// assert!(master.next_message::<WorkerMessage>()?.is_none());
    /// b.write_all(&bytes[2..])?;
    /// master.receive()?;
    /// let (message, fds) = master.next_message::<WorkerMessage>()?.unwrap();
    /// assert_eq!((message, fds.len()), (WorkerMessage::Exit { code: 3 }, 0));
    /// # Ok::<(), std::io::Error>(())
    /// ```
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
