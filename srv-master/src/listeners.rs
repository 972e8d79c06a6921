//! The listening sockets the master holds for its workers.
//!
//! Each address is bound once and kept open for the master's whole life, so
//! connections queued in the kernel's backlog survive any worker's exit:
//! that is what makes recycles lossless. Workers asking for the same text
//! (port 0 included), or for the actual address of a socket held, get the
//! same socket.
//!
//! Sockets passed by a service manager (systemd socket activation:
//! `LISTEN_FDS`, `LISTEN_PID`) are adopted at startup and handed to workers
//! whose `listen` names their local address, so even a restart of the master
//! itself loses no queued connection.
//!
//! # Unix socket files: no path is trusted between check and use
//!
//! A Unix socket is a file the master creates, and removes again, because a
//! worker asked for a path; the master may be root, and the worker another
//! user who owns some directory on that path. So a path is resolved once,
//! when it is bound:
//!
//! 1. Its directory is opened component by component without following any
//!    symbolic link (`O_PATH | O_NOFOLLOW` on each; a path through a link is
//!    refused, naming the link). Everything later goes through that
//!    descriptor.
//! 2. A stale socket file there (one that refuses connections, left by a
//!    master that was killed) is removed with `unlinkat` on the descriptor,
//!    only if `fstatat` still finds the same (device, inode) that the probe
//!    looked at. The probe is a non-blocking `connect`, so a listener with a
//!    full backlog cannot hang the master.
//! 3. The socket is bound at the path's text (the kernel has no
//!    `bind` relative to a directory descriptor) and `fstatat` on the
//!    descriptor at once records the file's (device, inode), which must be
//!    a socket and the one the path names; otherwise the bind is undone and
//!    refused as a race.
//! 4. `listen.unix_mode` is applied through an `O_PATH` descriptor of that
//!    very inode (`chmod` of its `/proc/self/fd` entry), so a file swapped
//!    in meanwhile is never changed.
//! 5. When the listeners are dropped, the file is removed with `unlinkat` on
//!    the directory descriptor, and only if `fstatat` still finds the
//!    recorded (device, inode) there.
//!
//! So whatever a worker renames or replaces with a symbolic link after the
//! bind, the master removes nothing but its own socket in the directory it
//! bound in. What is left is the instant between a successful `fstatat` and
//! the `unlinkat`, in which only a user who may already remove entries of
//! that directory can replace the entry.
//!
//! When workers run as another user, a Unix path must be named in
//! `listen.allow` ([`Policy::unix_needs_allow`]): the operator, not a
//! worker, chooses which files a root master creates.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, open, openat};
use nix::sys::stat::{FchmodatFlags, FileStat, Mode, SFlag, fchmodat, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use socket2::{Domain, SockAddr, Socket, Type};
use srv_proto::{ListenAddr, ListenError};

/// The backlog of every listening socket: large, because during a recycle
/// the queue is what carries connections from one worker to the next. The
/// kernel caps it at `net.core.somaxconn`.
pub(crate) const BACKLOG: i32 = 4096;

/// What the master may bind for its workers, beyond what the kernel allows.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// `listen.unix_mode`: the permission bits of every socket file created.
    pub(crate) unix_mode: Option<u32>,
    /// Workers run as another user: a Unix path must be in `allow`.
    pub(crate) unix_needs_allow: bool,
    /// `listen.allow`.
    pub(crate) allow: Vec<ListenAddr>,
    /// `listen.max_addresses`: the most addresses bound over the master's
    /// life.
    pub(crate) max_addresses: usize,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            unix_mode: None,
            unix_needs_allow: false,
            allow: Vec::new(),
            max_addresses: crate::options::DEFAULT_MAX_ADDRESSES,
        }
    }
}

#[derive(Debug)]
struct Held {
    socket: OwnedFd,
    actual: ListenAddr,
}

/// A socket file this master created, and how to find exactly it again.
#[derive(Debug)]
struct SocketFile {
    /// The directory it was bound in, opened without following links.
    dir: OwnedFd,
    name: OsString,
    dev: u64,
    ino: u64,
    /// For log lines only.
    path: PathBuf,
}

/// A socket held, as the upgrade hands it over: by the address asked for.
#[derive(Debug)]
pub(crate) struct HeldSocket {
    pub(crate) requested: ListenAddr,
    pub(crate) actual: ListenAddr,
    pub(crate) socket: OwnedFd,
}

/// A socket file this master created, as the upgrade hands it over.
#[derive(Debug)]
pub(crate) struct SocketFileState {
    pub(crate) dir: OwnedFd,
    pub(crate) name: OsString,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) path: PathBuf,
}

/// A socket held, for the handover: by the address asked for.
#[derive(Debug)]
pub(crate) struct HeldView<'a> {
    pub(crate) requested: &'a ListenAddr,
    pub(crate) actual: &'a ListenAddr,
    pub(crate) socket: BorrowedFd<'a>,
}

/// A socket file, for the handover.
#[derive(Debug)]
pub(crate) struct FileView<'a> {
    pub(crate) dir: BorrowedFd<'a>,
    pub(crate) name: &'a OsStr,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) path: &'a Path,
}

/// The sockets held, by the address workers asked for.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    held: HashMap<ListenAddr, Held>,
    /// Socket files this master created, removed on drop.
    files: Vec<SocketFile>,
    /// Addresses bound so far (adopted sockets not counted); never goes
    /// down, since every socket is held until the master exits.
    bound: usize,
    policy: Policy,
}

impl Listeners {
    /// Listeners that bind under `policy`, holding `adopted` (the sockets a
    /// service manager passed, by their local address) from the start.
    pub(crate) fn new(policy: Policy, adopted: Vec<(ListenAddr, OwnedFd)>) -> Listeners {
        let held = adopted
            .into_iter()
            .map(|(actual, socket)| (actual.clone(), Held { socket, actual }))
            .collect();
        Listeners { held, files: Vec::new(), bound: 0, policy }
    }

    /// Listeners that go on where those of the master this process was
    /// executed from left off (the upgrade): the same sockets, the same
    /// socket files to remove at exit, the same count of addresses bound.
    pub(crate) fn restore(
        policy: Policy,
        held: Vec<HeldSocket>,
        files: Vec<SocketFileState>,
        bound: usize,
    ) -> Listeners {
        let held = held
            .into_iter()
            .map(|held| (held.requested, Held { socket: held.socket, actual: held.actual }))
            .collect();
        let files = files
            .into_iter()
            .map(|file| SocketFile {
                dir: file.dir,
                name: file.name,
                dev: file.dev,
                ino: file.ino,
                path: file.path,
            })
            .collect();
        Listeners { held, files, bound, policy }
    }

    /// The sockets held, for the handover.
    pub(crate) fn held(&self) -> Vec<HeldView<'_>> {
        self.held
            .iter()
            .map(|(requested, held)| HeldView {
                requested,
                actual: &held.actual,
                socket: held.socket.as_fd(),
            })
            .collect()
    }

    /// The socket files to remove at exit, for the handover.
    pub(crate) fn files(&self) -> Vec<FileView<'_>> {
        self.files
            .iter()
            .map(|file| FileView {
                dir: file.dir.as_fd(),
                name: &file.name,
                dev: file.dev,
                ino: file.ino,
                path: &file.path,
            })
            .collect()
    }

    /// Addresses bound so far, for the handover.
    pub(crate) fn bound(&self) -> usize {
        self.bound
    }

    /// The socket for `requested` and its actual address, binding it first
    /// if no socket is held for it. The `bool` says whether it was bound now.
    pub(crate) fn get_or_bind(
        &mut self,
        requested: &ListenAddr,
    ) -> Result<(BorrowedFd<'_>, ListenAddr, bool), ListenError> {
        let known = self.held.contains_key(requested)
            || self
                .held
                .values()
                .any(|held| held.actual == *requested && !is_wildcard_port(requested));
        if !known {
            if let ListenAddr::Unix(_) = requested
                && self.policy.unix_needs_allow
                && !self.policy.allow.contains(requested)
            {
                return Err(ListenError {
                    errno: Some(nix::libc::EACCES),
                    message: format!(
                        "listen {requested}: not in listen.allow, which must name every Unix \
                         socket path when workers run as another user"
                    ),
                });
            }
            if self.bound >= self.policy.max_addresses {
                return Err(ListenError {
                    errno: None,
                    message: format!(
                        "listen {requested}: the master already bound {} addresses, the most \
                         listen.max_addresses allows",
                        self.bound
                    ),
                });
            }
            let bound = bind(requested, self.policy.unix_mode).map_err(|error| ListenError {
                errno: error.raw_os_error(),
                message: format!("bind {requested}: {error}"),
            })?;
            let (socket, actual) = match bound {
                Bound::Tcp(socket, actual) => (socket, actual),
                Bound::Unix(socket, file) => {
                    let actual = ListenAddr::Unix(file.path.clone());
                    self.files.push(file);
                    (socket, actual)
                }
            };
            self.bound += 1;
            self.held.insert(requested.clone(), Held { socket, actual });
            let held = &self.held[requested];
            return Ok((held.socket.as_fd(), held.actual.clone(), true));
        }
        let held = match self.held.get(requested) {
            Some(held) => held,
            None => {
                self.held.values().find(|held| held.actual == *requested).expect("checked above")
            }
        };
        Ok((held.socket.as_fd(), held.actual.clone(), false))
    }

    /// Closes every socket and removes the socket files this master created
    /// (see the module documentation); the policy stays.
    pub(crate) fn close(&mut self) {
        self.held.clear();
        for file in self.files.drain(..) {
            file.remove();
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.close();
    }
}

impl SocketFile {
    /// Removes the file if it is still the one this master created, in the
    /// directory it was created in.
    fn remove(self) {
        match fstatat(&self.dir, self.name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) if (stat.st_dev, stat.st_ino) == (self.dev, self.ino) => {
                if let Err(errno) =
                    unlinkat(&self.dir, self.name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                {
                    log::warn!(target: "srv", "cannot remove the socket file {:?}: {errno}", self.path);
                }
            }
            // Removed already: by whoever, it is gone.
            Err(Errno::ENOENT) => {}
            Ok(_) => log::warn!(
                target: "srv",
                "not removing {:?}: it is no longer the socket file this master created",
                self.path
            ),
            Err(errno) => {
                log::warn!(target: "srv", "cannot check the socket file {:?}: {errno}", self.path)
            }
        }
    }
}

fn is_wildcard_port(addr: &ListenAddr) -> bool {
    matches!(addr, ListenAddr::Tcp(socket_addr) if socket_addr.port() == 0)
}

/// A socket just bound and listening.
enum Bound {
    Tcp(OwnedFd, ListenAddr),
    Unix(OwnedFd, SocketFile),
}

/// Binds and listens on `addr`: close-on-exec, blocking, `SO_REUSEADDR` for
/// TCP so a restarted master can bind while old connections linger in
/// `TIME_WAIT`.
fn bind(addr: &ListenAddr, unix_mode: Option<u32>) -> io::Result<Bound> {
    match addr {
        ListenAddr::Tcp(socket_addr) => {
            let socket = Socket::new(Domain::for_address(*socket_addr), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.bind(&SockAddr::from(*socket_addr))?;
            socket.listen(BACKLOG)?;
            let actual = socket
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("bound TCP socket has no IP address"))?;
            Ok(Bound::Tcp(OwnedFd::from(socket), ListenAddr::Tcp(actual)))
        }
        ListenAddr::Unix(path) => {
            let (socket, file) = bind_unix(path, unix_mode)?;
            Ok(Bound::Unix(socket, file))
        }
    }
}

/// Binds a Unix socket at `path` as the module documentation describes.
fn bind_unix(path: &Path, unix_mode: Option<u32>) -> io::Result<(OwnedFd, SocketFile)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?
        .to_owned();
    let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty());
    let dir = open_dir_nofollow(parent.unwrap_or(Path::new(".")))?;
    remove_stale_socket(&dir, &name, path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    // On failure, whatever is at the path is not provably this socket: it
    // is left alone.
    let stat = bound_file(&dir, &name, path)?;
    let file = SocketFile { dir, name, dev: stat.st_dev, ino: stat.st_ino, path: path.to_owned() };
    if let Some(mode) = unix_mode {
        // Until `listen`, nobody can connect, so the bits are right before
        // anyone can use them. On failure, the file is removed on drop.
        if let Err(error) = chmod_socket(&file, mode) {
            file.remove();
            return Err(error);
        }
    }
    if let Err(error) = socket.listen(BACKLOG) {
        file.remove();
        return Err(error);
    }
    Ok((OwnedFd::from(socket), file))
}

/// The socket file the bind just created: found through the directory
/// descriptor, a socket, and the very file the path's text names.
fn bound_file(dir: &OwnedFd, name: &OsStr, path: &Path) -> io::Result<FileStat> {
    let raced = || {
        io::Error::other(
            "the path changed while the socket was bound (a directory renamed or replaced); \
             refusing it",
        )
    };
    let stat = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|_| raced())?;
    let by_text = nix::sys::stat::stat(path).map_err(|_| raced())?;
    let is_socket = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK;
    if !is_socket || (stat.st_dev, stat.st_ino) != (by_text.st_dev, by_text.st_ino) {
        return Err(raced());
    }
    Ok(stat)
}

/// Sets the permission bits of `file` through an `O_PATH` descriptor of
/// the recorded inode, so that an entry swapped in meanwhile is never
/// touched. Linux has no `fchmod` for `O_PATH` descriptors and no
/// `fchmodat(AT_SYMLINK_NOFOLLOW)` before 6.6; `chmod` of the descriptor's
/// `/proc/self/fd` entry changes the inode it refers to.
fn chmod_socket(file: &SocketFile, mode: u32) -> io::Result<()> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(&file.dir, file.name.as_os_str(), flags, Mode::empty())?;
    let stat = fstat(&fd)?;
    if (stat.st_dev, stat.st_ino) != (file.dev, file.ino) {
        return Err(io::Error::other("the socket file was replaced before its mode was set"));
    }
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let mode = Mode::from_bits_truncate(mode);
    fchmodat(AT_FDCWD, proc_path.as_str(), mode, FchmodatFlags::FollowSymlink).map_err(|errno| {
        io::Error::new(
            io::Error::from(errno).kind(),
            format!(
                "cannot set listen.unix_mode (through {proc_path}, is /proc mounted?): {errno}"
            ),
        )
    })
}

/// Opens the directory `dir` for `*at` calls without following a symbolic
/// link in any component (`O_PATH | O_NOFOLLOW` one component at a time).
fn open_dir_nofollow(dir: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let start = if dir.is_absolute() { "/" } else { "." };
    let mut current = open(start, flags, Mode::empty())?;
    let mut walked = PathBuf::from(if dir.is_absolute() { "/" } else { "" });
    for component in dir.components() {
        let name: &OsStr = match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            Component::ParentDir => OsStr::new(".."),
            Component::Normal(name) => name,
        };
        walked.push(name);
        current =
            openat(&current, name, flags | OFlag::O_NOFOLLOW, Mode::empty()).map_err(|errno| {
                let is_link =
                    fstatat(&current, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|stat| {
                        SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
                    });
                if is_link {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "{walked:?} is a symbolic link; name the directory it points to \
                             (socket paths are not resolved through links)"
                        ),
                    )
                } else {
                    io::Error::new(io::Error::from(errno).kind(), format!("{walked:?}: {errno}"))
                }
            })?;
    }
    Ok(current)
}

/// Removes the socket file `name` in `dir` if nobody accepts on it any more
/// (left by a master that was killed). A live socket, or a file that is not
/// a socket, is left alone and the bind fails with "address in use". The
/// file is removed only if it is still the one probed.
fn remove_stale_socket(dir: &OwnedFd, name: &OsStr, path: &Path) -> io::Result<()> {
    let stat = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(_) => return Ok(()),
    };
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Ok(());
    }
    if !refuses_connections(path)? {
        return Ok(());
    }
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(again) if (again.st_dev, again.st_ino) == (stat.st_dev, stat.st_ino) => {
            unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).map_err(io::Error::from)
        }
        // Replaced or removed meanwhile: let the bind say what it finds.
        _ => Ok(()),
    }
}

/// Whether the socket at `path` refuses connections: nobody listens on it.
///
/// The probe never blocks: a listener whose backlog is full (its process
/// stopped, or hostile) would hold a blocking `connect` forever, and signal
/// handlers restart it (`SA_RESTART`), so the whole master would hang.
/// Non-blocking, a full backlog is `EAGAIN`: someone listens, the socket
/// is in use.
fn refuses_connections(path: &Path) -> io::Result<bool> {
    let probe = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None)?;
    match probe.connect(&SockAddr::unix(path)?) {
        Err(error) => Ok(error.kind() == io::ErrorKind::ConnectionRefused),
        Ok(()) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixStream;

    use super::*;

    /// A directory of this test's own, removed when dropped.
    fn test_dir(tag: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(&format!("srv-listeners-{tag}-")).tempdir().unwrap()
    }

    fn unix(path: &Path) -> ListenAddr {
        ListenAddr::Unix(path.to_owned())
    }

    #[test]
    fn one_socket_per_address_port_zero_included() {
        let mut listeners = Listeners::default();
        let any: ListenAddr = "127.0.0.1:0".parse().unwrap();
        let (_, actual, bound) = listeners.get_or_bind(&any).unwrap();
        assert!(bound);
        let ListenAddr::Tcp(socket_addr) = actual.clone() else { panic!("tcp expected") };
        assert_ne!(socket_addr.port(), 0);
        let (_, again, bound) = listeners.get_or_bind(&any).unwrap();
        assert!(!bound);
        assert_eq!(again, actual);
        let (_, by_actual, bound) = listeners.get_or_bind(&actual).unwrap();
        assert!(!bound);
        assert_eq!(by_actual, actual);
        // The socket accepts connections while the master holds it.
        std::net::TcpStream::connect(socket_addr).unwrap();
    }

    #[test]
    fn bind_errors_name_the_address_and_errno() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = ListenAddr::Tcp(taken.local_addr().unwrap());
        let mut listeners = Listeners::default();
        let error = listeners.get_or_bind(&addr).unwrap_err();
        assert_eq!(error.errno, Some(nix::libc::EADDRINUSE));
        assert!(error.message.starts_with(&format!("bind {addr}: ")), "{}", error.message);
    }

    #[test]
    fn unix_sockets_replace_stale_files_and_are_removed_on_drop() {
        let dir = test_dir("stale");
        let path = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "a dropped listener leaves its file behind");
        let addr = unix(&path);
        {
            let mut listeners = Listeners::default();
            listeners.get_or_bind(&addr).unwrap();
            UnixStream::connect(&path).unwrap();
        }
        assert!(!path.exists());
    }

    #[test]
    fn a_live_socket_or_another_file_is_not_replaced() {
        let dir = test_dir("live");
        let live = dir.path().join("live.sock");
        let _owner = std::os::unix::net::UnixListener::bind(&live).unwrap();
        let regular = dir.path().join("regular");
        std::fs::write(&regular, "keep").unwrap();
        let mut listeners = Listeners::default();
        for path in [&live, &regular] {
            let error = listeners.get_or_bind(&unix(path)).unwrap_err();
            assert_eq!(error.errno, Some(nix::libc::EADDRINUSE), "{}", error.message);
        }
        drop(listeners);
        assert!(live.exists());
        assert_eq!(std::fs::read_to_string(&regular).unwrap(), "keep");
    }

    /// The attack of a worker that owns a directory on the path: once the
    /// socket is bound, it renames the directory away and puts a symbolic
    /// link to another directory in its place. The master removes only its
    /// own socket, in the directory it bound in.
    #[test]
    fn only_the_socket_created_is_removed_wherever_its_directory_went() {
        let dir = test_dir("swap");
        let owned = dir.path().join("owned");
        let victim = dir.path().join("victim");
        std::fs::create_dir(&owned).unwrap();
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("passwd"), "root:x:0:0").unwrap();
        let mut listeners = Listeners::default();
        listeners.get_or_bind(&unix(&owned.join("passwd"))).unwrap();
        let moved = dir.path().join("moved");
        std::fs::rename(&owned, &moved).unwrap();
        std::os::unix::fs::symlink(&victim, &owned).unwrap();
        drop(listeners);
        assert_eq!(std::fs::read_to_string(victim.join("passwd")).unwrap(), "root:x:0:0");
        assert!(!moved.join("passwd").exists(), "the socket itself is removed where it went");
    }

    #[test]
    fn a_socket_file_replaced_by_another_is_left_alone() {
        let dir = test_dir("replaced");
        let path = dir.path().join("app.sock");
        let mut listeners = Listeners::default();
        listeners.get_or_bind(&unix(&path)).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "not the master's").unwrap();
        drop(listeners);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not the master's");
    }

    #[test]
    fn a_path_through_a_symbolic_link_is_refused_naming_it() {
        let dir = test_dir("link");
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        let mut listeners = Listeners::default();
        let error = listeners.get_or_bind(&unix(&dir.path().join("link/app.sock"))).unwrap_err();
        assert!(error.message.contains("is a symbolic link"), "{}", error.message);
        assert!(error.message.contains("link\""), "{}", error.message);
        assert!(!dir.path().join("real/app.sock").exists(), "nothing was bound");
    }

    #[test]
    fn unix_mode_sets_the_permission_bits() {
        let dir = test_dir("mode");
        for mode in [0o600, 0o666] {
            let path = dir.path().join(format!("{mode:o}.sock"));
            let policy = Policy { unix_mode: Some(mode), ..Policy::default() };
            let mut listeners = Listeners::new(policy, Vec::new());
            listeners.get_or_bind(&unix(&path)).unwrap();
            let bits = std::fs::symlink_metadata(&path).unwrap().permissions().mode() & 0o7777;
            assert_eq!(bits, mode, "{path:?}");
        }
    }

    #[test]
    fn at_most_max_addresses_are_bound_over_the_masters_life() {
        let policy = Policy { max_addresses: 2, ..Policy::default() };
        let mut listeners = Listeners::new(policy, Vec::new());
        let (first, second, third): (ListenAddr, ListenAddr, ListenAddr) = (
            "127.0.0.1:0".parse().unwrap(),
            "[::1]:0".parse().unwrap(),
            "127.0.0.3:0".parse().unwrap(),
        );
        let (_, actual, _) = listeners.get_or_bind(&first).unwrap();
        if listeners.get_or_bind(&second).is_err() {
            // No IPv6 here: bind a second IPv4 address instead.
            listeners.get_or_bind(&"127.0.0.2:0".parse().unwrap()).unwrap();
        }
        let error = listeners.get_or_bind(&third).unwrap_err();
        assert!(error.message.contains("listen.max_addresses"), "{}", error.message);
        // Addresses held are still handed out.
        let (_, again, bound) = listeners.get_or_bind(&actual).unwrap();
        assert_eq!((again, bound), (actual, false));
    }

    #[test]
    fn unix_paths_need_the_allow_list_when_workers_are_another_user() {
        let dir = test_dir("allow");
        let allowed = unix(&dir.path().join("allowed.sock"));
        let other = unix(&dir.path().join("other.sock"));
        let policy =
            Policy { unix_needs_allow: true, allow: vec![allowed.clone()], ..Policy::default() };
        let mut listeners = Listeners::new(policy, Vec::new());
        listeners.get_or_bind(&allowed).unwrap();
        let error = listeners.get_or_bind(&other).unwrap_err();
        assert_eq!(error.errno, Some(nix::libc::EACCES));
        assert!(error.message.contains("not in listen.allow"), "{}", error.message);
        assert!(!dir.path().join("other.sock").exists());
    }
}
