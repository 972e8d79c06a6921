//! [`Options`]: the node module's option names and defaults, validated.
//!
//! Durations are milliseconds in config files (`timeout = 2000`) and
//! [`Duration`]s in Rust. Deserialisation rejects unknown keys, so a typo in
//! a config file is an error naming the key rather than a silent default.
//! [`Options::from_file`] loads TOML or JSON (see the `file` module).

mod file;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::backoff::MIN_BACKOFF_STEP;

/// Everything a [`crate::Master`] can be told, grouped as the node module's dotted
/// names: `worker.count` is `options.worker.count`.
///
/// ```
/// use std::time::Duration;
/// use srv_master::{Options, Require};
///
/// let mut options = Options::default();
/// options.worker.count = 8;
/// options.worker.require = Require::Listen;
/// options.shutdown.timeout = Duration::from_secs(30);
/// options.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Options {
    /// `worker.*`: how many workers, and what counts as started.
    pub worker: WorkerOptions,
    /// `recycle.*`: rolling restarts on `SIGHUP`.
    pub recycle: RecycleOptions,
    /// `shutdown.*`: graceful shutdown on `SIGINT`/`SIGTERM`.
    pub shutdown: ShutdownOptions,
    /// `restart.*`: replacing crashed workers.
    pub restart: RestartOptions,
    /// `listen.*`: which addresses workers may ask the master to bind.
    pub listen: ListenOptions,
}

/// `listen.*` options.
///
/// ```
/// let mut options = srv_master::Options::default();
/// options.listen.allow = vec!["0.0.0.0:80".parse().unwrap(), "unix:/run/app.sock".parse().unwrap()];
/// options.listen.unix_mode = Some(0o660); // `unix_mode = "0660"` in a config file
/// options.validate().unwrap();
///
/// let from_file = srv_master::Options::from_toml_str("[listen]\nunix_mode = \"0660\"\n").unwrap();
/// assert_eq!(from_file.listen.unix_mode, Some(0o660));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ListenOptions {
    /// `listen.allow`: when not empty, the only addresses the master binds
    /// for its workers; a worker asking for any other gets an error and
    /// nothing is bound, so a compromised worker cannot make a root master
    /// open arbitrary ports (default: empty, anything goes).
    ///
    /// Unix socket paths are the exception to "empty means anything": when
    /// workers run as another user (`worker.user`), the master binds a
    /// Unix path only if this list names it, since a path is a file that a
    /// root master creates, and removes at exit, on a worker's word.
    pub allow: Vec<srv_proto::ListenAddr>,
    /// `listen.unix_mode`: the permission bits of the Unix socket files the
    /// master creates, such as `0o660` (`"0660"`, an octal string, in a
    /// config file). A client needs write permission on the file to
    /// connect, and a root master's socket is otherwise `0755 root`, which
    /// only root can connect to (default: none, the bits the master's umask
    /// leaves).
    #[serde(deserialize_with = "octal_mode::deserialize")]
    pub unix_mode: Option<u32>,
    /// `listen.max_addresses`: the most distinct addresses the master binds
    /// for its workers over its whole life (default
    /// [`DEFAULT_MAX_ADDRESSES`]). Each is a descriptor (two for a Unix
    /// path: the socket and its directory) held until the master exits, so
    /// without a cap, workers asking for ever new addresses would run it out
    /// of descriptors. Sockets adopted from the service manager do not
    /// count; 0 means the master binds nothing itself.
    pub max_addresses: usize,
}

/// The default of `listen.max_addresses`: far more than a server listens
/// on, far fewer than the master's descriptors.
///
/// ```
/// assert_eq!(srv_master::Options::default().listen.max_addresses, srv_master::DEFAULT_MAX_ADDRESSES);
/// ```
pub const DEFAULT_MAX_ADDRESSES: usize = 64;

impl Default for ListenOptions {
    fn default() -> ListenOptions {
        ListenOptions { allow: Vec::new(), unix_mode: None, max_addresses: DEFAULT_MAX_ADDRESSES }
    }
}

/// `worker.*` options.
///
/// ```
/// use std::time::Duration;
///
/// let mut options = srv_master::Options::default();
/// options.worker.count = 2;
/// options.worker.timeout = Duration::from_secs(10); // a slow-starting server
/// options.validate().unwrap();
///
/// // The same in a config file:
/// let from_file = srv_master::Options::from_toml_str("[worker]\ncount = 2\ntimeout = 10000\n");
/// assert_eq!(from_file.unwrap(), options);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// `worker.count`: number of worker processes (default 4).
    pub count: usize,
    /// `worker.ignore_sigint`: workers ignore `SIGINT` (default true), since
    /// Ctrl+C reaches the whole process group and the master drives the
    /// graceful shutdown.
    pub ignore_sigint: bool,
    /// `worker.require`: the state that counts as started (default `online`).
    pub require: Require,
    /// `worker.timeout`: time to reach `require` before the worker is killed
    /// and replaced (default 2000 ms).
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// `worker.user`: run workers as this user (name or numeric uid); the
    /// master must be root. Supplementary groups are dropped (default: the
    /// master's own user). A master that is not root may name only its own
    /// user, which changes nothing; another user is an error at startup.
    pub user: Option<String>,
    /// `worker.group`: run workers with this group (name or numeric gid);
    /// defaults to the primary group of `worker.user`. It needs
    /// `worker.user`: alone it would leave the workers running as root.
    pub group: Option<String>,
    /// `worker.max_start_failures`: before any worker has ever started,
    /// the master gives up (stops its workers and exits 1, naming the last
    /// failure) once one worker has failed to start this many times in a
    /// row: exited or crashed before `require`, timed out, could not be
    /// spawned (default 3, at least 1). Once a worker has started, crashes
    /// are restarted with the backoff, however many.
    pub max_start_failures: u32,
    /// `worker.watchdog`: a started worker must prove that its serving
    /// loop runs at least this often (`Worker::alive`, or srv-worker's
    /// serve helpers, which do it), or it is killed as hung and replaced
    /// like a crashed worker (default: none, no watchdog; at least
    /// [`MIN_WATCHDOG`]). The master tells each worker the period when it
    /// spawns it. Workers of protocol 1, which cannot send the heartbeat,
    /// are never watched.
    #[serde(with = "millis_opt")]
    pub watchdog: Option<Duration>,
    /// `worker.max_rss`: a started worker whose resident memory is above
    /// this many MiB is recycled: its replacement starts first, then it
    /// drains, as in one step of a `SIGHUP` recycle (default: none, no
    /// limit). The master reads each worker's `/proc/<pid>/statm` about
    /// once a second ([`RSS_SAMPLE_INTERVAL`]).
    pub max_rss: Option<u64>,
    /// `worker.max_age`: each worker is recycled after about this long
    /// (replacement first, then the old one drains), within ±10 % so that
    /// workers started together do not rotate together; one at a time
    /// (default: none, no limit; at least [`MIN_MAX_AGE`]).
    #[serde(with = "millis_opt")]
    pub max_age: Option<Duration>,
}

/// The shortest `worker.watchdog`: a worker sends its heartbeat a few times
/// per period, so a floor keeps heartbeats cheap (at most a handful a
/// second per worker) and a typo (`watchdog = 5` for five seconds) from
/// killing every worker at once.
///
/// ```
/// use std::time::Duration;
///
/// let mut options = srv_master::Options::default();
/// options.worker.watchdog = Some(Duration::from_millis(999));
/// let error = options.validate().unwrap_err();
/// assert_eq!(error.to_string(), "invalid option worker.watchdog: must be at least 1000 ms");
/// options.worker.watchdog = Some(srv_master::MIN_WATCHDOG);
/// options.validate().unwrap();
/// ```
pub const MIN_WATCHDOG: Duration = Duration::from_millis(1000);

/// The shortest `worker.max_age`: below it, a typo (`max_age = 60` for a
/// minute) would keep the master replacing a worker many times a second.
///
/// ```
/// let mut options = srv_master::Options::default();
/// options.worker.max_age = Some(std::time::Duration::from_millis(10));
/// assert_eq!(options.validate().unwrap_err().key(), Some("worker.max_age"));
/// ```
pub const MIN_MAX_AGE: Duration = Duration::from_millis(1000);

/// How often the master reads each started worker's resident memory when
/// `worker.max_rss` is set: one read of `/proc/<pid>/statm` per worker per
/// interval.
///
/// ```
/// assert_eq!(srv_master::RSS_SAMPLE_INTERVAL, std::time::Duration::from_secs(1));
/// ```
pub const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(1000);

/// `recycle.*` options.
///
/// ```
/// use std::time::Duration;
///
/// let options = srv_master::Options::from_toml_str("[recycle]\ntimeout = 60000\n").unwrap();
/// assert_eq!(options.recycle.timeout, Duration::from_secs(60));
/// assert_eq!(options.recycle.parallel, 1);
///
/// // Replace two workers at a time: up to two more processes during a
/// // recycle, which ends about twice as fast.
/// let options = srv_master::Options::from_toml_str("[recycle]\nparallel = 2\n").unwrap();
/// assert_eq!(options.recycle.parallel, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RecycleOptions {
    /// `recycle.timeout`: grace for each old worker during a recycle, and for
    /// a worker removed by `SIGTTOU`, before `SIGKILL` (default 15000 ms).
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// `recycle.parallel`: how many replacements start at once during a
    /// recycle (default 1, the node module's one at a time), from 1 to
    /// `worker.count`. Each old worker retires as soon as its own
    /// replacement has started, so `worker.count` started workers serve
    /// throughout, and up to this many more processes run meanwhile: more
    /// memory and CPU during the recycle, for a recycle that ends sooner.
    pub parallel: usize,
}

/// `shutdown.*` options.
///
/// Keep the process monitor's own stop timeout above `shutdown.timeout`
/// (systemd's `TimeoutStopSec`, a container's stop grace period), or it
/// kills the workers first.
///
/// ```
/// use std::time::Duration;
///
/// let mut options = srv_master::Options::default();
/// options.shutdown.timeout = Duration::from_secs(25);
/// options.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ShutdownOptions {
    /// `shutdown.timeout`: grace for each worker during shutdown before
    /// `SIGKILL` (default 15000 ms).
    #[serde(with = "millis")]
    pub timeout: Duration,
}

/// `restart.*` options.
///
/// ```
/// use std::time::Duration;
///
/// let options = srv_master::Options::from_json_str(
///     r#"{ "restart": { "delay": 1000, "max_delay": 30000 } }"#,
/// ).unwrap();
/// assert_eq!(options.restart.delay, Duration::from_secs(1));
/// assert_eq!(options.restart.max_delay, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RestartOptions {
    /// `restart.delay`: wait after a crash before starting a replacement
    /// (default 5000 ms). Crashes in a row double it, up to `max_delay`.
    #[serde(with = "millis")]
    pub delay: Duration,
    /// `restart.max_delay`: the cap of the doubling restart delay (default
    /// 60000 ms, at least 100 ms). A worker that stayed up this long ends a crash streak.
    #[serde(with = "millis")]
    pub max_delay: Duration,
}

/// The state in which a worker counts as started (`worker.require`).
///
/// ```
/// use srv_master::Require;
///
/// assert_eq!("listen".parse::<Require>().unwrap(), Require::Listen);
/// assert_eq!(Require::default().to_string(), "online");
/// assert_eq!("ready".parse::<Require>().unwrap_err().key(), Some("worker.require"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Require {
    /// The worker called `online()`.
    #[default]
    Online,
    /// The worker got a listening socket with `listen()`.
    Listen,
}

impl<'de> Deserialize<'de> for Require {
    /// From `"online"` or `"listen"`. Written out rather than derived so
    /// that every format says the same thing about a wrong value: a derived
    /// enum lets TOML answer "wanted string or table" for `require = 1`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Require, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Require;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`online` or `listen`")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Require, E> {
                match name {
                    "online" => Ok(Require::Online),
                    "listen" => Ok(Require::Listen),
                    _ => Err(E::unknown_variant(name, &["online", "listen"])),
                }
            }
        }
        deserializer.deserialize_str(Name)
    }
}

impl Default for WorkerOptions {
    fn default() -> WorkerOptions {
        WorkerOptions {
            count: 4,
            ignore_sigint: true,
            require: Require::Online,
            timeout: Duration::from_millis(2000),
            user: None,
            group: None,
            max_start_failures: DEFAULT_MAX_START_FAILURES,
            watchdog: None,
            max_rss: None,
            max_age: None,
        }
    }
}

impl Default for RecycleOptions {
    fn default() -> RecycleOptions {
        RecycleOptions { timeout: Duration::from_millis(15000), parallel: 1 }
    }
}

impl Default for ShutdownOptions {
    fn default() -> ShutdownOptions {
        ShutdownOptions { timeout: Duration::from_millis(15000) }
    }
}

impl Default for RestartOptions {
    fn default() -> RestartOptions {
        RestartOptions {
            delay: Duration::from_millis(5000),
            max_delay: Duration::from_millis(60000),
        }
    }
}

/// The default of `worker.max_start_failures`.
///
/// With the default `restart.delay` (5 s, doubling), three attempts give up
/// about 15 s after the master starts: a program that cannot start fails
/// `systemctl start` well within systemd's `TimeoutStartSec` (90 s), and
/// the service manager's own restart policy takes over, while a dependency
/// that is a few seconds late still gets two more tries.
///
/// ```
/// let options = srv_master::Options::default();
/// assert_eq!(options.worker.max_start_failures, srv_master::DEFAULT_MAX_START_FAILURES);
/// ```
pub const DEFAULT_MAX_START_FAILURES: u32 = 3;

/// The most workers one master runs; more is surely a typo.
///
/// ```
/// let mut options = srv_master::Options::default();
/// options.worker.count = srv_master::MAX_WORKERS + 1;
/// assert_eq!(options.validate().unwrap_err().key(), Some("worker.count"));
/// ```
pub const MAX_WORKERS: usize = 1024;

/// The longest duration an option may have (one day): far beyond any
/// sensible grace or delay, and far from where a deadline (`now +
/// duration`) would overflow the clock.
///
/// ```
/// let mut options = srv_master::Options::default();
/// options.shutdown.timeout = std::time::Duration::MAX; // "forever", through the Rust API
/// let error = options.validate().unwrap_err();
/// assert_eq!(error.to_string(), "invalid option shutdown.timeout: must be at most 86400000 ms (one day)");
/// ```
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// An invalid option, naming its key (and the config file, if any).
///
/// ```
/// let error = srv_master::Options::from_toml_str("[worker]\ncount = \"many\"\n").unwrap_err();
/// assert_eq!(error.key(), Some("worker.count"));
/// assert_eq!(error.problem(), "invalid type: string \"many\", expected usize (line 2, column 9)");
/// assert_eq!(error.file(), None);
/// assert_eq!(
///     error.to_string(),
///     "invalid option worker.count: invalid type: string \"many\", expected usize (line 2, column 9)"
/// );
///
/// // A syntax error is about no key.
/// let error = srv_master::Options::from_toml_str("[worker\n").unwrap_err();
/// assert_eq!(error.key(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsError {
    key: Option<String>,
    problem: String,
    file: Option<PathBuf>,
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        match &self.key {
            Some(key) => write!(f, "invalid option {key}: {}", self.problem),
            None => f.write_str(&self.problem),
        }
    }
}

impl OptionsError {
    /// An error about the value of `key`.
    fn new(key: &str, problem: &str) -> OptionsError {
        OptionsError { key: Some(key.to_owned()), problem: problem.to_owned(), file: None }
    }

    /// An error about `key`, if any.
    fn with_key(key: Option<String>, problem: &str) -> OptionsError {
        OptionsError { key, problem: problem.to_owned(), file: None }
    }

    /// An error about no one key: a syntax error, an unreadable file.
    fn general(problem: &str) -> OptionsError {
        OptionsError { key: None, problem: problem.to_owned(), file: None }
    }

    /// The dotted key, for example `worker.count`; `None` when the error is
    /// not about one key (a syntax error, an unreadable file).
    ///
    /// ```
    /// let mut options = srv_master::Options::default();
    /// options.recycle.parallel = 0;
    /// assert_eq!(options.validate().unwrap_err().key(), Some("recycle.parallel"));
    /// ```
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What is wrong with the value (or the file).
    ///
    /// ```
    /// let mut options = srv_master::Options::default();
    /// options.worker.count = 0;
    /// assert_eq!(options.validate().unwrap_err().problem(), "must be at least 1");
    /// ```
    pub fn problem(&self) -> &str {
        &self.problem
    }

    /// The config file, when the options came from one
    /// ([`Options::from_file`]).
    ///
    /// ```
    /// let error = srv_master::Options::from_file("/nonexistent/srv.toml").unwrap_err();
    /// assert_eq!(error.file(), Some(std::path::Path::new("/nonexistent/srv.toml")));
    /// assert_eq!(error.key(), None);
    /// ```
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

impl std::error::Error for OptionsError {}

impl Options {
    /// Checks every option, naming the first bad key. [`crate::Master`]
    /// and the `from_*` loaders call it.
    ///
    /// ```
    /// let mut options = srv_master::Options::default();
    /// options.validate()?;
    /// options.worker.count = 0;
    /// let error = options.validate().unwrap_err();
    /// assert_eq!(error.to_string(), "invalid option worker.count: must be at least 1");
    /// # Ok::<(), srv_master::OptionsError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `worker.count` of 0 or over [`MAX_WORKERS`]; a `recycle.parallel`
    /// of 0 or over `worker.count`; a `worker.watchdog` below
    /// [`MIN_WATCHDOG`], a `worker.max_age` below [`MIN_MAX_AGE`], a
    /// `worker.max_rss` of 0; a duration over
    /// [`MAX_DURATION`]; `worker.timeout`,
    /// `recycle.timeout` or `shutdown.timeout` of 0; `restart.max_delay`
    /// below `restart.delay` or below 100 ms; an empty `worker.user` or `worker.group`; a
    /// `worker.max_start_failures` of 0; a `listen.unix_mode` with more than
    /// permission bits; `worker.group` without `worker.user`.
    pub fn validate(&self) -> Result<(), OptionsError> {
        let error = |key, problem: &str| Err(OptionsError::new(key, problem));
        let durations = [
            ("worker.timeout", self.worker.timeout),
            ("worker.watchdog", self.worker.watchdog.unwrap_or_default()),
            ("worker.max_age", self.worker.max_age.unwrap_or_default()),
            ("recycle.timeout", self.recycle.timeout),
            ("shutdown.timeout", self.shutdown.timeout),
            ("restart.delay", self.restart.delay),
            ("restart.max_delay", self.restart.max_delay),
        ];
        for (key, duration) in durations {
            if duration > MAX_DURATION {
                let most = MAX_DURATION.as_millis();
                return error(key, &format!("must be at most {most} ms (one day)"));
            }
        }
        if self.worker.count == 0 {
            return error("worker.count", "must be at least 1");
        }
        if self.worker.count > MAX_WORKERS {
            return error("worker.count", &format!("must be at most {MAX_WORKERS}"));
        }
        if self.worker.timeout.is_zero() {
            return error("worker.timeout", "must be more than 0 ms");
        }
        if self.worker.max_start_failures == 0 {
            return error("worker.max_start_failures", "must be at least 1");
        }
        if self.worker.watchdog.is_some_and(|period| period < MIN_WATCHDOG) {
            let least = MIN_WATCHDOG.as_millis();
            return error("worker.watchdog", &format!("must be at least {least} ms"));
        }
        if self.worker.max_age.is_some_and(|age| age < MIN_MAX_AGE) {
            let least = MIN_MAX_AGE.as_millis();
            return error("worker.max_age", &format!("must be at least {least} ms"));
        }
        if self.worker.max_rss == Some(0) {
            return error("worker.max_rss", "must be at least 1 (MiB)");
        }
        if self.recycle.parallel == 0 {
            return error("recycle.parallel", "must be at least 1");
        }
        // More replacements at once than workers to replace would only be
        // a typo: the recycle cannot start more than worker.count anyway.
        if self.recycle.parallel > self.worker.count {
            let count = self.worker.count;
            return error("recycle.parallel", &format!("must be at most worker.count ({count})"));
        }
        // No grace at all would kill every worker with its requests in flight.
        if self.recycle.timeout.is_zero() {
            return error("recycle.timeout", "must be more than 0 ms");
        }
        if self.shutdown.timeout.is_zero() {
            return error("shutdown.timeout", "must be more than 0 ms");
        }
        if self.restart.max_delay < self.restart.delay {
            return error("restart.max_delay", "must not be below restart.delay");
        }
        // The cap bounds the doubling from MIN_BACKOFF_STEP: below that step
        // a worker that crashes as soon as it starts would be restarted in
        // a tight fork loop, whatever the streak.
        if self.restart.max_delay < MIN_BACKOFF_STEP {
            let least = MIN_BACKOFF_STEP.as_millis();
            return error("restart.max_delay", &format!("must be at least {least} ms"));
        }
        if self.worker.user.as_deref() == Some("") {
            return error("worker.user", "must not be empty");
        }
        if self.worker.group.as_deref() == Some("") {
            return error("worker.group", "must not be empty");
        }
        if self.worker.group.is_some() && self.worker.user.is_none() {
            // A group alone would change the workers' group and leave their
            // user the master's, root's for a master that may change groups.
            return error(
                "worker.group",
                "needs worker.user: alone it would leave workers as root",
            );
        }
        if self.listen.unix_mode.is_some_and(|mode| mode > 0o777) {
            return error("listen.unix_mode", "must be at most 0777 (permission bits only)");
        }
        Ok(())
    }
}

impl FromStr for Require {
    type Err = OptionsError;

    fn from_str(text: &str) -> Result<Require, OptionsError> {
        match text {
            "online" => Ok(Require::Online),
            "listen" => Ok(Require::Listen),
            _ => Err(OptionsError::new(
                "worker.require",
                &format!("'{text}' is neither 'online' nor 'listen'"),
            )),
        }
    }
}

impl fmt::Display for Require {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Require::Online => "online",
            Require::Listen => "listen",
        })
    }
}

/// `listen.unix_mode` as an octal string: `"0660"` or `"660"`.
mod octal_mode {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u32>, D::Error> {
        let text = String::deserialize(deserializer)?;
        let digits = text.strip_prefix("0o").unwrap_or(&text);
        let valid =
            !digits.is_empty() && digits.bytes().all(|digit| (b'0'..=b'7').contains(&digit));
        match u32::from_str_radix(digits, 8) {
            Ok(mode) if valid => Ok(Some(mode)),
            _ => Err(D::Error::custom(format!("'{text}' is not an octal mode such as \"0660\""))),
        }
    }
}

/// Optional durations as whole milliseconds; a missing key is `None`.
mod millis_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(deserializer).map(|ms| ms.map(Duration::from_millis))
    }
}

/// Durations as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_node_modules() {
        let options = Options::default();
        assert_eq!(options.worker.count, 4);
        assert!(options.worker.ignore_sigint);
        assert_eq!(options.worker.require, Require::Online);
        assert_eq!(options.worker.timeout, Duration::from_millis(2000));
        assert_eq!(options.worker.max_start_failures, 3);
        assert_eq!(options.recycle.timeout, Duration::from_millis(15000));
        assert_eq!(options.recycle.parallel, 1);
        assert_eq!(options.shutdown.timeout, Duration::from_millis(15000));
        assert_eq!(options.restart.delay, Duration::from_millis(5000));
        assert_eq!(options.worker.watchdog, None);
        assert_eq!(options.worker.max_rss, None);
        assert_eq!(options.worker.max_age, None);
        options.validate().unwrap();
    }

    #[test]
    fn validation_names_the_key() {
        type Change = fn(&mut Options);
        let cases: &[(Change, &str)] = &[
            (|o| o.worker.count = 0, "worker.count"),
            (|o| o.worker.count = MAX_WORKERS + 1, "worker.count"),
            (|o| o.worker.timeout = Duration::ZERO, "worker.timeout"),
            (|o| o.worker.max_start_failures = 0, "worker.max_start_failures"),
            (|o| o.recycle.timeout = Duration::ZERO, "recycle.timeout"),
            (|o| o.recycle.parallel = 0, "recycle.parallel"),
            (|o| o.recycle.parallel = 5, "recycle.parallel"),
            (|o| o.shutdown.timeout = Duration::ZERO, "shutdown.timeout"),
            (|o| o.restart.max_delay = Duration::from_millis(1), "restart.max_delay"),
            (
                |o| {
                    o.restart.delay = Duration::ZERO;
                    o.restart.max_delay = Duration::from_millis(99);
                },
                "restart.max_delay",
            ),
            (|o| o.listen.unix_mode = Some(0o4755), "listen.unix_mode"),
            // Through the Rust API, "forever" would overflow the deadlines
            // `now + timeout`: a panic in the master.
            (|o| o.worker.timeout = Duration::MAX, "worker.timeout"),
            (|o| o.recycle.timeout = Duration::MAX, "recycle.timeout"),
            (|o| o.shutdown.timeout = MAX_DURATION + Duration::from_millis(1), "shutdown.timeout"),
            (|o| o.restart.delay = Duration::MAX, "restart.delay"),
            (|o| o.restart.max_delay = Duration::MAX, "restart.max_delay"),
            (|o| o.worker.timeout = Duration::from_millis(u64::MAX), "worker.timeout"),
            (|o| o.worker.group = Some("nogroup".to_owned()), "worker.group"),
            (|o| o.worker.watchdog = Some(Duration::ZERO), "worker.watchdog"),
            (|o| o.worker.watchdog = Some(Duration::from_millis(999)), "worker.watchdog"),
            (|o| o.worker.watchdog = Some(Duration::MAX), "worker.watchdog"),
            (|o| o.worker.max_age = Some(Duration::from_millis(999)), "worker.max_age"),
            (|o| o.worker.max_age = Some(Duration::MAX), "worker.max_age"),
            (|o| o.worker.max_rss = Some(0), "worker.max_rss"),
        ];
        for &(change, key) in cases {
            let mut options = Options::default();
            change(&mut options);
            let error = options.validate().unwrap_err();
            assert_eq!(error.key(), Some(key));
            assert!(error.to_string().starts_with(&format!("invalid option {key}: ")), "{error}");
        }
    }

    #[test]
    fn restarts_at_once_are_allowed_with_a_cap_of_one_backoff_step() {
        let mut options = Options::default();
        options.restart.delay = Duration::ZERO;
        options.restart.max_delay = MIN_BACKOFF_STEP;
        options.validate().unwrap();
        options.restart.max_delay = MIN_BACKOFF_STEP - Duration::from_millis(1);
        let error = options.validate().unwrap_err();
        assert_eq!(error.to_string(), "invalid option restart.max_delay: must be at least 100 ms");
    }

    #[test]
    fn the_longest_durations_allowed_are_usable_by_the_machine() {
        let mut options = Options::default();
        options.worker.timeout = MAX_DURATION;
        options.recycle.timeout = MAX_DURATION;
        options.shutdown.timeout = MAX_DURATION;
        options.restart.delay = MAX_DURATION;
        options.restart.max_delay = MAX_DURATION;
        options.validate().unwrap();
        let now = std::time::Instant::now();
        let (mut machine, _) = crate::machine::Machine::new(options, now);
        let mut actions = Vec::new();
        let worker = crate::machine::WorkerId(1);
        let status = crate::machine::ExitStatus::Code(1);
        machine.handle(now, crate::machine::Event::Exited { worker, status }, &mut actions);
        machine.handle(
            now,
            crate::machine::Event::Signal(crate::machine::Signal::Term),
            &mut actions,
        );
        assert!(machine.next_deadline().is_some_and(|deadline| deadline > now));
    }

    #[test]
    fn recycle_parallel_ranges_from_one_to_the_worker_count() {
        let mut options = Options::default();
        options.worker.count = 3;
        for parallel in 1..=3 {
            options.recycle.parallel = parallel;
            options.validate().unwrap();
        }
        options.recycle.parallel = 4;
        let error = options.validate().unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid option recycle.parallel: must be at most worker.count (3)"
        );
    }

    #[test]
    fn require_parses_and_rejects() {
        assert_eq!("listen".parse::<Require>().unwrap(), Require::Listen);
        assert_eq!("online".parse::<Require>().unwrap().to_string(), "online");
        let error = "ready".parse::<Require>().unwrap_err();
        assert_eq!(error.key(), Some("worker.require"));
        assert!(error.to_string().contains("'ready'"));
    }
}
