//! What the example servers (`http`, `axum`, `hyper`, `actix`) share: one
//! command line, and the order in which a process finds out what it is.
//!
//! # Worker, standalone or master
//!
//! One binary is the master and its workers: started by hand it is the
//! master, which re-executes it once per worker with the same arguments;
//! started by a master it is a worker. [`run`] decides, in this order:
//!
//! 1. `Worker::from_env()` first, before any thread starts (it takes the
//!    channel's variables out of the environment). A worker then serves,
//!    using nothing but its own command line (`--addr`, `--port`) and what
//!    the master tells it (the grace of its drain comes with `Disconnect`).
//!    It never reads `--config`: the master may run as root and its workers
//!    as `worker.user`, and a config file with secrets is readable by root
//!    alone.
//! 2. `--standalone`: serve in this very process, without a master.
//! 3. Otherwise this is the master: it reads `--config` (the option flags
//!    override the file), validates the options, and supervises.
//!
//! Argument errors print the usage and exit 2; every other error (a config
//! file that cannot be read, a port in use) is one log line and exit 1.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _};
use srv_master::{Master, Options, Require};
use srv_worker::Worker;

/// The longest `GET /sleep`, in milliseconds; larger values are capped.
pub const MAX_SLEEP_MS: u64 = 60_000;

/// The command line of every example server.
#[derive(Debug, Clone, clap::Parser)]
pub struct ServerArgs {
    /// TCP port to serve on; 0 picks a free one (the master logs which)
    #[arg(long, value_name = "PORT")]
    pub port: u16,
    /// Address to bind
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub addr: IpAddr,
    /// srv options from a .toml or .json file (`[worker] count = 4`); the
    /// flags below override it. Read by the master only
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Number of worker processes [default: 4]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// What counts as a started worker: online or listen [default: online]
    #[arg(long, value_name = "STATE")]
    pub require: Option<Require>,
    /// Time for a worker to reach that state [default: 2000]
    #[arg(long, value_name = "MS")]
    pub worker_timeout: Option<u64>,
    /// Grace for each old worker on SIGHUP, and for one removed by SIGTTOU
    /// [default: 15000]
    #[arg(long, value_name = "MS")]
    pub recycle_timeout: Option<u64>,
    /// Replacements started at once on SIGHUP, 1 to the number of workers
    /// [default: 1]
    #[arg(long, value_name = "N")]
    pub recycle_parallel: Option<usize>,
    /// Grace for each worker on SIGTERM/SIGINT [default: 15000]
    #[arg(long, value_name = "MS")]
    pub shutdown_timeout: Option<u64>,
    /// Wait before replacing a crashed worker [default: 5000]
    #[arg(long, value_name = "MS")]
    pub restart_delay: Option<u64>,
    /// Kill and replace a worker whose serving loop is silent this long
    /// (worker.watchdog) [default: none]
    #[arg(long, value_name = "MS")]
    pub watchdog: Option<u64>,
    /// Recycle a worker whose resident memory is above this (worker.max_rss)
    /// [default: none]
    #[arg(long, value_name = "MIB")]
    pub max_rss: Option<u64>,
    /// Recycle each worker after about this long, within ±10%
    /// (worker.max_age) [default: none]
    #[arg(long, value_name = "MS")]
    pub max_age: Option<u64>,
    /// Serve in this process, without a master
    #[arg(long)]
    pub standalone: bool,
}

impl ServerArgs {
    /// The address to serve on.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }

    /// The master's options: the config file if any, the flags over it,
    /// validated. Only the master calls this.
    ///
    /// # Errors
    ///
    /// The file cannot be read or parsed, or an option is invalid; the
    /// message names the file and the dotted key.
    pub fn options(&self) -> anyhow::Result<Options> {
        let mut options = match &self.config {
            Some(path) => Options::from_file(path)?,
            None => Options::default(),
        };
        let ms = Duration::from_millis;
        if let Some(count) = self.workers {
            options.worker.count = count;
        }
        if let Some(require) = self.require {
            options.worker.require = require;
        }
        if let Some(timeout) = self.worker_timeout {
            options.worker.timeout = ms(timeout);
        }
        if let Some(timeout) = self.recycle_timeout {
            options.recycle.timeout = ms(timeout);
        }
        if let Some(parallel) = self.recycle_parallel {
            options.recycle.parallel = parallel;
        }
        if let Some(timeout) = self.shutdown_timeout {
            options.shutdown.timeout = ms(timeout);
        }
        if let Some(delay) = self.restart_delay {
            options.restart.delay = ms(delay);
            // Raise the cap of the doubling delay along, rather than refuse
            // a delay above its default.
            options.restart.max_delay = options.restart.max_delay.max(options.restart.delay);
        }
        if let Some(period) = self.watchdog {
            options.worker.watchdog = Some(ms(period));
        }
        if let Some(mib) = self.max_rss {
            options.worker.max_rss = Some(mib);
        }
        if let Some(age) = self.max_age {
            options.worker.max_age = Some(ms(age));
        }
        options.validate()?;
        Ok(options)
    }
}

/// The `main` of an example server called `name`: logging, the command
/// line (`about` above the options, `pages` below them in `--help`), then
/// [`run`] with `serve` for the worker, and the exit code.
pub fn main(
    name: &'static str,
    about: &'static str,
    pages: &'static str,
    serve: impl FnOnce(Worker, &ServerArgs) -> anyhow::Result<()>,
) -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let command = ServerArgs::command().name(name).bin_name(name).about(about).after_help(pages);
    let args = match command.try_get_matches().and_then(|m| ServerArgs::from_arg_matches(&m)) {
        Ok(args) => args,
        // `--help` (exit 0), or an argument error with the usage (exit 2).
        Err(error) => error.exit(),
    };
    match run(&args, serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Serves as a worker, standalone, or supervises as the master, in the
/// order the [crate documentation](crate) explains.
///
/// # Errors
///
/// What `serve` returns; the channel to the master is invalid; or, for the
/// master, bad options or a master that cannot run (see `srv_master::Error`).
pub fn run(
    args: &ServerArgs,
    serve: impl FnOnce(Worker, &ServerArgs) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if let Some(worker) = Worker::from_env().context("connect to the master")? {
        return serve(worker, args);
    }
    if args.standalone {
        return serve(Worker::standalone(), args);
    }
    Master::current_exe(args.options()?)?.run()?;
    Ok(())
}

/// Logs the address a standalone worker listens on; under a master the
/// master logs it (tests read the port from that line either way).
pub fn log_listening(worker: &Worker, actual: SocketAddr, requested: SocketAddr) {
    if !worker.is_supervised() {
        log::info!("listening on {actual} (requested {requested})");
    }
}

/// The `N` of `GET /sleep?ms=N`, capped at [`MAX_SLEEP_MS`]; `None` when
/// the query has no number.
pub fn sleep_ms(query: Option<&str>) -> Option<u64> {
    let ms = query?.split('&').find_map(|pair| pair.strip_prefix("ms="))?.parse::<u64>().ok()?;
    Some(ms.min(MAX_SLEEP_MS))
}

/// The README's Rust code, compiled as doc tests of this crate (which has
/// every dependency they use: srv-master, srv-worker with its features,
/// axum, hyper, actix-web, tokio), so that it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_takes_the_ms_parameter_and_caps_it() {
        assert_eq!(sleep_ms(Some("ms=250")), Some(250));
        assert_eq!(sleep_ms(Some("x=1&ms=7")), Some(7));
        assert_eq!(sleep_ms(Some("ms=99999999")), Some(MAX_SLEEP_MS));
        assert_eq!(sleep_ms(Some("ms=soon")), None);
        assert_eq!(sleep_ms(None), None);
    }

    #[test]
    fn flags_override_the_defaults_and_the_master_validates() {
        let parse = |args: &[&str]| {
            let all = std::iter::once("srv").chain(args.iter().copied());
            <ServerArgs as clap::Parser>::try_parse_from(all)
        };
        let args = parse(&["--port", "0", "--workers", "3", "--restart-delay", "90000"]).unwrap();
        let options = args.options().unwrap();
        assert_eq!(options.worker.count, 3);
        assert_eq!(options.restart.max_delay, Duration::from_secs(90));
        let zero = parse(&["--port", "0", "--workers", "0"]).unwrap().options().unwrap_err();
        assert!(zero.to_string().contains("worker.count"), "{zero}");
        assert!(parse(&["--workers", "2"]).is_err(), "--port is required");
        assert!(parse(&["--port", "0", "--require", "ready"]).is_err());
    }
}
