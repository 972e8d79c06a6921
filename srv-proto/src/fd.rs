//! Sending and receiving bytes with file descriptors attached (`SCM_RIGHTS`).
//!
//! The only module of this crate, with [`crate::env`], that holds `unsafe`:
//! received descriptors are raw numbers until wrapped in [`OwnedFd`], which
//! happens before any other fallible step so that no error path leaks one.
//!
//! On a `SOCK_STREAM` socket the descriptors travel with the first byte of
//! the `sendmsg` that carried them; the kernel never merges such a byte into
//! a `recvmsg` that also returns bytes sent before it with other descriptors,
//! so a receiver that decodes frames in order meets each frame's
//! descriptors no later than the frame itself.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// The most descriptors one `recvmsg` accepts; more are a protocol error.
///
/// ```
/// use std::collections::VecDeque;
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// use srv_proto::fd::{MAX_FDS_PER_MESSAGE, recv_with_fds, send_with_fds};
///
/// let (a, b) = UnixStream::pair()?;
/// let too_many = vec![a.as_fd(); MAX_FDS_PER_MESSAGE + 1];
/// send_with_fds(a.as_fd(), b"x", &too_many)?;
/// let mut fds = VecDeque::new();
/// let error = recv_with_fds(b.as_fd(), &mut [0; 16], &mut fds).unwrap_err();
/// assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
/// assert!(fds.is_empty()); // all of them were closed
/// # Ok::<(), std::io::Error>(())
/// ```
pub const MAX_FDS_PER_MESSAGE: usize = 4;

/// The kernel's limit of descriptors in one `SCM_RIGHTS` message
/// (`SCM_MAX_FD`). The receive buffer has room for this many, so the kernel
/// never truncates a well-formed message and every descriptor it installs
/// is wrapped, and closed, by us.
const SCM_MAX_FD: usize = 253;

/// Sends `bytes` with `fds` attached as one `SCM_RIGHTS` control message.
///
/// Returns how many bytes were sent, which may be fewer than `bytes.len()`
/// on a non-blocking socket; the descriptors went with the first byte.
/// Never raises `SIGPIPE` (`MSG_NOSIGNAL`).
///
/// ```
/// use std::collections::VecDeque;
/// use std::net::TcpListener;
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// use srv_proto::fd::{recv_with_fds, send_with_fds};
///
/// let (a, b) = UnixStream::pair()?;
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// assert_eq!(send_with_fds(a.as_fd(), b"socket", &[listener.as_fd()])?, 6);
///
/// let (mut buf, mut fds) = ([0; 16], VecDeque::new());
/// assert_eq!(recv_with_fds(b.as_fd(), &mut buf, &mut fds)?, 6);
/// let received = TcpListener::from(fds.pop_front().unwrap());
/// assert_eq!(received.local_addr()?, listener.local_addr()?);
///
/// drop(b); // no SIGPIPE, just an error
/// let error = send_with_fds(a.as_fd(), b"x", &[]).unwrap_err();
/// assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The `sendmsg` error, `WouldBlock` included, unchanged.
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    let iov = [IoSlice::new(bytes)];
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            res => return res.map_err(io::Error::from),
        }
    }
}

/// Receives bytes into `buf` and appends any descriptors that came with them
/// to `fds_out`, close-on-exec (`MSG_CMSG_CLOEXEC`).
///
/// Returns the number of bytes read; 0 means the peer closed its end.
///
/// ```
/// use std::collections::VecDeque;
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// use srv_proto::fd::{recv_with_fds, send_with_fds};
///
/// let (a, b) = UnixStream::pair()?;
/// send_with_fds(a.as_fd(), b"hi", &[std::io::stdin().as_fd()])?;
/// drop(a);
/// let (mut buf, mut fds) = ([0; 16], VecDeque::new());
/// assert_eq!(recv_with_fds(b.as_fd(), &mut buf, &mut fds)?, 2);
/// assert_eq!((&buf[..2], fds.len()), (&b"hi"[..], 1));
/// assert_eq!(recv_with_fds(b.as_fd(), &mut buf, &mut fds)?, 0); // closed
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The `recvmsg` error, `WouldBlock` included, unchanged; `InvalidData` when
/// the peer sent more than [`MAX_FDS_PER_MESSAGE`] descriptors at once
/// (they are closed), or truncated ancillary data.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds_out: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            res => break res.map_err(io::Error::from)?,
        }
    };
    let bytes = msg.bytes;
    // A truncated control message (only possible with ancillary data other
    // than descriptors, since there is room for the kernel's maximum) cannot
    // be walked; say so rather than guess.
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "peer sent truncated ancillary data",
        ));
    }
    let mut received = 0;
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: the kernel just installed `fd` in this process for
                // this message; nothing else knows its number, so this is its
                // only owner.
                fds_out.push_back(unsafe { OwnedFd::from_raw_fd(fd) });
                received += 1;
            }
        }
    }
    if received > MAX_FDS_PER_MESSAGE {
        // Close them all: the stream can no longer be matched to them.
        fds_out.truncate(fds_out.len() - received);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "peer sent {received} file descriptors in one message, more than {MAX_FDS_PER_MESSAGE}"
            ),
        ));
    }
    Ok(bytes)
}
