//! A test worker that misbehaves on purpose, for the end-to-end tests of the
//! master's lifecycle (`examples/tests/e2e`).
//!
//! ```text
//! misbehave [--workers N] [--require online|listen] [--worker-timeout MS]
//!           [--restart-delay MS] [--max-restart-delay MS]
//!           [--shutdown-timeout MS] [--recycle-timeout MS] [--no-ignore-sigint]
//!           [--never-online] [--crash-after-ms MS] [--ignore-disconnect]
//!           [--slow-exit-ms MS] [--listen ADDR] [--online-delay-ms MS]
//!           [--only-worker-ids 1,2]
//! ```
//!
//! Like `hello`, one binary is both: without a master it is the master, and
//! each worker is this binary again with the same arguments. The master
//! reads the master flags; every worker reads the worker flags.
//!
//! Worker flags:
//!
//! - `--never-online`: never report online.
//! - `--crash-after-ms N`: exit with code 3, without telling the master, `N`
//!   ms after start; `0` exits at once, before reporting anything.
//! - `--ignore-disconnect`: keep running after `Disconnect` (until killed).
//! - `--slow-exit-ms N`: after `Disconnect`, wait `N` ms, then exit 0.
//! - `--listen ADDR`: get a listening socket for `ADDR` from the master
//!   before reporting online (`127.0.0.1:0` is fine: every worker of one
//!   master gets the same socket).
//! - `--online-delay-ms N`: wait `N` ms before listening and reporting online.
//! - `--only-worker-ids 1,2`: only the workers with these ids
//!   (`Worker::id`, counted from 1, never reused) misbehave; the others
//!   behave. `--listen` is not a misbehaviour and applies to every worker.
//!
//! Every worker writes these lines to stderr, each with one `write` so the
//! lines of several processes sharing the pipe do not interleave:
//!
//! ```text
//! misbehave: worker <id> pid <pid> started
//! misbehave: worker <id> pid <pid> listening on <actual addr>
//! misbehave: worker <id> pid <pid> online
//! misbehave: worker <id> pid <pid> disconnected (<reason>)
//! misbehave: worker <id> pid <pid> exiting (code <code>)
//! ```
//!
//! `SIGINT` is left alone: unless the master makes workers ignore it (the
//! default, undone by `--no-ignore-sigint`), a worker dies of it.
//!
//! The master logs with millisecond timestamps, so tests can measure the
//! delays it honours from its own log lines.
#![allow(clippy::print_stderr, reason = "reporting on stderr is what this test worker does")]

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use srv_master::{Master, Options};
use srv_worker::Worker;

/// What the workers do, from the worker flags.
#[derive(Debug, Default)]
struct Behaviour {
    never_online: bool,
    crash_after: Option<Duration>,
    ignore_disconnect: bool,
    slow_exit: Option<Duration>,
    listen: Option<String>,
    online_delay: Option<Duration>,
    /// `None`: every worker misbehaves.
    only_worker_ids: Option<Vec<u32>>,
}

const USAGE: &str = "usage: misbehave [--workers N] [--require online|listen] \
    [--worker-timeout MS] [--restart-delay MS] [--max-restart-delay MS] \
    [--shutdown-timeout MS] [--recycle-timeout MS] [--no-ignore-sigint] \
    [--never-online] [--crash-after-ms MS] [--ignore-disconnect] [--slow-exit-ms MS] \
    [--listen ADDR] [--online-delay-ms MS] [--only-worker-ids ID,ID,...]";

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    // Take the channel before anything else, as srv-worker asks.
    let worker = Worker::from_env()?;
    let (options, behaviour) = parse_args(std::env::args().skip(1))?;
    match worker {
        Some(worker) => run_worker(&worker, &behaviour),
        None => {
            Master::current_exe(options)?.run()?;
            Ok(())
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<(Options, Behaviour)> {
    let mut options = Options::default();
    let mut behaviour = Behaviour::default();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value; {USAGE}"));
        match arg.as_str() {
            "--workers" => options.worker.count = number(&arg, &value()?)?,
            "--require" => options.worker.require = value()?.parse()?,
            "--worker-timeout" => options.worker.timeout = millis(&arg, &value()?)?,
            "--restart-delay" => options.restart.delay = millis(&arg, &value()?)?,
            "--max-restart-delay" => options.restart.max_delay = millis(&arg, &value()?)?,
            "--shutdown-timeout" => options.shutdown.timeout = millis(&arg, &value()?)?,
            "--recycle-timeout" => options.recycle.timeout = millis(&arg, &value()?)?,
            "--no-ignore-sigint" => options.worker.ignore_sigint = false,
            "--never-online" => behaviour.never_online = true,
            "--crash-after-ms" => behaviour.crash_after = Some(millis(&arg, &value()?)?),
            "--ignore-disconnect" => behaviour.ignore_disconnect = true,
            "--slow-exit-ms" => behaviour.slow_exit = Some(millis(&arg, &value()?)?),
            "--listen" => behaviour.listen = Some(value()?),
            "--online-delay-ms" => behaviour.online_delay = Some(millis(&arg, &value()?)?),
            "--only-worker-ids" => {
                let list = value()?;
                let ids = list
                    .split(',')
                    .map(|id| number(&arg, id.trim()))
                    .collect::<anyhow::Result<Vec<u32>>>()?;
                behaviour.only_worker_ids = Some(ids);
            }
            other => bail!("unknown argument {other}; {USAGE}"),
        }
    }
    Ok((options, behaviour))
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    value.parse().with_context(|| format!("{flag} {value}: not a number"))
}

fn millis(flag: &str, value: &str) -> anyhow::Result<Duration> {
    number(flag, value).map(Duration::from_millis)
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
    let misbehaves = behaviour.only_worker_ids.as_ref().is_none_or(|ids| ids.contains(&id));
    say(id, "started");

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
    // Kept open until the process exits.
    let _listener = match &behaviour.listen {
        Some(addr) => {
            let listener = worker.listen(addr)?;
            say(id, &format!("listening on {}", listener.local_addr()?));
            Some(listener)
        }
        None => None,
    };
    if !(misbehaves && behaviour.never_online) {
        worker.online()?;
        say(id, "online");
    }

    let reason = worker.wait_disconnect();
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
