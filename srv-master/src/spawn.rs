//! Starting a worker process with its end of the channel at
//! [`srv_proto::env::CHANNEL_FD`]. The master's only `unsafe`.
//!
//! Everything is prepared before `fork`: the socket pair (both ends
//! close-on-exec, atomically, by `socketpair(SOCK_CLOEXEC)`), the
//! environment and the program. Between `fork` and `exec` the child only
//! makes async-signal-safe calls: `dup2` (or `fcntl` to clear close-on-exec
//! when the end already sits at the fixed number, since `dup2(fd, fd)` does
//! nothing) and `sigaction` to ignore `SIGINT`. The standard library resets
//! the signal mask in the child itself.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal::{SigHandler, Signal, signal};
use srv_proto::env::{CHANNEL_FD, ENV_CHANNEL_FD, ENV_WORKER_ID};

use crate::machine::WorkerId;

/// A worker process just started.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) pid: u32,
    /// The master's end of the channel.
    pub(crate) channel: UnixStream,
}

/// Starts `command` as `worker`.
///
/// # Errors
///
/// The socket pair cannot be created, or the program cannot be executed;
/// the message names the program.
pub(crate) fn spawn_worker(
    mut command: Command,
    worker: WorkerId,
    ignore_sigint: bool,
) -> io::Result<Spawned> {
    let program = command.get_program().to_owned();
    let (master_end, child_end) = UnixStream::pair()?;
    let child_fd = child_end.as_raw_fd();
    command.env(ENV_CHANNEL_FD, CHANNEL_FD.to_string()).env(ENV_WORKER_ID, worker.0.to_string());
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe calls (dup2, fcntl, sigaction through nix's thin
    // wrappers); it allocates nothing, takes no locks and logs nothing.
    // `child_fd` is open in the child: it was open in the parent at fork.
    unsafe {
        command.pre_exec(move || {
            if child_fd == CHANNEL_FD {
                let fd = BorrowedFd::borrow_raw(child_fd);
                fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
            } else if nix::libc::dup2(child_fd, CHANNEL_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            if ignore_sigint {
                signal(Signal::SIGINT, SigHandler::SigIgn)?;
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("cannot execute {}: {error}", program.to_string_lossy()),
        )
    })?;
    drop(child_end);
    // The child is reaped with waitpid(-1) by the event loop, not through
    // `Child`; dropping `Child` neither waits nor kills.
    Ok(Spawned { pid: child.id(), channel: master_end })
}
