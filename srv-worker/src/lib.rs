//! The worker side of srv: what a server links to run under an srv master.
//!
//! A worker tells its master how far it got ([`Worker::online`]), gets its
//! listening sockets from the master ([`Worker::listen`]) so that every
//! worker accepts on the same kernel socket, and learns when to stop
//! ([`Worker::is_disconnected`], [`Worker::wait_disconnect`],
//! [`Worker::disconnected`], [`Worker::disconnect_fd`]).
//!
//! The same binary runs without a master: [`Worker::from_env`] returns `None`
//! then, and [`Worker::standalone`] gives a worker whose reports go nowhere,
//! whose `listen` binds directly and which is never disconnected.
//!
//! ```no_run
//! use std::io::Write;
//! use srv_worker::Worker;
//!
//! fn main() -> std::io::Result<()> {
//!     let worker = Worker::from_env()?.unwrap_or_else(Worker::standalone);
//!     let listener = worker.listen_tcp(([127, 0, 0, 1], 8080))?;
//!     listener.set_nonblocking(true)?;
//!     worker.online()?;
//!     while !worker.is_disconnected() {
//!         match listener.accept() {
//!             Ok((mut stream, _)) => stream.write_all(b"hello\n")?,
//!             Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
//!                 std::thread::sleep(std::time::Duration::from_millis(10))
//!             }
//!             Err(e) => return Err(e),
//!         }
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Optional features
//!
//! - `tokio`: `Worker::listen_tokio_tcp` and `Worker::listen_tokio_unix`,
//!   the shared socket as a tokio listener.
//! - `hyper`: `srv_worker::hyper::serve`, HTTP/1.1 and HTTP/2 with hyper on
//!   the worker's socket, drained without losing a request ([`drain`]).
//! - `axum`: `srv_worker::axum::serve`, the same for an axum application:
//!   it takes the place of `axum::serve(listener, app)`.
//! - `actix`: `srv_worker::actix::serve` and its middleware, the same drain
//!   for an actix-web server.
//!
//! # Master death
//!
//! When the master dies, even by `SIGKILL`, the kernel closes its end of the
//! channel; the worker reads end-of-file, or a connection reset if the
//! master left some of the worker's messages unread, and counts either as a
//! disconnect ([`DisconnectReason::MasterGone`]), so a worker that honours
//! disconnects never outlives its master for long.
//!
//! # `SIGTERM`
//!
//! A worker from [`Worker::from_env`] treats `SIGTERM` as a disconnect
//! ([`DisconnectReason::Terminated`]), so that a service manager that
//! signals the whole process group (systemd's default
//! `KillMode=control-group`, `kill -- -PGID`, supervisord's `stopasgroup`)
//! loses no request in flight; a second `SIGTERM` ends it at once. See
//! [`Sigterm`] and [`Worker::from_env_with`] to keep the program's own
//! handling instead.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "axum")]
pub mod axum;
pub mod drain;
#[cfg(any(feature = "hyper", feature = "actix"))]
mod drain_timer;
mod heartbeat;
#[cfg(feature = "hyper")]
pub mod hyper;
mod listener;
mod shared;
mod signals;
#[cfg(feature = "tokio")]
mod tokio_net;

use std::fmt;
use std::future::Future;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::fd::BorrowedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[cfg(feature = "tokio")]
pub use heartbeat::Heartbeat;
pub use listener::Listener;
pub use signals::Sigterm;
pub use srv_proto::ListenAddr;
use srv_proto::{Channel, PROTOCOL_VERSION, WorkerMessage, env};

use heartbeat::Beat;
use shared::Shared;

/// Why a worker was disconnected.
///
/// Shown (`Display`) in words, for a log line: `the master asked`.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use srv_proto::{Channel, MasterMessage};
/// use srv_worker::{DisconnectReason, Worker};
///
/// let (master_end, worker_end) = UnixStream::pair()?;
/// let worker = Worker::connect(worker_end, None)?;
/// let reason = "protocol version 1, master speaks 2".to_owned();
/// Channel::new(master_end).send(&MasterMessage::Refused { reason: reason.clone() }, &[])?;
/// assert_eq!(worker.wait_disconnect(), DisconnectReason::Refused(reason));
/// assert_eq!(
///     worker.wait_disconnect().to_string(),
///     "refused by the master: protocol version 1, master speaks 2"
/// );
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The master asked: shutdown, recycle, or one worker fewer.
    Requested,
    /// The master's end of the channel closed (end of file, or a reset when
    /// the master died with some of this worker's messages unread): the
    /// master is gone.
    MasterGone,
    /// The master refused this worker, for this reason (for example a
    /// protocol version mismatch).
    Refused(String),
    /// The channel to the master broke: a read error, or bytes that are
    /// not frames, as this error says. (A well-framed message this worker
    /// cannot decode, perhaps from a newer master, is logged and skipped:
    /// not a disconnect.)
    ChannelBroken(String),
    /// This process got `SIGTERM` (see [`Sigterm`]): a service manager
    /// stopping the whole process group, whose master shuts down too, or an
    /// operator stopping this one worker, which the master replaces once it
    /// has exited.
    Terminated,
}

impl fmt::Display for DisconnectReason {
    /// ```
    /// use srv_worker::DisconnectReason;
    ///
    /// assert_eq!(DisconnectReason::Requested.to_string(), "the master asked");
    /// assert_eq!(DisconnectReason::MasterGone.to_string(), "the master is gone");
    /// assert_eq!(
    ///     DisconnectReason::ChannelBroken("cannot read: Bad file descriptor".into()).to_string(),
    ///     "the channel to the master broke: cannot read: Bad file descriptor"
    /// );
    /// assert_eq!(DisconnectReason::Terminated.to_string(), "terminated by SIGTERM");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Requested => f.write_str("the master asked"),
            DisconnectReason::MasterGone => f.write_str("the master is gone"),
            DisconnectReason::Refused(why) => write!(f, "refused by the master: {why}"),
            DisconnectReason::ChannelBroken(why) => {
                write!(f, "the channel to the master broke: {why}")
            }
            DisconnectReason::Terminated => f.write_str("terminated by SIGTERM"),
        }
    }
}

/// The connection of a worker process to its master, or a standalone stand-in.
///
/// Cheap to share: it is `Send + Sync`, and every method takes `&self`.
///
/// ```
/// use std::sync::Arc;
/// use srv_worker::Worker;
///
/// let worker = Arc::new(Worker::from_env()?.unwrap_or_else(Worker::standalone));
/// let for_thread = Arc::clone(&worker);
/// let server = std::thread::spawn(move || for_thread.listen_tcp(([127, 0, 0, 1], 0)));
/// let listener = server.join().unwrap()?;
/// worker.online()?;
/// assert!(!worker.is_disconnected());
/// assert_ne!(listener.local_addr()?.port(), 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Worker {
    /// `None` when standalone.
    link: Option<Link>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Link {
    /// Shared with the `SIGTERM` thread, which reports the coming exit.
    writer: Arc<Mutex<Channel>>,
    /// Serialises `listen` calls so each reply matches its request.
    listen_lock: Mutex<()>,
    worker_id: Option<u32>,
    /// The protocol version this worker said `Hello` with.
    protocol_version: u32,
    /// The heartbeat, when the master watches this worker
    /// (`worker.watchdog`).
    beat: Option<Arc<Beat>>,
}

impl Link {
    /// Whether the master can read `addr` in a `ListenRequest`: a master of
    /// protocol 1 knows no Unix path that is not UTF-8, and would take the
    /// request for a broken message.
    fn can_name(&self, addr: &ListenAddr) -> bool {
        match addr {
            ListenAddr::Unix(path) if path.to_str().is_none() => {
                self.protocol_version >= srv_proto::message::NON_UTF8_PATH_VERSION
            }
            _ => true,
        }
    }
}

impl Worker {
    /// Connects to the master that spawned this process.
    ///
    /// Returns `Ok(None)` when there is no master (the program runs
    /// standalone), or when the channel was already taken by an earlier
    /// call. Sends `Hello` with this crate's protocol version and starts a
    /// small thread that reads the master's messages.
    ///
    /// Call it early in `main`, before starting other threads: it removes the
    /// channel's variables from the environment, so that programs this
    /// worker spawns do not mistake a descriptor for a channel.
    ///
    /// Under a master, it also makes `SIGTERM` a disconnect
    /// ([`Sigterm::Disconnect`]): a service manager that signals the whole
    /// process group stops the worker gracefully rather than at once. Use
    /// [`Worker::from_env_with`]`(`[`Sigterm::Leave`]`)` to handle `SIGTERM`
    /// yourself. And it catches `SIGHUP` and `SIGUSR2`, the master's
    /// recycle and upgrade, and does nothing with them, so that one sent to
    /// the whole process group does not end the worker (a handler the
    /// program registers through signal-hook or tokio still runs).
    /// Standalone (`Ok(None)`), nothing is installed.
    ///
    /// ```
    /// use srv_worker::Worker;
    ///
    /// let worker = match Worker::from_env()? {
    ///     Some(worker) => worker,       // spawned by an srv master
    ///     None => Worker::standalone(), // run by hand, as this example is
    /// };
    /// assert!(!worker.is_supervised());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The inherited channel is invalid (not a Unix stream socket), or the
    /// master is already gone.
    pub fn from_env() -> io::Result<Option<Worker>> {
        Worker::from_env_with(Sigterm::Disconnect)
    }

    /// [`Worker::from_env`], choosing what `SIGTERM` does; nothing is
    /// installed when there is no master.
    ///
    /// With [`Sigterm::Disconnect`] (what `from_env` does), the first
    /// `SIGTERM` disconnects the worker and tells the master that it will
    /// exit 0 on purpose, and a second one ends it at once. Handlers the
    /// program registers through signal-hook or tokio run as well, since
    /// they share one registry; a bare `sigaction` for `SIGTERM` installed
    /// later replaces srv's. With [`Sigterm::Leave`], srv installs nothing
    /// for `SIGTERM` (`SIGHUP` and `SIGUSR2` are caught either way), and
    /// the program is responsible for not dying with requests in flight
    /// when the whole process group is signalled.
    ///
    /// ```
    /// use srv_worker::{Sigterm, Worker};
    ///
    /// // This server wants SIGTERM to end it at once, as by default.
    /// let worker = Worker::from_env_with(Sigterm::Leave)?;
    /// assert!(worker.is_none()); // run by hand, as this example is
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Worker::from_env`], and the `SIGTERM` handler cannot be
    /// installed (its thread cannot be started).
    pub fn from_env_with(sigterm: Sigterm) -> io::Result<Option<Worker>> {
        let worker_id = std::env::var(env::ENV_WORKER_ID).ok().and_then(|id| id.parse().ok());
        // A master too old to announce its version speaks version 1, and
        // would refuse this crate's newer one (see `srv_proto::message`).
        let version = env::hello_version(std::env::var_os(env::ENV_PROTOCOL_VERSION).as_deref());
        // Only a master of protocol 2 or later announces a watchdog, and
        // only a worker that speaks it to that master may send `Alive`.
        let watchdog = env::watchdog_period(std::env::var_os(env::ENV_WATCHDOG_MS).as_deref())
            .filter(|_| version >= srv_proto::message::ALIVE_VERSION);
        let Some(stream) = env::take_inherited_channel()? else {
            return Ok(None);
        };
        let worker = Worker::connect_speaking(stream, worker_id, version, watchdog)?;
        signals::leave_master_signals_to_the_master()?;
        if let (Sigterm::Disconnect, Some(link)) = (sigterm, &worker.link) {
            signals::disconnect_on_sigterm(Arc::clone(&worker.shared), Arc::clone(&link.writer))?;
        }
        Ok(Some(worker))
    }

    /// Connects over an already open channel: what [`Worker::from_env`] does
    /// after taking the inherited socket. Useful for tests and for programs
    /// that receive the channel some other way. It installs nothing for
    /// `SIGTERM` ([`Sigterm::Leave`]).
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use srv_proto::{Channel, PROTOCOL_VERSION, WorkerMessage};
    ///
    /// let (master_end, worker_end) = UnixStream::pair()?;
    /// let worker = srv_worker::Worker::connect(worker_end, Some(1))?;
    /// assert_eq!(worker.id(), Some(1));
    ///
    /// let mut master = Channel::new(master_end);
    /// master.receive()?;
    /// let (hello, _) = master.next_message::<WorkerMessage>()?.unwrap();
    /// assert!(matches!(hello, WorkerMessage::Hello { protocol_version: PROTOCOL_VERSION, .. }));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The socket cannot be cloned for the reader thread, or `Hello` cannot
    /// be sent.
    pub fn connect(stream: UnixStream, worker_id: Option<u32>) -> io::Result<Worker> {
        Worker::connect_speaking(stream, worker_id, PROTOCOL_VERSION, None)
    }

    /// [`Worker::connect`], saying `Hello` with `protocol_version`, and
    /// watched every `watchdog` if given.
    fn connect_speaking(
        stream: UnixStream,
        worker_id: Option<u32>,
        protocol_version: u32,
        watchdog: Option<Duration>,
    ) -> io::Result<Worker> {
        stream.set_nonblocking(false)?;
        let reader = Channel::new(stream.try_clone()?);
        let shared = Shared::start(reader)?;
        let writer = Arc::new(Mutex::new(Channel::new(stream)));
        let beat = watchdog
            .map(|period| Arc::new(Beat::new(Arc::clone(&writer), Arc::clone(&shared), period)));
        let link = Link { writer, listen_lock: Mutex::new(()), worker_id, protocol_version, beat };
        let worker = Worker { link: Some(link), shared };
        worker.send(&WorkerMessage::Hello { protocol_version, pid: std::process::id() })?;
        Ok(worker)
    }

    /// A worker without a master: reports go nowhere, [`Worker::listen`]
    /// binds directly, and it is never disconnected.
    ///
    /// ```
    /// let worker = srv_worker::Worker::standalone();
    /// assert!(!worker.is_supervised());
    /// worker.online().unwrap();
    /// let listener = worker.listen_tcp(([127, 0, 0, 1], 0)).unwrap();
    /// assert_ne!(listener.local_addr().unwrap().port(), 0);
    /// ```
    pub fn standalone() -> Worker {
        Worker { link: None, shared: Shared::standalone() }
    }

    /// Whether a master supervises this worker.
    ///
    /// ```
    /// use srv_worker::Worker;
    ///
    /// # let (_master_end, worker_end) = std::os::unix::net::UnixStream::pair()?;
    /// assert!(!Worker::standalone().is_supervised());
    /// assert!(Worker::connect(worker_end, None)?.is_supervised());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_supervised(&self) -> bool {
        self.link.is_some()
    }

    /// The id the master gave this worker (never reused within one master),
    /// `None` when standalone.
    ///
    /// ```
    /// use srv_worker::Worker;
    ///
    /// fn name(worker: &Worker) -> String {
    ///     worker.id().map_or_else(|| "standalone".to_owned(), |id| format!("worker {id}"))
    /// }
    /// # let (_master_end, worker_end) = std::os::unix::net::UnixStream::pair()?;
    /// assert_eq!(name(&Worker::standalone()), "standalone");
    /// assert_eq!(name(&Worker::connect(worker_end, Some(7))?), "worker 7");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn id(&self) -> Option<u32> {
        self.link.as_ref().and_then(|link| link.worker_id)
    }

    /// Reports that this worker is ready (`worker.require = online`).
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use srv_proto::{Channel, WorkerMessage};
    ///
    /// let (master_end, worker_end) = UnixStream::pair()?;
    /// let worker = srv_worker::Worker::connect(worker_end, None)?;
    /// // ... load the configuration, warm the caches, then:
    /// worker.online()?;
    ///
    /// let mut master = Channel::new(master_end);
    /// master.receive()?;
    /// let _hello = master.next_message::<WorkerMessage>()?.unwrap();
    /// assert_eq!(master.next_message::<WorkerMessage>()?.unwrap().0, WorkerMessage::Online);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The master is gone.
    pub fn online(&self) -> io::Result<()> {
        self.send(&WorkerMessage::Online)
    }

    /// Proves to the master that this worker's serving loop runs: call it
    /// from that loop, at least every [`Worker::heartbeat_interval`], for
    /// as long as the worker serves. A master with `worker.watchdog` kills
    /// and replaces a started worker that stays silent for a whole period,
    /// as hung.
    ///
    /// It costs next to nothing: without a watchdog (or a master, or after
    /// the disconnect) it returns at once, and otherwise it sends at most
    /// one `Alive` per [`Worker::heartbeat_interval`], whatever the number
    /// of calls, so a loop may call it at every turn. Call it from the code
    /// that does the work, never from a thread of its own, which would
    /// keep proving a deadlocked server alive. With the `tokio` feature,
    /// srv-worker's `serve` helpers do it with a task on the server's
    /// runtime (`Worker::spawn_heartbeat`, feature `tokio`).
    ///
    /// ```no_run
    /// use std::os::fd::AsFd;
    /// use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    ///
    /// # fn serve(worker: srv_worker::Worker) -> Result<(), Box<dyn std::error::Error>> {
    /// let listener = worker.listen_tcp(([127, 0, 0, 1], 8080))?;
    /// worker.online()?;
    /// // Wake up often enough to prove the loop runs even without traffic.
    /// let tick = worker.heartbeat_interval().map_or(PollTimeout::NONE, |every| {
    ///     PollTimeout::try_from(every).unwrap_or(PollTimeout::MAX)
    /// });
    /// let disconnect = worker.disconnect_fd()?; // the disconnect wakes the poll too
    /// while !worker.is_disconnected() {
    ///     worker.alive()?;
    ///     let mut fds = [
    ///         PollFd::new(listener.as_fd(), PollFlags::POLLIN),
    ///         PollFd::new(disconnect, PollFlags::POLLIN),
    ///     ];
    ///     match poll(&mut fds, tick) {
    ///         // A signal (SIGTERM, SIGHUP, ...) interrupts it: look again.
    ///         Ok(_) | Err(nix::errno::Errno::EINTR) => {}
    ///         Err(error) => return Err(error.into()),
    ///     }
    ///     // ... accept what is ready, and serve
    /// }
    /// # Ok(())
    /// # }
    /// # let _ = serve;
    /// ```
    ///
    /// # Errors
    ///
    /// The master is gone (the disconnect follows).
    pub fn alive(&self) -> io::Result<()> {
        match self.link.as_ref().and_then(|link| link.beat.as_ref()) {
            Some(beat) => beat.alive(),
            None => Ok(()),
        }
    }

    /// How often the serving loop must call [`Worker::alive`]: a quarter
    /// of the master's `worker.watchdog`; `None` when nothing watches this
    /// worker (no master, no watchdog, or a master of protocol 1).
    ///
    /// ```
    /// let worker = srv_worker::Worker::standalone();
    /// assert_eq!(worker.heartbeat_interval(), None);
    /// ```
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.link.as_ref()?.beat.as_ref().map(|beat| beat.every())
    }

    /// Runs [`Worker::alive`] every [`Worker::heartbeat_interval`] as a
    /// task on the current tokio runtime (feature `tokio`), until the
    /// returned [`Heartbeat`] is dropped; nothing when this worker is not
    /// watched. srv-worker's `serve` helpers call it; a tokio server with
    /// its own accept loop calls it once, before it serves.
    ///
    /// A task proves that the runtime still runs tasks: one whose threads
    /// are all blocked (a handler that blocks, a deadlock across tasks)
    /// misses its heartbeats and is replaced. A blocked thread among
    /// several that still run is not detected.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let worker = srv_worker::Worker::from_env()?.unwrap_or_else(srv_worker::Worker::standalone);
    /// let _heartbeat = worker.spawn_heartbeat();
    /// // ... accept and serve until `worker.disconnected()`
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Called outside a tokio runtime, for a watched worker.
    #[cfg(feature = "tokio")]
    pub fn spawn_heartbeat(&self) -> Heartbeat {
        Heartbeat::spawn(self.link.as_ref().and_then(|link| link.beat.clone()))
    }

    /// A listening socket for `addr`, shared with every other worker.
    ///
    /// `addr` is a [`ListenAddr`], or what converts into one: a
    /// [`SocketAddr`](std::net::SocketAddr) or an `(IP, port)` pair for TCP,
    /// a [`Path`] or [`PathBuf`](std::path::PathBuf) for a Unix socket. Text is parsed
    /// first, explicitly: `"127.0.0.1:8080".parse::<ListenAddr>()?` (see
    /// [`ListenAddr`] for the forms), so that a bad address is an error of
    /// its own, before any request. Under a master the master binds the
    /// address once (or reuses the socket it holds) and passes it over;
    /// every worker asking for the same address gets the same socket, port 0
    /// included. The worker then reports `Listening` with the socket's
    /// actual address, which is what `worker.require = listen` waits for.
    /// Standalone, it binds directly.
    ///
    /// The socket is blocking. Its `O_NONBLOCK` flag is shared by every
    /// process holding it, so all workers of one master should agree on it.
    ///
    /// ```
    /// # use std::os::fd::AsFd;
    /// # use srv_proto::{Channel, MasterMessage, WorkerMessage};
    /// # let (master_end, worker_end) = std::os::unix::net::UnixStream::pair()?;
    /// # // A stand-in for the master: it binds what the worker asks for.
    /// # let master = std::thread::spawn(move || -> std::io::Result<()> {
    /// #     let mut channel = Channel::new(master_end);
    /// #     loop {
    /// #         channel.receive()?;
    /// #         while let Some((message, _)) = channel.next_message::<WorkerMessage>()? {
    /// #             match message {
    /// #                 WorkerMessage::ListenRequest { addr } => {
    /// #                     let socket = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// #                     let result = Ok(socket.local_addr()?.into());
    /// #                     let reply = MasterMessage::ListenReply { requested: addr, result };
    /// #                     channel.send(&reply, &[socket.as_fd()])?;
    /// #                 }
    /// #                 WorkerMessage::Listening { .. } => return Ok(()),
    /// #                 _ => {}
    /// #             }
    /// #         }
    /// #     }
    /// # });
    /// use srv_worker::{ListenAddr, Worker};
    ///
    /// let worker = Worker::connect(worker_end, Some(1))?; // as `Worker::from_env` would
    /// let addr: ListenAddr = "127.0.0.1:0".parse()?; // from a command line, say
    /// let listener = worker.listen(addr)?; // bound by the master, shared by all workers
    /// let ListenAddr::Tcp(addr) = listener.local_addr()? else { unreachable!() };
    /// assert_ne!(addr.port(), 0);
    /// # master.join().unwrap()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The bind failed (port in use, permission denied); the message names
    /// the address. `TimedOut` if the master does not answer within 30
    /// seconds (it answers at once unless something is badly wrong).
    /// `InvalidInput` for a Unix path that is not UTF-8 asked of a master
    /// of protocol 1, which could not read it.
    pub fn listen(&self, addr: impl Into<ListenAddr>) -> io::Result<Listener> {
        let addr = addr.into();
        let Some(link) = &self.link else {
            return listener::bind(&addr);
        };
        if !link.can_name(&addr) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr}: a Unix path that is not UTF-8 needs a master of protocol 2"),
            ));
        }
        let _one_at_a_time = link.listen_lock.lock().unwrap_or_else(|poison| poison.into_inner());
        self.shared.expect_reply(&addr);
        self.send(&WorkerMessage::ListenRequest { addr: addr.clone() })?;
        let listener = self.shared.wait_reply(&addr, shared::LISTEN_REPLY_TIMEOUT)?;
        self.send(&WorkerMessage::Listening { addr: listener.local_addr()? })?;
        Ok(listener)
    }

    /// [`Worker::listen`] for a TCP address.
    ///
    /// ```
    /// use std::net::TcpStream;
    ///
    /// let worker = srv_worker::Worker::standalone();
    /// let listener = worker.listen_tcp(([127, 0, 0, 1], 0))?;
    /// let _client = TcpStream::connect(listener.local_addr()?)?;
    /// let (_connection, peer) = listener.accept()?;
    /// assert!(peer.ip().is_loopback());
    ///
    /// // A Unix socket address is refused before anything is bound.
    /// let dir = tempfile::tempdir()?;
    /// let unix = dir.path().join("never-bound.sock");
    /// let error = worker.listen_tcp(&unix).unwrap_err();
    /// assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    /// assert!(!unix.exists());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Worker::listen`], and `InvalidInput` for a Unix socket address,
    /// before anything is asked for or bound.
    pub fn listen_tcp(&self, addr: impl Into<ListenAddr>) -> io::Result<TcpListener> {
        let addr = addr.into();
        if let ListenAddr::Unix(_) = addr {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("expected a TCP address, got the unix socket path {addr}"),
            ));
        }
        self.listen(addr)?.into_tcp()
    }

    /// [`Worker::listen`] for a Unix-domain socket at `path`, which may be
    /// any path, UTF-8 or not. (A TCP address cannot be passed: text here
    /// is a path, even `127.0.0.1:80`.)
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("app.sock");
    /// let worker = srv_worker::Worker::standalone();
    /// let listener = worker.listen_unix(&path)?;
    /// assert_eq!(listener.local_addr()?.as_pathname(), Some(path.as_path()));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Worker::listen`].
    pub fn listen_unix(&self, path: impl AsRef<Path>) -> io::Result<UnixListener> {
        self.listen(path.as_ref())?.into_unix()
    }

    /// Reports an intentional exit with `code`, then exits the process.
    ///
    /// The master does not count the exit as a crash, so it replaces the
    /// worker without a restart delay, unless the worker exits within one
    /// second of its spawn: that counts as a crash (with the restart
    /// backoff), so that a worker exiting as soon as it starts cannot make
    /// the master spawn in a tight loop.
    ///
    /// ```no_run
    /// # let worker = srv_worker::Worker::standalone();
    /// # let served = 10_000;
    /// // Recycle this worker after it served its share (gunicorn's `--max-requests`):
    /// // stop accepting, finish the requests in flight, then
    /// if served >= 10_000 {
    ///     worker.exit(0);
    /// }
    /// ```
    pub fn exit(&self, code: i32) -> ! {
        // The process exits either way; a master that is gone needs no report.
        let _ = self.send(&WorkerMessage::Exit { code });
        let _ = io::stdout().flush();
        std::process::exit(code)
    }

    /// Whether the worker was disconnected: asked to stop, refused, or its
    /// master is gone. Never blocks.
    ///
    /// ```
    /// # let (master_end, worker_end) = std::os::unix::net::UnixStream::pair()?;
    /// let worker = srv_worker::Worker::connect(worker_end, None)?;
    /// assert!(!worker.is_disconnected());
    /// drop(master_end); // the master dies
    /// worker.wait_disconnect();
    /// assert!(worker.is_disconnected());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_disconnected(&self) -> bool {
        self.shared.reason().is_some()
    }

    /// Why the worker was disconnected, `None` while it is not.
    ///
    /// ```
    /// use srv_proto::{Channel, MasterMessage};
    /// use srv_worker::{DisconnectReason, Worker};
    ///
    /// # let (master_end, worker_end) = std::os::unix::net::UnixStream::pair()?;
    /// let worker = Worker::connect(worker_end, None)?;
    /// assert_eq!(worker.disconnect_reason(), None);
    /// Channel::new(master_end).send(&MasterMessage::Disconnect { grace: None }, &[])?;
    /// worker.wait_disconnect();
    /// assert_eq!(worker.disconnect_reason(), Some(DisconnectReason::Requested));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        self.shared.reason()
    }

    /// Blocks until the worker is disconnected. Standalone, blocks forever.
    ///
    /// ```
    /// use srv_proto::{Channel, MasterMessage};
    /// use srv_worker::{DisconnectReason, Worker};
    ///
    /// # let (master_end, worker_end) = std::os::unix::net::UnixStream::pair()?;
    /// let worker = Worker::connect(worker_end, None)?;
    /// // ... serve on other threads; the master asks this worker to stop:
    /// # Channel::new(master_end).send(&MasterMessage::Disconnect { grace: None }, &[])?;
    /// assert_eq!(worker.wait_disconnect(), DisconnectReason::Requested);
    /// // ... stop accepting, finish the requests in flight, return from `main`.
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait_disconnect(&self) -> DisconnectReason {
        self.shared.wait()
    }

    /// A future that completes when the worker is disconnected, for any
    /// executor (it needs no runtime).
    ///
    /// ```
    /// use std::future::Future;
    /// use std::task::{Context, Poll, Waker};
    /// use srv_proto::{Channel, MasterMessage};
    /// use srv_worker::{DisconnectReason, Worker};
    ///
    /// # let (master_end, worker_end) = std::os::unix::net::UnixStream::pair()?;
    /// let worker = Worker::connect(worker_end, None)?;
    /// let mut disconnected = std::pin::pin!(worker.disconnected());
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(disconnected.as_mut().poll(&mut cx).is_pending());
    /// Channel::new(master_end).send(&MasterMessage::Disconnect { grace: None }, &[])?;
    /// worker.wait_disconnect();
    /// assert_eq!(disconnected.poll(&mut cx), Poll::Ready(DisconnectReason::Requested));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn disconnected(&self) -> Disconnected {
        Disconnected { shared: Arc::clone(&self.shared) }
    }

    /// A future of `()` that completes when the worker is disconnected: the
    /// shape `with_graceful_shutdown` of axum, hyper-util and others takes.
    /// Like [`Worker::disconnected`], it needs no runtime.
    ///
    /// Handing it to a server's graceful shutdown as it is loses requests
    /// on keep-alive connections (see the [`drain`] module); with
    /// hyper or axum, `srv_worker::hyper::serve` and `srv_worker::axum::serve`
    /// (features `hyper`, `axum`) drain without losing any.
    ///
    /// ```
    /// use std::future::Future;
    /// use std::task::{Context, Poll, Waker};
    /// use srv_proto::{Channel, MasterMessage};
    ///
    /// # let (master_end, worker_end) = std::os::unix::net::UnixStream::pair()?;
    /// let worker = srv_worker::Worker::connect(worker_end, None)?;
    /// let mut signal = std::pin::pin!(worker.shutdown_signal());
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(signal.as_mut().poll(&mut cx).is_pending());
    /// Channel::new(master_end).send(&MasterMessage::Disconnect { grace: None }, &[])?;
    /// worker.wait_disconnect();
    /// assert_eq!(signal.poll(&mut cx), Poll::Ready(()));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        ShutdownSignal { disconnected: self.disconnected() }
    }

    /// When the master kills this worker if it has not exited: the grace
    /// the master gave with its `Disconnect` (the recycle, shutdown or
    /// `SIGTTOU` grace), counted from when the message arrived.
    ///
    /// `None` before a disconnect, and after a disconnect that came without
    /// a grace: the master is gone (nobody will kill this worker), it
    /// refused the worker, or it speaks protocol version 1. A worker then
    /// uses a limit of its own; [`Worker::drain_until`] does.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use srv_proto::{Channel, MasterMessage};
    ///
    /// # let (master_end, worker_end) = std::os::unix::net::UnixStream::pair()?;
    /// let worker = srv_worker::Worker::connect(worker_end, None)?;
    /// assert_eq!(worker.drain_deadline(), None);
    /// let grace = Some(Duration::from_secs(15));
    /// Channel::new(master_end).send(&MasterMessage::Disconnect { grace }, &[])?;
    /// worker.wait_disconnect();
    /// let left = worker.drain_deadline().unwrap() - Instant::now();
    /// assert!(left > Duration::from_secs(14) && left <= Duration::from_secs(15));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn drain_deadline(&self) -> Option<Instant> {
        self.shared.drain_times().1
    }

    /// When a disconnected worker should stop waiting for its requests in
    /// flight and exit: [`drain::EXIT_MARGIN`] before the master's deadline
    /// ([`Worker::drain_deadline`]), so that the worker exits by itself
    /// rather than being killed, or [`drain::FALLBACK_LIMIT`] after the
    /// disconnect when the master gave no deadline. `None` while connected.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// # let (master_end, worker_end) = std::os::unix::net::UnixStream::pair()?;
    /// let worker = srv_worker::Worker::connect(worker_end, None)?;
    /// assert_eq!(worker.drain_until(), None);
    /// drop(master_end); // the master dies: no deadline, the worker's own limit
    /// worker.wait_disconnect();
    /// let left = worker.drain_until().unwrap() - Instant::now();
    /// assert!(left > Duration::from_secs(14) && left <= srv_worker::drain::FALLBACK_LIMIT);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn drain_until(&self) -> Option<Instant> {
        let (disconnected_at, deadline) = self.shared.drain_times();
        let disconnected_at = disconnected_at?;
        Some(match deadline {
            Some(deadline) => {
                deadline.checked_sub(drain::EXIT_MARGIN).unwrap_or(deadline).max(disconnected_at)
            }
            None => disconnected_at + drain::FALLBACK_LIMIT,
        })
    }

    /// A descriptor that becomes readable once the worker is disconnected,
    /// for servers that run their own `poll`/`epoll`/mio loop. Never read it:
    /// it stays readable from then on.
    ///
    /// ```
    /// use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    ///
    /// # let (master_end, worker_end) = std::os::unix::net::UnixStream::pair()?;
    /// let worker = srv_worker::Worker::connect(worker_end, None)?;
    /// let mut fds = [PollFd::new(worker.disconnect_fd()?, PollFlags::POLLIN)];
    /// assert_eq!(poll(&mut fds, PollTimeout::ZERO)?, 0); // still connected
    /// drop(master_end); // the master dies
    /// poll(&mut fds, PollTimeout::NONE)?; // a server polls it with its own sockets
    /// assert!(worker.is_disconnected());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The pipe behind it cannot be created (out of descriptors).
    pub fn disconnect_fd(&self) -> io::Result<BorrowedFd<'_>> {
        self.shared.fd()
    }

    fn send(&self, message: &WorkerMessage) -> io::Result<()> {
        let Some(link) = &self.link else {
            return Ok(());
        };
        let mut writer = link.writer.lock().unwrap_or_else(|poison| poison.into_inner());
        writer.send(message, &[]).map(drop).map_err(|error| {
            io::Error::new(error.kind(), format!("cannot report to the master: {error}"))
        })
    }
}

/// The future returned by [`Worker::shutdown_signal`]: [`Disconnected`]
/// without the reason.
///
/// ```
/// async fn serve(worker: &srv_worker::Worker) {
///     let signal = worker.shutdown_signal();
///     // ... hand `signal` to a server's graceful shutdown, or:
///     signal.await;
/// }
/// # drop(serve(&srv_worker::Worker::standalone()));
/// ```
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct ShutdownSignal {
    disconnected: Disconnected,
}

impl Future for ShutdownSignal {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.disconnected).poll(cx).map(drop)
    }
}

/// The future returned by [`Worker::disconnected`].
///
/// ```
/// async fn serve(worker: &srv_worker::Worker) {
///     // ... start serving, then:
///     let reason = worker.disconnected().await;
///     log::info!("stopping: {reason:?}");
///     // ... stop accepting and finish the requests in flight.
/// }
/// # drop(serve(&srv_worker::Worker::standalone()));
/// ```
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Disconnected {
    shared: Arc<Shared>,
}

impl Future for Disconnected {
    type Output = DisconnectReason;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<DisconnectReason> {
        self.shared.poll_reason(cx.waker())
    }
}
