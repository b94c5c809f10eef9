#![no_main]
//! Import into a real database: never panics; a refused bundle changes nothing; an accepted one
//! leaves a replica that still works.
use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};

static REPLICA: OnceLock<Mutex<syncline_fuzz::Replica>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let replica = REPLICA.get_or_init(|| Mutex::new(syncline_fuzz::Replica::new()));
    let mut replica = replica.lock().unwrap_or_else(|p| p.into_inner());
    replica.check_import(&syncline_fuzz::frame(data));
});
