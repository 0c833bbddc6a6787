//! Any bytes a client can put in a text frame: decoding must answer Ok or a protocol
//! error, never panic, and an error always carries a message for people.
#![no_main]

use arena_protocol::ws::ClientMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = ClientMessage::decode(text) {
            assert!(!e.message.is_empty());
        }
    }
});
