//! The supervisor of srv: runs a server as N worker processes that share
//! listening sockets, with rolling recycles, graceful shutdown and crash
//! recovery, all driven by Unix signals.
//!
//! ```no_run
//! use srv_master::{Master, Options};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     if srv_master::is_worker() {
//!         // This process is one of the workers: serve (see srv-worker).
//!         return Ok(());
//!     }
//!     let mut options = Options::default();
//!     options.worker.count = 4;
//!     // Re-execute this very program as each worker, like node's cluster.
//!     Master::current_exe(options)?.run()?;
//!     Ok(())
//! }
//! ```
//!
//! # Signals
//!
//! | signal | effect |
//! |---|---|
//! | `SIGINT`, `SIGTERM` | graceful shutdown; a second one forces it |
//! | `SIGHUP` | rolling recycle of every worker (a new binary on disk runs) |
//! | `SIGTTIN` / `SIGTTOU` | one worker more / fewer |
//! | `SIGUSR2` | upgrade the master in place: probe the program on disk, execute it under the same pid with every socket and worker handed over, recycle the workers onto it |
//! | `SIGCHLD` | reap children |
//!
//! The decisions live in a pure state machine, private to this crate, that
//! tests drive without processes or clocks; a thin mio loop turns signals,
//! socket readiness, child exits and deadlines into its events and carries
//! out its actions.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

#[allow(unsafe_code)]
mod activation;
mod backoff;
mod event_loop;
mod listeners;
mod machine;
mod notify;
mod options;
#[allow(unsafe_code)]
mod spawn;
mod upgrade;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::Command;

pub use options::{
    DEFAULT_MAX_ADDRESSES, DEFAULT_MAX_START_FAILURES, ListenOptions, MAX_DURATION, MAX_WORKERS,
    Options, OptionsError, RecycleOptions, Require, RestartOptions, ShutdownOptions, WorkerOptions,
};

/// Whether this process was started by an srv master as one of its workers.
///
/// ```
/// assert!(!srv_master::is_worker());
/// ```
pub fn is_worker() -> bool {
    std::env::var_os(srv_proto::env::ENV_CHANNEL_FD).is_some()
}

/// Why the master could not start or keep running.
///
/// It converts into an [`io::Error`], so `main` may return either.
///
/// ```
/// use srv_master::{Error, Master, Options};
///
/// let mut options = Options::default();
/// options.worker.count = 0;
/// let error = Master::current_exe(options).unwrap_err();
/// assert!(matches!(&error, Error::Options(error) if error.key == "worker.count"));
/// assert_eq!(error.to_string(), "invalid option worker.count: must be at least 1");
/// assert_eq!(std::io::Error::from(error).kind(), std::io::ErrorKind::InvalidInput);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An option is invalid.
    Options(OptionsError),
    /// A system call the master cannot do without failed.
    Io {
        /// What the master was doing.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// The master gave up: a worker could not listen on its address before
    /// any worker had started (port in use; the master stopped its workers
    /// first), no worker could start (`worker.max_start_failures` failed
    /// starts in a row, the last one named; the master stopped its workers
    /// first), or `worker.user` / `worker.group` cannot be used (no such
    /// user or group, or the master is not root; no worker was started).
    Failed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Options(error) => error.fmt(f),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Both messages already include their cause: returning it here
            // too would print it twice ("Caused by: ...").
            Error::Options(_) | Error::Io { .. } => None,
            Error::Failed(_) => None,
        }
    }
}

impl From<OptionsError> for Error {
    fn from(error: OptionsError) -> Error {
        Error::Options(error)
    }
}

impl From<Error> for io::Error {
    fn from(error: Error) -> io::Error {
        match error {
            Error::Options(error) => io::Error::new(io::ErrorKind::InvalidInput, error),
            Error::Io { context, source } => {
                io::Error::new(source.kind(), format!("{context}: {source}"))
            }
            Error::Failed(why) => io::Error::other(why),
        }
    }
}

/// A master, ready to run.
///
/// ```no_run
/// use srv_master::{Master, Options};
///
/// let master = Master::current_exe(Options::from_file("/etc/my-server/srv.toml")?)?;
/// master.run()?; // until SIGINT or SIGTERM
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Master {
    options: Options,
    command: Box<dyn FnMut() -> Command>,
    /// This program, which `SIGUSR2` probes and executes in place.
    program: Result<upgrade::Program, String>,
}

impl fmt::Debug for Master {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Master").field("options", &self.options).finish_non_exhaustive()
    }
}

impl Master {
    /// A master whose workers run the command `command` builds, once per
    /// worker (so each gets a fresh `Command`).
    ///
    /// Workers inherit the master's environment, standard streams and
    /// process group, plus the channel (see `srv_proto::env`).
    ///
    /// ```no_run
    /// use std::process::Command;
    /// let master = srv_master::Master::new(srv_master::Options::default(), || {
    ///     let mut command = Command::new("/usr/local/bin/my-server");
    ///     command.arg("--serve");
    ///     command
    /// })?;
    /// master.run()?;
    /// # Ok::<(), srv_master::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Options`] when the options are invalid.
    pub fn new(
        options: Options,
        command: impl FnMut() -> Command + 'static,
    ) -> Result<Master, Error> {
        options.validate()?;
        Ok(Master { options, command: Box::new(command), program: upgrade::Program::current() })
    }

    /// A master whose workers run this very program with the same arguments.
    ///
    /// The program's path is resolved once, now, so replacing the file at
    /// that path and sending `SIGHUP` runs the new code (after a replacement
    /// `/proc/self/exe` points at the deleted old file, so it is not read
    /// again).
    ///
    /// ```
    /// let mut options = srv_master::Options::default();
    /// options.worker.count = 2;
    /// let master = srv_master::Master::current_exe(options)?;
    /// assert_eq!(master.options().worker.count, 2);
    /// // `master.run()` would now run this program twice and supervise it.
    /// # Ok::<(), srv_master::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Invalid options, or the program's path cannot be found.
    pub fn current_exe(options: Options) -> Result<Master, Error> {
        let program: PathBuf = std::env::current_exe().map_err(|source| Error::Io {
            context: "cannot find this program's path".into(),
            source,
        })?;
        let args: Vec<OsString> = std::env::args_os().skip(1).collect();
        Master::new(options, move || {
            let mut command = Command::new(&program);
            command.args(&args);
            command
        })
    }

    /// The options this master runs with.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let master = srv_master::Master::current_exe(srv_master::Options::default())?;
    /// assert_eq!(master.options().shutdown.timeout, Duration::from_secs(15));
    /// # Ok::<(), srv_master::Error>(())
    /// ```
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Runs until a shutdown completes: starts the workers, supervises
    /// them, and returns once every worker has exited after `SIGINT` or
    /// `SIGTERM`.
    ///
    /// Reaps every child of this process, so call it from a process that
    /// waits for no children of its own.
    ///
    /// On `SIGUSR2` the master re-executes its own program (the path and
    /// arguments this process started with) under the same pid. That
    /// program runs its `main` again, so `main` must reach this call the
    /// same way: first as the upgrade's probe, in which `run` only checks
    /// the options and returns `Ok(())` at once without starting anything
    /// (`main` should then just return), then as the new master, in which
    /// `run` adopts the previous master's workers and sockets. Whatever the
    /// process does besides (other threads) ends with the exec.
    ///
    /// ```no_run
    /// use srv_master::{Master, Options};
    ///
    /// let master = Master::current_exe(Options::default())?;
    /// if let Err(error) = master.run() {
    ///     eprintln!("srv: {error}"); // for example "cannot listen on 0.0.0.0:80: ..."
    ///     std::process::exit(1);
    /// }
    /// # Ok::<(), srv_master::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The event loop or the signal handlers cannot be set up
    /// ([`Error::Io`]); `worker.user` or `worker.group` names no user or
    /// group, or asks for another user while the master is not root
    /// ([`Error::Failed`], before any worker starts); or the master gave up
    /// after stopping its workers ([`Error::Failed`]: before any worker had
    /// started, a worker could not get its listening socket, or one worker
    /// failed to start `worker.max_start_failures` times in a row). In a
    /// master an upgrade executed, a handover from the previous master
    /// that is not one, or names a descriptor that is not what it claims
    /// ([`Error::Failed`], before anything starts); in the probe of an
    /// upgrade, what the probe reported as refused ([`Error::Failed`]).
    pub fn run(self) -> Result<(), Error> {
        if let Some(probe) = upgrade::ProbeRequest::from_env() {
            // The probe of an upgrade: check what a master checks before it
            // starts anything, report, and start nothing.
            let credentials = spawn::Credentials::resolve(
                self.options.worker.user.as_deref(),
                self.options.worker.group.as_deref(),
            );
            let refused = credentials.err();
            probe.answer(refused.clone());
            return refused.map_or(Ok(()), |why| Err(Error::Failed(why)));
        }
        event_loop::run(self.options, self.command, self.program).map(drop)
    }
}
