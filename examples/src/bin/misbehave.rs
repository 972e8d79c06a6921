//! A test worker that misbehaves on purpose, for the end-to-end tests of the
//! master's lifecycle (`examples/tests/e2e`).
//!
//! ```text
//! misbehave --help
//! ```
//!
//! Like `hello`, one binary is both: without a master it is the master, and
//! each worker is this binary again with the same arguments. The master
//! reads the master flags; every worker reads the worker flags.
//!
//! Master flags besides the options: `--worker-program PATH` runs `PATH`
//! (no arguments) as each worker instead of this binary, to test programs
//! that cannot be executed at all; `--user NAME` is `worker.user`; `--allow
//! ADDR` adds `ADDR` to `listen.allow` (repeatable); `--unix-mode MODE` is
//! `listen.unix_mode` (octal); `--master-delay-ms N` makes the master
//! process wait `N` ms before `Master::run`, printing `misbehave: master
//! pid <pid> waits <N> ms` first: so does the probe of an upgrade (`SIGUSR2`)
//! and the master an upgrade executes, as a program slow to start would;
//! `--watchdog MS` is `worker.watchdog`.
//!
//! Worker flags:
//!
//! - `--never-online`: never report online.
//! - `--crash-after-ms N`: exit with code 3, without telling the master, `N`
//!   ms after start; `0` exits at once, before reporting anything.
//! - `--exit-after-ms N`: once online, wait `N` ms, then exit 0 on purpose
//!   (`Worker::exit`, which tells the master first); `0` exits right after
//!   reporting online.
//! - `--keep-sigterm`: connect with `Worker::from_env_with(Sigterm::Leave)`,
//!   so that `SIGTERM` kills the worker at once (by default srv-worker makes
//!   it a disconnect).
//! - `--ignore-disconnect`: keep running after `Disconnect` (until killed).
//! - `--deadlock-after-ms N`: once online, the main loop, which waits for
//!   the disconnect and calls `Worker::alive` at every turn (at least every
//!   `Worker::heartbeat_interval`, or 100 ms), deadlocks `N` ms later: it
//!   and a thread of its own each hold one of two locks and wait for the
//!   other (it prints `deadlocked` first). srv-worker's reader thread runs
//!   on, as a helper thread would in a real server.
//! - `--slow-exit-ms N`: after `Disconnect`, wait `N` ms, then exit 0.
//! - `--listen ADDR`: get a listening socket for `ADDR` from the master
//!   before reporting online (`127.0.0.1:0` is fine: every worker of one
//!   master gets the same socket).
//! - `--online-delay-ms N`: wait `N` ms before listening and reporting online.
//! - `--listen-also ADDR` (repeatable): once online, also ask the master for
//!   `ADDR`, in order, printing `listening also on <actual addr>`; on an
//!   error, print `listen failed: <error>` and exit 1 (a crash).
//! - `--listen-after FILE`: ask for the `--listen-also` addresses only once
//!   `FILE` exists (checked every 10 ms, for at most 20 s), so a test can
//!   prepare the master first.
//! - `--orphan-ms N`: at start, fork a child (this binary again, with the
//!   hidden first argument `--orphan-sleep-ms N`) that sleeps `N` ms and
//!   exits, and do not wait for it in the main thread: a helper thread reaps
//!   it while the worker lives, so only a worker that exits first leaves an
//!   orphan, which the master (a subreaper, or PID 1) must reap.
//! - `--orphan-shell`: at start, run `sh -c 'sleep 311 & wait'` (the shell
//!   prints `left sleep pid <pid>`), waited for by a helper thread like
//!   `--orphan-ms`: once the worker exits, the shell is an orphan whose own
//!   child outlives it when it is ended.
//! - `--only-worker-ids 1,2`: only the workers with these ids
//!   (`Worker::id`, counted from 1, never reused) misbehave; the others
//!   behave. `--listen` and `--serve-http` are not misbehaviours and apply
//!   to every worker (but a hostile one).
//! - `--swap-dir DIR --swap-to TARGET`: once online, rename the directory
//!   `DIR` to `DIR.moved` and put a symbolic link to `TARGET` at `DIR`, as a
//!   worker that owns a directory on its socket's path would to make a root
//!   master remove another file; then print `swapped <DIR>` (or `swap
//!   failed: <error>` and exit 1).
//! - `--listen-many DIR`: ask the master for 64 Unix sockets (as many
//!   requests as it allows one worker) at distinct new paths in `DIR`, print `listened on <K> of <N>
//!   paths`, report online, and exit on purpose (`Worker::exit(0)`), so the
//!   master replaces it at once and the next one asks for new paths again.
//! - `--serve-http`: accept on the `--listen` socket (TCP) and answer every
//!   connection with `200`, body `ok <pid>\n`, then close it; stop accepting
//!   on disconnect and finish the connections in flight.
//! - `--callback-error`: run through `srv::run` (master and workers alike)
//!   with a callback that prints `callback fails` and returns the error
//!   `failed on purpose`, which `srv::run` logs before it exits 1.
//! - `--hostile KIND`: instead of using srv-worker, take the raw channel
//!   (`srv_proto::env::take_inherited_channel`) and break the protocol, then
//!   sleep until killed (unless the kind says otherwise). Kinds, all but
//!   `out-of-order` and `bad-version` after a valid `Hello`:
//!   `garbage` (a frame whose payload is no message), `oversized` (a length
//!   prefix over `MAX_FRAME_LEN`), `truncated` (half a frame, then close the
//!   channel), `unknown` (a frame with an out-of-range enum variant),
//!   `out-of-order` (`Online` before `Hello`), `flood` (100,000 `Online`),
//!   `fds` (`Hello` with two descriptors attached), `close-early` (close
//!   the channel, stay alive), `grandchildren` (start `sleep 30`, do not
//!   wait for it, exit 3), `bad-version` (`Hello` with protocol version
//!   999; print the master's answer and exit 1), `flood-grandchild` (start
//!   a child, this binary again with the hidden first argument
//!   `--flood-writer`, that inherits the channel, raises its `SO_SNDBUF` to
//!   4 MiB and writes 5-byte `Online` frames as fast as it can, up to
//!   [`FLOOD_WRITER_BYTES`] or [`FLOOD_WRITER_TIME`], until the channel
//!   breaks; the worker itself sleeps until killed).
//!
//! Every worker writes these lines to stderr, each with one `write` so the
//! lines of several processes sharing the pipe do not interleave:
//!
//! ```text
//! misbehave: worker <id> pid <pid> started
//! misbehave: worker <id> pid <pid> forked orphan pid <child pid> (sleeps <N> ms)
//! misbehave: worker <id> pid <pid> listening on <actual addr>
//! misbehave: worker <id> pid <pid> online
//! misbehave: worker <id> pid <pid> disconnected (<reason>)
//! misbehave: worker <id> pid <pid> exiting (code <code>)
//! misbehave: worker <id> pid <pid> exiting on purpose (code 0)
//! misbehave: worker <id> pid <pid> hostile: <kind>
//! misbehave: worker <id> pid <pid> spawned grandchild pid <pid>
//! misbehave: worker <id> pid <pid> refused: <reason>
//! misbehave: worker <id> pid <pid> flood writer started
//! misbehave: worker <id> pid <pid> flood writer wrote <N> bytes (<why it stopped>)
//! ```
//!
//! `SIGINT` is left alone: unless the master makes workers ignore it (the
//! default, undone by `--no-ignore-sigint`), a worker dies of it.
//!
//! The master logs with millisecond timestamps, so tests can measure the
//! delays it honours from its own log lines.
#![allow(clippy::print_stderr, reason = "reporting on stderr is what this test worker does")]

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use srv_master::{Master, Options};
use srv_proto::{Channel, MAX_FRAME_LEN, MasterMessage, PROTOCOL_VERSION, Received, WorkerMessage};
use srv_worker::{ListenAddr, Sigterm, Worker};

/// What the workers do, from the worker flags.
#[derive(Debug, Default)]
struct Behaviour {
    never_online: bool,
    crash_after: Option<Duration>,
    /// `--exit-after-ms`: exit 0 on purpose this long after `online`.
    exit_after: Option<Duration>,
    /// `--keep-sigterm`: leave `SIGTERM` its default action.
    keep_sigterm: bool,
    ignore_disconnect: bool,
    /// `--deadlock-after-ms`.
    deadlock_after: Option<Duration>,
    slow_exit: Option<Duration>,
    listen: Option<ListenAddr>,
    /// `--listen-also`: more addresses, asked for once online.
    listen_also: Vec<ListenAddr>,
    /// `--listen-after`: the file whose existence starts `listen_also`.
    listen_after: Option<PathBuf>,
    online_delay: Option<Duration>,
    /// `--orphan-ms`: how long the child each worker leaves behind sleeps.
    orphan: Option<Duration>,
    /// `--orphan-shell`.
    orphan_shell: bool,
    /// `None`: every worker misbehaves.
    only_worker_ids: Option<Vec<u32>>,
    hostile: Option<Hostile>,
    serve_http: bool,
    /// `--listen-many`: the directory of the paths.
    listen_many: Option<PathBuf>,
    /// `--swap-dir` and `--swap-to`.
    swap_dir: Option<PathBuf>,
    swap_to: Option<PathBuf>,
    /// `--callback-error`: `srv::run` with a callback that fails.
    callback_error: bool,
    /// `--master-delay-ms` (a master flag).
    master_delay: Option<Duration>,
}

impl Behaviour {
    /// Whether the worker `id` misbehaves (`--only-worker-ids`).
    fn applies_to(&self, id: u32) -> bool {
        self.only_worker_ids.as_ref().is_none_or(|ids| ids.contains(&id))
    }
}

/// How a `--hostile` worker breaks the protocol (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Hostile {
    Garbage,
    Oversized,
    Truncated,
    Unknown,
    OutOfOrder,
    Flood,
    Fds,
    CloseEarly,
    Grandchildren,
    BadVersion,
    FloodGrandchild,
}

impl fmt::Display for Hostile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The name on the command line (`out-of-order`).
        let value = clap::ValueEnum::to_possible_value(self);
        f.write_str(value.as_ref().map_or("?", clap::builder::PossibleValue::get_name))
    }
}

/// The number of `Online` messages of `--hostile flood`.
const FLOOD_MESSAGES: usize = 100_000;

/// How many paths `--listen-many` asks for: as many listen requests as the
/// master allows one worker.
const LISTEN_MANY: u32 = 64;

/// The most bytes the writer of `--hostile flood-grandchild` writes.
const FLOOD_WRITER_BYTES: usize = 128 << 20;

/// The longest the writer of `--hostile flood-grandchild` writes.
const FLOOD_WRITER_TIME: Duration = Duration::from_secs(20);

/// The protocol version `--hostile bad-version` claims.
const BAD_PROTOCOL_VERSION: u32 = 999;

/// How long `--serve-http` waits for a request, and for the client to close
/// after the answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The command line: the master's options, then what the workers do (the
/// module documentation says more of each worker flag).
#[derive(Debug, clap::Parser)]
#[command(
    name = "misbehave",
    // A flag given twice takes its last value, so that a test can override
    // a shared set of arguments.
    args_override_self = true,
    about = "A test worker that misbehaves on purpose (srv's e2e tests)",
    after_help = "Without a master this is the master; each worker is this program again, with the \
                  same arguments. The top of examples/src/bin/misbehave.rs says what each worker \
                  flag does and which lines a worker writes."
)]
struct Args {
    /// worker.count
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// worker.require
    #[arg(long, value_name = "online|listen")]
    require: Option<srv_master::Require>,
    /// worker.timeout
    #[arg(long, value_name = "MS")]
    worker_timeout: Option<u64>,
    /// restart.delay
    #[arg(long, value_name = "MS")]
    restart_delay: Option<u64>,
    /// restart.max_delay
    #[arg(long, value_name = "MS")]
    max_restart_delay: Option<u64>,
    /// worker.max_start_failures
    #[arg(long, value_name = "N")]
    max_start_failures: Option<u32>,
    /// shutdown.timeout
    #[arg(long, value_name = "MS")]
    shutdown_timeout: Option<u64>,
    /// recycle.timeout
    #[arg(long, value_name = "MS")]
    recycle_timeout: Option<u64>,
    /// worker.ignore_sigint = false
    #[arg(long)]
    no_ignore_sigint: bool,
    /// worker.user
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Add to listen.allow (repeatable)
    #[arg(long, value_name = "ADDR")]
    allow: Vec<ListenAddr>,
    /// listen.unix_mode, in octal
    #[arg(long, value_name = "MODE", value_parser = octal)]
    unix_mode: Option<u32>,
    /// Run PATH (no arguments) as each worker instead of this binary
    #[arg(long, value_name = "PATH")]
    worker_program: Option<PathBuf>,
    /// The master (and an upgrade's probe) waits this long before Master::run
    #[arg(long, value_name = "MS")]
    master_delay_ms: Option<u64>,
    /// Never report online
    #[arg(long)]
    never_online: bool,
    /// Exit 3 without telling the master, MS after start
    #[arg(long, value_name = "MS")]
    crash_after_ms: Option<u64>,
    /// Once online, wait MS, then exit 0 on purpose (Worker::exit)
    #[arg(long, value_name = "MS")]
    exit_after_ms: Option<u64>,
    /// Leave SIGTERM its default action (Sigterm::Leave)
    #[arg(long)]
    keep_sigterm: bool,
    /// Keep running after Disconnect, until killed
    #[arg(long)]
    ignore_disconnect: bool,
    /// After Disconnect, wait MS, then exit 0
    #[arg(long, value_name = "MS")]
    slow_exit_ms: Option<u64>,
    /// Get a listening socket for ADDR before reporting online
    #[arg(long, value_name = "ADDR")]
    listen: Option<ListenAddr>,
    /// Once online, also ask for ADDR (repeatable); an error exits 1
    #[arg(long, value_name = "ADDR")]
    listen_also: Vec<ListenAddr>,
    /// Ask for the --listen-also addresses once FILE exists
    #[arg(long, value_name = "FILE")]
    listen_after: Option<PathBuf>,
    /// Wait MS before listening and reporting online
    #[arg(long, value_name = "MS")]
    online_delay_ms: Option<u64>,
    /// Fork a child that sleeps MS and outlives the worker
    #[arg(long, value_name = "MS")]
    orphan_ms: Option<u64>,
    /// Run `sh -c 'sleep 311 & wait'`, which outlives the worker
    #[arg(long)]
    orphan_shell: bool,
    /// Only these workers misbehave
    #[arg(long, value_name = "ID,ID,...", value_delimiter = ',')]
    only_worker_ids: Option<Vec<u32>>,
    /// Break the protocol this way instead of using srv-worker
    #[arg(long, value_name = "KIND")]
    hostile: Option<Hostile>,
    /// Answer HTTP on the --listen socket with `ok <pid>`
    #[arg(long)]
    serve_http: bool,
    /// Ask for 64 Unix sockets at new paths in DIR, then exit on purpose
    #[arg(long, value_name = "DIR")]
    listen_many: Option<PathBuf>,
    /// Once online, replace DIR by a symbolic link to --swap-to
    #[arg(long, value_name = "DIR", requires = "swap_to")]
    swap_dir: Option<PathBuf>,
    /// The target of --swap-dir's link
    #[arg(long, value_name = "TARGET", requires = "swap_dir")]
    swap_to: Option<PathBuf>,
    /// Run through srv::run with a callback that fails
    #[arg(long)]
    callback_error: bool,
    /// worker.watchdog
    #[arg(long, value_name = "MS")]
    watchdog: Option<u64>,
    /// Once online, deadlock the serving loop (two threads, two locks) after MS
    #[arg(long, value_name = "MS")]
    deadlock_after_ms: Option<u64>,
}

/// `listen.unix_mode` as written, in octal.
fn octal(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8).map_err(|_| format!("{text}: not octal"))
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    if let Some(sleep) = orphan_sleep() {
        // The child a worker left behind (`--orphan-ms`): no master, no log.
        std::thread::sleep(sleep);
        return Ok(());
    }
    if std::env::args().nth(1).as_deref() == Some("--flood-writer") {
        return flood_writer();
    }
    // Parsing starts no thread, so the channel is still taken before any
    // thread runs, as srv-worker asks.
    let (options, behaviour, worker_program) = parse_args(<Args as clap::Parser>::parse());
    let worker_id: Option<u32> =
        std::env::var(srv_proto::env::ENV_WORKER_ID).ok().and_then(|id| id.parse().ok());
    if behaviour.callback_error {
        srv::run(options, |worker| {
            say(worker.id().unwrap_or(0), "callback fails");
            Err(anyhow::anyhow!("failed on purpose"))
        })?;
        return Ok(());
    }
    if let (Some(kind), Some(id)) = (behaviour.hostile, worker_id)
        && behaviour.applies_to(id)
        && let Some(channel) = srv_proto::env::take_inherited_channel()?
    {
        return run_hostile(id, channel, kind);
    }
    let sigterm = match worker_id {
        Some(id) if behaviour.keep_sigterm && behaviour.applies_to(id) => Sigterm::Leave,
        _ => Sigterm::Disconnect,
    };
    match Worker::from_env_with(sigterm)? {
        Some(worker) => run_worker(&worker, &behaviour),
        None => {
            if let Some(delay) = behaviour.master_delay {
                let line = format!(
                    "misbehave: master pid {} waits {} ms\n",
                    std::process::id(),
                    delay.as_millis()
                );
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
                std::thread::sleep(delay);
            }
            let master = match worker_program {
                Some(program) => Master::new(options, move || Command::new(&program))?,
                None => Master::current_exe(options)?,
            };
            master.run()?;
            Ok(())
        }
    }
}

/// The master's options, what the workers do, and the worker program.
fn parse_args(args: Args) -> (Options, Behaviour, Option<PathBuf>) {
    let ms = Duration::from_millis;
    let mut options = Options::default();
    if let Some(count) = args.workers {
        options.worker.count = count;
    }
    if let Some(require) = args.require {
        options.worker.require = require;
    }
    if let Some(timeout) = args.worker_timeout {
        options.worker.timeout = ms(timeout);
    }
    if let Some(delay) = args.restart_delay {
        options.restart.delay = ms(delay);
    }
    if let Some(delay) = args.max_restart_delay {
        options.restart.max_delay = ms(delay);
    }
    if let Some(failures) = args.max_start_failures {
        options.worker.max_start_failures = failures;
    }
    if let Some(timeout) = args.shutdown_timeout {
        options.shutdown.timeout = ms(timeout);
    }
    if let Some(timeout) = args.recycle_timeout {
        options.recycle.timeout = ms(timeout);
    }
    if args.no_ignore_sigint {
        options.worker.ignore_sigint = false;
    }
    options.worker.watchdog = args.watchdog.map(ms);
    options.worker.user = args.user;
    options.listen.allow = args.allow;
    options.listen.unix_mode = args.unix_mode;
    let behaviour = Behaviour {
        never_online: args.never_online,
        crash_after: args.crash_after_ms.map(ms),
        exit_after: args.exit_after_ms.map(ms),
        keep_sigterm: args.keep_sigterm,
        ignore_disconnect: args.ignore_disconnect,
        slow_exit: args.slow_exit_ms.map(ms),
        listen: args.listen,
        listen_also: args.listen_also,
        listen_after: args.listen_after,
        online_delay: args.online_delay_ms.map(ms),
        orphan: args.orphan_ms.map(ms),
        orphan_shell: args.orphan_shell,
        only_worker_ids: args.only_worker_ids,
        hostile: args.hostile,
        serve_http: args.serve_http,
        listen_many: args.listen_many,
        swap_dir: args.swap_dir,
        swap_to: args.swap_to,
        callback_error: args.callback_error,
        master_delay: args.master_delay_ms.map(ms),
        deadlock_after: args.deadlock_after_ms.map(ms),
    };
    (options, behaviour, args.worker_program)
}

/// The hidden first argument `--orphan-sleep-ms N` of a worker's child.
fn orphan_sleep() -> Option<Duration> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("--orphan-sleep-ms") {
        return None;
    }
    args.next()?.parse().ok().map(Duration::from_millis)
}

/// Forks the child of `--orphan-ms`, reaped by a helper thread as long as
/// this worker lives.
fn leave_orphan(id: u32, sleep: Duration) -> anyhow::Result<()> {
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("--orphan-sleep-ms")
        .arg(sleep.as_millis().to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot fork the orphan")?;
    say(id, &format!("forked orphan pid {} (sleeps {} ms)", child.id(), sleep.as_millis()));
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// One line on stderr, written with a single `write`.
fn say(id: u32, what: &str) {
    let line = format!("misbehave: worker {id} pid {} {what}\n", std::process::id());
    // Nothing sensible to do when stderr is gone.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Exits like a crash: with `code`, without telling the master.
fn crash(id: u32, code: i32) -> ! {
    say(id, &format!("exiting (code {code})"));
    std::process::exit(code)
}

fn run_worker(worker: &Worker, behaviour: &Behaviour) -> anyhow::Result<()> {
    let id = worker.id().unwrap_or(0);
    let misbehaves = behaviour.applies_to(id);
    say(id, "started");
    if misbehaves && let Some(sleep) = behaviour.orphan {
        leave_orphan(id, sleep)?;
    }
    if misbehaves && behaviour.orphan_shell {
        let script = format!(
            "sleep 311 & echo \"misbehave: worker {id} pid $$ left sleep pid $!\" >&2; wait"
        );
        let mut shell = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start the orphan shell")?;
        std::thread::spawn(move || shell.wait());
    }

    if misbehaves && let Some(after) = behaviour.crash_after {
        if after.is_zero() {
            crash(id, 3);
        }
        std::thread::spawn(move || {
            std::thread::sleep(after);
            crash(id, 3);
        });
    }
    if misbehaves && let Some(delay) = behaviour.online_delay {
        std::thread::sleep(delay);
    }
    if misbehaves && let Some(dir) = &behaviour.listen_many {
        let asked = LISTEN_MANY;
        let mut got = Vec::new();
        for i in 0..asked {
            let path = dir.join(format!("{}-{i}.sock", std::process::id()));
            if let Ok(listener) = worker.listen(path) {
                got.push(listener);
            }
        }
        say(id, &format!("listened on {} of {asked} paths", got.len()));
        worker.online()?;
        say(id, "exiting (code 0)");
        worker.exit(0);
    }
    // Kept open until the process exits (or, with `--serve-http`, until
    // the disconnect).
    let listener = match &behaviour.listen {
        Some(addr) => {
            let listener = worker.listen(addr.clone())?;
            say(id, &format!("listening on {}", listener.local_addr()?));
            Some(listener)
        }
        None => None,
    };
    if !(misbehaves && behaviour.never_online) {
        worker.online()?;
        say(id, "online");
    }
    if misbehaves && let Some(after) = behaviour.exit_after {
        std::thread::sleep(after);
        say(id, "exiting on purpose (code 0)");
        worker.exit(0);
    }
    if misbehaves && let Some(file) = &behaviour.listen_after {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !file.exists() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
    // Kept open like `listener`.
    let mut _also = Vec::new();
    for addr in behaviour.listen_also.iter().filter(|_| misbehaves) {
        match worker.listen(addr.clone()) {
            Ok(listener) => {
                say(id, &format!("listening also on {}", listener.local_addr()?));
                _also.push(listener);
            }
            Err(error) => {
                say(id, &format!("listen failed: {error}"));
                crash(id, 1);
            }
        }
    }

    if misbehaves && let (Some(dir), Some(target)) = (&behaviour.swap_dir, &behaviour.swap_to) {
        let mut moved = dir.clone().into_os_string();
        moved.push(".moved");
        let swapped =
            std::fs::rename(dir, &moved).and_then(|()| std::os::unix::fs::symlink(target, dir));
        match swapped {
            Ok(()) => say(id, &format!("swapped {}", dir.display())),
            Err(error) => {
                say(id, &format!("swap failed: {error}"));
                crash(id, 1);
            }
        }
    }

    let reason = if behaviour.serve_http {
        let listener = listener.context("--serve-http needs --listen")?.into_tcp()?;
        serve_http(worker, listener)?
    } else {
        let deadlock_after = behaviour.deadlock_after.filter(|_| misbehaves);
        let reason = wait_disconnect_alive(worker, id, deadlock_after)?;
        drop(listener);
        reason
    };
    say(id, &format!("disconnected ({reason:?})"));
    if misbehaves && behaviour.ignore_disconnect {
        // Only SIGKILL ends this worker (or a crash timer).
        loop {
            std::thread::park();
        }
    }
    if misbehaves && let Some(delay) = behaviour.slow_exit {
        std::thread::sleep(delay);
    }
    say(id, "exiting (code 0)");
    Ok(())
}

/// Waits for the disconnect in a loop that proves itself alive to the
/// master's watchdog at every turn, and deadlocks after `deadlock_after`.
fn wait_disconnect_alive(
    worker: &Worker,
    id: u32,
    deadlock_after: Option<Duration>,
) -> anyhow::Result<srv_worker::DisconnectReason> {
    let every = worker.heartbeat_interval().unwrap_or(Duration::from_millis(100));
    let tick = PollTimeout::try_from(every).unwrap_or(PollTimeout::MAX);
    let disconnect_fd = worker.disconnect_fd().context("create the disconnect pipe")?;
    let start = Instant::now();
    while !worker.is_disconnected() {
        if deadlock_after.is_some_and(|after| start.elapsed() >= after) {
            deadlock(id);
        }
        // An error means the master is gone: the disconnect follows.
        let _ = worker.alive();
        match poll(&mut [PollFd::new(disconnect_fd, PollFlags::POLLIN)], tick) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => return Err(io::Error::from(errno)).context("poll"),
        }
    }
    Ok(worker.wait_disconnect())
}

/// `--deadlock-after-ms`: this thread and another take two locks in
/// opposite orders, each holding the one the other waits for. Never
/// returns.
fn deadlock(id: u32) -> ! {
    use std::sync::{Arc, Barrier, Mutex};
    let (first, second) = (Arc::new(Mutex::new(())), Arc::new(Mutex::new(())));
    let both_held = Arc::new(Barrier::new(2));
    {
        let (first, second, both_held) =
            (Arc::clone(&first), Arc::clone(&second), Arc::clone(&both_held));
        thread::spawn(move || {
            let _second = second.lock();
            both_held.wait();
            let _first = first.lock();
        });
    }
    let _first = first.lock();
    both_held.wait();
    say(id, "deadlocked");
    let _second = second.lock();
    unreachable!("a deadlock ended")
}

/// `--serve-http`: answers every connection until the disconnect, then
/// waits for the connections in flight. Returns the disconnect reason.
fn serve_http(
    worker: &Worker,
    listener: TcpListener,
) -> anyhow::Result<srv_worker::DisconnectReason> {
    // Several workers accept on this socket and `poll` wakes them all: the
    // losers must not block in `accept`.
    listener.set_nonblocking(true).context("set the listening socket non-blocking")?;
    let disconnect_fd = worker.disconnect_fd().context("create the disconnect pipe")?;
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !worker.is_disconnected() {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(disconnect_fd, PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => return Err(io::Error::from(errno)).context("poll"),
        }
        while !worker.is_disconnected() {
            match listener.accept() {
                Ok((stream, _)) => connections.push(thread::spawn(move || answer_http(stream))),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(error) => return Err(error).context("accept"),
            }
        }
        connections.retain(|connection| !connection.is_finished());
    }
    // The socket lives on in the master and the other workers.
    drop(listener);
    for connection in connections {
        // A panicking connection thread already printed its panic.
        let _ = connection.join();
    }
    Ok(worker.wait_disconnect())
}

/// Reads one request head, answers `200 ok <pid>` with `Connection: close`,
/// and closes without a reset: shut down the sending side, then read until
/// the client closes.
fn answer_http(mut stream: TcpStream) {
    let mut answer = || -> io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
        stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
        let mut head = Vec::new();
        let mut chunk = [0; 1024];
        while !head.windows(4).any(|window| window == b"\r\n\r\n") {
            let n = stream.read(&mut chunk)?;
            if n == 0 || head.len() > 8 * 1024 {
                return Ok(());
            }
            head.extend_from_slice(&chunk[..n]);
        }
        let body = format!("ok {}\n", std::process::id());
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes())?;
        stream.shutdown(Shutdown::Write)?;
        let deadline = Instant::now() + HTTP_TIMEOUT;
        while Instant::now() < deadline && stream.read(&mut chunk)? > 0 {}
        Ok(())
    };
    // The client sees whatever went wrong; nobody else cares.
    let _ = answer();
}

/// `--hostile KIND`: breaks the protocol on the raw channel (see the module
/// docs). Write errors are ignored: the master may close the channel or
/// kill this process at the first bad byte, and that is the point.
fn run_hostile(id: u32, channel: UnixStream, kind: Hostile) -> anyhow::Result<()> {
    say(id, &format!("hostile: {kind}"));
    let hello =
        |protocol_version| WorkerMessage::Hello { protocol_version, pid: std::process::id() };
    let mut bytes = Vec::new();
    let frame = |message: &WorkerMessage, bytes: &mut Vec<u8>| {
        srv_proto::frame::encode(message, bytes).context("encode a message")
    };
    if !matches!(kind, Hostile::OutOfOrder | Hostile::BadVersion | Hostile::Fds) {
        frame(&hello(PROTOCOL_VERSION), &mut bytes)?;
    }
    match kind {
        // A sound length prefix, then bytes that are no message.
        Hostile::Garbage => {
            bytes.extend_from_slice(&[6, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff])
        }
        Hostile::Oversized => {
            let len = u32::try_from(MAX_FRAME_LEN + 1).context("MAX_FRAME_LEN fits in u32")?;
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&[0; 16]);
        }
        // A frame announcing 5 bytes, of which 2 come.
        Hostile::Truncated => bytes.extend_from_slice(&[5, 0, 0, 0, 1, 2]),
        // Variant 9 of a five-variant enum.
        Hostile::Unknown => bytes.extend_from_slice(&[1, 0, 0, 0, 9]),
        Hostile::OutOfOrder => frame(&WorkerMessage::Online, &mut bytes)?,
        Hostile::Flood => {
            for _ in 0..FLOOD_MESSAGES {
                frame(&WorkerMessage::Online, &mut bytes)?;
            }
        }
        Hostile::Fds => {
            frame(&hello(PROTOCOL_VERSION), &mut bytes)?;
            let null = std::fs::File::open("/dev/null").context("open /dev/null")?;
            let fds = [null.as_fd(), null.as_fd()];
            let _ = srv_proto::fd::send_with_fds(channel.as_fd(), &bytes, &fds);
            bytes.clear();
        }
        Hostile::BadVersion => frame(&hello(BAD_PROTOCOL_VERSION), &mut bytes)?,
        Hostile::CloseEarly | Hostile::Grandchildren | Hostile::FloodGrandchild => {}
    }
    let _ = { &channel }.write_all(&bytes);
    match kind {
        Hostile::Truncated | Hostile::CloseEarly => drop(channel),
        Hostile::Grandchildren => {
            let grandchild = Command::new("sleep")
                .arg("30")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("spawn sleep 30")?;
            say(id, &format!("spawned grandchild pid {}", grandchild.id()));
            // Not waited for: it is left to the master, the subreaper.
            crash(id, 3);
        }
        Hostile::BadVersion => {
            say(id, &format!("refused: {}", read_refusal(channel)));
            crash(id, 1);
        }
        Hostile::FloodGrandchild => {
            // `fork` keeps the descriptor whatever its close-on-exec flag;
            // a child that `exec`s needs the flag cleared, and the variable
            // that names the descriptor.
            nix::fcntl::fcntl(&channel, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))
                .context("clear close-on-exec on the channel")?;
            let writer = Command::new(std::env::current_exe()?)
                .arg("--flood-writer")
                .env(srv_proto::env::ENV_CHANNEL_FD, channel.as_raw_fd().to_string())
                .env(srv_proto::env::ENV_WORKER_ID, id.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .context("spawn the flood writer")?;
            say(id, &format!("spawned grandchild pid {}", writer.id()));
        }
        _ => {}
    }
    // Only SIGKILL ends this worker.
    loop {
        thread::park();
    }
}

/// The hidden `--flood-writer` of `--hostile flood-grandchild`: writes
/// `Online` frames on the inherited channel until it breaks, or up to
/// [`FLOOD_WRITER_BYTES`] or [`FLOOD_WRITER_TIME`].
fn flood_writer() -> anyhow::Result<()> {
    let id = std::env::var(srv_proto::env::ENV_WORKER_ID)
        .ok()
        .and_then(|id| id.parse().ok())
        .unwrap_or(0);
    let channel =
        srv_proto::env::take_inherited_channel()?.context("the flood writer has no channel")?;
    // The kernel caps it at `net.core.wmem_max`; no privilege is needed.
    let _ = nix::sys::socket::setsockopt(&channel, nix::sys::socket::sockopt::SndBuf, &(4 << 20));
    let mut frames = Vec::new();
    while frames.len() < 64 * 1024 {
        srv_proto::frame::encode(&WorkerMessage::Online, &mut frames)?;
    }
    say(id, "flood writer started");
    // `at` keeps partial writes aligned on frames: the flood stays valid
    // messages, not garbage.
    let (start, mut written, mut at) = (Instant::now(), 0, 0);
    let why = loop {
        if written >= FLOOD_WRITER_BYTES {
            break "the byte limit".to_owned();
        }
        if start.elapsed() >= FLOOD_WRITER_TIME {
            break "the time limit".to_owned();
        }
        match { &channel }.write(&frames[at..]) {
            Ok(n) => {
                written += n;
                at = (at + n) % frames.len();
            }
            Err(error) => break error.to_string(),
        }
    };
    say(id, &format!("flood writer wrote {written} bytes ({why})"));
    Ok(())
}

/// The master's answer to a bad `Hello`, in words.
fn read_refusal(channel: UnixStream) -> String {
    if let Err(error) = channel.set_read_timeout(Some(Duration::from_secs(10))) {
        return format!("cannot set a read timeout: {error}");
    }
    let mut channel = Channel::new(channel);
    loop {
        match channel.next_message::<MasterMessage>() {
            Ok(Some((MasterMessage::Refused { reason }, _))) => return reason,
            Ok(Some((other, _))) => return format!("not refused but sent {other:?}"),
            Ok(None) => {}
            Err(error) => return format!("undecodable answer: {error}"),
        }
        match channel.receive() {
            Ok(Received::Bytes(_)) => {}
            Ok(Received::Closed) => return "no answer: the channel closed".to_owned(),
            Err(error) => return format!("no answer: {error}"),
        }
    }
}
