//! The words the machine and the shell speak: the [`Event`]s the shell
//! reports, the [`Action`]s it carries out, the [`Signal`]s the master acts
//! on, how a worker ended ([`ExitStatus`]), a worker's identity
//! ([`WorkerId`]), what the probe of an upgrade reported ([`ProbeReport`]),
//! and the summary a service manager sees ([`Status`]).

use std::fmt;

use log::Level;
use srv_proto::{ListenAddr, ListenError, MasterMessage, WorkerMessage};

/// A worker's identity within one master; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct WorkerId(pub(crate) u32);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker {}", self.0)
    }
}

/// The signals the master acts on (`SIGCHLD` is the shell's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// `SIGINT`: graceful shutdown; a second one forces it.
    Int,
    /// `SIGTERM`: graceful shutdown; a second one forces it.
    Term,
    /// `SIGHUP`: rolling recycle of every worker.
    Hup,
    /// `SIGTTIN`: one worker more.
    Ttin,
    /// `SIGTTOU`: one worker fewer.
    Ttou,
    /// `SIGUSR2`: upgrade the master in place.
    Usr2,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
            Signal::Hup => "SIGHUP",
            Signal::Ttin => "SIGTTIN",
            Signal::Ttou => "SIGTTOU",
            Signal::Usr2 => "SIGUSR2",
        })
    }
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(signal) => write!(f, "signal {signal}"),
        }
    }
}

/// Something that happened, as the shell reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A signal arrived.
    Signal(Signal),
    /// The worker the machine asked for runs as `pid`.
    Spawned {
        /// The worker.
        worker: WorkerId,
        /// Its process id.
        pid: u32,
    },
    /// The worker the machine asked for could not be started at all.
    SpawnFailed {
        /// The worker.
        worker: WorkerId,
        /// Why, naming the program.
        error: String,
    },
    /// A worker sent a message.
    Message {
        /// The worker.
        worker: WorkerId,
        /// The message.
        message: WorkerMessage,
    },
    /// A worker sent bytes that are not the protocol.
    ProtocolError {
        /// The worker.
        worker: WorkerId,
        /// What was wrong.
        error: String,
    },
    /// The master could not provide the socket a worker asked for (the
    /// worker got the error in its `ListenReply`).
    ListenFailed {
        /// The worker.
        worker: WorkerId,
        /// The address it asked for.
        addr: ListenAddr,
        /// Why, naming the address, with the OS error number if any.
        error: ListenError,
    },
    /// A worker's end of the channel closed.
    ChannelClosed {
        /// The worker.
        worker: WorkerId,
    },
    /// A worker process ended and was reaped.
    Exited {
        /// The worker.
        worker: WorkerId,
        /// How it ended.
        status: ExitStatus,
    },
    /// The probe of an upgrade runs as `pid`.
    ProbeSpawned {
        /// Its process id.
        pid: u32,
        /// The program it runs, for log lines.
        program: String,
    },
    /// The probe of an upgrade could not be started: the program on disk
    /// cannot be executed.
    ProbeSpawnFailed {
        /// Why, naming the program.
        error: String,
    },
    /// The probe of an upgrade ended and was reaped.
    ProbeExited {
        /// How it ended.
        status: ExitStatus,
        /// What it wrote on its report descriptor.
        report: ProbeReport,
        /// The end of what it wrote on its standard output and error (at
        /// most a few KiB), for the log line of a failure.
        output: String,
    },
    /// The master could not execute the new program; it runs on as it was.
    ExecFailed {
        /// Why, naming the program.
        error: String,
    },
    /// What a worker's resident memory is, as the shell read it after a
    /// [`Action::SampleRss`].
    Rss {
        /// The worker.
        worker: WorkerId,
        /// Its resident set, in bytes.
        bytes: u64,
    },
    /// Time passed; deadlines up to `now` are due.
    Tick,
}

/// What the probe of an upgrade wrote on its report descriptor, as the
/// shell read it (the machine judges it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProbeReport {
    /// Nothing: the program is not an srv master, or one that predates the
    /// probe.
    Missing,
    /// Bytes that are not a report (why).
    Garbage(String),
    /// An srv master whose options are valid.
    Ready {
        /// Its srv version, for log lines.
        srv: String,
        /// The oldest and newest protocol versions of workers it accepts.
        protocol: (u32, u32),
        /// The oldest and newest handover formats it reads.
        handover: (u32, u32),
    },
    /// An srv master that refuses its options (why).
    Refused(String),
}

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start a worker process for this id, then report `Spawned` or
    /// `SpawnFailed`.
    Spawn(WorkerId),
    /// Send this message to the worker.
    Send(WorkerId, MasterMessage),
    /// Bind `addr` (or reuse the socket held for it) and send the worker a
    /// `ListenReply` with the socket or the error.
    Listen(WorkerId, ListenAddr),
    /// `SIGKILL` the worker.
    Kill(WorkerId),
    /// Close every listening socket the master holds: it is shutting down,
    /// so new connections should be refused rather than queue for nobody.
    CloseListeners,
    /// Write one log line.
    Log(Level, String),
    /// Start the probe of an upgrade (the program on disk, in probe mode),
    /// then report `ProbeSpawned` or `ProbeSpawnFailed`, and `ProbeExited`
    /// once it is reaped.
    Probe,
    /// `SIGKILL` the probe, if it still runs.
    KillProbe,
    /// At the end of this turn, re-execute the new program in place with
    /// [`Machine::handover`](super::Machine::handover); report
    /// `ExecFailed` if the exec fails.
    Exec,
    /// Read the worker's resident memory (`/proc/<pid>/statm`) and report
    /// it with [`Event::Rss`], if the worker still runs.
    SampleRss(WorkerId),
    /// Every worker is gone after a shutdown: exit with this code.
    Exit(i32),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Spawn(worker) => write!(f, "spawn {worker}"),
            Action::Send(worker, message) => write!(f, "send {worker} {message:?}"),
            Action::Listen(worker, addr) => write!(f, "listen {worker} {addr}"),
            Action::Kill(worker) => write!(f, "kill {worker}"),
            Action::CloseListeners => f.write_str("close listeners"),
            Action::Log(level, line) => write!(f, "log {level}: {line}"),
            Action::Probe => f.write_str("probe"),
            Action::KillProbe => f.write_str("kill probe"),
            Action::Exec => f.write_str("exec"),
            Action::SampleRss(worker) => write!(f, "sample rss {worker}"),
            Action::Exit(code) => write!(f, "exit {code}"),
        }
    }
}

/// Why the master stops on its own, and then exits 1 (the shell makes it
/// the typed `crate::Error` that `Master::run` returns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Before any worker had started, a worker could not get the socket it
    /// asked for: the configuration cannot work (port in use, permission
    /// denied, not in `listen.allow`).
    Listen {
        /// The address asked for.
        addr: ListenAddr,
        /// Why, naming the address, with the OS error number if any.
        error: ListenError,
    },
    /// `worker.max_start_failures` failed starts in a row before any worker
    /// started; the message names the last one.
    NoWorkerStarted(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Listen { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            Failure::NoWorkerStarted(why) => f.write_str(why),
        }
    }
}

/// What the master is doing as a whole, as a service manager sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServicePhase {
    /// Not every worker has started yet, ever.
    Starting,
    /// Every worker started once; serving.
    Ready,
    /// A recycle or an upgrade is in progress.
    Reloading,
    /// Shutting down.
    Stopping,
}

/// A summary of the master's state: [`Machine::status`].
///
/// [`Machine::status`]: super::Machine::status
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    /// What the master is doing.
    pub(crate) phase: ServicePhase,
    /// Workers started and serving.
    pub(crate) started: usize,
    /// Workers wanted.
    pub(crate) target: usize,
    /// Worker processes, in any state.
    pub(crate) workers: usize,
    /// Why the master is stopping on its own, if it is (it then exits 1).
    pub(crate) failure: Option<String>,
    /// The upgrade in progress, if any.
    pub(crate) upgrading: Option<Upgrading>,
    /// How the last upgrade went wrong (`failed: ...` or `incomplete:
    /// ...`), until the next one begins.
    pub(crate) upgrade_failure: Option<String>,
}

/// Where an upgrade is, as a service manager sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upgrading {
    /// The new program is being probed, or executed.
    Probing,
    /// The new master recycles the workers of the old program.
    Recycling,
}

impl fmt::Display for Status {
    /// A line for `STATUS=`, such as `4/4 workers ready`; a master that
    /// stops on its own says why, and systemd shows that line after it
    /// exited.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Status { phase, started, target, workers, ref failure, upgrading, ref upgrade_failure } =
            *self;
        if let Some(failure) = failure {
            return write!(f, "failed: {failure}; stopping: {workers} workers left");
        }
        match (phase, upgrading) {
            (ServicePhase::Starting, _) => write!(f, "starting: {started}/{target} workers ready")?,
            (ServicePhase::Ready, _) => write!(f, "{started}/{target} workers ready")?,
            (ServicePhase::Reloading, Some(Upgrading::Probing)) => {
                write!(f, "upgrading: probing the new program; {started}/{target} workers ready")?
            }
            (ServicePhase::Reloading, Some(Upgrading::Recycling)) => {
                write!(f, "upgrading: recycling: {started}/{target} workers ready")?
            }
            (ServicePhase::Reloading, None) => {
                write!(f, "recycling: {started}/{target} workers ready")?
            }
            (ServicePhase::Stopping, _) => return write!(f, "stopping: {workers} workers left"),
        }
        match upgrade_failure {
            Some(why) if upgrading.is_none() => write!(f, "; upgrade {why}"),
            _ => Ok(()),
        }
    }
}
