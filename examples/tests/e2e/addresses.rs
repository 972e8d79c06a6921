//! Shared listening sockets for every kind of address: IPv4 (see
//! `startup.rs`), IPv6 and Unix-domain. The master binds each address once
//! and every worker gets that one socket.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::{Exit, Master, TempDir, count, misbehave, reports};

/// Starts two workers that listen on `addr` and counts them as started
/// only then; returns the master and the address both workers report.
fn start_listening(addr: &str) -> (Master, String) {
    let args =
        ["--workers", "2", "--worker-timeout", "10000", "--require", "listen", "--listen", addr];
    let master = Master::start(misbehave(), &args);
    let lines = master.wait_for_count("started (listen)", 2);
    assert_eq!(count(&lines, &format!("(requested {addr})")), 1, "one bind for both workers");
    let listening = reports(&lines, "listening on ");
    assert_eq!(listening.len(), 2);
    assert_eq!(listening[0].event, listening[1].event, "both workers share one socket");
    let actual = listening[0].event["listening on ".len()..].to_owned();
    (master, actual)
}

#[test]
fn ipv6_workers_share_one_socket() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let (master, actual) = start_listening("[::1]:0");
    let addr: SocketAddr = actual.parse().unwrap();
    assert!(addr.is_ipv6() && addr.port() != 0, "{addr}");
    TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|error| master.fail(&format!("cannot connect to {addr}: {error}")));
}

#[test]
fn unix_socket_workers_share_one_socket_and_the_file_goes_with_the_master() {
    let dir = TempDir::new("unix");
    let path = dir.path.join("app.sock");
    let requested = format!("unix:{}", path.display());
    let (mut master, actual) = start_listening(&requested);
    assert_eq!(actual, requested);
    UnixStream::connect(&path)
        .unwrap_or_else(|error| master.fail(&format!("cannot connect to {requested}: {error}")));
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(), Exit::Code(0));
    assert!(!path.exists(), "the master removes the socket file it created");
}

#[test]
fn a_stale_unix_socket_file_is_replaced() {
    let dir = TempDir::new("stale");
    let path = dir.path.join("stale.sock");
    // A listener that is gone leaves its file behind, as a killed master would.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let requested = format!("unix:{}", path.display());
    let (master, _) = start_listening(&requested);
    UnixStream::connect(&path)
        .unwrap_or_else(|error| master.fail(&format!("cannot connect to {requested}: {error}")));
    drop(master);
}

/// `listen.unix_mode` sets the permission bits of the socket file, so that
/// clients of another user than the master's can connect.
#[test]
fn listen_unix_mode_sets_the_socket_files_permission_bits() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("unix-mode");
    let path = dir.path.join("app.sock");
    let requested = format!("unix:{}", path.display());
    let args = [
        "--workers",
        "1",
        "--worker-timeout",
        "10000",
        "--require",
        "listen",
        "--listen",
        &requested,
        "--unix-mode",
        "0666",
    ];
    let mut master = Master::start(misbehave(), &args);
    master.wait_for_count("started (listen)", 1);
    let mode = std::fs::symlink_metadata(&path).map(|meta| meta.permissions().mode() & 0o7777);
    if mode.as_ref().ok() != Some(&0o666) {
        let shown = mode.map(|mode| format!("{mode:o}"));
        master.fail(&format!("the socket file's mode is {shown:?}, not 0666"));
    }
    UnixStream::connect(&path)
        .unwrap_or_else(|error| master.fail(&format!("cannot connect to {requested}: {error}")));
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(), Exit::Code(0));
    assert!(!path.exists(), "the master removes the socket file it created");
}

/// Issue 9, item 2: another process listens at the path with a full
/// backlog, so a blocking `connect` there never returns. The master's probe
/// for a stale file must not block: it takes the socket as in use, the bind
/// fails, and the master exits 1 naming the address (before any worker
/// started), rather than hanging deaf to signals.
#[test]
fn a_full_listener_at_the_path_does_not_hang_the_master() {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, listen, socket,
    };
    use std::os::fd::AsRawFd;
    let dir = TempDir::new("full-listener");
    let path = dir.path.join("busy.sock");
    let addr = UnixAddr::new(&path).unwrap();
    let busy = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    bind(busy.as_raw_fd(), &addr).unwrap();
    listen(&busy, Backlog::new(0).unwrap()).unwrap();
    // Nobody accepts: connect until the queue is full.
    let mut queued = Vec::new();
    loop {
        let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
        let client = socket(AddressFamily::Unix, SockType::Stream, flags, None).unwrap();
        match connect(client.as_raw_fd(), &addr) {
            Ok(()) => queued.push(client),
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(errno) => panic!("connect {}: {errno}", path.display()),
        }
        assert!(queued.len() < 100, "the backlog of 0 never filled");
    }
    let requested = format!("unix:{}", path.display());
    let args = ["--workers", "2", "--worker-timeout", "10000", "--listen", &requested];
    let mut master = Master::start(misbehave(), &args);
    let exit = master.wait_exit_within(Duration::from_secs(10));
    if exit != Exit::Code(1) {
        master.fail(&format!("expected exit code 1, got {exit:?}"));
    }
    let in_use = format!("bind {requested}: Address already in use");
    if count(&master.lines(), &in_use) == 0 {
        master.fail(&format!("expected a line with {in_use:?}"));
    }
    assert!(path.exists(), "the live socket's file is left alone");
}

/// Suspected in issue 9: a Unix path comes from a worker, and the master
/// logs it; a newline in it must not start a line of its own that looks like
/// one of the master's.
#[test]
fn a_newline_in_a_socket_path_cannot_forge_a_log_line() {
    let dir = TempDir::new("forge");
    let forged = "[2026-01-01T00:00:00.000Z INFO  srv] worker 7 (pid 1) started (online) in 0 ms";
    let requested = format!("unix:{}/a\n{forged}", dir.path.display());
    let args = ["--workers", "1", "--worker-timeout", "10000", "--listen-also", &requested];
    let master = Master::start(misbehave(), &args);
    let lines = master.wait_for_count("listening also on ", 1);
    if let Some(line) = lines.iter().find(|line| line.starts_with("[2026-01-01T00:00:00.000Z")) {
        master.fail(&format!("a worker's path forged the line {line:?}"));
    }
    let escaped = format!("{}/a\\n[2026-01-01T", dir.path.display());
    if count(&lines, &escaped) == 0 {
        master.fail("the path is not logged, escaped, at all");
    }
}
