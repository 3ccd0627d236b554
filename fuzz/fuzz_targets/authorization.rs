#![no_main]
//! The `Authorization` parser on arbitrary header bytes: no panic, no
//! hang, and the checks in `src/lib.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerdb_mirror_logs_fuzz::authorization(data));
