//! Starting a worker process with its end of the channel at
//! [`srv_proto::env::CHANNEL_FD`], and the probe of an upgrade with its
//! report pipe at [`PROBE_FD`]. With `activation` and `upgrade`, the
//! master's only `unsafe`.
//!
//! Everything is prepared before `fork`: the socket pair (both ends
//! close-on-exec, atomically, by `socketpair(SOCK_CLOEXEC)`), the
//! environment and the program. Between `fork` and `exec` the child only
//! makes async-signal-safe calls: `dup2` (or `fcntl` to clear close-on-exec
//! when the end already sits at the fixed number, since `dup2(fd, fd)` does
//! nothing), `sigaction` to ignore `SIGINT`, and, to drop privileges,
//! `setgroups`, `setgid` and `setuid` (in that order: once the user is
//! changed, the groups can no longer be). The standard library resets the
//! signal mask in the child itself. User and group names are resolved
//! before, in the master ([`Credentials::resolve`]), since NSS lookups are
//! not async-signal-safe.
//!
//! The probe ([`spawn_probe`]) is the same: pipes and environment prepared
//! before `fork`; in the child, `dup2` (or `fcntl`) puts the report pipe at
//! [`PROBE_FD`], and `fcntl` lets the program's `O_PATH` descriptor through
//! the exec, so that a script (run through `/proc/self/fd/N`) finds it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::signal::{SigHandler, Signal, signal};
use srv_proto::env::{
    CHANNEL_FD, ENV_CHANNEL_FD, ENV_PROTOCOL_VERSION, ENV_WATCHDOG_MS, ENV_WORKER_ID,
};

use crate::machine::WorkerId;
use crate::upgrade::{
    ENV_HANDOVER_FD, ENV_HANDOVER_PID, ENV_PROBE_FD, ENV_PROBE_PARENT, PROBE_FD, Program,
};

/// Variables the service manager, or an upgrade, meant for the master only.
const MASTER_ONLY_ENV: [&str; 10] = [
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    ENV_HANDOVER_FD,
    ENV_HANDOVER_PID,
    ENV_PROBE_FD,
    ENV_PROBE_PARENT,
];

/// A worker process just started.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) pid: u32,
    /// The master's end of the channel.
    pub(crate) channel: UnixStream,
}

/// Starts `command` as `worker`, told the period of the master's watchdog
/// (`worker.watchdog`) if it has one.
///
/// # Errors
///
/// The socket pair cannot be created, or the program cannot be executed;
/// the message names the program.
pub(crate) fn spawn_worker(
    mut command: Command,
    worker: WorkerId,
    ignore_sigint: bool,
    watchdog: Option<std::time::Duration>,
    credentials: Option<Credentials>,
) -> io::Result<Spawned> {
    let program = command.get_program().to_owned();
    let (master_end, child_end) = UnixStream::pair()?;
    let child_fd = child_end.as_raw_fd();
    command.env(ENV_CHANNEL_FD, CHANNEL_FD.to_string()).env(ENV_WORKER_ID, worker.0.to_string());
    command.env(ENV_PROTOCOL_VERSION, srv_proto::PROTOCOL_VERSION.to_string());
    // Set or removed, never inherited: a stray value in the master's own
    // environment must not tell a worker it is watched when it is not.
    match watchdog {
        Some(period) => command.env(ENV_WATCHDOG_MS, period.as_millis().to_string()),
        None => command.env_remove(ENV_WATCHDOG_MS),
    };
    // What systemd told the master is the master's alone: a worker that
    // notified or adopted sockets itself would confuse the service manager.
    for name in MASTER_ONLY_ENV {
        command.env_remove(name);
    }
    // In the child only this thread exists, so glibc's set*id broadcast to
    // other threads has nobody to signal.
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe calls (dup2, fcntl, sigaction, setgroups, setgid,
    // setuid); it allocates nothing, takes no locks and logs nothing.
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
            if let Some(Credentials { uid, gid }) = credentials
                && (nix::libc::setgroups(0, std::ptr::null()) < 0
                    || nix::libc::setgid(gid) < 0
                    || nix::libc::setuid(uid) < 0)
            {
                return Err(io::Error::last_os_error());
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

/// The probe of an upgrade just started.
#[derive(Debug)]
pub(crate) struct SpawnedProbe {
    pub(crate) pid: u32,
    /// The read end of the pipe it reports on.
    pub(crate) report: OwnedFd,
    /// The read end of its standard output and error.
    pub(crate) output: OwnedFd,
}

/// Starts the probe of an upgrade: the file `exe` (the master's program,
/// opened once, `O_PATH`, numbered 10 or above) with the master's
/// arguments, in its own process group, with its report pipe at
/// [`PROBE_FD`] (see the `upgrade` module). Both read ends are
/// non-blocking and close-on-exec.
///
/// # Errors
///
/// The pipes cannot be created, or the file cannot be executed; the message
/// names the program.
pub(crate) fn spawn_probe(exe: &OwnedFd, program: &Program) -> io::Result<SpawnedProbe> {
    let flags = OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let (report, report_w) = nix::unistd::pipe2(flags)?;
    let (output, output_w) = nix::unistd::pipe2(flags)?;
    // The child's ends block: a probe that writes a lot waits for the master
    // to read rather than failing.
    for end in [&report_w, &output_w] {
        fcntl(end, FcntlArg::F_SETFL(OFlag::empty()))?;
    }
    let exe_fd = exe.as_raw_fd();
    let report_fd = report_w.as_raw_fd();
    let mut command = Command::new(format!("/proc/self/fd/{exe_fd}"));
    if let Some((arg0, args)) = program.args.split_first() {
        command.arg0(arg0).args(args);
    }
    for name in MASTER_ONLY_ENV.iter().chain(&[ENV_CHANNEL_FD, ENV_WORKER_ID]) {
        command.env_remove(name);
    }
    command
        .env(ENV_PROBE_FD, PROBE_FD.to_string())
        .env(ENV_PROBE_PARENT, std::process::id().to_string())
        .stdin(std::process::Stdio::null())
        .stdout(output_w.try_clone()?)
        .stderr(output_w)
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe calls (dup2, fcntl); it allocates nothing,
    // takes no locks and logs nothing. Both numbers are open in the child:
    // they were open in the parent at fork, and the standard streams set up
    // before the closure runs are 0, 1 and 2, below `exe_fd` (10 or above).
    unsafe {
        command.pre_exec(move || {
            if report_fd == PROBE_FD {
                let fd = BorrowedFd::borrow_raw(report_fd);
                fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
            } else if nix::libc::dup2(report_fd, PROBE_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            let exe = BorrowedFd::borrow_raw(exe_fd);
            fcntl(exe, FcntlArg::F_SETFD(FdFlag::empty()))?;
            Ok(())
        });
    }
    let child = command.spawn().map_err(|error| {
        io::Error::new(error.kind(), format!("cannot execute {}: {error}", program.path.display()))
    });
    // The write ends must be the child's alone, or the master would never
    // read end of file.
    drop(report_w);
    let child = child?;
    Ok(SpawnedProbe { pid: child.id(), report, output })
}

/// The user and group workers run as (`worker.user`, `worker.group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Credentials {
    uid: nix::libc::uid_t,
    gid: nix::libc::gid_t,
}

impl Credentials {
    /// Whether workers run as another user than the master.
    pub(crate) fn changes_user(&self) -> bool {
        self.uid != nix::unistd::Uid::current().as_raw()
    }

    /// Resolves names (or numeric ids) to ids, before any fork. `None` when
    /// neither option is set, or when they name the credentials the master
    /// already runs with, so nothing is to change (a master that is not
    /// root may name its own user).
    ///
    /// # Errors
    ///
    /// An unknown user or group, or a master that is not root but asked to
    /// run workers as another user or group; the message names the option.
    pub(crate) fn resolve(
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<Option<Credentials>, String> {
        use nix::unistd::{Gid, Group, Uid, User};
        if user.is_none() && group.is_none() {
            return Ok(None);
        }
        let user = user
            .map(|name| {
                lookup(
                    "worker.user",
                    "user",
                    name,
                    |id| User::from_uid(Uid::from_raw(id)),
                    User::from_name,
                )
            })
            .transpose()?;
        let group = group
            .map(|name| {
                lookup(
                    "worker.group",
                    "group",
                    name,
                    |id| Group::from_gid(Gid::from_raw(id)),
                    Group::from_name,
                )
            })
            .transpose()?;
        let uid = user.as_ref().map_or_else(Uid::current, |user| user.uid);
        let gid = match (&group, &user) {
            (Some(group), _) => group.gid,
            (None, Some(user)) => user.gid,
            (None, None) => Gid::current(),
        };
        if Uid::effective().is_root() {
            return Ok(Some(Credentials { uid: uid.as_raw(), gid: gid.as_raw() }));
        }
        // Not root: only the credentials it has are possible, and they need
        // no change (`setgroups` alone would fail with EPERM).
        if uid == Uid::current() && gid == Gid::current() {
            return Ok(None);
        }
        let (option, named, id, own) = if uid != Uid::current() {
            let name = user.map_or_else(String::new, |user| user.name);
            ("worker.user", name, format!("uid {uid}"), format!("uid {}", Uid::current()))
        } else {
            let name = group.map_or_else(String::new, |group| group.name);
            ("worker.group", name, format!("gid {gid}"), format!("gid {}", Gid::current()))
        };
        Err(format!("{option} '{named}' ({id}) needs the master to run as root; it runs as {own}"))
    }
}

/// A user or group by name or numeric id, for the option `option`.
fn lookup<T>(
    option: &str,
    what: &str,
    name: &str,
    by_id: impl FnOnce(u32) -> nix::Result<Option<T>>,
    by_name: impl FnOnce(&str) -> nix::Result<Option<T>>,
) -> Result<T, String> {
    let found = match name.parse::<u32>() {
        Ok(id) => by_id(id),
        Err(_) => by_name(name),
    };
    match found {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(format!("{option}: no such {what} '{name}'")),
        Err(errno) => Err(format!("{option}: cannot look up '{name}': {errno}")),
    }
}
