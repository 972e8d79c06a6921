//! Feature `actix`: the drain of `srv_worker::actix::serve`, in one
//! process: a fake master holds the listening socket and sends
//! `Disconnect`, an actix-web server runs in its own system on another
//! thread, and a raw HTTP/1.1 client plays a keep-alive connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer, web};
use srv_proto::MasterMessage;
use srv_worker::drain::IDLE_GRACE;

use crate::FakeMaster;

/// No step of these tests waits longer.
const STEP: Duration = Duration::from_secs(10);

/// Sends `GET path` (HTTP/1.1, keep-alive) and reads one response: its
/// status, whether it said `Connection: close`, and its body.
fn get(stream: &mut TcpStream, path: &str) -> Result<(u16, bool, String), String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|error| format!("write: {error}"))?;
    let mut bytes = Vec::new();
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0; 1024];
        match stream.read(&mut chunk) {
            Ok(0) => return Err(format!("end of file after {} bytes", bytes.len())),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(error) => return Err(format!("read: {error}")),
        }
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .map_or(0, |length| length.trim().parse().unwrap());
    while bytes.len() < head_end + length {
        let mut chunk = [0; 1024];
        let n = stream.read(&mut chunk).map_err(|error| format!("read: {error}"))?;
        assert_ne!(n, 0, "end of file within the body");
        bytes.extend_from_slice(&chunk[..n]);
    }
    let status = head[9..12].parse().unwrap();
    let body = String::from_utf8_lossy(&bytes[head_end..]).into_owned();
    Ok((status, head.contains("\r\nconnection: close\r\n"), body))
}

#[test]
fn an_idle_keep_alive_connection_carries_one_more_request_and_serve_returns() {
    let (mut master, worker) = FakeMaster::connect();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = held.local_addr().unwrap();
    let granted = held.try_clone().unwrap();
    let asked = std::thread::spawn(move || {
        master.grant(&granted);
        master
    });
    let server = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async {
            let close = srv_worker::actix::CloseOnDisconnect::new(&worker);
            let server = HttpServer::new(move || {
                App::new().wrap(close.clone()).route("/", web::get().to(|| async { "ok" }))
            })
            .workers(1)
            .disable_signals()
            .listen(worker.listen_tcp(([127, 0, 0, 1], 0)).unwrap())
            .unwrap()
            .run();
            srv_worker::actix::serve(&worker, server).await
        })
    });
    let mut master = asked.join().unwrap();

    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(STEP)).unwrap();
    assert_eq!(get(&mut client, "/").unwrap(), (200, false, "ok".to_owned()));
    // Idle, as between two requests of a keep-alive client, at the disconnect.
    let disconnected_at = Instant::now();
    master.send(&MasterMessage::Disconnect { grace: Some(STEP) }, &[]);
    std::thread::sleep(IDLE_GRACE / 3); // the client's next request comes now
    let last = get(&mut client, "/").expect("the request after the disconnect");
    assert_eq!(last, (200, true, "ok".to_owned()));
    // The server closes the connection after it; `serve` returns once
    // actix stopped, after the idle grace and well before the deadline.
    let mut byte = [0; 1];
    assert!(matches!(client.read(&mut byte), Ok(0) | Err(_)), "the connection stays open");
    let deadline = Instant::now() + STEP;
    while !server.is_finished() {
        assert!(Instant::now() < deadline, "serve did not return");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.join().unwrap().expect("the server ends without error");
    assert!(disconnected_at.elapsed() >= IDLE_GRACE, "stopped before the idle grace");
}
