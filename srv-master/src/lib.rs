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
mod rss;
#[allow(unsafe_code)]
mod spawn;
mod upgrade;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;

use srv_proto::ListenAddr;
use std::process::Command;

pub use options::{
    DEFAULT_MAX_ADDRESSES, DEFAULT_MAX_START_FAILURES, ListenOptions, MAX_DURATION, MAX_WORKERS,
    MIN_MAX_AGE, MIN_WATCHDOG, Options, OptionsError, RSS_SAMPLE_INTERVAL, RecycleOptions, Require,
    RestartOptions, ShutdownOptions, WorkerOptions,
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
/// It converts into an [`io::Error`], so `main` may return either. Its
/// message names what failed; the cause, when it is an [`io::Error`], is
/// its [`source`](std::error::Error::source) (`{:#}` of `anyhow` shows
/// both).
///
/// ```
/// use srv_master::{Error, Master, Options};
///
/// let mut options = Options::default();
/// options.worker.count = 0;
/// let error = Master::current_exe(options).unwrap_err();
/// assert!(matches!(&error, Error::Options(error) if error.key() == Some("worker.count")));
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
        /// The error, also [`source`](std::error::Error::source).
        source: io::Error,
    },
    /// Before any worker had started, a worker could not get its listening
    /// socket (port in use, permission denied, not in `listen.allow`); the
    /// master stopped its workers first.
    Listen {
        /// The address the worker asked for.
        addr: ListenAddr,
        /// Why, naming the address (its kind is the OS error's, such as
        /// `AddrInUse`), also [`source`](std::error::Error::source).
        source: io::Error,
    },
    /// `worker.user` or `worker.group` cannot be used: no such user or
    /// group, or the master is not root. No worker was started. (In the
    /// probe of an upgrade, what the probe reported.)
    Credentials(String),
    /// No worker could start: `worker.max_start_failures` failed starts in
    /// a row, the last one named; the master stopped its workers first.
    NoWorkerStarted(String),
    /// This master was executed by an upgrade in place, and the handover of
    /// the previous master is not one, or names a descriptor that is not
    /// what it claims. Nothing was started.
    Handover(String),
    /// The master stopped with this exit code without a failure of its own
    /// to name.
    Stopped {
        /// The exit code.
        code: i32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Options(error) => error.fmt(f),
            // The cause is the source: not repeated here, so that a chain
            // ("{:#}", "Caused by:") shows it once.
            Error::Io { context, .. } => f.write_str(context),
            Error::Listen { addr, .. } => write!(f, "cannot listen on {addr}"),
            Error::Credentials(why) | Error::NoWorkerStarted(why) => f.write_str(why),
            Error::Handover(why) => {
                write!(f, "cannot adopt the workers of the previous master: {why}")
            }
            Error::Stopped { code } => write!(f, "stopped with exit code {code}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Listen { source, .. } => Some(source),
            // Its message is all there is.
            Error::Options(_) => None,
            Error::Credentials(_)
            | Error::NoWorkerStarted(_)
            | Error::Handover(_)
            | Error::Stopped { .. } => None,
        }
    }
}

impl From<OptionsError> for Error {
    fn from(error: OptionsError) -> Error {
        Error::Options(error)
    }
}

impl From<machine::Failure> for Error {
    fn from(failure: machine::Failure) -> Error {
        match failure {
            machine::Failure::Listen { addr, error } => {
                Error::Listen { addr, source: error.into() }
            }
            machine::Failure::NoWorkerStarted(why) => Error::NoWorkerStarted(why),
        }
    }
}

impl From<Error> for io::Error {
    /// The same kind as the cause where there is one (`AddrInUse`,
    /// `PermissionDenied`), `InvalidInput` for options, `Other` otherwise;
    /// the message with its cause.
    fn from(error: Error) -> io::Error {
        match error {
            Error::Options(error) => io::Error::new(io::ErrorKind::InvalidInput, error),
            Error::Io { context, source } => {
                io::Error::new(source.kind(), format!("{context}: {source}"))
            }
            Error::Listen { addr, source } => {
                io::Error::new(source.kind(), format!("cannot listen on {addr}: {source}"))
            }
            other => io::Error::other(other.to_string()),
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
    ///     // For example "cannot listen on 0.0.0.0:80: bind 0.0.0.0:80: Permission denied".
    ///     let cause = std::error::Error::source(&error).map(|cause| format!(": {cause}"));
    ///     eprintln!("srv: {error}{}", cause.unwrap_or_default());
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
    /// ([`Error::Credentials`], before any worker starts); or the master
    /// gave up after stopping its workers: before any worker had started, a
    /// worker could not get its listening socket ([`Error::Listen`]), or one
    /// worker failed to start `worker.max_start_failures` times in a row
    /// ([`Error::NoWorkerStarted`]). In a master an upgrade executed, a
    /// handover from the previous master that is not one, or names a
    /// descriptor that is not what it claims ([`Error::Handover`], before
    /// anything starts); in the probe of an upgrade, what the probe reported
    /// as refused ([`Error::Credentials`]).
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
            return refused.map_or(Ok(()), |why| Err(Error::Credentials(why)));
        }
        event_loop::run(self.options, self.command, self.program).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use srv_proto::ListenError;

    use super::*;

    #[test]
    fn a_listen_failure_is_typed_with_its_address_and_its_cause_as_source() {
        let addr: ListenAddr = "127.0.0.1:8080".parse().unwrap();
        let message = "bind 127.0.0.1:8080: Address already in use (os error 98)".to_owned();
        let failure = machine::Failure::Listen {
            addr: addr.clone(),
            error: ListenError { errno: Some(nix::libc::EADDRINUSE), message: message.clone() },
        };
        // What the machine logged is what the error chain says.
        let logged = failure.to_string();
        let error = Error::from(failure);
        let Error::Listen { addr: named, source } = &error else { panic!("{error:?}") };
        assert_eq!(named, &addr);
        assert_eq!(source.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(error.to_string(), "cannot listen on 127.0.0.1:8080");
        let cause = error.source().expect("a source");
        assert_eq!(cause.to_string(), message);
        assert_eq!(format!("{error}: {cause}"), logged);
        let io = io::Error::from(error);
        assert_eq!(io.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(io.to_string(), logged);
    }

    #[test]
    fn an_io_failure_has_its_io_error_as_source_once() {
        let error = Error::Io {
            context: "cannot create the event loop".into(),
            source: io::Error::from(io::ErrorKind::OutOfMemory),
        };
        assert_eq!(error.to_string(), "cannot create the event loop");
        let source = error.source().and_then(|source| source.downcast_ref::<io::Error>());
        assert_eq!(source.map(io::Error::kind), Some(io::ErrorKind::OutOfMemory));
        let io = io::Error::from(error);
        assert_eq!(io.kind(), io::ErrorKind::OutOfMemory);
        assert!(io.to_string().starts_with("cannot create the event loop: "), "{io}");
    }

    #[test]
    fn failures_without_an_io_cause_say_it_all_and_have_no_source() {
        let why = "no worker could start: 3 failed starts in a row".to_owned();
        let error = Error::from(machine::Failure::NoWorkerStarted(why.clone()));
        assert!(matches!(&error, Error::NoWorkerStarted(said) if *said == why));
        assert_eq!(error.to_string(), why);
        assert!(error.source().is_none());
        let credentials = Error::Credentials("worker.user nobody-here: no such user".into());
        assert!(credentials.source().is_none());
        assert_eq!(io::Error::from(credentials).kind(), io::ErrorKind::Other);
        assert_eq!(Error::Stopped { code: 2 }.to_string(), "stopped with exit code 2");
    }
}
