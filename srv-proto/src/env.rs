//! The environment contract between a master and the workers it spawns.
//!
//! The master passes each worker its end of the channel at the fixed
//! descriptor [`CHANNEL_FD`] and names that number in [`ENV_CHANNEL_FD`];
//! [`ENV_WORKER_ID`] carries the worker's id for log lines, and
//! [`ENV_PROTOCOL_VERSION`] the newest protocol version the master speaks,
//! and [`ENV_WATCHDOG_MS`] the period of its watchdog, if it watches the
//! worker. A program that finds no [`ENV_CHANNEL_FD`] runs standalone.
//!
//! [`take_inherited_channel`] validates the descriptor before trusting it,
//! marks it close-on-exec and removes the variables, so that a process the
//! worker spawns in turn does not mistake some other descriptor for a
//! channel.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

use crate::message::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use nix::sys::socket::{
    AddressFamily, SockType, SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt,
};

/// The environment variable that names the channel's descriptor number.
///
/// Its presence is how a program tells that a master spawned it:
///
/// ```
/// use srv_proto::env::ENV_CHANNEL_FD;
///
/// let supervised = std::env::var_os(ENV_CHANNEL_FD).is_some();
/// assert!(!supervised); // this example runs without a master
/// ```
pub const ENV_CHANNEL_FD: &str = "SRV_CHANNEL_FD";

/// The environment variable that carries the worker's id, for log lines.
///
/// Read it before [`take_inherited_channel`], which removes it.
///
/// ```
/// use srv_proto::env::ENV_WORKER_ID;
///
/// let worker_id: Option<u32> = std::env::var(ENV_WORKER_ID).ok().and_then(|id| id.parse().ok());
/// assert_eq!(worker_id, None); // this example runs without a master
/// ```
pub const ENV_WORKER_ID: &str = "SRV_WORKER_ID";

/// The environment variable that carries the newest protocol version the
/// master speaks, so that a worker says `Hello` with one the master accepts
/// (see [`hello_version`]).
///
/// Read it before [`take_inherited_channel`], which removes it.
///
/// ```
/// use srv_proto::env::{ENV_PROTOCOL_VERSION, hello_version};
///
/// let announced = std::env::var_os(ENV_PROTOCOL_VERSION);
/// assert_eq!(hello_version(announced.as_deref()), 1); // no master here: version 1
/// ```
pub const ENV_PROTOCOL_VERSION: &str = "SRV_PROTOCOL_VERSION";

/// The protocol version a worker says `Hello` with, given the value of
/// [`ENV_PROTOCOL_VERSION`] it inherited: the newest one both it and its
/// master speak.
///
/// A master that does not set the variable predates it, and speaks version
/// 1 only; a value that is not a number is answered with this crate's
/// [`PROTOCOL_VERSION`], which the master then accepts or refuses with a
/// message naming both versions.
///
/// ```
/// use std::ffi::OsStr;
/// use srv_proto::{PROTOCOL_VERSION, env::hello_version};
///
/// assert_eq!(hello_version(None), 1); // a master of version 1
/// assert_eq!(hello_version(Some(OsStr::new("1"))), 1);
/// assert_eq!(hello_version(Some(OsStr::new("2"))), 2);
/// assert_eq!(hello_version(Some(OsStr::new("99"))), PROTOCOL_VERSION); // a newer master
/// ```
pub fn hello_version(announced: Option<&std::ffi::OsStr>) -> u32 {
    let Some(announced) = announced else {
        return MIN_PROTOCOL_VERSION;
    };
    match announced.to_str().and_then(|text| text.parse::<u32>().ok()) {
        Some(version) => version.clamp(MIN_PROTOCOL_VERSION, PROTOCOL_VERSION),
        None => PROTOCOL_VERSION,
    }
}

/// The environment variable that carries the period of the master's
/// watchdog (`worker.watchdog`), in milliseconds, when it has one: a worker
/// of protocol 2 or later must then prove that its serving loop runs, with
/// [`WorkerMessage::Alive`](crate::WorkerMessage::Alive), more often than
/// that, or it is killed as hung and replaced. Without the variable, the
/// worker is not watched and sends no heartbeat.
///
/// Read it before [`take_inherited_channel`], which removes it.
///
/// ```
/// use srv_proto::env::{ENV_WATCHDOG_MS, watchdog_period};
///
/// let announced = std::env::var_os(ENV_WATCHDOG_MS);
/// assert_eq!(watchdog_period(announced.as_deref()), None); // no master here: not watched
/// ```
pub const ENV_WATCHDOG_MS: &str = "SRV_WATCHDOG_MS";

/// The watchdog period a worker is told, given the value of
/// [`ENV_WATCHDOG_MS`] it inherited: `None` when the variable is missing
/// (not watched), or not a positive number of milliseconds (a master never
/// sets such a value; the worker then sends no heartbeat, and a master that
/// does watch it says so when it kills it).
///
/// ```
/// use std::ffi::OsStr;
/// use std::time::Duration;
/// use srv_proto::env::watchdog_period;
///
/// assert_eq!(watchdog_period(None), None);
/// assert_eq!(watchdog_period(Some(OsStr::new("5000"))), Some(Duration::from_secs(5)));
/// assert_eq!(watchdog_period(Some(OsStr::new("0"))), None);
/// assert_eq!(watchdog_period(Some(OsStr::new("soon"))), None);
/// ```
pub fn watchdog_period(announced: Option<&std::ffi::OsStr>) -> Option<std::time::Duration> {
    let ms = announced?.to_str()?.parse::<u64>().ok().filter(|ms| *ms > 0)?;
    Some(std::time::Duration::from_millis(ms))
}

/// The descriptor number at which a worker inherits its channel.
///
/// A master spawns each worker with its end of the channel at this number and
/// the number in [`ENV_CHANNEL_FD`]:
///
/// ```
/// use std::process::Command;
/// use srv_proto::env::{CHANNEL_FD, ENV_CHANNEL_FD};
///
/// let mut command = Command::new("my-server");
/// command.env(ENV_CHANNEL_FD, CHANNEL_FD.to_string());
/// // ...and, in `pre_exec`, `dup2` the worker's end of the socketpair onto fd 3.
/// assert_eq!(CHANNEL_FD, 3);
/// ```
pub const CHANNEL_FD: RawFd = 3;

static TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes the channel this process inherited from its master.
///
/// Returns `Ok(None)` when [`ENV_CHANNEL_FD`] is not set (no master: run
/// standalone) or when the channel was already taken. On success the
/// descriptor is close-on-exec and [`ENV_CHANNEL_FD`], [`ENV_WORKER_ID`],
/// [`ENV_PROTOCOL_VERSION`] and [`ENV_WATCHDOG_MS`] are removed from the
/// environment.
///
/// Call it early in `main`, before other threads start: removing an
/// environment variable races with threads that read the environment
/// through libc directly.
///
/// ```
/// use srv_proto::{Channel, env};
///
/// match env::take_inherited_channel()? {
///     Some(stream) => {
///         let _channel = Channel::new(stream); // a master spawned this process
///     }
///     None => assert!(std::env::var_os(env::ENV_CHANNEL_FD).is_none()), // standalone
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// `InvalidInput` when the variable is not a descriptor number, or the
/// descriptor is not open or not a Unix-domain stream socket; the message
/// names the variable and the descriptor.
pub fn take_inherited_channel() -> io::Result<Option<UnixStream>> {
    let Some(value) = std::env::var_os(ENV_CHANNEL_FD) else {
        return Ok(None);
    };
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    let res = take(&value);
    if res.is_err() {
        // Nothing was taken: a later call fails the same way rather than
        // pretending there is no master.
        TAKEN.store(false, Ordering::SeqCst);
    }
    res.map(Some)
}

fn take(value: &std::ffi::OsStr) -> io::Result<UnixStream> {
    let invalid = |why: String| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{ENV_CHANNEL_FD}={value:?}: {why}"))
    };
    let fd: RawFd = value
        .to_str()
        .and_then(|text| text.parse().ok())
        .filter(|fd| *fd >= 0)
        .ok_or_else(|| invalid("not a file descriptor number".into()))?;
    // Validate with a borrowed descriptor first, so an invalid number is never
    // owned (and so never closed) by us.
    // SAFETY: the borrow lives only for this call, and the checks below only
    // query the descriptor; an invalid number makes them fail with EBADF.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    validate_channel(borrowed).map_err(|why| invalid(format!("fd {fd} {why}")))?;
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|errno| invalid(format!("fd {fd}: {errno}")))?;
    // SAFETY: the descriptor was checked to be an open Unix stream socket, and
    // `TAKEN` guarantees this is the only place that takes ownership of it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: documented above: the caller runs this before starting threads
    // that read the environment; std's own readers take std's lock.
    unsafe {
        std::env::remove_var(ENV_CHANNEL_FD);
        std::env::remove_var(ENV_WORKER_ID);
        std::env::remove_var(ENV_PROTOCOL_VERSION);
        std::env::remove_var(ENV_WATCHDOG_MS);
    }
    Ok(UnixStream::from(owned))
}

fn validate_channel(fd: BorrowedFd<'_>) -> Result<(), String> {
    let kind = getsockopt(&fd, sockopt::SockType).map_err(|errno| match errno {
        nix::errno::Errno::EBADF => "is not open".to_owned(),
        nix::errno::Errno::ENOTSOCK => "is not a socket".to_owned(),
        errno => format!("cannot be inspected: {errno}"),
    })?;
    if kind != SockType::Stream {
        return Err("is not a stream socket".into());
    }
    let addr: SockaddrStorage =
        getsockname(fd.as_raw_fd()).map_err(|errno| format!("cannot be inspected: {errno}"))?;
    if addr.family() != Some(AddressFamily::Unix) {
        return Err("is not a Unix-domain socket".into());
    }
    Ok(())
}
