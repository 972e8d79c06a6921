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
//! Unix-domain socket files are removed when stale (nobody accepts on them)
//! before binding, and removed again when the master drops its listeners.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use socket2::{Domain, SockAddr, Socket, Type};
use srv_proto::{ListenAddr, ListenError};

/// The backlog of every listening socket: large, because during a recycle
/// the queue is what carries connections from one worker to the next. The
/// kernel caps it at `net.core.somaxconn`.
pub(crate) const BACKLOG: i32 = 4096;

#[derive(Debug)]
struct Held {
    socket: OwnedFd,
    actual: ListenAddr,
}

/// The sockets held, by the address workers asked for.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    held: HashMap<ListenAddr, Held>,
    /// Socket files this master created, removed on drop.
    unix_paths: Vec<PathBuf>,
}

impl Listeners {
    /// The sockets a service manager passed to this process (none unless
    /// `LISTEN_PID` is this process), keyed by their local address.
    /// Descriptors that are not TCP or Unix stream sockets are skipped with a
    /// warning.
    pub(crate) fn from_env() -> Listeners {
        let mut passed = listenfd::ListenFd::from_env();
        let mut listeners = Listeners::default();
        for index in 0..passed.len() {
            let adopted = match passed.take_tcp_listener(index) {
                Ok(listener) => listener.map(|listener| {
                    (listener.local_addr().map(ListenAddr::Tcp), OwnedFd::from(listener))
                }),
                Err(_) => match passed.take_unix_listener(index) {
                    Ok(listener) => listener.map(|listener| {
                        let actual = listener.local_addr().and_then(|addr| {
                            addr.as_pathname()
                                .map(|path| ListenAddr::Unix(path.to_owned()))
                                .ok_or_else(|| io::Error::other("unnamed unix socket"))
                        });
                        (actual, OwnedFd::from(listener))
                    }),
                    Err(error) => {
                        log::warn!(target: "srv", "ignoring socket {index} passed by the service manager: {error}");
                        None
                    }
                },
            };
            let Some((actual, socket)) = adopted else { continue };
            match actual {
                Ok(actual) => {
                    log::info!(target: "srv", "adopted {actual} from the service manager");
                    listeners.held.insert(actual.clone(), Held { socket, actual });
                }
                Err(error) => {
                    log::warn!(target: "srv", "ignoring socket {index} passed by the service manager: {error}");
                }
            }
        }
        listeners
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
            let (socket, actual) = bind(requested).map_err(|error| ListenError {
                errno: error.raw_os_error(),
                message: format!("bind {requested}: {error}"),
            })?;
            if let ListenAddr::Unix(path) = &actual {
                self.unix_paths.push(path.clone());
            }
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
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for path in &self.unix_paths {
            // Best effort: the file may be gone or replaced already.
            let _ = std::fs::remove_file(path);
        }
    }
}

fn is_wildcard_port(addr: &ListenAddr) -> bool {
    matches!(addr, ListenAddr::Tcp(socket_addr) if socket_addr.port() == 0)
}

/// Binds and listens on `addr`: close-on-exec, blocking, `SO_REUSEADDR` for
/// TCP so a restarted master can bind while old connections linger in
/// `TIME_WAIT`.
fn bind(addr: &ListenAddr) -> io::Result<(OwnedFd, ListenAddr)> {
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
            Ok((OwnedFd::from(socket), ListenAddr::Tcp(actual)))
        }
        ListenAddr::Unix(path) => {
            remove_stale_socket(path)?;
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            socket.bind(&SockAddr::unix(path)?)?;
            socket.listen(BACKLOG)?;
            Ok((OwnedFd::from(socket), ListenAddr::Unix(path.clone())))
        }
    }
}

/// Removes a socket file at `path` that nobody accepts on any more (left by
/// a master that was killed). A live socket, or a file that is not a socket,
/// is left alone and the bind fails with "address in use".
fn remove_stale_socket(path: &std::path::Path) -> io::Result<()> {
    let Ok(metadata) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if !metadata.file_type().is_socket() {
        return Ok(());
    }
    match UnixStream::connect(path) {
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let dir = std::env::temp_dir().join(format!("srv-listeners-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "a dropped listener leaves its file behind");
        let addr = ListenAddr::Unix(path.clone());
        {
            let mut listeners = Listeners::default();
            listeners.get_or_bind(&addr).unwrap();
            UnixStream::connect(&path).unwrap();
        }
        assert!(!path.exists());
        std::fs::remove_dir(&dir).unwrap();
    }
}
