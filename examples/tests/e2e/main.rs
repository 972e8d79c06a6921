//! End-to-end tests of the master's lifecycle: real processes, real
//! signals. They drive the example servers (`http`, `axum`, `hyper`,
//! `actix`, `hello`) and the `misbehave` test worker
//! (`examples/src/bin/misbehave.rs`), whose misbehaviour is chosen by flags,
//! with the project's load generator and with `wrk`, `ab` and `h2load`.
//!
//! Run them with `cargo xtask test-e2e`, or directly with
//! `cargo test --release -p srv-examples --features e2e --test e2e`.
//!
//! Every test owns its masters through [`harness::Master`], a guard that
//! kills everything it started when dropped, even when the test panics.
//! Tests run in parallel: each has its own master, process group and port 0.
#![allow(clippy::print_stderr, reason = "the harness prints the captured output of failing tests")]

mod harness;
mod http_support;
mod proc_support;

/// The project's load generator, as `crate::load` in every test module.
use srv_load as load;

mod actix;
mod addresses;
mod awkward;
mod axum;
mod cleanup;
mod clients;
mod config;
mod crashloop;
mod failures;
mod hello;
mod hostile;
mod hyper;
mod master_death;
mod pid1;
mod planned;
mod privileges;
mod recycle;
mod shutdown;
mod startup;
mod storms;
mod systemd;
mod upgrade;
mod watchdog;
