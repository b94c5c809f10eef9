#![no_main]
//! The bundle decoder: never panics; a bundle that decodes fully re-encodes to the same bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    syncline_fuzz::check_decode(&syncline_fuzz::frame(data));
});
