//! Property test: 2-5 replicas make random inserts, updates, deletes and re-inserts on a small
//! key space and exchange bundles on a random schedule (duplicated, reordered, relayed, stale).
//! After everyone has exchanged with everyone, every replica holds the same data AND the same
//! sync state, also with every clock frozen in one millisecond. Cases: 64 by default, `SYNCLINE_PROPTEST_CASES` for more.

mod common;
use common::*;
use proptest::prelude::*;
use syncline::{Strategy as Merge, SyncEngine};
use tempfile::TempDir;

#[derive(Debug, Clone)]
enum Op {
    Insert {
        r: usize,
        id: i64,
        title: u8,
    },
    Update {
        r: usize,
        id: i64,
        col: u8,
        v: u8,
    },
    Delete {
        r: usize,
        id: i64,
    },
    /// Send a bundle from one replica to another now, or keep it to deliver later (stale).
    Send {
        from: usize,
        to: usize,
        keep: bool,
        for_peer: bool,
    },
    /// Deliver a kept bundle (reordered / duplicated delivery).
    Deliver {
        idx: usize,
        to: usize,
    },
}

fn op(n: usize) -> impl proptest::strategy::Strategy<Value = Op> {
    let r = 0..n;
    prop_oneof![
        (r.clone(), 0..4i64, any::<u8>()).prop_map(|(r, id, title)| Op::Insert { r, id, title }),
        (r.clone(), 0..4i64, 0..3u8, any::<u8>()).prop_map(|(r, id, col, v)| Op::Update { r, id, col, v }),
        (r.clone(), 0..4i64).prop_map(|(r, id)| Op::Delete { r, id }),
        (r.clone(), r.clone(), any::<bool>(), any::<bool>()).prop_map(|(from, to, keep, for_peer)| Op::Send { from, to, keep, for_peer }),
        (0..8usize, r).prop_map(|(idx, to)| Op::Deliver { idx, to }),
    ]
}

fn scenario() -> impl proptest::strategy::Strategy<Value = (usize, Vec<Op>, u8, bool)> {
    (2..=5usize).prop_flat_map(|n| (Just(n), prop::collection::vec(op(n), 1..40), 0..3u8, any::<bool>()))
}

fn run(n: usize, ops: &[Op], strategy: Merge, frozen_clock: bool) -> Result<(), TestCaseError> {
    let dir = TempDir::new().unwrap();
    let reps: Vec<SyncEngine> = (0..n).map(|i| replica(&dir, &format!("r{i}"), strategy)).collect();
    if frozen_clock {
        // Every stamp in one millisecond: order comes from counters alone.
        for r in &reps {
            r.set_manual_clock(Some(syncline::hlc::system_now_ms())).unwrap();
        }
    }
    let mut kept: Vec<(usize, Vec<u8>)> = Vec::new();
    for op in ops {
        match op {
            Op::Insert { r, id, title } => {
                reps[*r].execute(&format!("INSERT OR IGNORE INTO todos(id, title) VALUES ({id}, 't{title}')"), &[]).unwrap();
            }
            Op::Update { r, id, col, v } => {
                let col = ["title", "done", "body"][*col as usize];
                reps[*r].execute(&format!("UPDATE todos SET {col} = '{v}' WHERE id = {id}"), &[]).unwrap();
            }
            Op::Delete { r, id } => {
                reps[*r].execute(&format!("DELETE FROM todos WHERE id = {id}"), &[]).unwrap();
            }
            Op::Send { from, to, keep, for_peer } => {
                let peer = reps[*to].site_id().unwrap();
                let b = reps[*from].generate_bundle(if *for_peer { Some(&peer) } else { None }).unwrap();
                if *keep {
                    kept.push((*from, b));
                } else if from != to {
                    reps[*to].import_bundle(&b).unwrap();
                }
            }
            Op::Deliver { idx, to } => {
                // (a replica refuses its own bundles: SiteIdClash)
                if let Some((_, b)) = kept.get(*idx).filter(|(from, _)| from != to) {
                    reps[*to].import_bundle(b).unwrap();
                }
            }
        }
    }
    // Everyone exchanges with everyone until quiet (strategies that rewrite need a round more).
    for _ in 0..3 {
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    sync(&reps[i], &reps[j]);
                }
            }
        }
    }
    let want_data = todos(&reps[0]);
    let want_state = state_hash(&reps[0]);
    for (i, r) in reps.iter().enumerate().skip(1) {
        prop_assert_eq!(&todos(r), &want_data, "replica {} data differs", i);
        prop_assert_eq!(&state_hash(r), &want_state, "replica {} sync state differs", i);
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("SYNCLINE_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_under_any_delivery_order((n, ops, s, frozen) in scenario()) {
        let strategy = [Merge::Lww, Merge::PreferLocal, Merge::PreferRemote][s as usize];
        run(n, &ops, strategy, frozen)?;
    }
}
