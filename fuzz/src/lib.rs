//! The fuzz targets' checks. They live in `checks.rs`, which `core/tests/fuzz_regressions.rs`
//! includes too, so a committed crash input is replayed by `cargo test` through the very same
//! code the fuzzer ran.

#[path = "checks.rs"]
pub mod checks;

pub use checks::*;
