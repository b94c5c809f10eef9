#![no_main]
//! The sync server's HTTP handling: raw requests, pushes, info requests with fuzzed headers.
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static SERVER: OnceLock<syncline_fuzz::Server> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    SERVER.get_or_init(syncline_fuzz::Server::start).check(data);
});
