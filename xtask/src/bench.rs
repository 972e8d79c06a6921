//! `cargo xtask bench`: the figures users choose a process manager by,
//! measured with real processes against the reference server
//! (`examples/src/bin/http.rs`, 4 workers on 127.0.0.1).
//!
//! Speed and cost are measured here, never by timed assertions in tests.
//! The command builds the release binaries, runs every scenario `--runs`
//! times (3 by default, interleaved so that a noisy moment of the machine
//! spreads over all scenarios), prints a markdown table of the median and
//! the worst run of each figure on stdout, and writes the same with every
//! sample to `target/bench/results.json`. `--quick` does one run with
//! shorter durations, to check that the tool works.
//!
//! Every server is started on port 0 in its own process group and killed
//! with that group when its run ends, even on error ([`server::Server`]).
//! All traffic goes to 127.0.0.1 and every load is bounded in requests and
//! in time (`xtask/src/load.rs`). The definition of each figure is printed
//! under the table; [`notes`] holds them.

mod report;
mod server;

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::load::{Load, LoadConfig, Mode, Report};
use report::{Better, Results, Unit};
use server::{LogEvent, Server};

/// Workers of the reference configuration.
const WORKERS: usize = 4;

/// Limits within which a server must start, and a recycle complete.
const START_WITHIN: Duration = Duration::from_secs(20);
const RECYCLE_WITHIN: Duration = Duration::from_secs(30);

/// Passed to every master: a generous start limit, so that a machine busy
/// with other work does not turn a slow start into a failed run. It changes
/// no figure; the other options keep their defaults.
const WORKER_TIMEOUT_MS: &str = "10000";

/// Probes (`GET /` on new connections, to see who answers) go out in waves
/// of this many concurrent requests, one wave every [`PROBE_INTERVAL`].
const PROBE_CONCURRENCY: usize = 4;
const PROBE_INTERVAL: Duration = Duration::from_millis(2);
/// Timeout of one request, for connecting and for each read and write.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The lossless scenario: client threads, how many requests must complete
/// before each recycle and after the last one, and the load's bounds.
const LOSSLESS_THREADS: usize = 4;
const LOSSLESS_PROGRESS: u64 = 50;
const LOSSLESS_MAX_REQUESTS: u64 = 10_000_000;
const LOSSLESS_MAX_DURATION: Duration = Duration::from_secs(120);

/// The throughput scenario: keep-alive client threads and the bound on
/// requests (the duration is a setting).
const THROUGHPUT_THREADS: usize = 8;
const THROUGHPUT_MAX_REQUESTS: u64 = 100_000_000;

/// Clock ticks per second assumed when `getconf CLK_TCK` does not answer
/// (it is 100 on every Linux architecture in practice).
const DEFAULT_CLK_TCK: u64 = 100;

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    runs: usize,
    quick: bool,
    /// Recycles per run in the lossless and master cost scenarios.
    recycles: usize,
    /// How long the master's idle CPU time is measured.
    idle: Duration,
    /// How long each throughput load lasts.
    throughput: Duration,
}

impl Settings {
    /// `[--runs N] [--quick]`; `--runs` wins over the single run of `--quick`.
    fn parse(args: &[String]) -> Result<Settings> {
        let mut runs = None;
        let mut quick = false;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (arg.as_str(), None),
            };
            match name {
                "--quick" if inline.is_none() => quick = true,
                "--runs" => {
                    let value = inline
                        .or_else(|| args.next().map(String::as_str))
                        .context("--runs needs a value")?;
                    let n: usize =
                        value.parse().ok().filter(|&n| n >= 1).with_context(|| {
                            format!("--runs {value}: not a number of runs >= 1")
                        })?;
                    runs = Some(n);
                }
                _ => bail!(
                    "unknown argument `{arg}`; `cargo xtask bench` takes [--runs N] [--quick]"
                ),
            }
        }
        let settings = if quick {
            Settings {
                runs: runs.unwrap_or(1),
                quick,
                recycles: 3,
                idle: Duration::from_secs(2),
                throughput: Duration::from_secs(1),
            }
        } else {
            Settings {
                runs: runs.unwrap_or(3),
                quick,
                recycles: 10,
                idle: Duration::from_secs(10),
                throughput: Duration::from_secs(3),
            }
        };
        Ok(settings)
    }
}

/// What every scenario needs.
#[derive(Debug)]
struct Bench {
    http: PathBuf,
    settings: Settings,
    clk_tck: u64,
}

impl Bench {
    /// Starts a master with `workers` workers on 127.0.0.1 port 0.
    fn start_master(&self, workers: usize, extra: &[&str]) -> Result<Server> {
        let workers = workers.to_string();
        let mut args = vec!["--addr", "127.0.0.1", "--port", "0", "--workers", &workers];
        args.extend(["--worker-timeout", WORKER_TIMEOUT_MS]);
        args.extend(extra);
        Server::start(&self.http, &args, START_WITHIN)
    }

    fn ticks_to_ms(&self, ticks: u64) -> f64 {
        ticks as f64 * 1000.0 / self.clk_tck as f64
    }
}

type Scenario = fn(&Bench, &mut Results) -> Result<()>;

const SCENARIOS: &[(&str, Scenario)] = &[
    ("startup", startup),
    ("recycle", recycle),
    ("lossless under load", lossless),
    ("crash recovery", crash_recovery),
    ("master cost", master_cost),
    ("throughput", throughput),
];

pub(crate) fn run(args: &[String]) -> Result<ExitCode> {
    let settings = Settings::parse(args)?;
    let mut build = crate::cargo();
    build.args(["build", "--release", "-p", "srv-examples", "--bins"]);
    crate::run_step(&mut build)?;
    let http = target_dir().join("release").join("http");
    if !http.is_file() {
        bail!("the build did not produce {}", http.display());
    }
    let (clk_tck, clk_tck_assumed) = match clock_ticks() {
        Some(ticks) => (ticks, false),
        None => (DEFAULT_CLK_TCK, true),
    };
    // After the build, whose leftovers are not ours to reap.
    if let Err(error) = server::become_subreaper() {
        eprintln!("warning: {error:#}; killed workers will be reaped by init");
    }
    let cores = thread::available_parallelism().map_or(1, usize::from);
    let runs = settings.runs;
    let mut results = Results { cores, runs, quick: settings.quick, ..Results::default() };
    for note in notes(&settings, cores, clk_tck, clk_tck_assumed) {
        results.note(note);
    }
    let bench = Bench { http, settings, clk_tck };

    let bench_start = Instant::now();
    for run in 1..=runs {
        for (name, scenario) in SCENARIOS {
            eprintln!("==> bench run {run}/{runs}: {name}");
            let start = Instant::now();
            match scenario(&bench, &mut results) {
                Ok(()) => eprintln!("    done in {:.1?}", start.elapsed()),
                Err(error) => {
                    eprintln!("    failed after {:.1?}: {error:#}", start.elapsed());
                    results.errors.push(format!("{name}, run {run}: {error:#}"));
                }
            }
        }
    }

    print!("{}", results.to_markdown());
    let dir = target_dir().join("bench");
    let path = dir.join("results.json");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::write(&path, results.to_json())
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("bench took {:.1?}; results written to {}", bench_start.elapsed(), path.display());
    if !results.errors.is_empty() {
        eprintln!("{} runs failed", results.errors.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the workspace
/// root, where cargo runs) or `target/`.
fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => crate::workspace_root().join(dir),
        None => crate::workspace_root().join("target"),
    }
}

/// Clock ticks per second, for the CPU times of `/proc/<pid>/stat`.
fn clock_ticks() -> Option<u64> {
    let output = Command::new("getconf").arg("CLK_TCK").output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()?.trim().parse().ok().filter(|&ticks| ticks > 0)
}

/// How each figure is defined, and the caveats; shown under the table.
fn notes(settings: &Settings, cores: usize, clk_tck: u64, clk_tck_assumed: bool) -> Vec<String> {
    let recycles = settings.recycles;
    let idle = settings.idle.as_secs();
    let secs = settings.throughput.as_secs();
    let tick_ms = 1000.0 / clk_tck as f64;
    let clk_tck = if clk_tck_assumed {
        format!("{clk_tck}, assumed because `getconf CLK_TCK` did not answer")
    } else {
        format!("{clk_tck} from `getconf CLK_TCK`")
    };
    vec![
        format!(
            "Server: `target/release/http` on 127.0.0.1 port 0, {WORKERS} workers unless said \
             otherwise, `--worker-timeout {WORKER_TIMEOUT_MS}` (so a busy machine does not fail \
             a start; it changes no figure), every other option at its default. Worst is the \
             largest value of the runs, or the smallest for req/s, ratios and requests sent."
        ),
        format!(
            "**startup**: from spawning the master to the first `GET /` answered, and to the \
             moment every one of the {WORKERS} worker pids has answered one. Probes are waves of \
             {PROBE_CONCURRENCY} concurrent `GET /` on new connections every {PROBE_INTERVAL:?}; \
             which worker accepts a connection is the kernel's choice, so the second figure \
             includes some luck."
        ),
        format!(
            "**recycle**: from sending SIGHUP to the master's `recycle complete` line, by when \
             every worker's replacement has started and every old worker has been told to stop \
             accepting (the default rolling recycle: one replacement at a time). The master's \
             own share is its `recycle complete ... in T ms` minus the sum of the {WORKERS} \
             replacements' `started (online) in X ms` (spawn → the worker reported online): \
             the part of the recycle not spent waiting on workers to start (signal handling, \
             spawning, disconnecting, bookkeeping). The master logs whole milliseconds, so it \
             is over-estimated by less than 1 ms per worker. Its CPU cost is under master cost."
        ),
        format!(
            "**lossless under load**: {LOSSLESS_THREADS} client threads send `GET /` without \
             pause while the master is recycled {recycles} times back to back (each SIGHUP once \
             the previous recycle completed and {LOSSLESS_PROGRESS} more requests completed). \
             Failed is any answer other than 200, refused or reset connection, timeout, or \
             connection closed after the request was written (`xtask/src/load.rs`); 0 is the \
             only good value. New connection: one connection per request; keep-alive: \
             connections reused until the server answers `Connection: close`."
        ),
        format!(
            "**crash recovery**: `--restart-delay 0`; from SIGKILL of one worker to the master's \
             `spawned` and `started` lines for its replacement, and to the first `GET /` \
             (waves of {PROBE_CONCURRENCY} new connections every {PROBE_INTERVAL:?}) answered \
             by a pid that is not one of the original workers."
        ),
        format!(
            "**master cost**: the master process alone, workers excluded. RSS is `VmRSS` of \
             /proc/<pid>/status once the {WORKERS} workers started, peak RSS its `VmHWM` after \
             the recycles. CPU is measured over {idle} s idle (no traffic), and over {recycles} \
             recycles without load (including reaping the old workers) divided by {recycles}, \
             two ways: the on-CPU time of /proc/<pid>/task/*/schedstat (nanoseconds, counted \
             at every context switch), and utime + stime of /proc/<pid>/stat in clock ticks \
             ({clk_tck}). The kernel charges ticks by sampling, one tick ({tick_ms} ms) to \
             whoever runs when the timer fires, so a master that works for a millisecond now \
             and then is mostly charged 0 ticks: the schedstat figure is the one to read."
        ),
        format!(
            "**throughput**: {THROUGHPUT_THREADS} keep-alive client threads sending `GET /` for \
             {secs} s to the server run `--standalone` (one process, no master) and to a master \
             with 1, 2 and 4 workers sharing the socket; the ratio is the N-worker req/s over \
             the standalone req/s of the same run, so the overhead of srv shows as 1 − ratio. \
             The load generator runs on the same {cores} cores as the server and competes with \
             it for them: the absolute figures are a lower bound, and more workers than cores \
             cannot add throughput."
        ),
    ]
}

/// A [`Load`] that is stopped when dropped, so that a failing run does not
/// leave client threads sending to a dead port until their time bound.
#[derive(Debug)]
struct LoadGuard {
    load: Option<Load>,
}

impl LoadGuard {
    fn start(config: LoadConfig) -> LoadGuard {
        LoadGuard { load: Some(Load::start(config)) }
    }

    fn load(&self) -> &Load {
        self.load.as_ref().expect("taken only by value")
    }

    /// Waits until `n` more requests than now have completed.
    fn wait_progress(&self, n: u64, within: Duration) -> Result<()> {
        let target = self.load().requests_so_far() + n;
        let deadline = Instant::now() + within;
        while self.load().requests_so_far() < target {
            if Instant::now() >= deadline || self.load().is_finished() {
                bail!(
                    "the load made no progress: {} requests completed, waited for {target}",
                    self.load().requests_so_far()
                );
            }
            thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    fn stop(mut self) -> Report {
        self.load.take().expect("taken only by value").stop()
    }

    fn wait(mut self) -> Report {
        self.load.take().expect("taken only by value").wait()
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        if let Some(load) = self.load.take() {
            let _ = load.stop();
        }
    }
}

/// One wave of [`PROBE_CONCURRENCY`] concurrent `GET /` on new connections;
/// failures are expected while workers come and go, and ignored.
fn probe(server: &Server) -> Report {
    let n = PROBE_CONCURRENCY;
    Load::start(LoadConfig {
        threads: n,
        mode: Mode::NewConnection,
        max_requests: n as u64,
        max_duration: REQUEST_TIMEOUT,
        timeout: REQUEST_TIMEOUT,
        ..LoadConfig::new(server.addr())
    })
    .wait()
}

/// Probes until `done` says the pids that answered are enough; returns how
/// long after `since` the wave that satisfied it ended.
fn probe_until(
    server: &Server,
    since: Instant,
    what: &str,
    mut done: impl FnMut(&BTreeSet<u32>) -> bool,
) -> Result<Duration> {
    let deadline = Instant::now() + START_WITHIN;
    loop {
        let report = probe(server);
        let now = Instant::now();
        if done(&report.pids) {
            return Ok(now - since);
        }
        if now >= deadline {
            bail!("no {what} within {START_WITHIN:?} (last probe: {report})\n{}", server.tail());
        }
        thread::sleep(PROBE_INTERVAL);
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Launch → first answer, and → every worker answering.
fn startup(bench: &Bench, results: &mut Results) -> Result<()> {
    let server = bench.start_master(WORKERS, &[])?;
    let launched = server.launched_at();
    let first = probe_until(&server, launched, "answer to GET /", |pids| !pids.is_empty())?;
    let mut answered: BTreeSet<u32> = BTreeSet::new();
    let all = probe_until(&server, launched, &format!("{WORKERS} workers answering"), |pids| {
        answered.extend(pids);
        answered.len() >= WORKERS
    })?;
    results.record(
        "startup",
        "launch → first `GET /` answered",
        Unit::Ms,
        Better::Lower,
        ms(first),
    );
    let name = format!("launch → all {WORKERS} workers answering `GET /`");
    results.record("startup", &name, Unit::Ms, Better::Lower, ms(all));
    eprintln!("    first answer {first:.1?}, all {WORKERS} workers {all:.1?}");
    Ok(())
}

/// One rolling recycle, seen from outside and from the master's log.
#[derive(Debug)]
struct RecycleTiming {
    /// SIGHUP sent → `recycle complete` line read.
    wall: Duration,
    /// The master's own `recycle complete ... in T ms`.
    master_ms: u64,
    /// The replacements' `started ... in X ms`, in order.
    started_ms: Vec<u64>,
}

impl RecycleTiming {
    /// The master's `T` minus the replacements' start times.
    fn master_share_ms(&self) -> u64 {
        self.master_ms.saturating_sub(self.started_ms.iter().sum())
    }
}

/// Sends SIGHUP and waits for the recycle to complete, every worker
/// replaced.
fn recycle_once(server: &Server, n_workers: usize) -> Result<RecycleTiming> {
    let mark = server.mark();
    let sent = server.signal(Signal::SIGHUP)?;
    let (done_at, (replaced, master_ms)) = server.wait_event(
        mark,
        "\"recycle complete\" line",
        RECYCLE_WITHIN,
        |event| match event {
            LogEvent::RecycleComplete { replaced, ms } => Some((*replaced, *ms)),
            _ => None,
        },
    )?;
    let started_ms: Vec<u64> = server
        .events_since(mark)
        .into_iter()
        .map(|(_, event)| event)
        .take_while(|event| !matches!(event, LogEvent::RecycleComplete { .. }))
        .filter_map(|event| match event {
            LogEvent::Started { ms, .. } => Some(ms),
            _ => None,
        })
        .collect();
    if replaced != n_workers || started_ms.len() != n_workers {
        bail!(
            "the recycle replaced {replaced} workers and started {} of {n_workers}\n{}",
            started_ms.len(),
            server.tail()
        );
    }
    Ok(RecycleTiming { wall: done_at - sent, master_ms, started_ms })
}

/// SIGHUP → recycle complete, and the master's share of it.
fn recycle(bench: &Bench, results: &mut Results) -> Result<()> {
    let server = bench.start_master(WORKERS, &[])?;
    server.wait_serving(WORKERS, START_WITHIN)?;
    let timing = recycle_once(&server, WORKERS)?;
    let name = format!("SIGHUP → all {WORKERS} workers replaced");
    results.record("recycle", &name, Unit::Ms, Better::Lower, ms(timing.wall));
    let share = timing.master_share_ms() as f64;
    results.record("recycle", "master's own share of it", Unit::Ms, Better::Lower, share);
    eprintln!(
        "    {:.1?}; master says {} ms, replacements started in {:?} ms",
        timing.wall, timing.master_ms, timing.started_ms
    );
    Ok(())
}

/// Requests sent and failed while the master is recycled again and again.
fn lossless(bench: &Bench, results: &mut Results) -> Result<()> {
    let recycles = bench.settings.recycles;
    for (mode, label) in [(Mode::NewConnection, "new connection"), (Mode::KeepAlive, "keep-alive")]
    {
        let server = bench.start_master(WORKERS, &[])?;
        server.wait_serving(WORKERS, START_WITHIN)?;
        let load = LoadGuard::start(LoadConfig {
            threads: LOSSLESS_THREADS,
            mode,
            max_requests: LOSSLESS_MAX_REQUESTS,
            max_duration: LOSSLESS_MAX_DURATION,
            timeout: REQUEST_TIMEOUT,
            ..LoadConfig::new(server.addr())
        });
        let within = Duration::from_secs(10);
        load.wait_progress(LOSSLESS_PROGRESS, within)?;
        for index in 1..=recycles {
            recycle_once(&server, WORKERS)
                .with_context(|| format!("{label}: recycle {index} of {recycles}"))?;
            load.wait_progress(LOSSLESS_PROGRESS, within)
                .with_context(|| format!("{label}: after recycle {index} of {recycles}"))?;
        }
        let report = load.stop();
        let scenario = format!("lossless, {label}");
        let sent = format!("requests sent during {recycles} recycles");
        results.record(&scenario, &sent, Unit::Count, Better::Higher, report.sent as f64);
        let failed = report.failed() as f64;
        results.record(&scenario, "requests failed", Unit::Count, Better::Lower, failed);
        eprintln!("    {label}: {report}");
    }
    Ok(())
}

/// SIGKILL of a worker → its replacement spawned, started, answering.
fn crash_recovery(bench: &Bench, results: &mut Results) -> Result<()> {
    let server = bench.start_master(WORKERS, &["--restart-delay", "0"])?;
    let original = server.wait_serving(WORKERS, START_WITHIN)?;
    let victim = *original.first().expect("waited for the workers");
    let mark = server.mark();
    let killed = server.signal_worker(victim, Signal::SIGKILL)?;
    let answering = probe_until(&server, killed, "answer from a replacement", |pids| {
        pids.iter().any(|pid| !original.contains(pid))
    })?;
    let within = Duration::from_secs(10);
    let (spawned_at, replacement) =
        server.wait_event(mark, "replacement's \"spawned\" line", within, |event| match event {
            LogEvent::Spawned { pid } => Some(*pid),
            _ => None,
        })?;
    let (started_at, ()) =
        server.wait_event(mark, "replacement's \"started\" line", within, |event| match event {
            LogEvent::Started { pid, .. } if *pid == replacement => Some(()),
            _ => None,
        })?;
    let scenario = "crash recovery";
    let spawned = spawned_at - killed;
    let started = started_at - killed;
    results.record(scenario, "SIGKILL → replacement spawned", Unit::Ms, Better::Lower, ms(spawned));
    results.record(scenario, "SIGKILL → replacement started", Unit::Ms, Better::Lower, ms(started));
    let name = "SIGKILL → replacement answering `GET /`";
    results.record(scenario, name, Unit::Ms, Better::Lower, ms(answering));
    eprintln!("    spawned {spawned:.1?}, started {started:.1?}, answering {answering:.1?}");
    Ok(())
}

/// The master's memory, and its CPU time idle and per recycle.
fn master_cost(bench: &Bench, results: &mut Results) -> Result<()> {
    let recycles = bench.settings.recycles;
    let server = bench.start_master(WORKERS, &[])?;
    server.wait_serving(WORKERS, START_WITHIN)?;
    let master = server.pid();
    let (rss_kib, _) = server::memory_kib(master)?;
    let idle_start = (server::cpu_ns(master)?, server::cpu_ticks(master)?);
    thread::sleep(bench.settings.idle);
    let idle_end = (server::cpu_ns(master)?, server::cpu_ticks(master)?);
    let mark = server.mark();
    for index in 1..=recycles {
        recycle_once(&server, WORKERS).with_context(|| format!("recycle {index} of {recycles}"))?;
    }
    // Reaping the last old workers is part of the recycles' cost.
    let old_workers = WORKERS * recycles;
    server.wait_event(mark, &format!("{old_workers} old workers exited"), RECYCLE_WITHIN, {
        let mut exited = 0;
        move |event| {
            exited += usize::from(matches!(event, LogEvent::Exited { .. }));
            (exited == old_workers).then_some(())
        }
    })?;
    let recycles_end = (server::cpu_ns(master)?, server::cpu_ticks(master)?);
    let (_, peak_kib) = server::memory_kib(master)?;

    let scenario = "master cost";
    let mib = |kib: u64| kib as f64 / 1024.0;
    results.record(scenario, "RSS with 4 workers", Unit::Mib, Better::Lower, mib(rss_kib));
    let name = format!("peak RSS after {recycles} recycles");
    results.record(scenario, &name, Unit::Mib, Better::Lower, mib(peak_kib));
    let idle = format!("CPU over {} s idle", bench.settings.idle.as_secs());
    let per_recycle = format!("CPU per recycle (mean of {recycles})");
    let mut schedstat_ms = (None, None);
    if let ((Some(idle_start), _), (Some(idle_end), _), (Some(recycles_end), _)) =
        (idle_start, idle_end, recycles_end)
    {
        let ns_to_ms = |ns: u64| ns as f64 / 1e6;
        let idle_ms = ns_to_ms(idle_end - idle_start);
        let recycle_ms = ns_to_ms(recycles_end - idle_end) / recycles as f64;
        let name = format!("{idle}, schedstat");
        results.record(scenario, &name, Unit::Ms, Better::Lower, idle_ms);
        let name = format!("{per_recycle}, schedstat");
        results.record(scenario, &name, Unit::Ms, Better::Lower, recycle_ms);
        schedstat_ms = (Some(idle_ms), Some(recycle_ms));
    } else {
        results.note("/proc/<pid>/schedstat is missing on this kernel: CPU only in ticks".into());
    }
    let idle_ticks_ms = bench.ticks_to_ms(idle_end.1 - idle_start.1);
    let name = format!("{idle}, utime+stime");
    results.record(scenario, &name, Unit::Ms, Better::Lower, idle_ticks_ms);
    let recycle_ticks_ms = bench.ticks_to_ms(recycles_end.1 - idle_end.1) / recycles as f64;
    let name = format!("{per_recycle}, utime+stime");
    results.record(scenario, &name, Unit::Ms, Better::Lower, recycle_ticks_ms);
    let show = |ms: Option<f64>| ms.map_or("-".to_owned(), |ms| format!("{ms:.2} ms"));
    eprintln!(
        "    RSS {rss_kib} KiB (peak {peak_kib} KiB); CPU idle {} (ticks: {idle_ticks_ms} ms), \
         per recycle {} (ticks: {recycle_ticks_ms} ms)",
        show(schedstat_ms.0),
        show(schedstat_ms.1)
    );
    Ok(())
}

/// Keep-alive req/s through the shared socket, beside the server alone.
fn throughput(bench: &Bench, results: &mut Results) -> Result<()> {
    let configs = [(None, "standalone, no master"), (Some(1), "1 worker"), (Some(2), "2 workers")];
    let configs = configs.into_iter().chain([(Some(WORKERS), "4 workers")]);
    let mut standalone_rps = None;
    for (workers, label) in configs {
        let server = match workers {
            None => {
                let args = ["--addr", "127.0.0.1", "--port", "0", "--standalone"];
                Server::start(&bench.http, &args, START_WITHIN)?
            }
            Some(n) => {
                let server = bench.start_master(n, &[])?;
                server.wait_serving(n, START_WITHIN)?;
                server
            }
        };
        let now = Instant::now();
        probe_until(&server, now, "answer to GET /", |pids| !pids.is_empty())?;
        let report = LoadGuard::start(LoadConfig {
            threads: THROUGHPUT_THREADS,
            mode: Mode::KeepAlive,
            max_requests: THROUGHPUT_MAX_REQUESTS,
            max_duration: bench.settings.throughput,
            timeout: REQUEST_TIMEOUT,
            ..LoadConfig::new(server.addr())
        })
        .wait();
        if report.failed() > 0 || report.ok == 0 {
            bail!("{label}: requests failed without any recycle: {report}\n{}", server.tail());
        }
        let rps = report.ok as f64 / report.duration.as_secs_f64();
        results.record("throughput", label, Unit::Rps, Better::Higher, rps);
        match (workers, standalone_rps) {
            (None, _) => standalone_rps = Some(rps),
            (Some(_), Some(base)) => {
                let name = format!("{label} / standalone");
                results.record("throughput", &name, Unit::Ratio, Better::Higher, rps / base);
            }
            (Some(_), None) => {}
        }
        eprintln!("    {label}: {rps:.0} req/s ({report})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings> {
        let args: Vec<String> = args.iter().map(|&arg| arg.to_owned()).collect();
        Settings::parse(&args)
    }

    #[test]
    fn parses_the_command_line() {
        let default = parse(&[]).unwrap();
        assert_eq!((default.runs, default.quick, default.recycles), (3, false, 10));
        assert_eq!(
            (default.idle, default.throughput),
            (Duration::from_secs(10), Duration::from_secs(3))
        );
        let quick = parse(&["--quick"]).unwrap();
        assert_eq!((quick.runs, quick.quick, quick.recycles), (1, true, 3));
        assert_eq!(parse(&["--runs", "5"]).unwrap().runs, 5);
        assert_eq!(parse(&["--runs=2", "--quick"]).unwrap().runs, 2);
        assert_eq!(
            parse(&["--quick", "--runs", "2"]).unwrap(),
            parse(&["--runs=2", "--quick"]).unwrap()
        );
        for bad in
            [&["--runs"][..], &["--runs", "0"], &["--runs", "x"], &["--fast"], &["--quick=1"]]
        {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_master_share_is_what_the_workers_did_not_take() {
        let timing = RecycleTiming {
            wall: Duration::from_millis(130),
            master_ms: 120,
            started_ms: vec![25, 30, 27, 28],
        };
        assert_eq!(timing.master_share_ms(), 10);
        let odd = RecycleTiming { started_ms: vec![100, 100], ..timing };
        assert_eq!(odd.master_share_ms(), 0);
    }
}
