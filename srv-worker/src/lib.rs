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
//!     let listener = worker.listen_tcp("127.0.0.1:8080")?;
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
//! # Master death
//!
//! When the master dies, even by `SIGKILL`, the kernel closes its end of the
//! channel; the worker reads end-of-file and counts it as a disconnect, so
//! a worker that honours disconnects never outlives its master for long.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod listener;
mod shared;

use std::future::Future;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::fd::BorrowedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

pub use listener::Listener;
pub use srv_proto::ListenAddr;
use srv_proto::{Channel, PROTOCOL_VERSION, WorkerMessage, env};

use shared::Shared;

/// Why a worker was disconnected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The master asked: shutdown, recycle, or one worker fewer.
    Requested,
    /// The master's end of the channel closed: the master is gone.
    MasterGone,
    /// The master refused this worker (for example a protocol version
    /// mismatch), or sent something this worker cannot read.
    Refused(String),
}

/// The connection of a worker process to its master, or a standalone stand-in.
///
/// Cheap to share: it is `Send + Sync`, and every method takes `&self`.
#[derive(Debug)]
pub struct Worker {
    /// `None` when standalone.
    link: Option<Link>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Link {
    writer: Mutex<Channel>,
    /// Serialises `listen` calls so each reply matches its request.
    listen_lock: Mutex<()>,
    worker_id: Option<u32>,
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
    /// # Errors
    ///
    /// The inherited channel is invalid (not a Unix stream socket), or the
    /// master is already gone.
    pub fn from_env() -> io::Result<Option<Worker>> {
        let worker_id = std::env::var(env::ENV_WORKER_ID).ok().and_then(|id| id.parse().ok());
        let Some(stream) = env::take_inherited_channel()? else {
            return Ok(None);
        };
        Worker::connect(stream, worker_id).map(Some)
    }

    /// Connects over an already open channel: what [`Worker::from_env`] does
    /// after taking the inherited socket. Useful for tests and for programs
    /// that receive the channel some other way.
    ///
    /// # Errors
    ///
    /// The socket cannot be cloned for the reader thread, or `Hello` cannot
    /// be sent.
    pub fn connect(stream: UnixStream, worker_id: Option<u32>) -> io::Result<Worker> {
        stream.set_nonblocking(false)?;
        let reader = Channel::new(stream.try_clone()?);
        let shared = Shared::start(reader)?;
        let link = Link {
            writer: Mutex::new(Channel::new(stream)),
            listen_lock: Mutex::new(()),
            worker_id,
        };
        let worker = Worker { link: Some(link), shared };
        worker.send(&WorkerMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            pid: std::process::id(),
        })?;
        Ok(worker)
    }

    /// A worker without a master: reports go nowhere, [`Worker::listen`]
    /// binds directly, and it is never disconnected.
    ///
    /// ```
    /// let worker = srv_worker::Worker::standalone();
    /// assert!(!worker.is_supervised());
    /// worker.online().unwrap();
    /// let listener = worker.listen_tcp("127.0.0.1:0").unwrap();
    /// assert_ne!(listener.local_addr().unwrap().port(), 0);
    /// ```
    pub fn standalone() -> Worker {
        Worker { link: None, shared: Shared::standalone() }
    }

    /// Whether a master supervises this worker.
    pub fn is_supervised(&self) -> bool {
        self.link.is_some()
    }

    /// The id the master gave this worker (never reused within one master),
    /// `None` when standalone.
    pub fn id(&self) -> Option<u32> {
        self.link.as_ref().and_then(|link| link.worker_id)
    }

    /// Reports that this worker is ready (`worker.require = online`).
    ///
    /// # Errors
    ///
    /// The master is gone.
    pub fn online(&self) -> io::Result<()> {
        self.send(&WorkerMessage::Online)
    }

    /// A listening socket for `addr`, shared with every other worker.
    ///
    /// `addr` is `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` or `unix:PATH`
    /// (see [`ListenAddr`]). Under a master the master binds the address
    /// once (or reuses the socket it holds) and passes it over; every worker
    /// asking for the same text gets the same socket, port 0 included. The
    /// worker then reports `Listening` with the socket's actual address,
    /// which is what `worker.require = listen` waits for. Standalone, it
    /// binds directly.
    ///
    /// The socket is blocking. Its `O_NONBLOCK` flag is shared by every
    /// process holding it, so all workers of one master should agree on it.
    ///
    /// # Errors
    ///
    /// A bad address, or the bind failed (port in use, permission denied);
    /// the message names the address.
    pub fn listen(&self, addr: &str) -> io::Result<Listener> {
        let addr: ListenAddr = addr.parse()?;
        let Some(link) = &self.link else {
            return listener::bind(&addr);
        };
        let _one_at_a_time = link.listen_lock.lock().unwrap_or_else(|poison| poison.into_inner());
        self.shared.expect_reply();
        self.send(&WorkerMessage::ListenRequest { addr: addr.clone() })?;
        let listener = self.shared.wait_reply(&addr)?;
        self.send(&WorkerMessage::Listening { addr: listener.local_addr()? })?;
        Ok(listener)
    }

    /// [`Worker::listen`] for a TCP address.
    ///
    /// # Errors
    ///
    /// As [`Worker::listen`], and `InvalidInput` for a Unix socket address.
    pub fn listen_tcp(&self, addr: &str) -> io::Result<TcpListener> {
        self.listen(addr)?.into_tcp()
    }

    /// [`Worker::listen`] for a Unix-domain socket at `path`.
    ///
    /// # Errors
    ///
    /// As [`Worker::listen`].
    pub fn listen_unix(&self, path: impl AsRef<std::path::Path>) -> io::Result<UnixListener> {
        let addr = format!("unix:{}", path.as_ref().display());
        self.listen(&addr)?.into_unix()
    }

    /// Reports an intentional exit with `code`, then exits the process.
    ///
    /// The master does not count the exit as a crash, so it replaces the
    /// worker without a restart delay.
    pub fn exit(&self, code: i32) -> ! {
        // The process exits either way; a master that is gone needs no report.
        let _ = self.send(&WorkerMessage::Exit { code });
        let _ = io::stdout().flush();
        std::process::exit(code)
    }

    /// Whether the worker was disconnected: asked to stop, refused, or its
    /// master is gone. Never blocks.
    pub fn is_disconnected(&self) -> bool {
        self.shared.reason().is_some()
    }

    /// Why the worker was disconnected, `None` while it is not.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        self.shared.reason()
    }

    /// Blocks until the worker is disconnected. Standalone, blocks forever.
    pub fn wait_disconnect(&self) -> DisconnectReason {
        self.shared.wait()
    }

    /// A future that completes when the worker is disconnected, for any
    /// executor (it needs no runtime).
    ///
    /// ```no_run
    /// async fn serve(worker: srv_worker::Worker) {
    ///     // ... start serving, then:
    ///     let reason = worker.disconnected().await;
    ///     eprintln!("stopping: {reason:?}");
    /// }
    /// # drop(serve(srv_worker::Worker::standalone()));
    /// ```
    pub fn disconnected(&self) -> Disconnected {
        Disconnected { shared: Arc::clone(&self.shared) }
    }

    /// A descriptor that becomes readable once the worker is disconnected,
    /// for servers that run their own `poll`/`epoll`/mio loop. Never read it:
    /// it stays readable from then on.
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

/// The future returned by [`Worker::disconnected`].
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
