//! Adopting inherited descriptors: the report pipe of a probe, and every
//! descriptor an upgrade's handover names. The master's third `unsafe`
//! file (with `spawn` and `activation`): a number that came with the
//! environment is borrowed to be checked, and owned only once it is known
//! to be what it claims, never twice.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, SealFlag, fcntl};
use nix::sys::stat::{SFlag, fstat};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;
use srv_proto::{Channel, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

use super::format::HandoverFile;
use super::probe::ProbeRequest;
use super::{ENV_HANDOVER_FD, ENV_HANDOVER_PID, ENV_PROBE_FD, ENV_PROBE_PARENT, MAX_HANDOVER_LEN};
use crate::Error;
use crate::listeners::{HeldSocket, SocketFileState};
use crate::machine::{Handover, Signal};

/// `fd` moved to a number of 10 or above, close-on-exec.
pub(super) fn above_fixed(fd: OwnedFd) -> io::Result<OwnedFd> {
    let raw = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(10))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else
    // owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

static PROBE_TAKEN: AtomicBool = AtomicBool::new(false);

impl ProbeRequest {
    /// `Some` when this process is the probe of an upgrade: [`ENV_PROBE_FD`]
    /// is set, [`ENV_PROBE_PARENT`] names the parent, and the descriptor is
    /// the write end of a pipe. Variables that do not name the parent are
    /// ignored with a warning (a careless environment, not a probe), and so
    /// is a descriptor that is not such a pipe. Once per process.
    pub(crate) fn from_env() -> Option<ProbeRequest> {
        let fd = std::env::var_os(ENV_PROBE_FD)?;
        let shown = fd.to_string_lossy().into_owned();
        let parent = std::env::var(ENV_PROBE_PARENT).ok();
        let ppid = nix::unistd::getppid().as_raw();
        if parent.as_deref().and_then(|pid| pid.parse::<i32>().ok()) != Some(ppid) {
            log::warn!(
                target: "srv",
                "ignoring {ENV_PROBE_FD}={shown:?}: {ENV_PROBE_PARENT}={parent:?} is not this process's parent ({ppid})"
            );
            return None;
        }
        let Some(fd) = fd.to_str().and_then(|fd| fd.parse::<RawFd>().ok()).filter(|fd| *fd > 2)
        else {
            log::warn!(target: "srv", "ignoring {ENV_PROBE_FD}={shown:?}: not a descriptor number above 2");
            return None;
        };
        if PROBE_TAKEN.swap(true, Ordering::SeqCst) {
            return None;
        }
        // SAFETY: the borrow lives only for these checks, which only query
        // the descriptor; a number that is not open makes them fail.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Err(why) = pipe_write_end(borrowed) {
            log::warn!(target: "srv", "ignoring {ENV_PROBE_FD}={fd}: {why}");
            return None;
        }
        // SAFETY: the descriptor is open, the write end of a pipe, was
        // passed to this process for this purpose (its parent is the master
        // named), and `PROBE_TAKEN` makes this its only owner.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Some(ProbeRequest { report: File::from(owned) })
    }
}

/// Whether `fd` is the write end of a pipe; why not otherwise.
fn pipe_write_end(fd: BorrowedFd<'_>) -> Result<(), String> {
    let stat = fstat(fd).map_err(|errno| format!("cannot inspect it: {errno}"))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
        return Err("not a pipe".to_owned());
    }
    let flags =
        fcntl(fd, FcntlArg::F_GETFL).map_err(|errno| format!("cannot inspect it: {errno}"))?;
    if OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE != OFlag::O_WRONLY {
        return Err("not the write end of a pipe".to_owned());
    }
    Ok(())
}

static HANDOVER_TAKEN: AtomicBool = AtomicBool::new(false);

/// What the previous master handed over, every descriptor owned.
#[derive(Debug)]
pub(crate) struct Adopted {
    pub(crate) program: String,
    pub(crate) machine: Handover,
    /// Each worker's channel, by id.
    pub(crate) channels: Vec<(u32, Channel)>,
    pub(crate) held: Vec<HeldSocket>,
    pub(crate) files: Vec<SocketFileState>,
    pub(crate) bound: usize,
    pub(crate) signals: Vec<Signal>,
}

/// The handover of the master this process was executed from, if any (see
/// the module docs). Call it before creating any descriptor.
///
/// # Errors
///
/// A handover that is not one, or that names a descriptor or a pid that is
/// not what it claims to be; the message says what.
pub(crate) fn take_handover() -> Result<Option<Adopted>, Error> {
    let Some(fd) = std::env::var_os(ENV_HANDOVER_FD) else { return Ok(None) };
    let shown = fd.to_string_lossy().into_owned();
    let pid = std::process::id();
    let named = std::env::var(ENV_HANDOVER_PID).ok();
    if named.as_deref().and_then(|named| named.parse::<u32>().ok()) != Some(pid) {
        log::warn!(
            target: "srv",
            "ignoring {ENV_HANDOVER_FD}={shown:?}: {ENV_HANDOVER_PID}={named:?} is not this process ({pid})"
        );
        return Ok(None);
    }
    if HANDOVER_TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    let invalid = Error::Handover;
    let fd = shown
        .parse::<RawFd>()
        .ok()
        .filter(|fd| *fd > 2)
        .ok_or_else(|| invalid(format!("{ENV_HANDOVER_FD}={shown:?} is not a descriptor")))?;
    // SAFETY: the borrow lives only for the checks and the read below,
    // which fail with EBADF for a number that is not open; nothing closes
    // it here.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let bytes = read_memfd(borrowed).map_err(|why| invalid(format!("fd {fd}: {why}")))?;
    let handover = HandoverFile::decode(&bytes).map_err(invalid)?;
    check(&handover, fd, pid).map_err(invalid)?;
    // Every number is checked: own them all, the handover's own too, and
    // make them close-on-exec again, so that no worker inherits them.
    // SAFETY: each number given to `own` was named by the handover, which
    // this process's previous image wrote for this pid; it is distinct from
    // every other (checked above), open and of the kind it claims
    // (`validate`), and `HANDOVER_TAKEN` makes this the only place that owns
    // these numbers.
    let own = |fd: RawFd| unsafe { OwnedFd::from_raw_fd(fd) };
    drop(own(fd));
    let take = |fd: RawFd| -> Result<OwnedFd, Error> {
        let owned = own(fd);
        fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map_err(|errno| invalid(format!("fd {fd}: cannot make it close-on-exec: {errno}")))?;
        Ok(owned)
    };
    let HandoverFile { program, machine, channels, listeners, signals, .. } = handover;
    let mut adopted_channels = Vec::new();
    for channel in channels {
        let stream = UnixStream::from(take(channel.fd)?);
        let mut queued = Vec::new();
        for (bytes, fds) in channel.queued {
            let fds = fds.into_iter().map(take).collect::<Result<Vec<_>, _>>()?;
            queued.push((bytes, fds));
        }
        adopted_channels.push((channel.worker, Channel::resume(stream, &channel.unread, queued)));
    }
    let mut held = Vec::new();
    for socket in listeners.held {
        let fd = take(socket.fd)?;
        held.push(HeldSocket { requested: socket.requested, actual: socket.actual, socket: fd });
    }
    let mut files = Vec::new();
    for file in listeners.files {
        let dir = take(file.dir_fd)?;
        files.push(SocketFileState {
            dir,
            name: OsString::from_vec(file.name),
            dev: file.dev,
            ino: file.ino,
            path: PathBuf::from(OsString::from_vec(file.path)),
        });
    }
    Ok(Some(Adopted {
        program,
        machine,
        channels: adopted_channels,
        held,
        files,
        bound: listeners.bound,
        signals: signals.into_iter().map(Signal::from).collect(),
    }))
}

/// Reads the handover from its `memfd`: a sealed regular file of at most
/// [`MAX_HANDOVER_LEN`] bytes.
pub(super) fn read_memfd(fd: BorrowedFd<'_>) -> Result<Vec<u8>, String> {
    let stat = fstat(fd).map_err(|errno| format!("cannot inspect it: {errno}"))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err("not a regular file".to_owned());
    }
    let seals = fcntl(fd, FcntlArg::F_GET_SEALS).map_err(|errno| format!("not sealed: {errno}"))?;
    let needed = SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
    if !SealFlag::from_bits_truncate(seals).contains(needed) {
        return Err("not sealed against writes".to_owned());
    }
    let len = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
    if len > MAX_HANDOVER_LEN {
        return Err(format!("{len} bytes, more than the {MAX_HANDOVER_LEN} a handover may have"));
    }
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
    let mut read = 0;
    while read < bytes.len() {
        let offset = i64::try_from(read).unwrap_or(i64::MAX);
        match nix::sys::uio::pread(fd, &mut bytes[read..], offset) {
            Ok(0) => return Err("shorter than its size".to_owned()),
            Ok(n) => read += n,
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(format!("cannot read it: {errno}")),
        }
    }
    Ok(bytes)
}

/// Whether the handover, read from the descriptor `own_fd`, is for this
/// process (`pid`) and names only what this process may own: distinct
/// descriptors that are what they claim, workers that are its children,
/// channels of listed workers. Why not otherwise.
fn check(handover: &HandoverFile, own_fd: RawFd, pid: u32) -> Result<(), String> {
    if handover.pid != pid {
        return Err(format!("it is for pid {}, not this process ({pid})", handover.pid));
    }
    // The probe said which versions this master accepts; a handover that
    // disagrees was not written for this program.
    for worker in &handover.machine.workers {
        if let Some(version) = worker.protocol_version
            && !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version)
        {
            return Err(format!(
                "worker {} speaks protocol {version}, and this master \
                 {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}",
                worker.id
            ));
        }
    }
    let mut seen = vec![own_fd];
    for (number, what) in handover.descriptors() {
        if number <= 2 || seen.contains(&number) {
            return Err(format!("fd {number} ({what}) is not a descriptor it may name"));
        }
        seen.push(number);
    }
    validate(handover)?;
    for worker in &handover.machine.workers {
        let child = Pid::from_raw(i32::try_from(worker.pid).unwrap_or(-1));
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        if let Err(errno) = waitid(Id::Pid(child), flags) {
            return Err(format!(
                "worker {} (pid {}) is not a child of this process: {errno}",
                worker.id, worker.pid
            ));
        }
    }
    let booked = |id: u32| handover.machine.workers.iter().any(|worker| worker.id == id);
    if let Some(channel) = handover.channels.iter().find(|channel| !booked(channel.worker)) {
        return Err(format!("a channel for worker {}, which it does not list", channel.worker));
    }
    Ok(())
}

/// Whether every descriptor the handover names is what it claims to be.
fn validate(handover: &HandoverFile) -> Result<(), String> {
    // SAFETY: each borrow lives only for one check, which only queries the
    // descriptor; a number that is not open makes it fail with EBADF.
    let borrow = |fd: RawFd| unsafe { BorrowedFd::borrow_raw(fd) };
    for channel in &handover.channels {
        unix_stream(borrow(channel.fd)).map_err(|why| {
            format!("fd {} (the channel of worker {}) {why}", channel.fd, channel.worker)
        })?;
        for fd in channel.queued.iter().flat_map(|(_, fds)| fds) {
            crate::activation::listening_address(borrow(*fd)).map_err(|why| {
                format!("fd {fd} (a socket queued for worker {}): {why}", channel.worker)
            })?;
        }
    }
    for socket in &handover.listeners.held {
        let actual = crate::activation::listening_address(borrow(socket.fd))
            .map_err(|why| format!("fd {} (listening on {}): {why}", socket.fd, socket.actual))?;
        if actual != socket.actual {
            return Err(format!(
                "fd {} listens on {actual}, not on {} as the handover says",
                socket.fd, socket.actual
            ));
        }
    }
    for file in &handover.listeners.files {
        let stat = fstat(borrow(file.dir_fd))
            .map_err(|errno| format!("fd {} (a directory): {errno}", file.dir_fd))?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
            return Err(format!("fd {} is not a directory", file.dir_fd));
        }
    }
    Ok(())
}

/// Whether `fd` is a Unix stream socket; why not otherwise.
fn unix_stream(fd: BorrowedFd<'_>) -> Result<(), String> {
    use nix::sys::socket::{
        AddressFamily, SockType, SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt,
    };
    let kind = getsockopt(&fd, sockopt::SockType).map_err(|errno| match errno {
        Errno::EBADF => "is not open".to_owned(),
        Errno::ENOTSOCK => "is not a socket".to_owned(),
        errno => format!("cannot be inspected: {errno}"),
    })?;
    if kind != SockType::Stream {
        return Err("is not a stream socket".to_owned());
    }
    let addr: SockaddrStorage =
        getsockname(fd.as_raw_fd()).map_err(|errno| format!("cannot be inspected: {errno}"))?;
    if addr.family() != Some(AddressFamily::Unix) {
        return Err("is not a Unix socket".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::os::fd::AsFd;
    use std::process::Command;

    use super::super::format::{HandedChannel, HandedFile, HandedListeners, HandedSocket};
    use super::*;
    use crate::machine::{HandedState, HandedWorker};

    /// A handover for this process with a real channel, listening socket
    /// and directory, and one worker: a child of this test.
    struct Fixture {
        handover: HandoverFile,
        _kept: (UnixStream, UnixStream, TcpListener, File, std::process::Child),
    }

    fn fixture() -> Fixture {
        let (channel, peer) = UnixStream::pair().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let dir = File::open("/").unwrap();
        let child = Command::new("sleep").arg("5").spawn().unwrap();
        let handover = HandoverFile {
            pid: std::process::id(),
            program: "/bin/app".to_owned(),
            machine: Handover {
                count: 1,
                target: 1,
                next_id: 2,
                ever_started: true,
                ever_ready: true,
                upgrade_age_ms: 0,
                workers: vec![HandedWorker {
                    id: 1,
                    pid: child.id(),
                    state: HandedState::Started,
                    protocol_version: Some(PROTOCOL_VERSION),
                    exit_code: None,
                    age_ms: 10,
                    started_ms_ago: Some(5),
                    streak: 0,
                    closed_in_ms: None,
                    listen_requests: 1,
                    watchdog_ms: Some(1000),
                    heard_ms_ago: Some(5),
                    heartbeat_seen: false,
                }],
                restarts: Vec::new(),
            },
            channels: vec![HandedChannel {
                worker: 1,
                fd: channel.as_raw_fd(),
                unread: Vec::new(),
                queued: Vec::new(),
            }],
            listeners: HandedListeners {
                held: vec![HandedSocket {
                    requested: "127.0.0.1:0".parse().unwrap(),
                    actual: listener.local_addr().unwrap().into(),
                    fd: listener.as_raw_fd(),
                }],
                files: vec![HandedFile {
                    dir_fd: dir.as_raw_fd(),
                    name: b"app.sock".to_vec(),
                    dev: 0,
                    ino: 0,
                    path: b"/app.sock".to_vec(),
                }],
                bound: 1,
            },
            signals: Vec::new(),
        };
        Fixture { handover, _kept: (channel, peer, listener, dir, child) }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let child = &mut self._kept.4;
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    #[test]
    fn a_handover_that_names_what_it_claims_is_accepted() {
        let fixture = fixture();
        assert_eq!(check(&fixture.handover, 1000, std::process::id()), Ok(()));
    }

    #[test]
    fn a_handover_that_names_anything_else_is_refused_naming_it() {
        let pipe = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let unbound = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let pid = std::process::id();
        type Break = Box<dyn Fn(&mut HandoverFile)>;
        let (pipe_fd, udp_fd, other_fd) =
            (pipe.0.as_raw_fd(), unbound.as_fd().as_raw_fd(), other.as_raw_fd());
        let cases: Vec<(Break, &str)> = vec![
            (Box::new(|h| h.pid += 1), "not this process"),
            (
                Box::new(|h| h.machine.workers[0].protocol_version = Some(PROTOCOL_VERSION + 1)),
                "speaks protocol",
            ),
            (Box::new(move |h| h.channels[0].fd = pipe_fd), "is not a socket"),
            (Box::new(move |h| h.channels[0].fd = udp_fd), "is not a stream socket"),
            (Box::new(|h| h.channels[0].fd = 2), "is not a descriptor it may name"),
            (Box::new(|h| h.channels[0].fd = 1000), "is not a descriptor it may name"),
            (
                Box::new(|h| h.channels[0].fd = h.listeners.held[0].fd),
                "is not a descriptor it may name",
            ),
            (Box::new(move |h| h.listeners.held[0].fd = other_fd), "not on 127.0.0.1:"),
            (Box::new(move |h| h.listeners.held[0].fd = pipe_fd), "not a socket"),
            (Box::new(move |h| h.listeners.files[0].dir_fd = pipe_fd), "is not a directory"),
            (Box::new(|h| h.channels[0].worker = 9), "a channel for worker 9"),
            (Box::new(|h| h.machine.workers[0].pid = 1), "is not a child of this process"),
        ];
        for (breaks, expected) in cases {
            let mut fixture = fixture();
            breaks(&mut fixture.handover);
            let error = check(&fixture.handover, 1000, pid).unwrap_err();
            assert!(error.contains(expected), "expected {expected:?}: {error}");
        }
    }
}
