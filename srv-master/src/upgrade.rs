//! The upgrade in place (`SIGUSR2`), the shell's half: the probe of the new
//! program, the handover format, the exec and the adoption. The decisions
//! are the machine's (`machine/upgrade.rs`); this module only carries them
//! out.
//!
//! # Files
//!
//! - this file: the flow, the signals, the master's [`Program`], the exec;
//! - `probe.rs`: the probe's report, and the pipes the master reads;
//! - `format.rs`: the handover format ([`HandoverFile`]);
//! - `adopt.rs`: turning the numbers the probe and the handover name into
//!   owned descriptors, once each is checked ([`take_handover`],
//!   [`ProbeRequest::from_env`]). With `spawn` and `activation`, one of the
//!   master's three `unsafe` files: an inherited descriptor number must be
//!   borrowed to be checked, and owned once it is.
//!
//! # The flow
//!
//! 1. `Action::Probe`: the program on disk, resolved when the master
//!    started ([`Program`]), is opened once (`O_PATH`), so that the file
//!    probed is the very file executed even if the path is replaced again
//!    meanwhile. The probe is that file run through `/proc/self/fd/N` with
//!    the master's arguments, in its own process group, with
//!    [`ENV_PROBE_FD`]` = 3` (a pipe it reports on) and [`ENV_PROBE_PARENT`]
//!    (the master's pid), its standard output and error on another pipe,
//!    and none of the variables meant for the master alone
//!    (`NOTIFY_SOCKET`, `LISTEN_*`, the handover's).
//! 2. In the probe, [`crate::Master::run`] finds the variables
//!    ([`ProbeRequest::from_env`]), checks what a master checks before it
//!    starts anything (the options were validated by `Master::new`; the
//!    user and group of `worker.user` and `worker.group` must resolve),
//!    writes one report ([`ProbeReportWire`], JSON) and returns without
//!    starting anything. A program whose `main` fails earlier (a config file
//!    that does not parse) exits without a report; what it printed says why.
//! 3. The master reads both pipes as they fill, keeping at most
//!    [`MAX_REPORT_LEN`] of the report and the last [`MAX_OUTPUT_LEN`] of
//!    the output, and reports the probe's exit with both (`ProbeExited`).
//!    The machine judges; a probe past its time is killed with its whole
//!    process group.
//! 4. `Action::Exec`, carried out at the end of the turn
//!    ([`exec`]): the handled signals are blocked (the mask survives
//!    `execve`, and a blocked signal stays pending, so none is lost and none
//!    takes its default action while no handler is installed); signals that
//!    arrived since the turn began are drained from signal-hook into the
//!    handover; the handover is written into a sealed `memfd`; close-on-exec
//!    is cleared on exactly the descriptors it names (channels, listening
//!    sockets, the directories of Unix socket files, descriptors queued for
//!    workers, the `memfd`); then `execveat` of the probed file, with the
//!    master's own arguments and environment (`NOTIFY_SOCKET` kept, so
//!    systemd's `MAINPID` and notifications go on) plus
//!    [`ENV_HANDOVER_FD`] and [`ENV_HANDOVER_PID`]. If it fails, every flag
//!    and the mask are restored, the drained signals are handled here, and
//!    the machine hears `ExecFailed`.
//! 5. In the new program, first thing in `Master::run` ([`take_handover`]),
//!    before the master creates any descriptor: the variables are honoured
//!    only with [`ENV_HANDOVER_PID`] equal to this process's pid; the
//!    `memfd` must be a sealed regular file of at most [`MAX_HANDOVER_LEN`];
//!    its format version must be [`HANDOVER_VERSION`]; every descriptor it
//!    names must be distinct, open, and what it claims to be (a Unix stream
//!    socket for a channel, a listening socket at the recorded address for a
//!    listener, a directory, a socket queued for a worker), and every worker
//!    pid a child of this process. Only then are they owned, and made
//!    close-on-exec again. Anything else is a startup error naming what is
//!    wrong, never a guess. The signal handlers are installed, the mask is
//!    unblocked (what was pending is handled now), the workers are reaped if
//!    they exited meanwhile, and every channel is read.
//!
//! # Races
//!
//! - The file is opened once, at the probe: a deploy that replaces the path
//!   between the probe and the exec does not get its unprobed program
//!   executed (the next `SIGUSR2` probes it).
//! - A configuration file edited between the probe and the exec can make
//!   the new master fail at startup; the workers then see their channel
//!   close and drain, as when a master dies. The window is the exec itself.
//! - Workers keep running and accepting through the exec: the listening
//!   sockets are the same kernel sockets, and their channels buffer what
//!   they send until the new master reads it. A worker that exits during
//!   the exec stays a zombie until the new master reaps it (it is still this
//!   pid's child).
//! - Other threads of the master's process die with the exec; srv's master
//!   has none.

#[allow(unsafe_code)]
mod adopt;
mod format;
mod probe;

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use nix::fcntl::{AtFlags, FcntlArg, FdFlag, OFlag, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::signal::{SigSet, SigmaskHow, Signal as NixSignal, pthread_sigmask};

use self::adopt::above_fixed;
pub(crate) use self::adopt::{Adopted, take_handover};
pub(crate) use self::format::{
    HandedChannel, HandedFile, HandedListeners, HandedSocket, HandoverFile,
};
pub(crate) use self::probe::{ProbePipe, ProbeRequest};

/// The variable that tells a program it runs as the probe of an upgrade,
/// and names the descriptor it reports on ([`PROBE_FD`]).
pub(crate) const ENV_PROBE_FD: &str = "SRV_PROBE_FD";

/// The pid of the master that started the probe: the variables are
/// honoured only in a child of that pid.
pub(crate) const ENV_PROBE_PARENT: &str = "SRV_PROBE_PARENT";

/// The descriptor at which a probe finds its report pipe.
pub(crate) const PROBE_FD: RawFd = 3;

/// The variable that names the handover's descriptor in an upgraded
/// master.
pub(crate) const ENV_HANDOVER_FD: &str = "SRV_HANDOVER_FD";

/// The pid the handover is for: the master's own, unchanged by the exec.
pub(crate) const ENV_HANDOVER_PID: &str = "SRV_HANDOVER_PID";

/// The most bytes of a probe's report read; more is not a report.
pub(crate) const MAX_REPORT_LEN: usize = 4096;

/// The most bytes kept of a probe's output: its end, where errors are.
pub(crate) const MAX_OUTPUT_LEN: usize = 2048;

/// The largest handover read. It holds, per worker, at most a partial frame
/// and one read beyond it, and frames queued for it: far less than this
/// even for `MAX_WORKERS` workers, unless they are hostile.
pub(crate) const MAX_HANDOVER_LEN: u64 = 256 * 1024 * 1024;

/// The variables the exec drops from the new master's environment: the
/// descriptors they name are closed or handed over.
const DROPPED_ON_EXEC: [&str; 7] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    ENV_HANDOVER_FD,
    ENV_HANDOVER_PID,
    ENV_PROBE_FD,
    ENV_PROBE_PARENT,
];

/// The signals the master handles: blocked across the exec.
pub(crate) fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        NixSignal::SIGINT,
        NixSignal::SIGTERM,
        NixSignal::SIGHUP,
        NixSignal::SIGTTIN,
        NixSignal::SIGTTOU,
        NixSignal::SIGUSR2,
        NixSignal::SIGCHLD,
    ] {
        set.add(signal);
    }
    set
}

/// Unblocks the handled signals, once their handlers are installed: an
/// upgraded master starts with them blocked (see the module docs), and
/// whatever was pending is delivered now.
pub(crate) fn unblock_signals() -> io::Result<()> {
    pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&handled_signals()), None)
        .map_err(io::Error::from)
}

/// The master's own program, to probe and execute on `SIGUSR2`: its path
/// and its whole command line, resolved when the master is created.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    pub(crate) path: PathBuf,
    /// `argv`, `argv[0]` included.
    pub(crate) args: Vec<OsString>,
}

impl Program {
    /// This program, as it runs now.
    pub(crate) fn current() -> Result<Program, String> {
        let path = std::env::current_exe()
            .map_err(|error| format!("cannot find this program's path: {error}"))?;
        Ok(Program { path, args: std::env::args_os().collect() })
    }

    /// Opens the file at the path, once, for the probe and the exec: an
    /// `O_PATH` descriptor numbered 10 or above, so that the probe's fixed
    /// descriptors never land on it.
    pub(crate) fn open(&self) -> io::Result<OwnedFd> {
        let flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(&self.path, flags, nix::sys::stat::Mode::empty()).map_err(
            |errno| {
                io::Error::new(
                    io::Error::from(errno).kind(),
                    format!("cannot open {}: {errno}", self.path.display()),
                )
            },
        )?;
        above_fixed(fd)
    }
}

/// Close-on-exec cleared on these descriptors until dropped: restored if
/// the exec fails.
struct Inherited<'a> {
    fds: Vec<BorrowedFd<'a>>,
}

impl<'a> Inherited<'a> {
    fn clear(fds: Vec<BorrowedFd<'a>>) -> io::Result<Inherited<'a>> {
        // Restored on drop, also when a later one fails.
        let mut inherited = Inherited { fds: Vec::new() };
        for fd in fds {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
            inherited.fds.push(fd);
        }
        Ok(inherited)
    }
}

impl Drop for Inherited<'_> {
    fn drop(&mut self) {
        for fd in &self.fds {
            let _ = fcntl(*fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        }
    }
}

/// The handover's bytes in a sealed `memfd` (close-on-exec until the exec
/// clears it).
fn write_memfd(bytes: &[u8]) -> io::Result<OwnedFd> {
    let fd = memfd_create(c"srv-handover", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let mut file = File::from(fd);
    file.write_all(bytes)?;
    let fd = OwnedFd::from(file);
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))?;
    above_fixed(fd)
}

/// The shell's half of an exec: the descriptors to inherit, described.
pub(crate) struct ExecPlan<'a> {
    pub(crate) exe: BorrowedFd<'a>,
    pub(crate) program: &'a Program,
    pub(crate) handover: HandoverFile,
    /// Every descriptor the handover names.
    pub(crate) fds: Vec<BorrowedFd<'a>>,
}

/// Executes the new program with the handover; returns only if the exec
/// failed (the master is as it was, but for `blocked`, which the caller
/// unblocks once it handled what it drained).
///
/// The caller blocked the handled signals before building `plan`.
pub(crate) fn exec(plan: ExecPlan<'_>) -> io::Error {
    match try_exec(plan) {
        Ok(never) => match never {},
        Err(error) => error,
    }
}

fn try_exec(plan: ExecPlan<'_>) -> io::Result<std::convert::Infallible> {
    let ExecPlan { exe, program, handover, fds } = plan;
    let bytes = handover.encode()?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_HANDOVER_LEN {
        // The new master would refuse it, after the point of no return.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a handover of {} bytes is more than the new master reads", bytes.len()),
        ));
    }
    let memfd = write_memfd(&bytes)?;
    let pid = std::process::id();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(name, _)| !DROPPED_ON_EXEC.iter().any(|dropped| OsStr::new(dropped) == name))
        .filter_map(|(name, value)| {
            let mut pair = name.into_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            CString::new(pair).ok()
        })
        .collect();
    for (name, value) in
        [(ENV_HANDOVER_FD, memfd.as_raw_fd().to_string()), (ENV_HANDOVER_PID, pid.to_string())]
    {
        env.push(CString::new(format!("{name}={value}")).expect("no NUL in numbers"));
    }
    let args = program
        .args
        .iter()
        .map(|arg| CString::new(arg.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an argument contains NUL"))?;
    log::info!(
        target: "srv",
        "upgrade: executing {} in place (pid {pid}) with {} workers' channels, {} listening sockets and {} descriptors in a handover of {} bytes",
        program.path.display(),
        handover.channels.len(),
        handover.listeners.held.len(),
        fds.len() + 1,
        bytes.len()
    );
    log::logger().flush();
    let _ = io::stdout().flush();
    let mut all = fds;
    all.push(memfd.as_fd());
    let inherited = Inherited::clear(all)?;
    let error = nix::unistd::execveat(exe, c"", &args, &env, AtFlags::AT_EMPTY_PATH)
        .map(|never| match never {})
        .unwrap_err();
    drop(inherited);
    Err(io::Error::new(
        io::Error::from(error).kind(),
        format!("cannot execute {}: {error}", program.path.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloexec(fd: BorrowedFd<'_>) -> bool {
        let flags = fcntl(fd, FcntlArg::F_GETFD).unwrap();
        FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC)
    }

    #[test]
    fn close_on_exec_is_cleared_for_the_exec_and_restored_if_it_fails() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let inherited = Inherited::clear(vec![a.as_fd(), b.as_fd()]).unwrap();
        assert!(!cloexec(a.as_fd()) && !cloexec(b.as_fd()));
        drop(inherited);
        assert!(cloexec(a.as_fd()) && cloexec(b.as_fd()));
    }

    #[test]
    fn the_memfd_is_sealed_and_read_back() {
        let fd = write_memfd(b"srv-handover...").unwrap();
        assert!(fd.as_raw_fd() >= 10);
        assert_eq!(adopt::read_memfd(fd.as_fd()).unwrap(), b"srv-handover...");
        // It cannot be changed any more.
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let mut writer = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        assert!(writer.write_all(b"forged").is_err());
        assert_eq!(adopt::read_memfd(fd.as_fd()).unwrap(), b"srv-handover...");
        // An unsealed file is refused.
        let unsealed = memfd_create(c"unsealed", MFdFlags::MFD_CLOEXEC).unwrap();
        assert!(adopt::read_memfd(unsealed.as_fd()).unwrap_err().contains("sealed"));
    }
}
