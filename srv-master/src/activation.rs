//! Socket activation: the listening sockets a service manager passed to the
//! master (`LISTEN_FDS`, `LISTEN_PID`; systemd's protocol, descriptors from
//! [`FIRST_PASSED_FD`] on). With [`crate::spawn`], the master's only
//! `unsafe`: a descriptor number is inspected through a borrow, and owned
//! only once it is known to be a passed listening socket.
//!
//! # Careless environments
//!
//! The variables are inherited by every descendant of whoever set them, so
//! a stray `LISTEN_FDS` may name descriptors that are not passed sockets at
//! all, maybe the master's own. So:
//!
//! - [`adopt`] runs first in [`crate::Master::run`], before the master
//!   creates any descriptor (event loop, signal pipe, name lookups), so a
//!   passed number can never be one of them.
//! - `LISTEN_PID` must be set and name this process; otherwise the
//!   variables are ignored with a warning and no descriptor is touched.
//! - Every passed descriptor is made close-on-exec, so none leaks into the
//!   workers and their children; only listening TCP sockets and listening
//!   Unix stream sockets with a path are adopted (owned, handed to
//!   workers). Anything else (a UDP socket, a connected socket, a pipe) is
//!   left open, unowned, and never closed: it is not the master's to close.
//! - Adoption happens once per process: a second [`crate::Master::run`]
//!   in the same process must not own numbers that the first one closed and
//!   that may name other descriptors now.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use socket2::{SockRef, Type};
use srv_proto::ListenAddr;

/// The first descriptor a service manager passes (`SD_LISTEN_FDS_START`).
pub(crate) const FIRST_PASSED_FD: RawFd = 3;

/// The most descriptors looked at: far more than any socket unit passes,
/// and a bound on the work a garbage `LISTEN_FDS` can cause.
const MAX_PASSED: usize = 1024;

static ADOPTED: AtomicBool = AtomicBool::new(false);

/// The listening sockets the service manager passed to this process, by
/// their local address, as described in the module documentation. Call it
/// before creating any descriptor.
pub(crate) fn adopt() -> Vec<(ListenAddr, OwnedFd)> {
    let Some(count) = std::env::var_os("LISTEN_FDS") else { return Vec::new() };
    let shown = count.to_string_lossy().into_owned();
    let Some(count) = count.to_str().and_then(|count| count.parse::<usize>().ok()) else {
        log::warn!(target: "srv", "ignoring LISTEN_FDS={shown:?}: not a number");
        return Vec::new();
    };
    let pid = std::env::var("LISTEN_PID").ok();
    if pid.as_deref().and_then(|pid| pid.parse::<u32>().ok()) != Some(std::process::id()) {
        let why = match pid {
            None => "LISTEN_PID is not set".to_owned(),
            Some(pid) => format!("LISTEN_PID={pid:?} is not this process ({})", std::process::id()),
        };
        log::warn!(target: "srv", "ignoring LISTEN_FDS={count}: {why}, so the descriptors were not passed to this process");
        return Vec::new();
    }
    if ADOPTED.swap(true, Ordering::SeqCst) {
        return Vec::new();
    }
    if count > MAX_PASSED {
        log::warn!(target: "srv", "LISTEN_FDS={count}: looking at the first {MAX_PASSED} only");
    }
    let mut adopted = Vec::new();
    for fd in (FIRST_PASSED_FD..).take(count.min(MAX_PASSED)) {
        // SAFETY: the borrow lives only for this iteration and is used only
        // to query the descriptor and set its close-on-exec flag; a number
        // that is not open makes those calls fail with EBADF. Nothing
        // closes it here.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        match fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)) {
            Ok(_) => {}
            Err(Errno::EBADF) => {
                log::warn!(target: "srv", "LISTEN_FDS names fd {fd}, which is not open");
                continue;
            }
            Err(errno) => {
                log::warn!(target: "srv", "fd {fd} passed by the service manager: cannot make it close-on-exec: {errno}");
                continue;
            }
        }
        match listening_address(borrowed) {
            Ok(actual) => {
                // SAFETY: `fd` was passed to this process (`LISTEN_PID`),
                // is an open listening socket, and nothing else owns it: the
                // master created no descriptor yet, and `ADOPTED` makes this
                // the only owner of passed numbers, once per process.
                let socket = unsafe { OwnedFd::from_raw_fd(fd) };
                log::info!(target: "srv", "adopted {actual} from the service manager");
                adopted.push((actual, socket));
            }
            Err(why) => {
                log::warn!(target: "srv", "not using fd {fd} passed by the service manager: {why}");
            }
        }
    }
    adopted
}

/// The local address of a listening TCP socket or a listening Unix stream
/// socket with a path; otherwise why the descriptor is not one. The
/// upgrade checks the sockets handed over with it too.
pub(crate) fn listening_address(fd: BorrowedFd<'_>) -> Result<ListenAddr, String> {
    let socket = SockRef::from(&fd);
    let kind = socket.r#type().map_err(|error| match error.raw_os_error() {
        Some(nix::libc::ENOTSOCK) => "not a socket".to_owned(),
        _ => format!("cannot inspect it: {error}"),
    })?;
    if kind != Type::STREAM {
        return Err("not a stream socket (TCP or Unix)".to_owned());
    }
    if !socket.is_listener().map_err(|error| format!("cannot inspect it: {error}"))? {
        return Err("not a listening socket".to_owned());
    }
    let local = socket.local_addr().map_err(|error| format!("cannot inspect it: {error}"))?;
    if let Some(addr) = local.as_socket() {
        return Ok(ListenAddr::Tcp(addr));
    }
    match local.as_pathname() {
        Some(path) => Ok(ListenAddr::Unix(path.to_owned())),
        None => Err("a Unix socket without a path (unnamed or abstract)".to_owned()),
    }
}
