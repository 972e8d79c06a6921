//! The env contract, [`take_inherited_channel`], each case in a child
//! process.
//!
//! `take_inherited_channel` reads and removes process-wide environment
//! variables and takes its descriptor at most once per process, so no two
//! cases can share a process. Each test re-executes this test binary with
//! [`CHILD_CASE`] naming the case, filtered to [`child_entry`], which then
//! plays the worker for that one case; the parent checks that the child's
//! test passed.
//!
//! A descriptor reaches the child the way a master passes one: the parent
//! clears `FD_CLOEXEC` on it, spawns, and closes its own copy. This happens
//! under [`SPAWN_LOCK`], which every spawn of this test binary takes until
//! its child is gone, so that no other test's child inherits the descriptor
//! meanwhile (a stray copy of a socketpair end would delay end of file). The child finds the descriptor
//! at the number it had in the parent; the fixed `CHANNEL_FD` is the
//! master's business, and `take_inherited_channel` trusts only the variable.

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::sync::{PoisonError, mpsc};
use std::thread;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use srv_proto::env::{
    ENV_CHANNEL_FD, ENV_PROTOCOL_VERSION, ENV_WATCHDOG_MS, ENV_WORKER_ID, take_inherited_channel,
};
use srv_proto::{Channel, PROTOCOL_VERSION, Received, WorkerMessage};

use crate::support::{self, SPAWN_LOCK, TIMEOUT};

/// Names the case a child process runs; unset in the parent.
const CHILD_CASE: &str = "SRV_PROTO_TEST_CHILD_CASE";

/// The full name of [`child_entry`] in this test binary.
const CHILD_ENTRY: &str = "inherit::child_entry";

/// Not a test by itself: the entry point of the child processes that the
/// tests below start. Without [`CHILD_CASE`] it returns at once.
#[test]
fn child_entry() {
    let Some(case) = std::env::var_os(CHILD_CASE) else {
        return;
    };
    let case = case.into_string().unwrap();
    let fd: Option<RawFd> = std::env::var(ENV_CHANNEL_FD).ok().and_then(|text| text.parse().ok());
    let inherited_cloexec = fd.map(fd_is_open_cloexec);
    let res = take_inherited_channel();
    match case.as_str() {
        "unset" => {
            assert!(matches!(res, Ok(None)), "{res:?}");
        }
        "not-a-number" => {
            let error = res.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
            let message = error.to_string();
            assert!(message.contains(ENV_CHANNEL_FD), "{message}");
            assert!(message.contains("not a file descriptor number"), "{message}");
        }
        "not-open" => expect_invalid(res, fd.unwrap(), "is not open"),
        "not-a-socket" => {
            expect_invalid(res, fd.unwrap(), "is not a socket");
            // Never owned, so never closed: the descriptor is still open.
            assert_eq!(fd_is_open_cloexec(fd.unwrap()), Some(false));
        }
        "datagram" => expect_invalid(res, fd.unwrap(), "is not a stream socket"),
        "tcp" => expect_invalid(res, fd.unwrap(), "is not a Unix-domain socket"),
        "socket" => {
            let fd = fd.unwrap();
            assert_eq!(
                inherited_cloexec,
                Some(Some(false)),
                "the parent passed a close-on-exec fd"
            );
            let stream = res.unwrap().expect("a channel");
            assert_eq!(stream.as_raw_fd(), fd);
            assert!(support::is_cloexec(&stream), "fd {fd} is not close-on-exec");
            assert_eq!(std::env::var_os(ENV_CHANNEL_FD), None);
            assert_eq!(std::env::var_os(ENV_WORKER_ID), None);
            assert_eq!(std::env::var_os(ENV_PROTOCOL_VERSION), None);
            assert_eq!(std::env::var_os(ENV_WATCHDOG_MS), None);
            assert!(matches!(take_inherited_channel(), Ok(None)), "taken twice");
            // The descriptor is the parent's socket: say hello through it.
            let hello = WorkerMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
                pid: std::process::id(),
            };
            assert!(Channel::new(stream).send(&hello, &[]).unwrap());
        }
        other => panic!("unknown child case {other:?}"),
    }
}

fn expect_invalid(res: std::io::Result<Option<UnixStream>>, fd: RawFd, why: &str) {
    let error = res.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    let message = error.to_string();
    assert!(message.contains(ENV_CHANNEL_FD), "{message}");
    assert!(message.contains(&format!("fd {fd} {why}")), "{message}");
}

/// Whether `fd` is open (`None` when not) and close-on-exec, read from
/// `/proc/self/fdinfo` so that a number is inspected without owning it.
fn fd_is_open_cloexec(fd: RawFd) -> Option<bool> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    let flags = info.lines().find_map(|line| line.strip_prefix("flags:"))?;
    let flags = i32::from_str_radix(flags.trim(), 8).unwrap();
    Some(flags & nix::libc::O_CLOEXEC != 0)
}

/// Runs [`child_entry`] in a child process for `case`, with
/// [`ENV_CHANNEL_FD`] set to `channel_fd` (or removed), and `inherited`
/// passed open across `exec`. Fails the test unless the child's test passed;
/// returns the child's pid.
fn run_child(case: &str, channel_fd: Option<&str>, inherited: Option<OwnedFd>) -> u32 {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", CHILD_ENTRY, "--test-threads=1"])
        .env(CHILD_CASE, case)
        .env(ENV_WORKER_ID, "7")
        .env(ENV_PROTOCOL_VERSION, "2")
        .env(ENV_WATCHDOG_MS, "5000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match channel_fd {
        Some(value) => command.env(ENV_CHANNEL_FD, value),
        None => command.env_remove(ENV_CHANNEL_FD),
    };

    let lock = SPAWN_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(fd) = &inherited {
        fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    }
    let child = command.spawn().unwrap();
    drop(inherited);

    let child_pid = child.id();
    let (done, waited) = mpsc::channel();
    thread::spawn(move || done.send(child.wait_with_output()));
    let output = match waited.recv_timeout(TIMEOUT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = kill(Pid::from_raw(child_pid as i32), Signal::SIGKILL);
            panic!("child case {case} did not finish within {TIMEOUT:?}: {command:?}");
        }
    };
    // Held until the child is gone: see `SPAWN_LOCK`.
    drop(lock);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child case {case} failed: {command:?}\nstatus: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
    );
    child_pid
}

#[test]
fn without_the_variable_there_is_no_channel() {
    run_child("unset", None, None);
}

#[test]
fn a_value_that_is_not_a_number_is_refused_naming_the_variable() {
    run_child("not-a-number", Some("three"), None);
}

#[test]
fn a_descriptor_that_is_not_open_is_refused_naming_it() {
    run_child("not-open", Some("900"), None);
}

#[test]
fn a_descriptor_that_is_not_a_socket_is_refused_naming_it_and_left_open() {
    let file = File::open(std::env::current_exe().unwrap()).unwrap();
    let fd = file.as_raw_fd().to_string();
    run_child("not-a-socket", Some(&fd), Some(file.into()));
}

#[test]
fn a_datagram_socket_is_refused_naming_it() {
    let (socket, _peer) = UnixDatagram::pair().unwrap();
    let fd = socket.as_raw_fd().to_string();
    run_child("datagram", Some(&fd), Some(socket.into()));
}

#[test]
fn a_tcp_socket_is_refused_naming_it() {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = socket.as_raw_fd().to_string();
    run_child("tcp", Some(&fd), Some(socket.into()));
}

#[test]
fn a_socketpair_end_is_taken_once_close_on_exec_and_the_variables_removed() {
    let (parent_end, child_end) = UnixStream::pair().unwrap();
    let fd = child_end.as_raw_fd().to_string();
    let child_pid = run_child("socket", Some(&fd), Some(child_end.into()));

    // The child's pid proves the message came through the descriptor it
    // inherited; end of file proves no other process holds that end.
    let mut parent = Channel::new(parent_end);
    let (message, _) = support::receive_one(&mut parent, Channel::next_message::<WorkerMessage>);
    let hello = WorkerMessage::Hello { protocol_version: PROTOCOL_VERSION, pid: child_pid };
    assert_eq!(message, hello);
    assert_eq!(parent.receive().unwrap(), Received::Closed);
}
