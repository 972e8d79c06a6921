//! The hyper example (`examples/src/bin/hyper.rs`, on `srv_worker::hyper`)
//! passes the reference server's recycle tests: SIGHUP again and again
//! under load, with a new connection per request, with keep-alive
//! connections and over HTTP/2, from the project's load generator and from
//! `wrk`, `ab` and `h2load`, and not one request fails; slow requests in
//! flight survive SIGHUP and SIGTERM.

use crate::clients::{Tool, recycles_under};
use crate::harness::Master;
use crate::load::Mode;
use crate::recycle::{
    N_RECYCLES, recycles_under_load, slow_requests_survive_sighup, slow_requests_survive_sigterm,
    start_recycled,
};

fn start_hyper() -> Master {
    // Room for a slow start while the other tests load both cores.
    start_recycled(env!("CARGO_BIN_EXE_hyper"), &["--worker-timeout", "5000"])
}

#[test]
fn hyper_recycles_lose_no_request_with_a_new_connection_per_request() {
    recycles_under_load(&start_hyper(), Mode::NewConnection, N_RECYCLES);
}

#[test]
fn hyper_recycles_lose_no_request_on_keep_alive_connections() {
    recycles_under_load(&start_hyper(), Mode::KeepAlive, N_RECYCLES);
}

#[test]
fn hyper_recycles_lose_no_request_over_http2_from_h2load() {
    recycles_under(start_hyper, Tool::H2load);
}

#[test]
fn hyper_recycles_lose_no_request_from_wrk() {
    recycles_under(start_hyper, Tool::Wrk);
}

#[test]
fn hyper_recycles_lose_no_request_from_ab() {
    recycles_under(start_hyper, Tool::Ab);
}

#[test]
fn hyper_slow_requests_in_flight_survive_sighup() {
    slow_requests_survive_sighup(&start_hyper());
}

#[test]
fn hyper_slow_requests_in_flight_survive_sigterm_and_the_master_exits_0() {
    slow_requests_survive_sigterm(start_hyper());
}
