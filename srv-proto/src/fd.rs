//! Sending and receiving bytes with file descriptors attached (`SCM_RIGHTS`).
//!
//! The only module of this crate, with [`crate::env`], that holds `unsafe`:
//! received descriptors are raw numbers until wrapped in [`OwnedFd`], which
//! happens before any other fallible step so that no error path leaks one.
//! The receive calls `recvmsg` itself rather than through nix, because nix
//! refuses to walk the control messages of a truncated receive
//! (`MSG_CTRUNC`), and a receive that runs out of descriptor numbers is
//! truncated *after* the kernel installed some: those must be wrapped and
//! closed too.
//!
//! On a `SOCK_STREAM` socket the descriptors travel with the first byte of
//! the `sendmsg` that carried them; the kernel never merges such a byte into
//! a `recvmsg` that also returns bytes sent before it with other descriptors,
//! so a receiver that decodes frames in order meets each frame's
//! descriptors no later than the frame itself.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::libc;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

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
/// never truncates a well-formed message for lack of room.
const SCM_MAX_FD: usize = 253;

/// The control buffer of a receive, in 8-byte words so that it is aligned
/// for `cmsghdr`: room for one `SCM_RIGHTS` message of [`SCM_MAX_FD`]
/// descriptors (`CMSG_SPACE(253 * 4)` is 1032 bytes on 64-bit Linux), with
/// spare words.
const CONTROL_WORDS: usize = (SCM_MAX_FD * size_of::<RawFd>()) / 8 + 8;

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
/// the peer sent more than [`MAX_FDS_PER_MESSAGE`] descriptors at once, or
/// the ancillary data was truncated (this process ran out of descriptor
/// numbers): the descriptors that did arrive are closed either way, and
/// the bytes are lost, so the stream is broken.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds_out: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: `msghdr` is a plain C struct for which all zeroes is a valid
    // value (no name, no buffers, no flags); the fields used are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    let bytes = loop {
        // SAFETY: `msg` points at `iov` (which points at `buf`) and at
        // `control`, all alive and writable for the whole call, with their
        // true lengths; the kernel writes within them.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if let Ok(n) = usize::try_from(n) {
            break n;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    };
    // Every descriptor the kernel installed is owned before anything else
    // can fail, truncated messages included: when it runs out of descriptor
    // numbers (EMFILE) it installs what it can, sets MSG_CTRUNC, and the
    // ones installed are in the control message all the same.
    let before = fds_out.len();
    // SAFETY: `msg` was filled by a successful `recvmsg`; the CMSG macros
    // walk its control buffer within `msg_controllen`.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/CMSG_NXTHDR lies
        // within the aligned control buffer the kernel wrote.
        let header = unsafe { &*cmsg };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: as above; CMSG_DATA is the start of this message's data.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            let offset = data as usize - cmsg as usize;
            let count = (header.cmsg_len as usize).saturating_sub(offset) / size_of::<RawFd>();
            for i in 0..count {
                // SAFETY: `count` descriptors lie within this message's data,
                // which may not be aligned for `RawFd`.
                let fd = unsafe { std::ptr::read_unaligned(data.cast::<RawFd>().add(i)) };
                // SAFETY: the kernel just installed `fd` in this process for
                // this message; nothing else knows its number, so this is its
                // only owner.
                fds_out.push_back(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: `cmsg` is a header of `msg`'s control buffer.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    let received = fds_out.len() - before;
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        // Close them all: the message is incomplete, and the stream can no
        // longer be matched to its descriptors.
        fds_out.truncate(before);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "truncated ancillary data: out of descriptors, or more than the kernel's {SCM_MAX_FD} ({received} received and closed)"
            ),
        ));
    }
    if received > MAX_FDS_PER_MESSAGE {
        // Close them all: the stream can no longer be matched to them.
        fds_out.truncate(before);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "peer sent {received} file descriptors in one message, more than {MAX_FDS_PER_MESSAGE}"
            ),
        ));
    }
    Ok(bytes)
}
