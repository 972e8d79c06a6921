//! `cargo xtask bench`: the figures users choose a process manager by,
//! measured with real processes against the reference server
//! (`examples/src/bin/http.rs`, 4 workers on 127.0.0.1).
//!
//! Speed and cost are measured here, never by timed assertions in tests.
//! The command builds the release binaries, runs every scenario `--runs`
//! times (5 by default, interleaved so that a noisy moment of the machine
//! spreads over all scenarios; the quick latency scenarios measure several
//! samples per run), prints a markdown table of the median and the worst
//! sample of each figure on stdout, with the machine's load average before
//! and after, and writes the same with every sample to
//! `target/bench/results.json`. `--quick` does one run with shorter
//! durations, to check that the tool works.
//!
//! Every server is started on port 0 in its own process group and killed
//! with that group when its run ends, even on error ([`server::Server`]).
//! All traffic goes to 127.0.0.1 and every load is bounded in requests and
//! in time (`srv-load/src/lib.rs`). The definition of each figure is printed
//! under the table; [`notes`] holds them.
//!
//! The scenarios are in `bench/scenarios.rs` (the server idle, or under the
//! light load of a probe) and `bench/under_load.rs` (a recycle while
//! clients keep both cores busy).

mod report;
mod scenarios;
mod server;
mod under_load;

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use report::Results;
use server::Server;
use srv_load::{Load, LoadConfig, Mode, Report};

/// Workers of the reference configuration.
const WORKERS: usize = 4;

/// Limits within which a server must start, and a recycle complete.
const START_WITHIN: Duration = Duration::from_secs(20);
const RECYCLE_WITHIN: Duration = Duration::from_secs(30);

/// Passed to every master: a generous start limit, so that a machine busy
/// with other work does not turn a slow start into a failed run. It changes
/// no figure; the other options keep their defaults.
const WORKER_TIMEOUT_MS: &str = "10000";

/// The probe that sees who answers: this many client threads sending
/// `GET /` on a new connection each, back to back, recording every answer.
const PROBE_THREADS: usize = 1;
/// Answers the probe collects after the event it waits for (a start), so
/// that every worker that serves has answered some: with 4 workers
/// accepting on one socket, the chance that one of them got none of 200
/// connections is below 1e-24.
const PROBE_AFTER: u64 = 200;
/// Timeout of one request, for connecting and for each read and write.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The lossless scenario: client threads, how many requests must complete
/// before each recycle and after the last one, and the load's bounds.
const LOSSLESS_THREADS: usize = 4;
const LOSSLESS_PROGRESS: u64 = 50;
const LOSSLESS_MAX_REQUESTS: u64 = 10_000_000;
const LOSSLESS_MAX_DURATION: Duration = Duration::from_secs(120);

/// The recycle under load: client threads (enough to keep both cores of a
/// small machine busy beside the workers), the requests before the SIGHUP
/// and after the old workers exited, and the load's bounds.
const UNDER_LOAD_THREADS: usize = 16;
const UNDER_LOAD_WARMUP: u64 = 2000;
const UNDER_LOAD_AFTER: u64 = 500;
const UNDER_LOAD_MAX_REQUESTS: u64 = 10_000_000;
const UNDER_LOAD_MAX_DURATION: Duration = Duration::from_secs(60);

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
    /// Only the scenarios whose name contains this (`--only`).
    only: Option<String>,
    /// Samples per run of the quick latency scenarios (startup, recycle,
    /// crash recovery).
    repeats: usize,
    /// Recycles per run in the lossless and master cost scenarios.
    recycles: usize,
    /// How long the master's idle CPU time is measured.
    idle: Duration,
    /// How long each throughput load lasts.
    throughput: Duration,
}

impl Settings {
    /// `[--runs N] [--quick] [--only NAME]`; `--runs` wins over the single
    /// run of `--quick`.
    fn parse(args: &[String]) -> Result<Settings> {
        let mut runs = None;
        let mut quick = false;
        let mut only = None;
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
                "--only" => {
                    let value = inline
                        .or_else(|| args.next().map(String::as_str))
                        .context("--only needs a scenario name")?;
                    if !SCENARIOS.iter().any(|(name, _)| name.contains(value)) {
                        let names: Vec<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
                        bail!("--only {value}: no scenario named so; the scenarios: {names:?}");
                    }
                    only = Some(value.to_owned());
                }
                _ => bail!(
                    "unknown argument `{arg}`; `cargo xtask bench` takes [--runs N] [--quick] \
                     [--only NAME]"
                ),
            }
        }
        let settings = if quick {
            Settings {
                runs: runs.unwrap_or(1),
                quick,
                only,
                repeats: 1,
                recycles: 3,
                idle: Duration::from_secs(2),
                throughput: Duration::from_secs(1),
            }
        } else {
            Settings {
                runs: runs.unwrap_or(5),
                quick,
                only,
                repeats: 2,
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
    ("startup", scenarios::startup),
    ("recycle", scenarios::recycle),
    ("recycle under load", under_load::recycle_under_load),
    ("lossless under load", scenarios::lossless),
    ("crash recovery", scenarios::crash_recovery),
    ("master cost", scenarios::master_cost),
    ("throughput", scenarios::throughput),
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
    results.load_before = load_average();
    for note in notes(&settings, cores, clk_tck, clk_tck_assumed) {
        results.note(note);
    }
    let bench = Bench { http, settings, clk_tck };

    let bench_start = Instant::now();
    for run in 1..=runs {
        for (name, scenario) in SCENARIOS {
            if bench.settings.only.as_ref().is_some_and(|only| !name.contains(only.as_str())) {
                continue;
            }
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
    results.load_after = load_average();

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

/// The 1-minute load average of `/proc/loadavg`: how busy the machine was
/// with other work around the bench, printed with the figures.
fn load_average() -> Option<f64> {
    parse_load_average(&fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_load_average(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

/// How each figure is defined, and the caveats; shown under the table.
fn notes(settings: &Settings, cores: usize, clk_tck: u64, clk_tck_assumed: bool) -> Vec<String> {
    let recycles = settings.recycles;
    let repeats = settings.repeats;
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
             a start; it changes no figure), every other option at its default, \
             `RUST_LOG=info,srv=debug` (the master's start breakdown lines). Samples: one per \
             run, or {repeats} per run for startup, recycle and crash recovery. Median of the \
             samples; worst is the largest sample, or the smallest for req/s, ratios and \
             requests sent. The load average is the 1-minute figure of /proc/loadavg before and \
             after the bench: other work on the machine shows in the first; the second also \
             holds the bench's own clients (16 threads under load, 8 for throughput)."
        ),
        format!(
            "**The probe**: {PROBE_THREADS} client thread sending `GET /` on a new connection \
             per request, back to back, recording which worker pid answered and when; it runs \
             until {PROBE_AFTER} answers after the event it waits for, so every serving worker \
             answered some. Which worker accepts a connection is decided by a race among the \
             workers waiting on the shared socket (the reference server polls it and accepts \
             until it would block), which a worker already on a CPU tends to win: an \
             `answering` figure is the worker's start plus the time it takes to win one race, \
             a few milliseconds on a busy machine; the `started` figures from the master's log \
             have no such part."
        ),
        format!(
            "**startup**: from spawning the master to the probe's first answer, to the \
             master's `started` line of the last of the {WORKERS} workers, and to the first \
             answer of the last of the {WORKERS} workers. The probe starts once the master \
             logged its `listening on` line."
        ),
        format!(
            "**recycle**: from sending SIGHUP to the master's `recycle complete` line, by when \
             every worker's replacement has started and every old worker has been told to stop \
             accepting, with `recycle.parallel` 1 (one replacement at a time, the default) and \
             {WORKERS} (all at once). With 1, the master's own share is that time minus, for \
             each of the {WORKERS} replacements, its fork and exec and its start after the exec \
             (both from the master's debug lines): the part of the recycle not spent in the \
             kernel's fork and exec or in the worker's own start (the signal's delivery, turns \
             of the loop, disconnecting, bookkeeping, and the log line's trip to the bench, so \
             an upper bound)."
        ),
        "**start breakdown**: the replacements of the one-at-a-time recycle above, each \
         figure the mean over the recycle's replacements, from the master's debug lines \
         (`forked and executed in`, `start after its exec`): fork + exec is the master's \
         spawn call, from before `fork` until the child's `execve` succeeded (the master \
         waits for it); exec → Hello is loading the program (the dynamic loader, the Rust \
         runtime, `Worker::from_env`) until its `Hello` is read; Hello → ListenRequest is \
         the program's own work before it asks for its socket; the listen round trip is \
         ListenRequest read → `Listening` read (the master dups the socket and sends it, \
         the worker receives it and reports). The reference server reports `Listening` \
         before `Online`, and a listening worker counts as started, so its start ends there."
            .to_owned(),
        format!(
            "**recycle under load**: {UNDER_LOAD_THREADS} client threads send `GET /` without \
             pause (a new connection per request, or keep-alive connections reused until the \
             server answers `Connection: close`), recording every answer; once \
             {UNDER_LOAD_WARMUP} were answered, SIGHUP; the load goes on until the old workers \
             exited and {UNDER_LOAD_AFTER} more were answered. Every answer from a new worker: \
             SIGHUP → the last answer from an old worker, after which every answer comes from \
             a new one. Requests answered meanwhile: the answers in that time. Failed as in \
             lossless under load: 0 is the only good value. With `recycle.parallel` 1, the \
             start breakdown of the replacements and the master's share, as defined under \
             recycle and start breakdown, show where the time goes under load."
        ),
        format!(
            "**lossless under load**: {LOSSLESS_THREADS} client threads send `GET /` without \
             pause while the master is recycled {recycles} times back to back (each SIGHUP once \
             the previous recycle completed, its old workers exited, and {LOSSLESS_PROGRESS} \
             more requests completed). \
             Failed is any answer other than 200, refused or reset connection, timeout, or \
             connection closed after the request was written (`srv-load/src/lib.rs`); 0 is the \
             only good value. New connection: one connection per request; keep-alive: \
             connections reused until the server answers `Connection: close`."
        ),
        "**crash recovery**: `--restart-delay 0`, the probe running; from SIGKILL of one \
         worker to the master's `spawned` and `started` lines for its replacement, and to \
         the probe's first answer from the replacement."
            .to_owned(),
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

    /// The probe (see the notes): [`PROBE_THREADS`] threads, a new
    /// connection per request, every answer recorded.
    fn probe(server: &Server) -> LoadGuard {
        LoadGuard::start(LoadConfig {
            threads: PROBE_THREADS,
            mode: Mode::NewConnection,
            max_requests: 10_000_000,
            max_duration: START_WITHIN,
            timeout: REQUEST_TIMEOUT,
            record_answers: true,
            ..LoadConfig::new(server.addr())
        })
    }

    fn load(&self) -> &Load {
        self.load.as_ref().expect("taken only by value")
    }

    /// When the load started: its answers' times count from here.
    fn started(&self) -> Instant {
        self.load().started()
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

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
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
        assert_eq!(
            (default.runs, default.quick, default.repeats, default.recycles),
            (5, false, 2, 10)
        );
        assert_eq!(
            (default.idle, default.throughput),
            (Duration::from_secs(10), Duration::from_secs(3))
        );
        let quick = parse(&["--quick"]).unwrap();
        assert_eq!((quick.runs, quick.quick, quick.repeats, quick.recycles), (1, true, 1, 3));
        assert_eq!(parse(&["--runs", "5"]).unwrap().runs, 5);
        assert_eq!(parse(&["--runs=2", "--quick"]).unwrap().runs, 2);
        assert_eq!(
            parse(&["--quick", "--runs", "2"]).unwrap(),
            parse(&["--runs=2", "--quick"]).unwrap()
        );
        assert_eq!(parse(&["--only", "crash"]).unwrap().only.as_deref(), Some("crash"));
        assert_eq!(parse(&[]).unwrap().only, None);
        for bad in [
            &["--runs"][..],
            &["--runs", "0"],
            &["--runs", "x"],
            &["--fast"],
            &["--quick=1"],
            &["--only"],
            &["--only", "nothing like it"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_the_one_minute_load_average() {
        assert_eq!(parse_load_average("0.42 1.00 2.50 1/123 4567\n"), Some(0.42));
        assert_eq!(parse_load_average(""), None);
        assert!(load_average().is_some_and(|load| load >= 0.0));
    }
}
