//! Fleets on mixed schema versions keep syncing (spec/schema-evolution.md §5): a replica that
//! lacks a column or a table holds what it receives for it, applies the rest, relays the held
//! changes unchanged, and applies them with their original stamps once its schema has them.

mod common;
use common::*;
use syncline::{EnableOptions, MigrationPolicy, Strategy, SyncEngine, Value};
use tempfile::TempDir;

fn v2(e: &SyncEngine) {
    e.execute_batch("ALTER TABLE todos ADD COLUMN prio INTEGER DEFAULT 0").unwrap();
}

fn prio(e: &SyncEngine) -> Vec<Vec<Value>> {
    rows(e, "SELECT id, title, prio FROM todos ORDER BY id")
}

#[test]
fn a_version_one_replica_in_the_middle_relays_version_two_cells() {
    let dir = TempDir::new().unwrap();
    let (a, b, c) = (replica(&dir, "a", Strategy::Lww), replica(&dir, "b", Strategy::Lww), replica(&dir, "c", Strategy::Lww));
    v2(&a);
    v2(&c);
    a.execute("INSERT INTO todos(id, title, prio) VALUES (1, 'milk', 5), (2, 'eggs', 0)", &[]).unwrap();
    let report = sync(&a, &b);
    assert_eq!(report.held, 1, "{report:?}");
    assert_eq!(rows(&b, "SELECT id, title FROM todos ORDER BY id").len(), 2);
    let status = b.status().unwrap();
    assert_eq!((status.held_cells, status.held_rows), (1, 0));
    // b edits the row meanwhile; c never meets a.
    b.execute("UPDATE todos SET title = 'oat milk' WHERE id = 1", &[]).unwrap();
    sync(&b, &c);
    let want = vec![
        vec![Value::Integer(1), Value::Text("oat milk".into()), Value::Integer(5)],
        vec![Value::Integer(2), Value::Text("eggs".into()), Value::Integer(0)],
    ];
    assert_eq!(prio(&c), want);
    // b upgrades: the held cell applies with its original stamp.
    v2(&b);
    assert_eq!(b.status().unwrap().held_cells, 0);
    assert_eq!(prio(&b), want);
    sync(&b, &a);
    assert_eq!(prio(&a), want);
    assert_eq!(state_hash(&a), state_hash(&b));
    assert_eq!(state_hash(&b), state_hash(&c));
}

#[test]
fn a_held_cell_older_than_a_later_local_write_loses_and_a_dead_one_is_dropped() {
    let dir = TempDir::new().unwrap();
    let (a, b) = (replica(&dir, "a", Strategy::Lww), replica(&dir, "b", Strategy::Lww));
    v2(&a);
    a.execute("INSERT INTO todos(id, title, prio) VALUES (1, 'x', 5), (2, 'y', 6)", &[]).unwrap();
    sync(&a, &b);
    assert_eq!(b.status().unwrap().held_cells, 2);
    // Row 2 is deleted at a: its held cell dies with its incarnation.
    a.execute("DELETE FROM todos WHERE id = 2", &[]).unwrap();
    sync(&a, &b);
    // b upgrades and writes row 1's prio itself, later than a did.
    v2(&b);
    b.execute("UPDATE todos SET prio = 9 WHERE id = 1", &[]).unwrap();
    sync(&b, &a);
    sync(&a, &b);
    assert_eq!(prio(&a), vec![vec![Value::Integer(1), Value::Text("x".into()), Value::Integer(9)]]);
    assert_eq!(prio(&b), prio(&a));
    assert_eq!(state_hash(&a), state_hash(&b));
}

#[test]
fn rows_of_a_table_not_enabled_here_are_held_relayed_and_applied_on_enable() {
    let dir = TempDir::new().unwrap();
    const TAGS: &str = "CREATE TABLE tags(id TEXT PRIMARY KEY, name TEXT)";
    let (a, b, c) = (replica(&dir, "a", Strategy::Lww), replica(&dir, "b", Strategy::Lww), replica(&dir, "c", Strategy::Lww));
    for e in [&a, &c] {
        e.execute_batch(TAGS).unwrap();
        e.enable_sync("tags", EnableOptions::default()).unwrap();
    }
    a.execute("INSERT INTO tags VALUES ('t1', 'home'), ('t2', 'work')", &[]).unwrap();
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'x')", &[]).unwrap();
    a.execute("DELETE FROM tags WHERE id = 't2'", &[]).unwrap();
    let report = sync(&a, &b);
    assert_eq!(report.held, 2 + 1, "{report:?}"); // two row states, one live cell
    assert_eq!(rows(&b, "SELECT count(*) FROM todos"), vec![vec![Value::Integer(1)]]);
    assert_eq!(b.status().unwrap().held_rows, 2);
    sync(&b, &c);
    assert_eq!(rows(&c, "SELECT * FROM tags"), vec![vec![Value::Text("t1".into()), Value::Text("home".into())]]);
    b.execute_batch(TAGS).unwrap();
    b.enable_sync("tags", EnableOptions::default()).unwrap();
    assert_eq!(rows(&b, "SELECT * FROM tags"), vec![vec![Value::Text("t1".into()), Value::Text("home".into())]]);
    let status = b.status().unwrap();
    assert_eq!((status.held_cells, status.held_rows), (0, 0));
    sync(&b, &a);
    assert_eq!(state_hash(&a), state_hash(&b));
    assert_eq!(state_hash(&b), state_hash(&c));
}

#[test]
fn a_held_migration_waits_for_the_app_and_its_cells_with_it() {
    let dir = TempDir::new().unwrap();
    let (a, b) = (replica(&dir, "a", Strategy::Lww), replica(&dir, "b", Strategy::Lww));
    b.set_migration_policy(MigrationPolicy::Hold).unwrap();
    assert_eq!(b.migration_policy().unwrap(), MigrationPolicy::Hold);
    a.add_column("todos", "prio", "INTEGER", Value::Integer(0)).unwrap();
    a.execute("INSERT INTO todos(id, title, prio) VALUES (1, 'x', 4)", &[]).unwrap();
    let report = sync(&a, &b);
    assert_eq!((report.migrated, report.held), (0, 1), "{report:?}");
    let status = b.status().unwrap();
    assert_eq!(status.schema_changes[0].state, "held");
    assert_eq!(status.held_cells, 1);
    assert_eq!(rows(&b, "SELECT count(*) FROM pragma_table_info('todos') WHERE name = 'prio'"), vec![vec![Value::Integer(0)]]);
    assert_eq!(b.apply_held_migrations().unwrap(), 1);
    let status = b.status().unwrap();
    assert_eq!((status.schema_changes[0].state.as_str(), status.held_cells), ("applied", 0));
    assert_eq!(prio(&b), vec![vec![Value::Integer(1), Value::Text("x".into()), Value::Integer(4)]]);
    assert_eq!(state_hash(&a), state_hash(&b));
}
