//! The node module's own example: every worker says hello when it starts and goodbye
//! when it is disconnected.
//!
//! ```text
//! cargo run --release --bin hello -- --workers 4
//! ```
//!
//! Ctrl+C makes every worker print `Goodbye from <pid>`, then the program
//! exits 0. Without a master (`SRV_CHANNEL_FD` unset) the same binary is the
//! master; each worker is this binary again, started by it.
#![allow(clippy::print_stdout, reason = "printing is what this example does")]

use anyhow::Context;
use srv_master::{Master, Options};
use srv_worker::Worker;

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Some(worker) = Worker::from_env()? {
        let pid = std::process::id();
        println!("Hello from {pid}");
        worker.online()?;
        worker.wait_disconnect();
        println!("Goodbye from {pid}");
        return Ok(());
    }
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--workers" => {
                let value = args.next().context("--workers needs a number")?;
                options.worker.count =
                    value.parse().with_context(|| format!("--workers {value}"))?;
            }
            other => anyhow::bail!("unknown argument {other}; usage: hello [--workers N]"),
        }
    }
    Master::current_exe(options)?.run()?;
    Ok(())
}
