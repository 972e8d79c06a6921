//! [`Listener`]: a TCP or Unix-domain listening socket, as `listen` returns it.

use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;

use srv_proto::ListenAddr;

/// A listening socket: TCP or Unix-domain, by the address asked for.
///
/// ```
/// use srv_worker::{Listener, Worker};
///
/// let worker = Worker::standalone();
/// match worker.listen(([127, 0, 0, 1], 0))? {
///     Listener::Tcp(listener) => assert_ne!(listener.local_addr()?.port(), 0),
///     Listener::Unix(_) => unreachable!("a TCP address gives a TCP socket"),
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub enum Listener {
    /// A TCP listening socket.
    Tcp(TcpListener),
    /// A Unix-domain stream listening socket.
    Unix(UnixListener),
}

impl Listener {
    /// The socket's actual local address (port 0 resolved).
    ///
    /// ```
    /// use srv_worker::{ListenAddr, Worker};
    ///
    /// let listener = Worker::standalone().listen(([127, 0, 0, 1], 0))?;
    /// let ListenAddr::Tcp(addr) = listener.local_addr()? else { unreachable!() };
    /// assert_ne!(addr.port(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `getsockname` failed, or a Unix socket has no path.
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(listener) => {
                let addr = listener.local_addr()?;
                let path = addr.as_pathname().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "unix listener has no path")
                })?;
                Ok(ListenAddr::Unix(path.to_owned()))
            }
        }
    }

    /// The TCP listener.
    ///
    /// ```
    /// use std::net::TcpStream;
    ///
    /// let listener = srv_worker::Worker::standalone().listen(([127, 0, 0, 1], 0))?.into_tcp()?;
    /// let client = TcpStream::connect(listener.local_addr()?)?;
    /// let (_connection, peer) = listener.accept()?;
    /// assert_eq!(peer, client.local_addr()?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when this is a Unix-domain socket.
    pub fn into_tcp(self) -> io::Result<TcpListener> {
        match self {
            Listener::Tcp(listener) => Ok(listener),
            Listener::Unix(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "expected a TCP address, got a unix socket path",
            )),
        }
    }

    /// The Unix-domain listener.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use srv_worker::Worker;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("app.sock");
    /// let listener = Worker::standalone().listen(&path)?;
    /// let listener = listener.into_unix()?;
    /// let _client = UnixStream::connect(&path)?;
    /// let (_connection, _) = listener.accept()?;
    ///
    /// let tcp = Worker::standalone().listen(([127, 0, 0, 1], 0))?;
    /// assert_eq!(tcp.into_unix().unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when this is a TCP socket.
    pub fn into_unix(self) -> io::Result<UnixListener> {
        match self {
            Listener::Unix(listener) => Ok(listener),
            Listener::Tcp(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "expected a unix socket path, got a TCP address",
            )),
        }
    }

    /// Wraps a socket the master passed, of the kind `addr` names.
    pub(crate) fn from_fd(addr: &ListenAddr, fd: OwnedFd) -> Listener {
        match addr {
            ListenAddr::Tcp(_) => Listener::Tcp(TcpListener::from(fd)),
            ListenAddr::Unix(_) => Listener::Unix(UnixListener::from(fd)),
        }
    }
}

/// Binds `addr` directly: the standalone path, without a master.
pub(crate) fn bind(addr: &ListenAddr) -> io::Result<Listener> {
    let res = match addr {
        ListenAddr::Tcp(socket_addr) => TcpListener::bind(socket_addr).map(Listener::Tcp),
        ListenAddr::Unix(path) => UnixListener::bind(path).map(Listener::Unix),
    };
    res.map_err(|error| io::Error::new(error.kind(), format!("bind {addr}: {error}")))
}
