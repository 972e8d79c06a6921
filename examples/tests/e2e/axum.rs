//! The async example (`examples/src/bin/axum.rs`, axum on tokio) passes the
//! reference server's zero-failure recycle test: SIGHUP again and again
//! under load, with a new connection per request and with keep-alive
//! connections, and not one request fails.

use crate::harness::Master;
use crate::http_support::start_on_port_0;
use crate::load::Mode;
use crate::recycle::{N_WORKERS, recycles_under_load};

/// The number of recycles under load.
const N_RECYCLES: usize = 4;

fn axum() -> &'static str {
    env!("CARGO_BIN_EXE_axum")
}

fn start_axum() -> Master {
    let workers = N_WORKERS.to_string();
    start_on_port_0(
        axum(),
        &["--workers", &workers, "--recycle-timeout", "5000", "--shutdown-timeout", "5000"],
    )
}

#[test]
fn axum_recycles_lose_no_request_with_a_new_connection_per_request() {
    recycles_under_load(&start_axum(), Mode::NewConnection, N_RECYCLES);
}

#[test]
fn axum_recycles_lose_no_request_on_keep_alive_connections() {
    recycles_under_load(&start_axum(), Mode::KeepAlive, N_RECYCLES);
}
