#![no_main]
//! The sync client's handling of what a server answers to `POST /v1/sync`.
use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};

static CLIENT: OnceLock<Mutex<syncline_fuzz::Client>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let client = CLIENT.get_or_init(|| Mutex::new(syncline_fuzz::Client::start()));
    client.lock().unwrap_or_else(|p| p.into_inner()).check(data);
});
