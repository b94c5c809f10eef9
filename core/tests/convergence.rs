//! Property test: 2-5 replicas make random inserts, updates, deletes and re-inserts on a small
//! key space and exchange bundles on a random schedule (duplicated, reordered, relayed, stale).
//! After everyone has exchanged with everyone, every replica holds the same data AND the same
//! sync state, also with every clock frozen in one millisecond. Cases: 64 by default, `SYNCLINE_PROPTEST_CASES` for more.
//! The second property mixes schema versions: replicas add the same column (`prio`) at
//! different times, by an ALTER of their own or a migration through Syncline, write to it once
//! they have it, and exchange meanwhile with replicas that lack it; all end equal.
//! The third adds compaction and stale peers: replicas purge acknowledged tombstones at random
//! points; a bundle refused with NeedsSnapshot changes nothing (no purged row comes back); a
//! refused replica restarts from a snapshot of the replica that refused it (the documented
//! way back), and all end with the same data.

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
    /// Replica `r` moves to schema version 2 (column `prio`): by its own ALTER, or through
    /// `add_column` (a migration that travels). Nothing when it has the column already.
    Upgrade {
        r: usize,
        migrate: bool,
    },
    /// Replica `r` purges every tombstone its known peers acknowledged (no retention).
    Compact {
        r: usize,
    },
}

const ALTER: &str = "ALTER TABLE todos ADD COLUMN prio INTEGER DEFAULT 0";

fn has_prio(e: &SyncEngine) -> bool {
    rows(e, "SELECT count(*) FROM pragma_table_info('todos') WHERE name = 'prio'")[0][0] == syncline::Value::Integer(1)
}

fn upgrade(e: &SyncEngine, migrate: bool) {
    if has_prio(e) {
        return;
    }
    if migrate {
        e.add_column("todos", "prio", "INTEGER", syncline::Value::Integer(0)).unwrap();
    } else {
        e.execute_batch(ALTER).unwrap();
    }
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

/// [`op`] with upgrades, and updates of `prio` (column 3) by replicas that have it.
fn evolving_op(n: usize) -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        4 => op(n),
        1 => (0..n, any::<bool>()).prop_map(|(r, migrate)| Op::Upgrade { r, migrate }),
        2 => (0..n, 0..4i64, any::<u8>()).prop_map(|(r, id, v)| Op::Update { r, id, col: 3, v }),
    ]
}

fn evolving_scenario() -> impl proptest::strategy::Strategy<Value = (usize, Vec<Op>, Vec<bool>)> {
    (2..=4usize).prop_flat_map(|n| (Just(n), prop::collection::vec(evolving_op(n), 1..40), prop::collection::vec(any::<bool>(), n)))
}

fn compacting_scenario() -> impl proptest::strategy::Strategy<Value = (usize, Vec<Op>)> {
    (2..=4usize).prop_flat_map(|n| {
        let op = prop_oneof![4 => op(n), 2 => (0..n).prop_map(|r| Op::Compact { r })];
        (Just(n), prop::collection::vec(op, 1..80))
    })
}

/// Import `bundle` into `to`; a `NeedsSnapshot` refusal must leave `to` exactly as it was.
/// Returns false when refused.
fn import_or_refused(to: &SyncEngine, bundle: &[u8]) -> Result<bool, TestCaseError> {
    let before = full_dump(to);
    match to.import_bundle(bundle) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == syncline::ErrorKind::NeedsSnapshot => {
            prop_assert_eq!(full_dump(to), before, "a refused bundle changed the replica");
            Ok(false)
        }
        Err(e) => Err(TestCaseError::fail(format!("import failed: {e}"))),
    }
}

fn run_compacting(n: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = TempDir::new().unwrap();
    let mut reps: Vec<SyncEngine> = (0..n).map(|i| replica(&dir, &format!("r{i}"), Merge::Lww)).collect();
    for op in ops {
        match op {
            Op::Insert { r, id, title } => {
                reps[*r].execute(&format!("INSERT OR IGNORE INTO todos(id, title) VALUES ({id}, 't{title}')"), &[]).unwrap();
            }
            Op::Update { r, id, col, v } => {
                let col = ["title", "done", "body"][(*col % 3) as usize];
                reps[*r].execute(&format!("UPDATE todos SET {col} = '{v}' WHERE id = {id}"), &[]).unwrap();
            }
            Op::Delete { r, id } => {
                reps[*r].execute(&format!("DELETE FROM todos WHERE id = {id}"), &[]).unwrap();
            }
            Op::Send { from, to, for_peer, .. } if from != to => {
                let peer = reps[*to].site_id().unwrap();
                let b = reps[*from].generate_bundle(if *for_peer { Some(&peer) } else { None }).unwrap();
                import_or_refused(&reps[*to], &b)?;
            }
            Op::Compact { r } => {
                reps[*r].compact(std::time::Duration::ZERO).unwrap();
            }
            _ => {}
        }
    }
    // Everyone exchanges with everyone; a replica refused as stale restarts from a snapshot of
    // the replica that refused it.
    let mut reseeds = 0;
    for _ in 0..4 {
        for i in 0..n {
            for j in (0..n).filter(|j| *j != i) {
                let b = reps[i].generate_bundle(Some(&reps[j].site_id().unwrap())).unwrap();
                if !import_or_refused(&reps[j], &b)? {
                    reseeds += 1;
                    let file = dir.path().join(format!("reseed{reseeds}.db"));
                    reps[j].snapshot(&file).unwrap();
                    reps[i] = SyncEngine::open(&file, syncline::Options::default()).unwrap();
                }
            }
        }
    }
    let want = todos(&reps[0]);
    for (i, r) in reps.iter().enumerate().skip(1) {
        prop_assert_eq!(&todos(r), &want, "replica {} data differs", i);
    }
    Ok(())
}

fn run(n: usize, ops: &[Op], strategy: Merge, frozen_clock: bool, finally_upgrade: Option<&[bool]>) -> Result<(), TestCaseError> {
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
                // A replica on version 2 fills the new column too.
                let sql = if finally_upgrade.is_some() && has_prio(&reps[*r]) {
                    format!("INSERT OR IGNORE INTO todos(id, title, prio) VALUES ({id}, 't{title}', {title})")
                } else {
                    format!("INSERT OR IGNORE INTO todos(id, title) VALUES ({id}, 't{title}')")
                };
                reps[*r].execute(&sql, &[]).unwrap();
            }
            Op::Update { r, id, col, v } => {
                if *col == 3 && !has_prio(&reps[*r]) {
                    continue;
                }
                let col = ["title", "done", "body", "prio"][*col as usize];
                reps[*r].execute(&format!("UPDATE todos SET {col} = '{v}' WHERE id = {id}"), &[]).unwrap();
            }
            Op::Upgrade { r, migrate } => upgrade(&reps[*r], *migrate),
            Op::Compact { r } => {
                reps[*r].compact(std::time::Duration::ZERO).unwrap();
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
    // In the end everyone runs version 2 (those that still lack the column, by either path),
    // after a round in which everyone learns what everyone holds: what a replica held for the
    // column is then sent to it no more, and must come from its own held cells.
    if let Some(finally) = finally_upgrade {
        for i in 0..n {
            for j in (0..n).filter(|j| *j != i) {
                sync(&reps[i], &reps[j]);
            }
        }
        for (r, migrate) in reps.iter().zip(finally) {
            upgrade(r, *migrate);
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
    let data = |e: &SyncEngine| {
        rows(
            e,
            if finally_upgrade.is_some() {
                "SELECT * FROM todos ORDER BY id"
            } else {
                "SELECT id, title, done, body FROM todos ORDER BY id"
            },
        )
    };
    let want_data = data(&reps[0]);
    let want_state = state_hash(&reps[0]);
    for (i, r) in reps.iter().enumerate().skip(1) {
        prop_assert_eq!(&data(r), &want_data, "replica {} data differs", i);
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
        run(n, &ops, strategy, frozen, None)?;
    }

    #[test]
    fn replicas_adding_a_column_at_different_times_converge((n, ops, finally) in evolving_scenario()) {
        run(n, &ops, Merge::Lww, false, Some(&finally))?;
    }

    #[test]
    fn compaction_never_brings_a_row_back_and_stale_peers_get_back_in((n, ops) in compacting_scenario()) {
        run_compacting(n, &ops)?;
    }
}
