//! The node module's own example: every worker says hello when it starts and goodbye
//! when it is disconnected.
//!
//! ```text
//! cargo run --release --bin hello -- --workers 4
//! ```
//!
//! Ctrl+C makes every worker print `Goodbye from <pid>`, then the program
//! exits 0. Without a master (`SRV_CHANNEL_FD` unset) the same binary is the
//! master; each worker is this binary again, started by it. Without
//! arguments it is exactly the program of the `srv` crate's documentation
//! (`srv::Options::default()`: 4 workers).
#![allow(clippy::print_stdout, reason = "printing is what this example does")]

use clap::Parser;

/// The node module's own example: each worker prints "Hello from" and its pid
/// when it starts, and "Goodbye from" and its pid when it is disconnected
/// (Ctrl+C, SIGTERM, SIGHUP's recycle).
#[derive(Debug, Parser)]
#[command(name = "hello")]
struct Args {
    /// Number of worker processes
    #[arg(long, value_name = "N", default_value_t = srv::Options::default().worker.count)]
    workers: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // Every process parses its command line (a worker has the master's);
    // only the master uses it.
    let args = Args::parse();
    let mut options = srv::Options::default();
    options.worker.count = args.workers;
    srv::run(options, |worker| {
        println!("Hello from {}", std::process::id());
        worker.wait_disconnect();
        println!("Goodbye from {}", std::process::id());
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    Ok(())
}
