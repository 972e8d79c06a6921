//! srv runs a server as N worker processes that share its listening ports,
//! with zero-downtime rolling recycles, graceful shutdown and crash recovery,
//! all driven by Unix signals. This crate is the one dependency a server
//! adds, and [`run`] the one call, as in the node module:
//!
//! ```no_run
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     srv::run(srv::Options::default(), |worker| {
//!         println!("Hello from {}", std::process::id());
//!         worker.wait_disconnect();
//!         println!("Goodbye from {}", std::process::id());
//!         Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//!     })?;
//!     Ok(())
//! }
//! ```
//!
//! Started by hand, the program is the master: it runs itself again as 4
//! workers (`worker.count`), each of which prints its hello. Ctrl+C (or
//! `SIGTERM`) disconnects every worker, which prints its goodbye and
//! returns; the master exits 0 once all have exited.
//!
//! # What is underneath
//!
//! [`run`] is [`Worker::from_env`], [`Worker::online`] and the callback in
//! a worker, and [`Master::current_exe`] and [`Master::run`] in the master.
//! That lower level is re-exported whole ([`master`], [`worker`]) for what
//! `run` does not do: a worker that reports online only once it is ready, a
//! worker program other than this one ([`Master::new`]), a server run
//! without a master ([`Worker::standalone`]).
//!
//! The features `tokio`, `hyper`, `axum` and `actix` turn on srv-worker's
//! integrations of the same names (`srv::worker::axum::serve`, ...).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

use std::fmt;
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};

pub use srv_master::{Master, Options, OptionsError, Require};
pub use srv_worker::{DisconnectReason, ListenAddr, Listener, Worker};

/// The supervisor: options, the master, its errors (the `srv-master` crate).
pub use srv_master as master;
/// The worker side: listening sockets, reports, the disconnect, the drains
/// of tokio, hyper, axum and actix-web servers (the `srv-worker` crate).
pub use srv_worker as worker;

/// Set once [`run`] found this process to be a worker: a later call must
/// not take it for the master (see [`run`]).
static WAS_WORKER: AtomicBool = AtomicBool::new(false);

/// The exit code of a worker whose callback failed.
pub const CALLBACK_FAILED_EXIT_CODE: i32 = 1;

/// Why [`run`] failed.
///
/// It converts into an [`io::Error`], so `main` may return either.
///
/// ```
/// let mut options = srv::Options::default();
/// options.worker.count = 0;
/// let error = srv::run(options, |_worker| Ok::<(), std::io::Error>(())).unwrap_err();
/// assert!(matches!(error, srv::Error::Master(srv::master::Error::Options(_))));
/// assert_eq!(error.to_string(), "invalid option worker.count: must be at least 1");
/// ```
///
/// Its `Debug` is the message with its causes, since that is what `main`
/// prints when it returns the error (`Error: ...`); `{:#?}` shows the
/// structure.
///
/// ```
/// use std::io;
///
/// let cause = io::Error::new(io::ErrorKind::NotFound, "no channel at fd 3");
/// let error = srv::Error::Worker(cause);
/// let pid = std::process::id();
/// assert_eq!(
///     format!("{error:?}"),
///     format!("worker {pid} cannot work with its master: no channel at fd 3")
/// );
/// assert!(format!("{error:#?}").starts_with("Worker("));
/// ```
#[non_exhaustive]
pub enum Error {
    /// The master could not start or keep running: invalid options, a port
    /// that cannot be bound, workers that never start, ...
    Master(srv_master::Error),
    /// This worker could not talk to its master: the channel it inherited
    /// is not one, or the master is gone before the worker reported
    /// online; or `run` was called again in a worker.
    Worker(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Master(error) => error.fmt(f),
            Error::Worker(_) => {
                write!(f, "worker {} cannot work with its master", std::process::id())
            }
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return match self {
                Error::Master(error) => f.debug_tuple("Master").field(error).finish(),
                Error::Worker(error) => f.debug_tuple("Worker").field(error).finish(),
            };
        }
        write!(f, "{self}")?;
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The master's error is shown as it is: its own source follows.
            Error::Master(error) => error.source(),
            Error::Worker(error) => Some(error),
        }
    }
}

impl From<srv_master::Error> for Error {
    fn from(error: srv_master::Error) -> Error {
        Error::Master(error)
    }
}

impl From<Error> for io::Error {
    fn from(error: Error) -> io::Error {
        match error {
            Error::Master(error) => error.into(),
            Error::Worker(error) => error,
        }
    }
}

/// Runs this program as a server of `options.worker.count` worker
/// processes, each of which runs `callback`; the node module's
/// `srv(options, callback)`.
///
/// What it does depends on what this process is:
///
/// - **The master** (the program started by hand, by systemd, ...): checks
///   `options`, runs this very program again, with the same arguments, as
///   each worker, and supervises them (see the signals in [`master`]) until
///   a shutdown completes; then returns `Ok(())`. `callback` is not called.
/// - **A worker** (started by the master): connects to the master, reports
///   online at once (so `worker.require = online` counts it as started, as
///   node's cluster reports a worker online once it runs), and calls
///   `callback` with its [`Worker`]. `Ok` returns `Ok(())` (and `main`
///   returns: a worker that does so before it is disconnected is replaced
///   like one that crashed). An error is
///   logged (through `log` at error level, naming the pid, or on standard
///   error when no logger is installed, so that it is never lost) and the
///   process exits with [`CALLBACK_FAILED_EXIT_CODE`]: the master counts it
///   as a crash and replaces the worker after its restart delay.
/// - **The probe of an upgrade in place** (the master's `SIGUSR2` runs the
///   program on disk once to check it, see [`Master::run`]): checks what a
///   master checks before it starts anything, reports, and returns
///   `Ok(())` at once.
///
/// So `main` calls `run` first, before it starts any thread (a worker takes
/// its channel out of the environment), and returns when it returns. What
/// `main` does before runs in every process: parse the command line, not a
/// config file a worker may not be allowed to read (build `options` from it
/// in the master only, `srv::master::is_worker()` says which).
///
/// ```no_run
/// use std::io::{Read, Write};
///
/// fn main() -> Result<(), srv::Error> {
///     let mut options = srv::Options::default();
///     options.worker.count = 8;
///     srv::run(options, |worker| {
///         // Every worker gets the same socket, bound once by the master.
///         let listener = worker.listen_tcp(([127, 0, 0, 1], 8080))?;
///         listener.set_nonblocking(true)?;
///         while !worker.is_disconnected() {
///             match listener.accept() {
///                 Ok((mut stream, _peer)) => {
///                     let mut request = [0; 1024];
///                     let _ = stream.read(&mut request)?;
///                     stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhi\n")?;
///                 }
///                 Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
///                     std::thread::sleep(std::time::Duration::from_millis(10));
///                 }
///                 Err(error) => return Err(error),
///             }
///         }
///         Ok(())
///     })
/// }
/// ```
///
/// # Errors
///
/// In the master, [`Error::Master`]: invalid options, or a master that
/// could not run or gave up (see [`Master::run`]). In a worker,
/// [`Error::Worker`]: the channel from the master is invalid, or the master
/// is gone before the worker reported online, or `run` is called again in
/// a worker (which, taken for the master, would run more workers, each of
/// them doing the same). (The callback's own error ends the process, as
/// said above.)
pub fn run<F, E>(options: Options, callback: F) -> Result<(), Error>
where
    F: FnOnce(Worker) -> Result<(), E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // First, before anything else: `from_env` takes the channel's variables
    // out of the environment, which is only sound before other threads run.
    let Some(worker) = Worker::from_env().map_err(Error::Worker)? else {
        if WAS_WORKER.load(Ordering::SeqCst) {
            // The variables are gone, but this process is a worker: as a
            // master it would run this program again as workers, each of
            // which would do the same, without end.
            return Err(Error::Worker(io::Error::other(
                "srv::run was called again in a worker, which would have become a master; a \
                 worker runs its callback once",
            )));
        }
        // The master, or the probe of an upgrade in place, in which
        // `Master::run` reports and returns at once.
        Master::current_exe(options)?.run()?;
        return Ok(());
    };
    WAS_WORKER.store(true, Ordering::SeqCst);
    worker.online().map_err(Error::Worker)?;
    if let Err(error) = callback(worker) {
        let error: Box<dyn std::error::Error + Send + Sync> = error.into();
        report_failure(&*error);
        // What the callback printed without a newline is still buffered.
        let _ = io::stdout().flush();
        std::process::exit(CALLBACK_FAILED_EXIT_CODE);
    }
    Ok(())
}

/// Logs a callback's error with its causes, one line.
fn report_failure(error: &(dyn std::error::Error + 'static)) {
    let mut line = format!("worker {} failed: {error}", std::process::id());
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    if log::max_level() == log::LevelFilter::Off {
        // No logger is installed (the level stays `Off` until one is), or
        // one that is silenced: the exit code alone would not say why.
        #[expect(clippy::print_stderr, reason = "the only place left to say why a worker exits")]
        {
            eprintln!("srv: {line}");
        }
    } else {
        log::error!(target: "srv", "{line}");
    }
}
