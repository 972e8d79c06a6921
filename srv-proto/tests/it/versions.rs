//! Peers of different protocol versions: what a master of this crate sends a
//! worker of protocol 1 decodes with protocol 1's own types, and what a
//! master of protocol 1 sends decodes here.
//!
//! [`V1MasterMessage`] is protocol 1's `MasterMessage` as it was released
//! (frozen here: it must never change), so these tests are the old decoder,
//! not this crate's idea of it. [`ListenAddr0_1`] is the address as srv 0.1
//! wrote and read it, frozen the same way: masters and workers of srv 0.1
//! know only its text form.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de, ser};
use srv_proto::{Decoder, ListenAddr, ListenError, MasterMessage, WorkerMessage, frame};

use crate::props::{config, socket_addr};

/// Protocol 1's master-to-worker message, variant for variant.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum V1MasterMessage {
    ListenReply { requested: ListenAddr, result: Result<ListenAddr, ListenError> },
    Disconnect,
    Refused { reason: String },
}

fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    frame::encode(message, &mut bytes).unwrap();
    bytes
}

fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<Option<T>, srv_proto::DecodeError> {
    let mut decoder = Decoder::new();
    decoder.push(bytes);
    decoder.next_message()
}

#[test]
fn a_worker_of_protocol_1_decodes_the_disconnect_a_master_sends_it() {
    let grace = Duration::from_secs(15);
    let sent = MasterMessage::disconnect_for(Some(1), grace);
    assert_eq!(decode::<V1MasterMessage>(&encode(&sent)), Ok(Some(V1MasterMessage::Disconnect)));
    // So does one that has not said `Hello` yet: its version is unknown.
    let sent = MasterMessage::disconnect_for(None, grace);
    assert_eq!(decode::<V1MasterMessage>(&encode(&sent)), Ok(Some(V1MasterMessage::Disconnect)));
}

#[test]
fn a_worker_of_protocol_1_cannot_decode_the_disconnect_with_a_grace() {
    // Why the master must choose the form: the old decoder does not know it.
    let with_grace = MasterMessage::Disconnect { grace: Some(Duration::from_secs(15)) };
    let res = decode::<V1MasterMessage>(&encode(&with_grace));
    assert!(matches!(res, Err(srv_proto::DecodeError::Message(_))), "{res:?}");
}

#[test]
fn the_other_master_messages_are_unchanged_for_a_worker_of_protocol_1() {
    let requested: ListenAddr = "127.0.0.1:0".parse().unwrap();
    let actual: ListenAddr = "127.0.0.1:8080".parse().unwrap();
    let reply =
        MasterMessage::ListenReply { requested: requested.clone(), result: Ok(actual.clone()) };
    let v1 = V1MasterMessage::ListenReply { requested, result: Ok(actual) };
    assert_eq!(encode(&reply), encode(&v1));
    let reason = "no".to_owned();
    let refused = MasterMessage::Refused { reason: reason.clone() };
    assert_eq!(encode(&refused), encode(&V1MasterMessage::Refused { reason }));
}

#[test]
fn the_disconnect_of_a_master_of_protocol_1_decodes_without_a_grace() {
    let bytes = encode(&V1MasterMessage::Disconnect);
    assert_eq!(
        decode::<MasterMessage>(&bytes),
        Ok(Some(MasterMessage::Disconnect { grace: None }))
    );
}

/// srv 0.1's `ListenAddr`, serde and parser as released: a string, `IP:PORT`,
/// `localhost:PORT`, `unix:PATH`, or a path starting with `/` or `.`; a
/// Unix path that is not UTF-8 cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListenAddr0_1 {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Serialize for ListenAddr0_1 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ListenAddr0_1::Tcp(addr) => serializer.collect_str(addr),
            ListenAddr0_1::Unix(path) => {
                let path = path.to_str().ok_or_else(|| ser::Error::custom("not UTF-8"))?;
                if path.is_empty() {
                    return Err(ser::Error::custom("unix socket path is empty"));
                }
                serializer.serialize_str(&format!("unix:{path}"))
            }
        }
    }
}

impl<'de> Deserialize<'de> for ListenAddr0_1 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ListenAddr0_1, D::Error> {
        let text = String::deserialize(deserializer)?;
        let error = || de::Error::custom(format!("invalid listen address '{text}'"));
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(error());
            }
            return Ok(ListenAddr0_1::Unix(PathBuf::from(path)));
        }
        if text.starts_with('/') || text.starts_with('.') {
            return Ok(ListenAddr0_1::Unix(PathBuf::from(&text)));
        }
        if let Some(port) = text.strip_prefix("localhost:") {
            let port: u16 = port.parse().map_err(|_| error())?;
            return Ok(ListenAddr0_1::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
        }
        text.parse().map(ListenAddr0_1::Tcp).map_err(|_| error())
    }
}

/// The same address in srv 0.1's type, where it has one.
fn as_0_1(addr: &ListenAddr) -> ListenAddr0_1 {
    match addr {
        ListenAddr::Tcp(addr) => ListenAddr0_1::Tcp(*addr),
        ListenAddr::Unix(path) => ListenAddr0_1::Unix(path.clone()),
    }
}

/// Every address srv 0.1 could write: TCP, and every UTF-8 Unix path.
fn address_of_0_1() -> impl Strategy<Value = ListenAddr> {
    prop_oneof![
        socket_addr().prop_map(ListenAddr::Tcp),
        any::<String>()
            .prop_filter("a unix path is not empty", |path| !path.is_empty())
            .prop_map(|path| ListenAddr::Unix(PathBuf::from(path))),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    /// A request from this worker reaches a master of srv 0.1 as the same
    /// bytes as from a worker of its own, and a reply of that master
    /// decodes here to the same address; both ways, for every address it
    /// could name.
    #[test]
    fn peers_of_srv_0_1_read_and_write_every_address_they_know_unchanged(
        addr in address_of_0_1(),
    ) {
        let old = as_0_1(&addr);
        let ours = encode(&WorkerMessage::ListenRequest { addr: addr.clone() });
        prop_assert_eq!(&ours, &encode(&V0_1Request::ListenRequest { addr: old.clone() }));
        prop_assert_eq!(
            decode::<V0_1Request>(&ours),
            Ok(Some(V0_1Request::ListenRequest { addr: old.clone() }))
        );
        let theirs = encode(&V1MasterMessage0_1::ListenReply {
            requested: old.clone(),
            result: Ok(old),
        });
        prop_assert_eq!(
            decode::<MasterMessage>(&theirs),
            Ok(Some(MasterMessage::ListenReply { requested: addr.clone(), result: Ok(addr) }))
        );
    }

    /// A path that is not UTF-8 travels between peers of this version,
    /// and a peer of srv 0.1, which cannot name it, refuses it as a bad
    /// message rather than taking it for another address.
    #[test]
    fn a_path_that_is_not_utf8_travels_between_new_peers_and_old_ones_refuse_it(
        bytes in proptest::collection::vec(any::<u8>(), 1..128)
            .prop_filter("not UTF-8", |bytes| std::str::from_utf8(bytes).is_err()),
    ) {
        let addr = ListenAddr::Unix(PathBuf::from(OsString::from_vec(bytes)));
        let request = WorkerMessage::ListenRequest { addr: addr.clone() };
        let sent = encode(&request);
        prop_assert_eq!(decode::<WorkerMessage>(&sent), Ok(Some(request)));
        let old = decode::<V0_1Request>(&sent);
        prop_assert!(matches!(old, Err(srv_proto::DecodeError::Message(_))), "{:?}", old);
        let reply = MasterMessage::ListenReply { requested: addr.clone(), result: Ok(addr) };
        let sent = encode(&reply);
        prop_assert_eq!(decode::<MasterMessage>(&sent), Ok(Some(reply)));
        let old = decode::<V1MasterMessage0_1>(&sent);
        prop_assert!(matches!(old, Err(srv_proto::DecodeError::Message(_))), "{:?}", old);
    }
}

/// The first variants of srv 0.1's `WorkerMessage`, up to `ListenRequest`,
/// with its address type.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum V0_1Request {
    Hello { protocol_version: u32, pid: u32 },
    Online,
    ListenRequest { addr: ListenAddr0_1 },
}

/// Protocol 1's `MasterMessage` with srv 0.1's address type.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum V1MasterMessage0_1 {
    ListenReply { requested: ListenAddr0_1, result: Result<ListenAddr0_1, ListenError> },
    Disconnect,
    Refused { reason: String },
}

/// Protocol 1's worker-to-master message, variant for variant.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum V1WorkerMessage {
    Hello { protocol_version: u32, pid: u32 },
    Online,
    ListenRequest { addr: ListenAddr },
    Listening { addr: ListenAddr },
    Exit { code: i32 },
}

#[test]
fn protocol_2_adds_alive_after_the_messages_of_protocol_1_which_keep_their_bytes() {
    use srv_proto::WorkerMessage;
    let addr: ListenAddr = "127.0.0.1:8080".parse().unwrap();
    let pairs = [
        (
            WorkerMessage::Hello { protocol_version: 1, pid: 7 },
            V1WorkerMessage::Hello { protocol_version: 1, pid: 7 },
        ),
        (WorkerMessage::Online, V1WorkerMessage::Online),
        (
            WorkerMessage::ListenRequest { addr: addr.clone() },
            V1WorkerMessage::ListenRequest { addr: addr.clone() },
        ),
        (WorkerMessage::Listening { addr: addr.clone() }, V1WorkerMessage::Listening { addr }),
        (WorkerMessage::Exit { code: 3 }, V1WorkerMessage::Exit { code: 3 }),
    ];
    for (now, then) in pairs {
        assert_eq!(encode(&now), encode(&then), "{now:?}");
    }
    // A master of protocol 1 could not decode `Alive`: which is why a
    // worker sends it only to a master of protocol 2 that watches it.
    let res = decode::<V1WorkerMessage>(&encode(&WorkerMessage::Alive));
    assert!(matches!(res, Err(srv_proto::DecodeError::Message(_))), "{res:?}");
}
