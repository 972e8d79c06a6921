//! Shared ports and lossless recycling of the reference server under load:
//! SIGHUP replaces every worker without losing a request (new connection per
//! request, and keep-alive), requests in flight survive SIGHUP and SIGTERM
//! (to the master, to the whole process group as service managers send it,
//! or to one worker), a second master on the same port fails without
//! harming the first, a recycle runs a replaced binary, a recycle with
//! `--recycle-parallel` starts its replacements at once without ever serving
//! with fewer workers, and SIGTTIN/SIGTTOU add and remove a worker.
//!
//! The load generator (`srv-load/src/lib.rs`) counts a request as failed when
//! the connection is refused, reset or closed before the whole response
//! arrived, or the status is not 200; a recycle that closes the shared
//! socket, or a worker that drops connections it accepted, shows up there.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::clients::{Tool, recycles_under};
use crate::harness::{Exit, Master, TempDir, count, find_from, wait_until};
use crate::http_support::{
    LoadGuard, Response, assert_lossless, fnv1a_64, get, get_from_each, get_ok, http, serving_pids,
    start_on_port_0, wait_addr, wait_exited_as_asked, wait_serving,
};
use crate::load::{LoadConfig, Mode};
use crate::proc_support::{socket_fds, tcp_sockets_on_port};

/// Workers per master in these tests: more than one, so that the port is
/// shared, and few, for a 2-core machine.
pub(crate) const N_WORKERS: usize = 2;

/// Recycle and shutdown grace: longer than any request of these tests
/// (`/sleep?ms=1000` at most), short enough that a worker which does not
/// exit shows up as a kill well within the test's timeout.
pub(crate) const GRACE_MS: &str = "5000";

/// How long a recycle of [`N_WORKERS`] workers may take, and how long the
/// old workers may take to drain and exit, before the test fails.
pub(crate) const RECYCLE_WITHIN: Duration = Duration::from_secs(10);

/// The number of recycles under load.
pub(crate) const N_RECYCLES: usize = 5;

/// Requests that must complete between two recycles, so that each
/// generation of workers serves under load.
const PROGRESS_BETWEEN_RECYCLES: u64 = 50;

/// The number of slow requests in flight across a signal.
const N_SLOW: usize = 8;

fn start_http(extra: &[&str]) -> Master {
    start_recycled(http(), extra)
}

/// Starts `program`, a server with the reference server's contract, with
/// [`N_WORKERS`] workers and [`GRACE_MS`] to drain at a recycle and at
/// shutdown, on port 0.
pub(crate) fn start_recycled(program: &str, extra: &[&str]) -> Master {
    let workers = N_WORKERS.to_string();
    let mut args =
        vec!["--workers", &workers, "--recycle-timeout", GRACE_MS, "--shutdown-timeout", GRACE_MS];
    args.extend_from_slice(extra);
    start_on_port_0(program, &args)
}

fn load_config(addr: SocketAddr, mode: Mode, threads: usize, path: &str) -> LoadConfig {
    LoadConfig {
        threads,
        mode,
        path: path.to_owned(),
        // Bounds only for a test that goes wrong; a test stops its load.
        max_requests: 1_000_000,
        max_duration: Duration::from_secs(25),
        timeout: Duration::from_secs(5),
        ..LoadConfig::new(addr)
    }
}

/// Sends SIGHUP and waits until the master logs that the recycle completed;
/// returns the workers serving then.
pub(crate) fn recycle(master: &Master) -> BTreeSet<Pid> {
    let done = count(&master.lines(), "recycle complete: ");
    master.signal(Signal::SIGHUP);
    let lines = master.wait_until_within(RECYCLE_WITHIN, "the recycle to complete", |lines| {
        count(lines, "recycle complete: ") > done
    });
    let replaced = format!("recycle complete: {N_WORKERS} workers replaced");
    if count(&lines, &replaced) != done + 1 {
        master.fail(&format!("expected the line {replaced:?}"));
    }
    serving_pids(&lines)
}

/// Fails unless `after` is a whole new set of [`N_WORKERS`] running workers.
pub(crate) fn assert_replaced(master: &Master, before: &BTreeSet<Pid>, after: &BTreeSet<Pid>) {
    if after.len() != N_WORKERS || !before.is_disjoint(after) {
        master.fail(&format!("recycle did not replace every worker: {before:?} -> {after:?}"));
    }
    if let Some(dead) = after.iter().find(|&&pid| !master.is_alive(pid)) {
        master.fail(&format!("new worker pid {dead} does not run"));
    }
}

/// SIGHUP `n_recycles` times under load on `master` (a server with
/// [`N_WORKERS`] workers on port 0), each after the previous recycle
/// completed and the load reached the new workers: no request fails, and
/// each recycle replaces every worker. The async examples' tests share it.
pub(crate) fn recycles_under_load(master: &Master, mode: Mode, n_recycles: usize) {
    let addr = wait_addr(master);
    let mut generations = vec![wait_serving(master, N_WORKERS)];
    let load = LoadGuard::start(load_config(addr, mode, 3, "/"));
    load.wait_progress(master, PROGRESS_BETWEEN_RECYCLES, Duration::from_secs(5));
    for _ in 0..n_recycles {
        let before = generations.last().expect("one generation at least");
        let after = recycle(master);
        assert_replaced(master, before, &after);
        // The old workers finish what they accepted and leave by
        // themselves, well before the grace runs out.
        wait_exited_as_asked(master, before, RECYCLE_WITHIN);
        load.wait_progress(master, PROGRESS_BETWEEN_RECYCLES, Duration::from_secs(5));
        generations.push(after);
    }
    let report = load.stop();
    assert_lossless(master, &report, (n_recycles as u64 + 1) * PROGRESS_BETWEEN_RECYCLES);
    // For the record (`cargo xtask test-e2e -- --nocapture`), as the
    // clients tests print theirs.
    let program = master.command_line().split_whitespace().next().unwrap_or_default();
    let program = program.rsplit('/').next().unwrap_or_default();
    eprintln!(
        "{program}: load generator ({mode:?}): {} requests sent, {} failed over {n_recycles} recycles",
        report.sent,
        report.failed()
    );
    // Every generation answered some of the load.
    for generation in &generations {
        let raw: BTreeSet<u32> = generation
            .iter()
            .map(|pid| pid.as_raw().try_into().expect("pids are positive"))
            .collect();
        if raw.is_disjoint(&report.pids) {
            master.fail(&format!("no request reached workers {generation:?}:\n{report}"));
        }
    }
    let lines = master.lines();
    if count(&lines, "killing it") + count(&lines, "exited unasked") != 0 {
        master.fail("a worker was killed or crashed during the recycles");
    }
}

#[test]
fn recycles_lose_no_request_with_a_new_connection_per_request() {
    recycles_under_load(&start_http(&[]), Mode::NewConnection, N_RECYCLES);
}

#[test]
fn recycles_lose_no_request_on_keep_alive_connections() {
    recycles_under_load(&start_http(&[]), Mode::KeepAlive, N_RECYCLES);
}

#[test]
fn recycles_lose_no_request_from_wrk() {
    recycles_under(|| start_http(&[]), Tool::Wrk);
}

#[test]
fn recycles_lose_no_request_from_ab() {
    recycles_under(|| start_http(&[]), Tool::Ab);
}

#[test]
fn a_parallel_recycle_starts_the_replacements_at_once_and_keeps_every_worker_serving() {
    let master = start_http(&["--recycle-parallel", "2"]);
    recycles_under_load(&master, Mode::KeepAlive, 2);
    let lines = master.lines();
    // Both replacements of each recycle are spawned before either starts.
    let mut from = 0;
    for _ in 0..2 {
        let Some(sighup) = find_from(&lines, from, "SIGHUP: recycling 2 workers, 2 at a time")
        else {
            master.fail("expected the line \"SIGHUP: recycling 2 workers, 2 at a time\"");
        };
        let spawned = find_from(&lines, sighup, " spawned (pid ")
            .and_then(|first| find_from(&lines, first + 1, " spawned (pid "));
        let started = find_from(&lines, sighup, ") started (");
        let before = matches!((spawned, started), (Some(second), Some(first)) if second < first);
        if !before {
            master.fail("the two replacements were not spawned before the first one started");
        }
        from = sighup + 1;
    }
    // Once the first workers started, never fewer than N_WORKERS serve:
    // an old worker is disconnected only once its replacement started.
    let first_ready = (1..=lines.len()).find(|&n| serving_pids(&lines[..n]).len() == N_WORKERS);
    let Some(first_ready) = first_ready else { master.fail("the workers never all started") };
    let shutdown = find_from(&lines, 0, "shutting down").unwrap_or(lines.len());
    for end in first_ready..shutdown {
        let serving = serving_pids(&lines[..end]);
        if serving.len() < N_WORKERS {
            master.fail(&format!("only {serving:?} serving after line {end}: {}", lines[end - 1]));
        }
    }
}

#[test]
fn recycle_parallel_beyond_the_worker_count_is_refused() {
    let mut master = start_on_port_0(http(), &["--workers", "2", "--recycle-parallel", "3"]);
    let exit = master.wait_exit();
    let lines = master.lines();
    let error = "invalid option recycle.parallel: must be at most worker.count (2)";
    if exit == Exit::Code(0) || count(&lines, error) != 1 || count(&lines, "spawned") != 0 {
        master.fail(&format!("expected a non-zero exit, {error:?} and no worker, got {exit:?}"));
    }
}

/// A request sent from its own thread: the answer (or why none came) and
/// when it came.
type SlowRequest = JoinHandle<(Result<Response, String>, Instant)>;

/// Sends [`N_SLOW`] `GET /sleep?ms=1000` and waits until the workers in
/// `workers` have accepted all of them: they hold that many more sockets
/// than before (nothing else connects meanwhile).
fn start_slow_requests(
    master: &Master,
    addr: SocketAddr,
    workers: &BTreeSet<Pid>,
) -> Vec<SlowRequest> {
    let workers: Vec<Pid> = workers.iter().copied().collect();
    let before = socket_fds(&workers);
    let requests: Vec<SlowRequest> = (0..N_SLOW)
        .map(|_| {
            thread::spawn(move || {
                let response = get(addr, "/sleep?ms=1000");
                (response, Instant::now())
            })
        })
        .collect();
    let accepted = || socket_fds(&workers).saturating_sub(before);
    if !wait_until(Instant::now() + Duration::from_secs(5), || accepted() >= N_SLOW) {
        let sockets = tcp_sockets_on_port(addr.port());
        let done = requests.iter().filter(|request| request.is_finished()).count();
        master.fail(&format!(
            "the workers accepted {} of {N_SLOW} slow requests; {done} requests ended; \
             sockets on the port (state inode): {sockets:?}",
            accepted()
        ));
    }
    requests
}

/// Waits for the slow requests: each must be answered `200 slept 1000`.
/// Returns when the first answer came.
fn finish_slow_requests(master: &Master, requests: Vec<SlowRequest>) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(10);
    if !wait_until(deadline, || requests.iter().all(JoinHandle::is_finished)) {
        master.fail("slow requests still unanswered after 10 s");
    }
    let mut first = None::<Instant>;
    for request in requests {
        let (response, at) = request.join().expect("the request thread does not panic");
        match response {
            Ok(response) if response.status == 200 && response.body == "slept 1000\n" => {}
            other => master.fail(&format!("slow request in flight: expected 200, got {other:?}")),
        }
        first = Some(first.map_or(at, |first| first.min(at)));
    }
    first.expect("N_SLOW > 0")
}

/// When the first line containing `needle` was read, if any.
fn line_read_at(master: &Master, needle: &str) -> Option<Instant> {
    master.timed_lines().into_iter().find(|line| line.text.contains(needle)).map(|line| line.at)
}

/// Requests in flight at SIGHUP complete on the old workers, which the
/// master disconnected before they answered, and the new workers serve:
/// for `master`, a server of [`N_WORKERS`] workers on port 0 with
/// `GET /sleep`. Every example server's test shares it.
pub(crate) fn slow_requests_survive_sighup(master: &Master) {
    let addr = wait_addr(master);
    let old = wait_serving(master, N_WORKERS);
    let requests = start_slow_requests(master, addr, &old);
    let new = recycle(master);
    assert_replaced(master, &old, &new);
    let first_answer = finish_slow_requests(master, requests);
    // The old workers were told to go while they were still working.
    for pid in &old {
        let told = line_read_at(master, &format!("(pid {pid}) disconnecting"))
            .unwrap_or_else(|| master.fail(&format!("old worker pid {pid} was not disconnected")));
        if told >= first_answer {
            master.fail(&format!("worker pid {pid} was disconnected only after the answers"));
        }
    }
    wait_exited_as_asked(master, &old, RECYCLE_WITHIN);
    // The shared socket still serves, from the new workers.
    let pid = get_ok(master, addr, "/").pid();
    if !pid.is_some_and(|pid| new.contains(&pid)) {
        master.fail(&format!("GET / after the recycle answered by {pid:?}, not by {new:?}"));
    }
}

/// Requests in flight at SIGTERM complete, every worker exits as asked and
/// the master exits 0; shared like [`slow_requests_survive_sighup`].
pub(crate) fn slow_requests_survive_sigterm(mut master: Master) {
    let addr = wait_addr(&master);
    let workers = wait_serving(&master, N_WORKERS);
    let requests = start_slow_requests(&master, addr, &workers);
    master.signal(Signal::SIGTERM);
    let first_answer = finish_slow_requests(&master, requests);
    let told = line_read_at(&master, "SIGTERM: shutting down")
        .unwrap_or_else(|| master.fail("no \"SIGTERM: shutting down\" line"));
    if told >= first_answer {
        master.fail("the master logged SIGTERM only after the answers");
    }
    assert_eq!(master.wait_exit_within(RECYCLE_WITHIN), Exit::Code(0));
    wait_exited_as_asked(&master, &workers, Duration::from_secs(1));
    if count(&master.lines(), "killing it") != 0 {
        master.fail("a worker had to be killed");
    }
}

#[test]
fn slow_requests_in_flight_survive_sighup() {
    slow_requests_survive_sighup(&start_http(&[]));
}

#[test]
fn slow_requests_in_flight_survive_sigterm_and_the_master_exits_0() {
    slow_requests_survive_sigterm(start_http(&[]));
}

#[test]
fn slow_requests_in_flight_survive_sigterm_to_the_whole_process_group() {
    // systemd's default KillMode=control-group, `timeout`, `kill -- -PGID`:
    // the master and every worker get SIGTERM at once. srv-worker makes it a
    // disconnect, so each worker drains like after the master's own.
    let mut master = start_http(&[]);
    let addr = wait_addr(&master);
    let workers = wait_serving(&master, N_WORKERS);
    let requests = start_slow_requests(&master, addr, &workers);
    master.signal_group(Signal::SIGTERM);
    finish_slow_requests(&master, requests);
    assert_eq!(master.wait_exit_within(RECYCLE_WITHIN), Exit::Code(0));
    // The master's log says how each worker ended: drained and exited 0.
    wait_exited_as_asked(&master, &workers, Duration::from_secs(1));
    let lines = master.lines();
    for trouble in ["signal 15", "killing it", "exited unasked", "with an error"] {
        if count(&lines, trouble) != 0 {
            master.fail(&format!("a line with {trouble:?}: a worker did not drain"));
        }
    }
}

#[test]
fn sigterm_to_one_worker_drains_it_and_the_master_replaces_it_without_a_crash() {
    // An operator stops one worker by pid. It finishes its requests, exits
    // 0, and is replaced at once: restart.delay (60 s) would outlast the
    // test, so only a replacement not counted as a crash passes.
    let master = start_on_port_0(
        http(),
        &["--workers", "1", "--shutdown-timeout", GRACE_MS, "--restart-delay", "60000"],
    );
    let addr = wait_addr(&master);
    let workers = wait_serving(&master, 1);
    let old = *workers.iter().next().expect("one worker");
    let requests = start_slow_requests(&master, addr, &workers);
    master.signal_worker(old, Signal::SIGTERM);
    finish_slow_requests(&master, requests);
    let lines = master.wait_until_within(RECYCLE_WITHIN, "a replacement serving", |lines| {
        let serving = serving_pids(lines);
        serving.len() == 1 && !serving.contains(&old)
    });
    let needle = format!("(pid {old}) exited on purpose (exit code 0); replacing it");
    if count(&lines, &needle) != 1 || count(&lines, "restarting in") != 0 {
        master.fail(&format!("expected {needle:?}, and no crash"));
    }
    let new = serving_pids(&lines);
    let pid = get_ok(&master, addr, "/").pid();
    if !pid.is_some_and(|pid| new.contains(&pid)) {
        master.fail(&format!("GET / answered by {pid:?}, not by the replacement {new:?}"));
    }
}

#[test]
fn second_master_on_the_same_port_fails_and_harms_nothing() {
    let master_a = start_http(&[]);
    let addr = wait_addr(&master_a);
    let workers = wait_serving(&master_a, N_WORKERS);
    let load = LoadGuard::start(load_config(addr, Mode::NewConnection, 2, "/sleep?ms=2"));
    load.wait_progress(&master_a, 20, Duration::from_secs(5));

    let port = addr.port().to_string();
    let mut master_b =
        Master::start(http(), &["--addr", "127.0.0.1", "--port", &port, "--workers", "2"]);
    // A listen failure before any worker has started is fatal: B must not
    // keep restarting workers that cannot listen.
    let exit = master_b.wait_exit_within(Duration::from_secs(5));
    if exit == Exit::Code(0) {
        master_b.fail("the second master exited 0");
    }
    let needle = addr.to_string();
    if !master_b.lines().iter().any(|line| line.contains(&needle) && line.contains("in use")) {
        master_b.fail(&format!("no error line naming {needle} and \"in use\""));
    }

    // A noticed nothing.
    load.wait_progress(&master_a, 20, Duration::from_secs(5));
    let report = load.stop();
    assert_lossless(&master_a, &report, 40);
    let pid = get_ok(&master_a, addr, "/").pid();
    if !pid.is_some_and(|pid| workers.contains(&pid)) {
        master_a.fail(&format!("GET / answered by {pid:?}, not by A's workers {workers:?}"));
    }
    let lines = master_a.lines();
    if serving_pids(&lines) != workers || count(&lines, "exited") != 0 {
        master_a.fail("master A's workers changed");
    }
}

/// Every answer is `exe <hash> <pid>` with `hash`, from one of `workers`.
fn assert_exe(master: &Master, answers: &[Response], hash: u64, workers: &BTreeSet<Pid>) {
    let expected = format!("exe {hash:016x} ");
    for answer in answers {
        let from_worker = answer.pid().is_some_and(|pid| workers.contains(&pid));
        if !answer.body.starts_with(&expected) || !from_worker {
            master.fail(&format!(
                "GET /exe: expected {expected:?}<one of {workers:?}>, got {:?}",
                answer.body
            ));
        }
    }
}

#[test]
fn recycle_runs_the_replaced_binary() {
    // Declared first, dropped last: after the master's guard killed
    // everything that runs the binary.
    let dir = TempDir::new("exe");
    let program = dir.path.join("http");
    fs::copy(http(), &program).expect("copy the http binary");
    let old_hash = fnv1a_64(&fs::read(&program).expect("read the copy"));
    let program = program.to_str().expect("temporary paths are UTF-8").to_owned();

    let master = start_on_port_0(
        &program,
        &["--workers", "2", "--recycle-timeout", GRACE_MS, "--shutdown-timeout", GRACE_MS],
    );
    let addr = wait_addr(&master);
    let old = wait_serving(&master, N_WORKERS);

    // Replace the file the way a deployment does: write the new binary
    // beside it, then rename it over the old one in one step. Trailing
    // bytes change the hash, and an ELF file still runs with them.
    let staged = dir.path.join("http.new");
    fs::copy(http(), &staged).expect("copy the http binary");
    let mut file = fs::OpenOptions::new().append(true).open(&staged).expect("open the copy");
    file.write_all(b"\nsrv e2e: a different binary\n").expect("append to the copy");
    file.sync_all().expect("sync the copy");
    drop(file);
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o755)).expect("chmod +x");
    let new_hash = fnv1a_64(&fs::read(&staged).expect("read the new binary"));
    assert_ne!(new_hash, old_hash, "the new binary differs");
    fs::rename(&staged, &program).expect("rename the new binary over the old one");
    // The workers hash their executable on the first `GET /exe`, not at
    // start: asked only now, the old ones still hash the file they were
    // started from, not the one now at the path.
    let answers = get_from_each(&master, addr, "/exe", &old, 200, Duration::from_secs(5));
    assert_exe(&master, &answers, old_hash, &old);

    let new = recycle(&master);
    assert_replaced(&master, &old, &new);
    wait_exited_as_asked(&master, &old, RECYCLE_WITHIN);
    let answers = get_from_each(&master, addr, "/exe", &new, 200, Duration::from_secs(5));
    assert_exe(&master, &answers, new_hash, &new);
}

#[test]
fn sigttin_adds_a_worker_and_sigttou_removes_one_under_load() {
    let master = start_http(&[]);
    let addr = wait_addr(&master);
    let first = wait_serving(&master, N_WORKERS);
    // Light: each request sleeps 5 ms in the worker.
    let load = LoadGuard::start(load_config(addr, Mode::NewConnection, 2, "/sleep?ms=5"));
    load.wait_progress(&master, 20, Duration::from_secs(5));

    master.signal(Signal::SIGTTIN);
    let more = wait_serving(&master, N_WORKERS + 1);
    if count(&master.lines(), &format!("SIGTTIN: workers {N_WORKERS} -> {}", N_WORKERS + 1)) != 1 {
        master.fail("no SIGTTIN line");
    }
    let added: BTreeSet<Pid> = more.difference(&first).copied().collect();
    if !first.is_subset(&more) || added.len() != 1 {
        master.fail(&format!("SIGTTIN: workers {first:?} -> {more:?}, expected one more"));
    }
    // The new worker accepts on the shared socket.
    get_from_each(&master, addr, "/", &added, 300, Duration::from_secs(5));
    load.wait_progress(&master, 20, Duration::from_secs(5));

    master.signal(Signal::SIGTTOU);
    let fewer = wait_serving(&master, N_WORKERS);
    if count(&master.lines(), &format!("SIGTTOU: workers {} -> {N_WORKERS}", N_WORKERS + 1)) != 1 {
        master.fail("no SIGTTOU line");
    }
    let removed: BTreeSet<Pid> = more.difference(&fewer).copied().collect();
    if !fewer.is_subset(&more) || removed.len() != 1 {
        master.fail(&format!("SIGTTOU: workers {more:?} -> {fewer:?}, expected one fewer"));
    }
    wait_exited_as_asked(&master, &removed, RECYCLE_WITHIN);
    if let Some(pid) = removed.iter().find(|&&pid| master.is_alive(pid)) {
        master.fail(&format!("the removed worker pid {pid} still runs"));
    }
    load.wait_progress(&master, 20, Duration::from_secs(5));
    let report = load.stop();
    assert_lossless(&master, &report, 60);
}
