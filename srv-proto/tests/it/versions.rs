//! Peers of different protocol versions: what a master of this crate sends a
//! worker of protocol 1 decodes with protocol 1's own types, and what a
//! master of protocol 1 sends decodes here.
//!
//! [`V1MasterMessage`] is protocol 1's `MasterMessage` as it was released
//! (frozen here: it must never change), so these tests are the old decoder,
//! not this crate's idea of it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use srv_proto::{Decoder, ListenAddr, ListenError, MasterMessage, frame};

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
