//! Running under systemd: readiness notification (`NOTIFY_SOCKET`) and
//! socket activation (`LISTEN_FDS`), tested without systemd.
//!
//! The notification tests bind the datagram socket themselves and read what
//! the master sends. The activation tests bind a listening socket, pass it
//! at fd 3 with `LISTEN_FDS=1` and `LISTEN_PID` set to the master's pid, as
//! `systemd-socket-activate` does: a shell moves the descriptor into place,
//! sets `LISTEN_PID=$$` and `exec`s the master, which keeps the shell's pid.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal::Signal;

use crate::harness::{Exit, Master, TEST_TIMEOUT, TempDir, count, misbehave};
use crate::http_support::{get_ok, http, start_on_port_0, wait_addr, wait_serving};

/// Reads notification datagrams into `got` until `done` holds for them, or
/// fails the test at `deadline`.
pub(crate) fn read_until(
    master: &Master,
    socket: &UnixDatagram,
    got: &mut Vec<String>,
    deadline: Instant,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) {
    let mut buf = [0u8; 4096];
    while !done(got) {
        if Instant::now() >= deadline {
            master.fail(&format!("timed out waiting for {what}; notifications so far: {got:#?}"));
        }
        match socket.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(error) => master.fail(&format!("reading notifications: {error}")),
        }
    }
}

pub(crate) fn position(got: &[String], from: usize, needle: &str) -> Option<usize> {
    got.iter()
        .skip(from)
        .position(|message| message.lines().any(|line| line == needle))
        .map(|i| i + from)
}

#[test]
fn notify_says_ready_reloading_stopping_and_status_and_pings_the_watchdog() {
    let dir = TempDir::new("notify");
    let path = dir.path.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut master =
        Master::start_with(http(), &["--port", "0", "--workers", "2"], TEST_TIMEOUT, |command| {
            command.env("NOTIFY_SOCKET", &path).env("WATCHDOG_USEC", "200000");
        });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();

    read_until(&master, &socket, &mut got, deadline, "READY=1", |got| {
        position(got, 0, "READY=1").is_some()
    });
    let ready = position(&got, 0, "READY=1").unwrap();
    assert!(
        got[ready].lines().any(|line| line == "STATUS=2/2 workers ready"),
        "READY=1 comes with the status line: {got:#?}"
    );
    assert!(
        got[..ready].iter().any(|message| message.contains("STATUS=starting: ")),
        "a starting status comes before READY=1: {got:#?}"
    );
    // WATCHDOG_USEC=200000: a ping about every 100 ms.
    read_until(&master, &socket, &mut got, deadline, "three watchdog pings", |got| {
        got.iter().filter(|message| message.lines().any(|line| line == "WATCHDOG=1")).count() >= 3
    });
    // What systemd told the master is not the workers' business.
    for pid in master.worker_pids() {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let environ = String::from_utf8_lossy(&environ);
        for name in ["NOTIFY_SOCKET=", "WATCHDOG_USEC="] {
            assert!(
                !environ.split('\0').any(|var| var.starts_with(name)),
                "worker {pid} has {name}"
            );
        }
    }

    let before_reload = got.len();
    master.signal(Signal::SIGHUP);
    read_until(&master, &socket, &mut got, deadline, "RELOADING=1 then READY=1", |got| {
        position(got, before_reload, "RELOADING=1")
            .is_some_and(|reloading| position(got, reloading + 1, "READY=1").is_some())
    });
    let reloading = position(&got, before_reload, "RELOADING=1").unwrap();
    assert!(
        got[reloading].lines().any(|line| line.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 carries MONOTONIC_USEC for Type=notify-reload: {got:#?}"
    );
    master.wait_until("the recycle logged complete", |lines| count(lines, "recycle complete") == 1);

    let before_stop = got.len();
    master.signal(Signal::SIGTERM);
    read_until(&master, &socket, &mut got, deadline, "STOPPING=1", |got| {
        position(got, before_stop, "STOPPING=1").is_some()
    });
    assert_eq!(master.wait_exit(), Exit::Code(0));
}

#[test]
fn notify_never_says_ready_and_names_the_failure_when_no_worker_can_start() {
    // Under `Type=notify`, `systemctl start` waits for READY=1; a master
    // whose workers cannot start must exit instead, and leave a STATUS=
    // line that `systemctl status` shows, naming why.
    let dir = TempDir::new("notify-fail");
    let path = dir.path.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let args = [
        "--workers",
        "1",
        "--worker-timeout",
        "10000",
        "--crash-after-ms",
        "0",
        "--restart-delay",
        "100",
        "--max-restart-delay",
        "400",
    ];
    let mut master = Master::start_with(misbehave(), &args, TEST_TIMEOUT, |command| {
        command.env("NOTIFY_SOCKET", &path);
    });
    assert_eq!(master.wait_exit_within(Duration::from_secs(10)), Exit::Code(1));
    let mut got = Vec::new();
    let named = |got: &[String]| {
        got.iter().any(|message| {
            message.lines().any(|line| {
                line.starts_with("STATUS=failed: no worker could start: 3 failed starts in a row")
                    && line.contains("exited unasked (exit code 3)")
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    read_until(&master, &socket, &mut got, deadline, "a STATUS= naming the failure", named);
    // Everything the master sent is queued by now: it has exited.
    read_until(
        &master,
        &socket,
        &mut got,
        Instant::now() + Duration::from_secs(5),
        "the end",
        |got| got.last().is_some_and(|message| message.contains("stopping: 0 workers left")),
    );
    assert_eq!(position(&got, 0, "READY=1"), None, "READY=1 was sent: {got:#?}");
    assert!(
        position(&got, 0, "STOPPING=1").is_some(),
        "STOPPING=1 comes with the failure: {got:#?}"
    );
}

/// The command that starts `http` as systemd's socket activation would,
/// with `listener` at fd 3.
fn activated_http(listener: &TcpListener, workers: &str) -> Master {
    let port = listener.local_addr().unwrap().port().to_string();
    activated(&[listener.as_fd()], &["--port", &port, "--workers", workers])
}

/// Starts `http args` with `passed` at fds 3, 4, ..., `LISTEN_FDS` and
/// `LISTEN_PID` set to the master's pid: a shell moves the descriptors into
/// place (through numbers above any of them, so none is overwritten before
/// it moved), sets `LISTEN_PID=$$` and `exec`s the master. The shell is
/// bash, since dash redirects only descriptors 0 to 9.
fn activated(passed: &[std::os::fd::BorrowedFd<'_>], args: &[&str]) -> Master {
    let fds: Vec<i32> = passed.iter().map(AsRawFd::as_raw_fd).collect();
    let spare = fds.iter().copied().max().unwrap_or(0).max(10) + 1;
    let mut script = String::new();
    for (i, fd) in fds.iter().enumerate() {
        script += &format!("exec {}<&{fd}; ", spare + i as i32);
    }
    for fd in &fds {
        script += &format!("exec {fd}<&-; ");
    }
    for i in 0..fds.len() {
        let (to, from) = (3 + i as i32, spare + i as i32);
        script += &format!("exec {to}<&{from} {from}<&-; ");
    }
    script +=
        &format!("LISTEN_FDS={} LISTEN_PID=$$ LISTEN_FDNAMES=http exec \"$0\" \"$@\"", fds.len());
    // The descriptors must survive `exec` into the shell: clear
    // close-on-exec just for this spawn. Another test spawning meanwhile
    // inherits a copy, which only keeps a socket open a little longer.
    for fd in passed {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    }
    let mut full = vec!["-c", script.as_str(), http()];
    full.extend_from_slice(args);
    let master = Master::start("/bin/bash", &full);
    for fd in passed {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
    }
    master
}

/// The socket inodes among the open descriptors of `pid`
/// (`/proc/<pid>/fd/N -> socket:[inode]`).
fn socket_inodes(pid: nix::unistd::Pid) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_str()?.to_owned();
            link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Issue 9, item 6: `LISTEN_FDS` without `LISTEN_PID` (a variable a
/// careless environment leaves around) is ignored with a warning. Before,
/// the master took its own signal pipe for a passed socket and closed it,
/// and then ignored SIGTERM.
#[test]
fn a_stray_listen_fds_without_listen_pid_is_ignored_and_harms_nothing() {
    let args = ["--port", "0", "--workers", "1"];
    let mut master = Master::start_with(http(), &args, TEST_TIMEOUT, |command| {
        command.env("LISTEN_FDS", "4").env_remove("LISTEN_PID");
    });
    wait_serving(&master, 1);
    get_ok(&master, wait_addr(&master), "/");
    master.signal(Signal::SIGTERM);
    let exit = master.wait_exit_within(Duration::from_secs(10));
    if exit != Exit::Code(0) {
        master.fail(&format!("SIGTERM should end the master with exit code 0, got {exit:?}"));
    }
    let ignored = "ignoring LISTEN_FDS=4: LISTEN_PID is not set";
    if count(&master.lines(), ignored) != 1 {
        master.fail(&format!("expected one line with {ignored:?}"));
    }
}

/// Issue 9, item 6: a passed descriptor the master does not use (a UDP
/// socket at fd 4 beside the listening socket at fd 3) is made
/// close-on-exec, so it does not leak into the workers, and stays open in
/// the master, which did not adopt it and so does not close it.
#[test]
fn a_passed_descriptor_the_master_does_not_use_does_not_leak_into_workers() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_inode = nix::sys::stat::fstat(&udp).unwrap().st_ino;
    let port = listener.local_addr().unwrap().port().to_string();
    let master = activated(&[listener.as_fd(), udp.as_fd()], &["--port", &port, "--workers", "2"]);
    let workers = wait_serving(&master, 2);
    get_ok(&master, listener.local_addr().unwrap(), "/");
    let skipped = "not using fd 4 passed by the service manager: not a stream socket";
    if count(&master.lines(), skipped) != 1 {
        master.fail(&format!("expected one line with {skipped:?}"));
    }
    for pid in &workers {
        if socket_inodes(*pid).contains(&udp_inode) {
            master.fail(&format!("worker {pid} inherited the UDP socket passed at fd 4"));
        }
    }
    if !socket_inodes(master.pid()).contains(&udp_inode) {
        master.fail("the master closed the UDP socket it did not adopt");
    }
}

#[test]
fn socket_activation_adopts_the_passed_socket_and_a_restart_loses_no_queued_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();

    let mut first = activated_http(&listener, "2");
    first.wait_until("the socket adopted", |lines| {
        count(lines, &format!("adopted {addr} from the service manager")) == 1
    });
    wait_serving(&first, 2);
    get_ok(&first, addr, "/");
    let bound = first.lines().iter().filter(|line| line.contains("] listening on ")).count();
    assert_eq!(bound, 0, "the master bound nothing itself");
    first.signal(Signal::SIGTERM);
    assert_eq!(first.wait_exit(), Exit::Code(0));

    // No master now: the connection waits in the backlog of the socket the
    // service manager (this test) holds.
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();

    let second = activated_http(&listener, "1");
    let pids = wait_serving(&second, 1);
    let mut response = String::new();
    client.read_to_string(&mut response).unwrap_or_else(|error| {
        second.fail(&format!("the queued connection was lost: {error}; got {response:?}"))
    });
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let pid = pids.iter().next().unwrap();
    assert!(
        response.ends_with(&format!("ok {pid}\n")),
        "served by the new master's worker: {response}"
    );
}

#[test]
fn without_activation_the_master_binds_itself() {
    let master = start_on_port_0(http(), &["--workers", "1"]);
    let addr = wait_addr(&master);
    wait_serving(&master, 1);
    get_ok(&master, addr, "/");
    assert_eq!(count(&master.lines(), "from the service manager"), 0);
}

/// Issue 9, item 7: a notify socket whose receiver never reads fills up
/// (ten datagrams, `net.unix.max_dgram_qlen`). The master drops what does
/// not fit, says so once, and goes on: recycles complete and SIGTERM ends
/// it. Before, a blocking send held the whole loop.
#[test]
fn a_notify_socket_nobody_reads_does_not_block_the_master() {
    let dir = TempDir::new("notify-full");
    let path = dir.path.join("notify.sock");
    let _never_read = UnixDatagram::bind(&path).unwrap();
    let mut master =
        Master::start_with(http(), &["--port", "0", "--workers", "1"], TEST_TIMEOUT, |command| {
            command.env("NOTIFY_SOCKET", &path);
        });
    wait_serving(&master, 1);
    for recycles in 1..=4 {
        master.signal(Signal::SIGHUP);
        master.wait_until_within(Duration::from_secs(10), "the recycle completed", |lines| {
            count(lines, "recycle complete") == recycles
        });
    }
    master.signal(Signal::SIGTERM);
    let exit = master.wait_exit_within(Duration::from_secs(10));
    if exit != Exit::Code(0) {
        master.fail(&format!("SIGTERM should end the master with exit code 0, got {exit:?}"));
    }
    let dropped = "the service manager does not read its notify socket";
    if count(&master.lines(), dropped) != 1 {
        master.fail(&format!("expected one line with {dropped:?}"));
    }
}

/// Issue 9, item 7: `NOTIFY_SOCKET` may name an abstract socket (`@name`),
/// as systemd does in some setups.
#[test]
fn notify_reaches_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    let name = format!("srv-e2e-notify-{}", std::process::id());
    let socket =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut master =
        Master::start_with(http(), &["--port", "0", "--workers", "1"], TEST_TIMEOUT, |command| {
            command.env("NOTIFY_SOCKET", format!("@{name}"));
        });
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    read_until(&master, &socket, &mut got, deadline, "READY=1", |got| {
        position(got, 0, "READY=1").is_some()
    });
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(), Exit::Code(0));
}

/// Issue 9, item 8: `WATCHDOG_USEC=0`, or a tiny value, is ignored with a
/// warning; before, the master pinged in a busy loop (all the CPU it could
/// get, while idle).
#[test]
fn a_tiny_watchdog_interval_is_ignored_without_a_busy_loop() {
    const WINDOW: Duration = Duration::from_secs(2);
    const MAX_CPU: Duration = Duration::from_millis(200);
    let dir = TempDir::new("watchdog");
    let path = dir.path.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_nonblocking(true).unwrap();
    for usec in ["0", "10"] {
        let mut master = Master::start_with(
            http(),
            &["--port", "0", "--workers", "1"],
            TEST_TIMEOUT,
            |command| {
                command.env("NOTIFY_SOCKET", &path).env("WATCHDOG_USEC", usec);
            },
        );
        wait_serving(&master, 1);
        let cpu = || {
            crate::proc_support::cpu_time(master.pid())
                .unwrap_or_else(|| master.fail("cannot read the master's CPU time"))
        };
        let before = cpu();
        crate::harness::wait_until(Instant::now() + WINDOW, || {
            // Keep the queue from filling: a full one would hide the pings.
            while socket.recv(&mut [0; 4096]).is_ok() {}
            false
        });
        let used = cpu().saturating_sub(before);
        eprintln!("watchdog: WATCHDOG_USEC={usec}: the master used {used:?} of CPU in {WINDOW:?}");
        if used > MAX_CPU {
            master
                .fail(&format!("WATCHDOG_USEC={usec}: {used:?} of CPU in {WINDOW:?}, a busy loop"));
        }
        let ignored = format!("ignoring WATCHDOG_USEC={usec}: below 100 ms");
        if count(&master.lines(), &ignored) != 1 {
            master.fail(&format!("expected one line with {ignored:?}"));
        }
        master.signal(Signal::SIGTERM);
        assert_eq!(master.wait_exit(), Exit::Code(0));
    }
}

/// Issue 12: the socket systemd passed survives an upgrade in place
/// (`SIGUSR2`): the new master holds it from the handover, adopts nothing
/// twice and binds nothing itself, and its new workers serve on it.
#[test]
fn a_passed_socket_survives_an_upgrade_in_place() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let inode = nix::sys::stat::fstat(&listener).unwrap().st_ino;
    let master = activated_http(&listener, "2");
    let before = wait_serving(&master, 2);
    master.signal(Signal::SIGUSR2);
    let lines = master.wait_until_within(Duration::from_secs(15), "the upgrade", |lines| {
        count(lines, "upgrade complete in ") == 1
    });
    let after = crate::http_support::serving_pids(&lines);
    if after.len() != 2 || !after.is_disjoint(&before) {
        master.fail(&format!("the workers were not replaced: {before:?} -> {after:?}"));
    }
    let pid = get_ok(&master, addr, "/").pid();
    if !pid.is_some_and(|pid| after.contains(&pid)) {
        master.fail(&format!("GET / answered by {pid:?}, not by the new workers {after:?}"));
    }
    if !socket_inodes(master.pid()).contains(&inode) {
        master.fail("the upgraded master does not hold the passed socket");
    }
    let lines = master.lines();
    for (needle, expected) in
        [("from the service manager", 1), ("ignoring LISTEN_FDS", 0), ("] listening on ", 0)]
    {
        if count(&lines, needle) != expected {
            master.fail(&format!("expected {expected} lines with {needle:?}"));
        }
    }
}
