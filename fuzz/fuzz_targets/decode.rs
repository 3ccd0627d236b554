#![no_main]
//! The request decoder on arbitrary bodies: no panic, no hang, and the
//! checks in `src/lib.rs`.

libfuzzer_sys::fuzz_target!(|body: &[u8]| peerdb_mirror_logs_fuzz::decode(body));
