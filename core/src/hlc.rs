//! Hybrid logical clock: one `u64` = 48 bits of Unix milliseconds and a 16-bit counter.
//!
//! The send rule is `next = max(last + 1, now_ms << 16)`: [`next`] stamps captured writes in
//! write order, and [`sql_next`] is the same expression for stamps issued inside SQL.
//! Encoded fixed-width big-endian, byte order equals logical order (spec/hlc.md).

use std::time::{SystemTime, UNIX_EPOCH};

/// Bits of the logical counter.
pub const COUNTER_BITS: u32 = 16;
/// Largest millisecond value that fits in 48 bits.
pub const MAX_MILLIS: u64 = (1 << 48) - 1;

/// Wall-clock milliseconds from SQLite: the capture triggers record `julianday('now')`, which
/// works on every SQLite version an app may link (`unixepoch('subsec')` needs 3.42), and
/// stamps use it converted by this expression.
/// `manual_ms` is a column of `_syncline_clock`: a fixed clock for tests and replays.
pub const SQL_NOW_MS: &str = "coalesce(manual_ms, CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER))";

/// The send rule as an SQL expression over the `_syncline_clock` row, whose `local` is the
/// last stamp issued here and `seen` the newest remote stamp received.
pub fn sql_next() -> String {
    format!("max(max(local, seen) + 1, {SQL_NOW_MS} << {COUNTER_BITS})")
}

/// The send rule in Rust; the same expression as [`sql_next`].
pub fn next(last: u64, now_ms: u64) -> u64 {
    std::cmp::max(last + 1, now_ms << COUNTER_BITS)
}

/// Pack milliseconds and counter into one stamp.
pub fn pack(millis: u64, counter: u16) -> u64 {
    (millis.min(MAX_MILLIS) << COUNTER_BITS) | u64::from(counter)
}

/// The millisecond part of a stamp.
pub fn millis(hlc: u64) -> u64 {
    hlc >> COUNTER_BITS
}

/// The counter part of a stamp.
pub fn counter(hlc: u64) -> u16 {
    (hlc & 0xFFFF) as u16
}

/// Fixed-width big-endian encoding: byte order equals logical order.
pub fn encode(hlc: u64) -> [u8; 8] {
    hlc.to_be_bytes()
}

/// Inverse of [`encode`].
pub fn decode(bytes: [u8; 8]) -> u64 {
    u64::from_be_bytes(bytes)
}

/// The system wall clock in Unix milliseconds.
pub fn system_now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Receive rule check: how far (in ms) `remote` lies beyond `now_ms + max_drift_ms`, if at all.
pub fn drift_excess(remote: u64, now_ms: u64, max_drift_ms: u64) -> Option<u64> {
    let remote_ms = millis(remote);
    let limit = now_ms.saturating_add(max_drift_ms);
    (remote_ms > limit).then(|| remote_ms - now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_roundtrip_and_order() {
        let a = pack(1_700_000_000_000, 5);
        assert_eq!(millis(a), 1_700_000_000_000);
        assert_eq!(counter(a), 5);
        let b = pack(1_700_000_000_000, 6);
        let c = pack(1_700_000_000_001, 0);
        assert!(a < b && b < c);
        assert!(encode(a) < encode(b) && encode(b) < encode(c));
        assert_eq!(decode(encode(c)), c);
    }

    #[test]
    fn next_is_strictly_increasing_past_counter_overflow() {
        let mut last = pack(1000, 0);
        for _ in 0..70_000 {
            let n = next(last, 1000);
            assert!(n > last);
            last = n;
        }
        // the counter carried into the millisecond field
        assert!(millis(last) > 1000);
    }

    #[test]
    fn next_never_goes_back_when_the_clock_is_set_back() {
        let last = pack(5_000, 10);
        let n = next(last, 1_000);
        assert_eq!(n, last + 1);
    }

    #[test]
    fn drift() {
        let now = 1_000_000;
        assert_eq!(drift_excess(pack(now + 10, 0), now, 60_000), None);
        assert_eq!(drift_excess(pack(now + 70_000, 0), now, 60_000), Some(70_000));
    }
}
