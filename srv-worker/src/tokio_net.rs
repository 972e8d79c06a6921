//! The shared listening socket as a tokio listener (feature `tokio`).
//!
//! tokio needs its sockets non-blocking, and `O_NONBLOCK` is a flag of the
//! *open file description*, which the master and every worker share for a
//! socket the master passed: setting it here sets it for all of them. That
//! is harmless while every worker of one master agrees, as workers running
//! the same program do, and the master never accepts on the socket. A
//! worker that accepts with blocking calls on the same socket would see
//! `WouldBlock` from then on; such a worker must poll before it accepts (as
//! the reference server does) or use its own address.

use std::io;
use std::path::Path;

use crate::{ListenAddr, Worker};

impl Worker {
    /// [`Worker::listen_tcp`] as a `tokio::net::TcpListener`: the socket
    /// the master holds for every worker, made non-blocking and registered
    /// with the current tokio runtime.
    ///
    /// `O_NONBLOCK` belongs to the open file description, which the master
    /// and every worker share: setting it here sets it for all of them.
    /// Every worker of one master must agree on it (workers running the same
    /// program do); a worker that accepts with blocking calls on the same
    /// socket must poll before it accepts, or it sees `WouldBlock`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let worker = srv_worker::Worker::from_env()?.unwrap_or_else(srv_worker::Worker::standalone);
    /// let listener = worker.listen_tokio_tcp(([127, 0, 0, 1], 0))?;
    /// let addr = listener.local_addr()?;
    /// let _client = tokio::net::TcpStream::connect(addr).await?;
    /// let (_connection, _peer) = listener.accept().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Worker::listen_tcp`]; and `Other` when called outside a tokio
    /// runtime, which has no reactor to register the socket with.
    pub fn listen_tokio_tcp(
        &self,
        addr: impl Into<ListenAddr>,
    ) -> io::Result<tokio::net::TcpListener> {
        let handle = current_runtime()?;
        let listener = self.listen_tcp(addr)?;
        listener.set_nonblocking(true)?;
        let _entered = handle.enter();
        tokio::net::TcpListener::from_std(listener)
    }

    /// [`Worker::listen_unix`] as a `tokio::net::UnixListener`, made
    /// non-blocking and registered with the current tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("app.sock");
    /// let worker = srv_worker::Worker::standalone();
    /// let listener = worker.listen_tokio_unix(&path)?;
    /// let _client = tokio::net::UnixStream::connect(&path).await?;
    /// let (_connection, _peer) = listener.accept().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Worker::listen_unix`]; and `Other` outside a tokio runtime.
    pub fn listen_tokio_unix(
        &self,
        path: impl AsRef<Path>,
    ) -> io::Result<tokio::net::UnixListener> {
        let handle = current_runtime()?;
        let listener = self.listen_unix(path)?;
        listener.set_nonblocking(true)?;
        let _entered = handle.enter();
        tokio::net::UnixListener::from_std(listener)
    }
}

/// The runtime the caller runs in; checked before asking the master for a
/// socket, so that the mistake costs nothing.
fn current_runtime() -> io::Result<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current().map_err(|error| {
        io::Error::other(format!("a tokio listener needs a tokio runtime: {error}"))
    })
}
