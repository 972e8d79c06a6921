//! `cargo xtask test-e2e`: the end-to-end tests, with real processes and
//! real signals.
//!
//! The test target is `examples/tests/e2e/main.rs`. It declares
//! `required-features = ["e2e"]`, so plain `cargo test` skips it; here it runs
//! in release mode, the way the reference server is deployed and benchmarked.

use std::process::Command;

/// `cargo test --release -p srv-examples --features e2e --test e2e -- <extra>`.
pub(crate) fn command(extra: &[String]) -> Command {
    let mut command = crate::cargo();
    command.args(["test", "--release", "-p", "srv-examples", "--features", "e2e", "--test", "e2e"]);
    if !extra.is_empty() {
        command.arg("--").args(extra);
    }
    command
}
