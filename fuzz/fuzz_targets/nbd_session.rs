//! Arbitrary client bytes against a whole NBD server session (handshake,
//! options, pipelined requests): no panic, no hang, no write outside the
//! export. The same driver runs on stable in `ember-nbd`'s unit tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ember_nbd::fuzzing::run_session(data);
});
