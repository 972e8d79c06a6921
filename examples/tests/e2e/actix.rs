//! The actix example (`examples/src/bin/actix.rs`, actix-web 4)
//! passes the reference server's recycle tests: SIGHUP again and again
//! under load, with a new connection per request and with keep-alive
//! connections (HTTP/1.1: actix-web serves HTTP/2 only over TLS), from the
//! project's load generator and from `wrk` and `ab`, and not one request
//! fails; slow requests in flight survive SIGHUP and SIGTERM.

use crate::clients::{Tool, recycles_under};
use crate::harness::Master;
use crate::load::Mode;
use crate::recycle::{
    N_RECYCLES, recycles_under_load, slow_requests_survive_sighup, slow_requests_survive_sigterm,
    start_recycled,
};

fn start_actix() -> Master {
    // Room for a slow start while the other tests load both cores.
    start_recycled(env!("CARGO_BIN_EXE_actix"), &["--worker-timeout", "5000"])
}

#[test]
fn actix_recycles_lose_no_request_with_a_new_connection_per_request() {
    recycles_under_load(&start_actix(), Mode::NewConnection, N_RECYCLES);
}

#[test]
fn actix_recycles_lose_no_request_on_keep_alive_connections() {
    recycles_under_load(&start_actix(), Mode::KeepAlive, N_RECYCLES);
}

#[test]
fn actix_recycles_lose_no_request_from_wrk() {
    recycles_under(start_actix, Tool::Wrk);
}

#[test]
fn actix_recycles_lose_no_request_from_ab() {
    recycles_under(start_actix, Tool::Ab);
}

#[test]
fn actix_slow_requests_in_flight_survive_sighup() {
    slow_requests_survive_sighup(&start_actix());
}

#[test]
fn actix_slow_requests_in_flight_survive_sigterm_and_the_master_exits_0() {
    slow_requests_survive_sigterm(start_actix());
}
