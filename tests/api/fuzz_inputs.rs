//! The inputs kept under `fuzz/` (the seed corpus, and any input that once
//! failed a fuzz target) through the fuzz targets' own checks, so that
//! `cargo test` guards them without cargo-fuzz.

use std::path::Path;

#[path = "../../fuzz/src/lib.rs"]
mod checks;

/// Runs `check` on every file in `fuzz/seeds/<target>` and
/// `fuzz/regressions/<target>`; returns how many there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            eprintln!("{}", path.display());
            check(&std::fs::read(&path).unwrap());
            count += 1;
        }
    }
    count
}

#[test]
fn the_decoder_passes_the_fuzz_checks_on_every_kept_input() {
    assert!(replay("decode", checks::decode) >= 7);
}

#[test]
fn the_authorization_parser_passes_the_fuzz_checks_on_every_kept_input() {
    assert!(replay("authorization", checks::authorization) >= 7);
}
