//! The upgrade in place (`SIGUSR2`): the master re-executes the program now
//! on disk under its own pid, keeps every listening socket and worker, and
//! recycles the workers onto the new program; a probe that fails changes
//! nothing.
//!
//! A "new program" is a copy of a release binary with bytes appended: an
//! ELF file still runs with them, and its hash differs, which `GET /exe`
//! (the workers) and `/proc/<master>/exe` (the master) show. It replaces
//! the program the master started from by `rename`, as a deploy does. The
//! programs that fail the probe are shell scripts renamed into place the
//! same way.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::harness::{Exit, Master, TEST_TIMEOUT, TempDir, count, is_alive, misbehave};
use crate::http_support::{
    LoadGuard, Response, assert_lossless, fnv1a_64, get_from_each, get_ok, http, serving_pids,
    wait_addr, wait_exited_as_asked, wait_serving,
};
use crate::load::{LoadConfig, Mode};

/// Workers per master: more than one, few for a 2-core machine.
const N_WORKERS: usize = 2;

/// Recycle and shutdown grace of the masters under test.
const GRACE_MS: &str = "5000";

/// How long an upgrade (probe, exec, recycle of [`N_WORKERS`]) may take.
const UPGRADE_WITHIN: Duration = Duration::from_secs(15);

/// Requests that must complete before and after each upgrade under load.
const PROGRESS: u64 = 50;

/// A copy of `binary` as `dir/name`, executable, with `marker` appended
/// (none if empty); its path and its hash.
fn stage(dir: &TempDir, binary: &str, name: &str, marker: &str) -> (PathBuf, u64) {
    let path = dir.path.join(name);
    fs::copy(binary, &path).unwrap_or_else(|error| panic!("copy {binary}: {error}"));
    if !marker.is_empty() {
        let mut file = fs::OpenOptions::new().append(true).open(&path).expect("open the copy");
        file.write_all(format!("\nsrv e2e: {marker}\n").as_bytes()).expect("append");
        file.sync_all().expect("sync the copy");
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod +x");
    let hash = fnv1a_64(&fs::read(&path).expect("read the copy"));
    (path, hash)
}

/// A shell script `body` as `dir/name`, executable.
fn script(dir: &TempDir, name: &str, body: &str) -> PathBuf {
    let path = dir.path.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write the script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod +x");
    path
}

/// Renames `staged` over `program` in one step, as a deploy does.
fn deploy(staged: &Path, program: &Path) {
    fs::rename(staged, program).expect("rename the new program over the old one");
}

fn as_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// The hash of the file the process `pid` runs (`/proc/<pid>/exe`).
fn exe_hash(master: &Master, pid: Pid) -> u64 {
    let bytes = fs::read(format!("/proc/{pid}/exe"))
        .unwrap_or_else(|error| master.fail(&format!("read /proc/{pid}/exe: {error}")));
    fnv1a_64(&bytes)
}

/// Sends `SIGUSR2` and waits for one more `upgrade complete` line; returns
/// the workers serving then.
fn upgrade(master: &Master) -> BTreeSet<Pid> {
    upgrade_by(master, |master| master.signal(Signal::SIGUSR2))
}

/// [`upgrade`], with `SIGUSR2` sent by `send`.
fn upgrade_by(master: &Master, send: impl Fn(&Master)) -> BTreeSet<Pid> {
    let lines = master.lines();
    let (done, failed) = (count(&lines, "upgrade complete in "), count(&lines, "upgrade failed: "));
    send(master);
    let lines = master.wait_until_within(UPGRADE_WITHIN, "the upgrade to complete", |lines| {
        count(lines, "upgrade complete in ") > done || count(lines, "upgrade failed: ") > failed
    });
    if count(&lines, "upgrade failed: ") > failed {
        master.fail("the upgrade failed");
    }
    serving_pids(&lines)
}

/// The master is the same process, and says it was upgraded `n` times.
fn assert_same_master(master: &Master, n: usize) {
    if !master.is_alive(master.pid()) {
        master.fail("the master is gone");
    }
    let needle = format!("master {} upgraded in place: now runs ", master.pid());
    if count(&master.lines(), &needle) != n {
        master.fail(&format!("expected {n} lines with {needle:?}"));
    }
}

/// `after` is a whole new set of [`N_WORKERS`] running workers.
fn assert_all_new(master: &Master, before: &BTreeSet<Pid>, after: &BTreeSet<Pid>) {
    if after.len() != N_WORKERS || !before.is_disjoint(after) {
        master.fail(&format!("the upgrade did not replace every worker: {before:?} -> {after:?}"));
    }
}

/// Every `GET /exe` answer is `exe <hash> <pid>` with `hash`.
fn assert_exe(master: &Master, answers: &[Response], hash: u64) {
    let expected = format!("exe {hash:016x} ");
    if let Some(answer) = answers.iter().find(|answer| !answer.body.starts_with(&expected)) {
        master.fail(&format!("GET /exe: expected {expected:?}..., got {:?}", answer.body));
    }
}

fn load_config(addr: SocketAddr, mode: Mode) -> LoadConfig {
    LoadConfig {
        threads: 3,
        mode,
        max_requests: 1_000_000,
        max_duration: Duration::from_secs(25),
        timeout: Duration::from_secs(5),
        ..LoadConfig::new(addr)
    }
}

/// Starts a copy of the reference server as the master, from `dir/http`.
fn start_http_copy(dir: &TempDir, extra: &[&str]) -> (Master, PathBuf, u64) {
    let (program, hash) = stage(dir, http(), "http", "");
    let workers = N_WORKERS.to_string();
    let mut args = vec![
        "--addr",
        "127.0.0.1",
        "--port",
        "0",
        "--workers",
        &workers,
        "--recycle-timeout",
        GRACE_MS,
        "--shutdown-timeout",
        GRACE_MS,
    ];
    args.extend_from_slice(extra);
    (Master::start(as_str(&program), &args), program, hash)
}

/// `SIGHUP` and `SIGUSR2` sent to the whole process group (`kill -HUP --
/// -PGID`, a terminal's hangup) reach the workers as well as the master:
/// srv-worker catches them and leaves them to the master, so the recycle
/// and the upgrade run as if the master alone got them, every old worker
/// drains and exits as asked, and no request fails. A worker that kept
/// their default action died of them with its requests in flight.
#[test]
fn sighup_and_sigusr2_to_the_whole_process_group_end_no_worker() {
    let dir = TempDir::new("upgrade-group");
    let (master, program, _) = start_http_copy(&dir, &[]);
    let addr = wait_addr(&master);
    let first = wait_serving(&master, N_WORKERS);
    let load = LoadGuard::start(load_config(addr, Mode::KeepAlive));
    load.wait_progress(&master, PROGRESS, Duration::from_secs(5));
    master.signal_group(Signal::SIGHUP);
    let lines = master.wait_until_within(UPGRADE_WITHIN, "the recycle to complete", |lines| {
        count(lines, "recycle complete") == 1
    });
    let second = serving_pids(&lines);
    assert_all_new(&master, &first, &second);
    wait_exited_as_asked(&master, &first, UPGRADE_WITHIN);
    load.wait_progress(&master, PROGRESS, Duration::from_secs(5));
    let (staged, _) = stage(&dir, http(), "http.new", "group");
    deploy(&staged, &program);
    let third = upgrade_by(&master, |master| master.signal_group(Signal::SIGUSR2));
    assert_same_master(&master, 1);
    assert_all_new(&master, &second, &third);
    wait_exited_as_asked(&master, &second, UPGRADE_WITHIN);
    load.wait_progress(&master, PROGRESS, Duration::from_secs(5));
    let report = load.stop();
    assert_lossless(&master, &report, 3 * PROGRESS);
    let lines = master.lines();
    let troubles =
        ["(signal ", "killed by signal", "killing it", "exited unasked", "upgrade failed"];
    for trouble in troubles {
        if count(&lines, trouble) != 0 {
            master.fail(&format!("a line with {trouble:?}"));
        }
    }
}

/// `upgrades` upgrades under load, each to a new program renamed over the
/// old one: no request fails, the master keeps its pid and runs the newest
/// program, and every worker is new and runs it too.
fn upgrades_under_load(mode: Mode, upgrades: usize) {
    let dir = TempDir::new("upgrade-load");
    let (master, program, old_hash) = start_http_copy(&dir, &[]);
    let addr = wait_addr(&master);
    let mut generations = vec![wait_serving(&master, N_WORKERS)];
    let load = LoadGuard::start(load_config(addr, mode));
    load.wait_progress(&master, PROGRESS, Duration::from_secs(5));
    let mut hash = old_hash;
    for n in 1..=upgrades {
        let (staged, new_hash) = stage(&dir, http(), "http.new", &format!("upgrade {n}"));
        assert_ne!(new_hash, hash, "the new program differs");
        deploy(&staged, &program);
        let before = generations.last().expect("one generation at least").clone();
        let after = upgrade(&master);
        assert_same_master(&master, n);
        assert_all_new(&master, &before, &after);
        // The old workers finish what they accepted and leave by themselves.
        wait_exited_as_asked(&master, &before, UPGRADE_WITHIN);
        load.wait_progress(&master, PROGRESS, Duration::from_secs(5));
        if exe_hash(&master, master.pid()) != new_hash {
            master.fail("the master does not run the new program");
        }
        let answers = get_from_each(&master, addr, "/exe", &after, 200, Duration::from_secs(5));
        assert_exe(&master, &answers, new_hash);
        generations.push(after);
        hash = new_hash;
    }
    let report = load.stop();
    assert_lossless(&master, &report, (upgrades as u64 + 1) * PROGRESS);
    for generation in &generations {
        let raw: BTreeSet<u32> = generation.iter().map(|pid| pid.as_raw() as u32).collect();
        if raw.is_disjoint(&report.pids) {
            master.fail(&format!("no request reached workers {generation:?}:\n{report}"));
        }
    }
    let lines = master.lines();
    for trouble in ["killing it", "exited unasked", "upgrade failed", "reaped orphan"] {
        if count(&lines, trouble) != 0 {
            master.fail(&format!("a line with {trouble:?}"));
        }
    }
}

#[test]
fn an_upgrade_under_load_loses_no_request_with_a_new_connection_per_request() {
    upgrades_under_load(Mode::NewConnection, 1);
}

#[test]
fn two_upgrades_in_a_row_under_keep_alive_load_lose_no_request() {
    upgrades_under_load(Mode::KeepAlive, 2);
}

/// Reads notification datagrams into `got` until `done`, or fails.
fn notifications_until(
    master: &Master,
    socket: &UnixDatagram,
    got: &mut Vec<String>,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) {
    let deadline = Instant::now() + UPGRADE_WITHIN;
    crate::systemd::read_until(master, socket, got, deadline, what, done);
}

/// Each way a probe can fail leaves the master as it was: same pid, same
/// workers serving, same program; the log and `STATUS=` say why. And the
/// master still upgrades afterwards.
#[test]
fn each_failed_probe_leaves_the_master_serving_and_says_why() {
    let dir = TempDir::new("upgrade-fail");
    let config = dir.write("srv.toml", "[worker]\ncount = 2\n");
    let notify_path = dir.path.join("notify.sock");
    let socket = UnixDatagram::bind(&notify_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let (program, _) = stage(&dir, http(), "http", "");
    let args = ["--addr", "127.0.0.1", "--port", "0", "--config", &config];
    let master = Master::start_with(as_str(&program), &args, TEST_TIMEOUT, |command| {
        command.env("NOTIFY_SOCKET", &notify_path);
    });
    let addr = wait_addr(&master);
    let workers = wait_serving(&master, N_WORKERS);
    let mut got = Vec::new();
    notifications_until(&master, &socket, &mut got, "READY=1", |got| {
        crate::systemd::position(got, 0, "READY=1").is_some()
    });
    let version = r#"{"srv_probe":1,"srv":"99.0.0","protocol":[99,99],"handover":[1,1]}"#;
    // A script that answers the probe as a compatible master would: the
    // exec, which runs the very file probed through its descriptor, cannot
    // run a script, so it fails after the point the probe vouched for. The
    // handover format is srv-master's `HANDOVER_VERSION` (2 since the
    // watchdog's period and last proof travel with each worker).
    let vouched = format!(
        r#"{{"srv_probe":1,"srv":"0.1.0","protocol":[{},{}],"handover":[2,2]}}"#,
        srv_proto::MIN_PROTOCOL_VERSION,
        srv_proto::PROTOCOL_VERSION
    );
    type Setup<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Setup<'_>, &str)> = vec![
        (
            "not executable",
            Box::new(|| {
                let (staged, _) = stage(&dir, http(), "staged", "not executable");
                fs::set_permissions(&staged, fs::Permissions::from_mode(0o644)).unwrap();
                deploy(&staged, &program);
            }),
            "Permission denied",
        ),
        (
            "exits non-zero",
            Box::new(|| {
                deploy(&script(&dir, "s1", "echo 'boom: cannot start' >&2; exit 3"), &program)
            }),
            r#"the new program exited (exit code 3) without a probe report; its output ends with "boom: cannot start""#,
        ),
        (
            "not an srv master",
            Box::new(|| deploy(&script(&dir, "s2", "exit 0"), &program)),
            "the new program exited without a probe report: it is not an srv master",
        ),
        (
            "another protocol version",
            Box::new(|| {
                deploy(&script(&dir, "s3", &format!("printf '%s' '{version}' >&3")), &program)
            }),
            // The workers were spawned by this master, and speak its version.
            "the new program (srv 99.0.0) accepts workers of protocol versions 99 to 99, and the workers speak 2",
        ),
        (
            "garbage on the report descriptor",
            Box::new(|| deploy(&script(&dir, "s4", "echo garbage >&3"), &program)),
            "the new program's probe report is not one: ",
        ),
        (
            "a bad config file",
            Box::new(|| {
                let (staged, _) = stage(&dir, http(), "staged", "bad config");
                deploy(&staged, &program);
                dir.write("srv.toml", "[worker]\ncont = 2\n");
            }),
            "invalid option worker.cont: unknown field `cont`",
        ),
        (
            "an exec that fails",
            Box::new(|| {
                deploy(&script(&dir, "s6", &format!("printf '%s' '{vouched}' >&3")), &program)
            }),
            "cannot execute ",
        ),
        (
            "a probe that hangs",
            Box::new(|| deploy(&script(&dir, "s5", "exec sleep 60"), &program)),
            "the new program did not report within 5000 ms",
        ),
    ];
    for (n, (case, setup, why)) in cases.iter().enumerate() {
        setup();
        let from = got.len();
        master.signal(Signal::SIGUSR2);
        let lines =
            master.wait_until_within(UPGRADE_WITHIN, &format!("{case}: the failure"), |lines| {
                count(lines, "upgrade failed: ") > n
            });
        let line = lines.iter().filter(|line| line.contains("upgrade failed: ")).nth(n).unwrap();
        if !line.contains(why) {
            master.fail(&format!("{case}: the failure line does not say {why:?}"));
        }
        notifications_until(&master, &socket, &mut got, &format!("{case}: STATUS="), |got| {
            got[from..].iter().any(|message| {
                message.lines().any(|line| {
                    line.starts_with("STATUS=")
                        && line.contains("upgrade failed: ")
                        && line.contains(why)
                })
            })
        });
        // Nothing changed: the same master, the same workers, serving.
        assert_same_master(&master, 0);
        if serving_pids(&master.lines()) != workers {
            master.fail(&format!("{case}: the workers changed"));
        }
        let pid = get_ok(&master, addr, "/").pid();
        if !pid.is_some_and(|pid| workers.contains(&pid)) {
            master.fail(&format!("{case}: GET / answered by {pid:?}, not by {workers:?}"));
        }
    }
    // The probe that hung was killed with what it started.
    let lines = master.lines();
    let probing = lines.iter().rfind(|line| line.contains("upgrade: probing ")).unwrap();
    let probe = Pid::from_raw(
        probing
            .split("(pid ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .unwrap()
            .parse()
            .unwrap(),
    );
    if !crate::harness::wait_until(Instant::now() + Duration::from_secs(5), || !is_alive(probe)) {
        master.fail(&format!("the probe pid {probe} that hung still runs"));
    }
    // And the master still upgrades.
    dir.write("srv.toml", "[worker]\ncount = 2\n");
    let (staged, new_hash) = stage(&dir, http(), "staged", "at last");
    deploy(&staged, &program);
    let after = upgrade(&master);
    assert_same_master(&master, 1);
    assert_all_new(&master, &workers, &after);
    if exe_hash(&master, master.pid()) != new_hash {
        master.fail("the master does not run the new program");
    }
}

/// A notification datagram and the pid of its sender, as the kernel says
/// (`SO_PASSCRED`).
type Credited = (String, i32);

/// Reads notification datagrams with their senders into `got` until
/// `done`, or fails.
fn read_credited(
    master: &Master,
    socket: &UnixDatagram,
    got: &mut Vec<Credited>,
    what: &str,
    done: &dyn Fn(&[Credited]) -> bool,
) {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg};
    let deadline = Instant::now() + UPGRADE_WITHIN;
    while !done(got) {
        if Instant::now() >= deadline {
            master.fail(&format!("timed out waiting for {what}; so far: {got:#?}"));
        }
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!(UnixCredentials);
        // A timeout (the socket's read timeout) reads again.
        let Ok(message) =
            recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty())
        else {
            continue;
        };
        let pid = message
            .cmsgs()
            .ok()
            .into_iter()
            .flatten()
            .find_map(|cmsg| match cmsg {
                ControlMessageOwned::ScmCredentials(creds) => Some(creds.pid()),
                _ => None,
            })
            .unwrap_or(0);
        let n = message.bytes;
        got.push((String::from_utf8_lossy(&buf[..n]).into_owned(), pid));
    }
}

/// The upgrade's notifications, as systemd sees them with
/// `Type=notify-reload`: `RELOADING=1` with `MONOTONIC_USEC` when it
/// begins, `READY=1` once the workers run the new program, every datagram
/// from the same pid (`MAINPID`), and `NOTIFY_SOCKET` still in the master's
/// environment.
#[test]
fn systemd_sees_reloading_then_ready_from_the_same_pid() {
    use nix::sys::socket::{setsockopt, sockopt};
    let dir = TempDir::new("upgrade-notify");
    let path = dir.path.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    setsockopt(&socket, sockopt::PassCred, &true).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let (program, _) = stage(&dir, http(), "http", "");
    let args = ["--addr", "127.0.0.1", "--port", "0", "--workers", "2"];
    let master = Master::start_with(as_str(&program), &args, TEST_TIMEOUT, |command| {
        command.env("NOTIFY_SOCKET", &path);
    });
    let mut got: Vec<(String, i32)> = Vec::new();
    let has = |got: &[(String, i32)], from: usize, line: &str| {
        got.iter()
            .skip(from)
            .position(|(text, _)| text.lines().any(|l| l == line))
            .map(|i| i + from)
    };
    read_credited(&master, &socket, &mut got, "READY=1", &|got| has(got, 0, "READY=1").is_some());
    let before = wait_serving(&master, N_WORKERS);
    let (staged, _) = stage(&dir, http(), "staged", "notify");
    deploy(&staged, &program);
    let from = got.len();
    master.signal(Signal::SIGUSR2);
    read_credited(&master, &socket, &mut got, "RELOADING=1 then READY=1", &|got| {
        has(got, from, "RELOADING=1").is_some_and(|at| has(got, at + 1, "READY=1").is_some())
    });
    let reloading = has(&got, from, "RELOADING=1").unwrap();
    let ready = has(&got, reloading + 1, "READY=1").unwrap();
    let texts: Vec<&str> = got[from..=ready].iter().map(|(text, _)| text.as_str()).collect();
    if !got[reloading].0.lines().any(|line| line.starts_with("MONOTONIC_USEC=")) {
        master.fail(&format!("RELOADING=1 without MONOTONIC_USEC: {texts:#?}"));
    }
    if texts.iter().filter(|text| text.lines().any(|l| l == "RELOADING=1")).count() != 1 {
        master.fail(&format!("RELOADING=1 more than once: {texts:#?}"));
    }
    for status in ["STATUS=upgrading: probing the new program; ", "STATUS=upgrading: recycling: "] {
        if !texts.iter().any(|text| text.lines().any(|line| line.starts_with(status))) {
            master.fail(&format!("no {status:?}: {texts:#?}"));
        }
    }
    let pid = master.pid().as_raw();
    if let Some((text, sender)) = got.iter().find(|(_, sender)| *sender != pid) {
        master.fail(&format!("a notification from pid {sender}, not the master's {pid}: {text:?}"));
    }
    // READY=1 comes once the workers run the new program. The master
    // logged it before it notified, but the harness reads its log through
    // a pipe, which may lag behind the datagram: wait for the line.
    let lines = master
        .wait_until("the upgrade complete line", |lines| count(lines, "upgrade complete in ") == 1);
    let after = serving_pids(&lines);
    assert_all_new(&master, &before, &after);
    let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    if !String::from_utf8_lossy(&environ).split('\0').any(|var| var.starts_with("NOTIFY_SOCKET=")) {
        master.fail("NOTIFY_SOCKET is gone from the master's environment");
    }
    // What systemd and the upgrade told the master is not the new workers'.
    for worker in &after {
        let environ = fs::read(format!("/proc/{worker}/environ")).unwrap_or_default();
        let environ = String::from_utf8_lossy(&environ);
        for name in ["NOTIFY_SOCKET=", "SRV_HANDOVER_FD=", "SRV_HANDOVER_PID=", "SRV_PROBE_FD="] {
            if environ.split('\0').any(|var| var.starts_with(name)) {
                master.fail(&format!("worker {worker} has {name}"));
            }
        }
    }
}

/// `SIGTERM` while the probe runs: the probe is killed, the workers drain,
/// the master exits 0 once the probe is reaped.
#[test]
fn sigterm_during_the_probe_kills_it_and_shuts_down() {
    let dir = TempDir::new("upgrade-sigterm");
    let (mut master, program, _) = start_http_copy(&dir, &[]);
    let workers = wait_serving(&master, N_WORKERS);
    deploy(&script(&dir, "hangs", "exec sleep 60"), &program);
    master.signal(Signal::SIGUSR2);
    let lines = master.wait_for_count("upgrade: probing ", 1);
    let probing = lines.iter().find(|line| line.contains("upgrade: probing ")).unwrap();
    let probe: i32 = probing
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap()
        .parse()
        .unwrap();
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit_within(Duration::from_secs(10)), Exit::Code(0));
    wait_exited_as_asked(&master, &workers, Duration::from_secs(1));
    let lines = master.lines();
    if count(&lines, "upgrade stopped by SIGTERM: killing the probe") != 1 {
        master.fail("no line saying the probe was killed");
    }
    if is_alive(Pid::from_raw(probe)) {
        master.fail(&format!("the probe pid {probe} outlived the master"));
    }
    if count(&lines, "reaped orphan") + count(&lines, "left behind") != 0 {
        master.fail("the probe was taken for an orphan");
    }
}

/// `SIGHUP` while the probe runs waits for the upgrade, whose recycle does
/// what it asked: every worker serving at the end was spawned after it.
#[test]
fn sighup_during_the_upgrade_is_done_after_it() {
    let dir = TempDir::new("upgrade-sighup");
    let (program, _) = stage(&dir, misbehave(), "misbehave", "");
    let args = ["--workers", "2", "--master-delay-ms", "1500", "--recycle-timeout", GRACE_MS];
    let master = Master::start(as_str(&program), &args);
    let before = wait_serving(&master, N_WORKERS);
    let (staged, _) = stage(&dir, misbehave(), "staged", "sighup");
    deploy(&staged, &program);
    master.signal(Signal::SIGUSR2);
    master.wait_for_count("upgrade: probing ", 1);
    master.signal(Signal::SIGHUP);
    let lines = master.wait_for_count("SIGHUP during the upgrade: recycling once it is over", 1);
    let hup_at = lines.len();
    let lines = master.wait_until_within(UPGRADE_WITHIN, "the upgrade to complete", |lines| {
        count(lines, "upgrade complete in ") == 1
    });
    if count(&lines, "the SIGHUP received during the upgrade is done by the upgrade's recycle") != 1
    {
        master.fail("the SIGHUP was not accounted for");
    }
    let after = serving_pids(&lines);
    assert_all_new(&master, &before, &after);
    // Every worker serving was spawned after the SIGHUP.
    for pid in &after {
        let spawned = format!("spawned (pid {pid})");
        if !lines[hup_at..].iter().any(|line| line.contains(&spawned)) {
            master.fail(&format!("worker pid {pid} was not spawned after the SIGHUP"));
        }
    }
    if count(&lines, "SIGHUP: recycling") != 0 {
        master.fail("a second recycle ran");
    }
}

/// No signal is lost, and none takes its default action, across the exec:
/// a `SIGTERM` sent while the new program has not installed its handlers
/// yet (it waits before `Master::run`) is handled once it has: a graceful
/// shutdown, exit 0. Without the signals blocked across the exec, the
/// default action of `SIGTERM` killed the master there.
#[test]
fn a_signal_during_the_exec_is_handled_by_the_new_master() {
    let dir = TempDir::new("upgrade-exec-signal");
    let (program, _) = stage(&dir, misbehave(), "misbehave", "");
    let args = ["--workers", "2", "--master-delay-ms", "1000", "--shutdown-timeout", GRACE_MS];
    let mut master = Master::start(as_str(&program), &args);
    let workers = wait_serving(&master, N_WORKERS);
    let waits = format!("misbehave: master pid {} waits 1000 ms", master.pid());
    master.signal(Signal::SIGUSR2);
    // The new program prints this before it waits, handlers not installed.
    master.wait_for_count(&waits, 2);
    master.signal(Signal::SIGTERM);
    let exit = master.wait_exit_within(Duration::from_secs(15));
    if exit != Exit::Code(0) {
        master.fail(&format!("the master ended with {exit:?}, not exit code 0"));
    }
    let lines = master.lines();
    let upgraded = lines
        .iter()
        .position(|line| line.contains("upgraded in place"))
        .unwrap_or_else(|| master.fail("the master was not upgraded"));
    if !lines[upgraded..].iter().any(|line| line.contains("SIGTERM: shutting down")) {
        master.fail("the new master did not handle the SIGTERM");
    }
    wait_exited_as_asked(&master, &workers, Duration::from_secs(1));
}

/// A Unix socket survives the upgrade, and the new master removes its file
/// at exit as the old one would have (the bookkeeping is handed over).
#[test]
fn a_unix_socket_survives_an_upgrade_and_is_removed_at_exit() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = TempDir::new("upgrade-unix");
    let socket_path = dir.path.join("app.sock");
    let listen = format!("unix:{}", as_str(&socket_path));
    let (program, _) = stage(&dir, misbehave(), "misbehave", "");
    let args = ["--workers", "2", "--listen", &listen, "--shutdown-timeout", GRACE_MS];
    let mut master = Master::start(as_str(&program), &args);
    let before = wait_serving(&master, N_WORKERS);
    let inode = fs::symlink_metadata(&socket_path).expect("the socket file").ino();
    let (staged, _) = stage(&dir, misbehave(), "staged", "unix");
    deploy(&staged, &program);
    let after = upgrade(&master);
    assert_all_new(&master, &before, &after);
    let now = fs::symlink_metadata(&socket_path).expect("the socket file after the upgrade").ino();
    if now != inode {
        master.fail("the socket file was replaced");
    }
    std::os::unix::net::UnixStream::connect(&socket_path)
        .unwrap_or_else(|error| master.fail(&format!("connect after the upgrade: {error}")));
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit_within(Duration::from_secs(10)), Exit::Code(0));
    if socket_path.exists() {
        master.fail("the new master left the socket file behind");
    }
}
