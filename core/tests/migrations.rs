//! Migrations through Syncline (spec/schema-evolution.md): `add_column` changes the table and
//! its capture in one transaction, the migration travels in bundles (relayed unchanged), peers
//! apply it before the rows that use it, and forged or incompatible migrations are typed
//! errors that leave the receiver exactly as it was.

mod common;
use common::*;
use syncline::bundle::WireMigration;
use syncline::{ErrorKind, Strategy, Value};
use tempfile::TempDir;

fn prio(e: &syncline::SyncEngine) -> Vec<Vec<Value>> {
    rows(e, "SELECT id, prio FROM todos ORDER BY id")
}

#[test]
fn an_added_column_travels_with_its_values_and_is_relayed() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let b = replica(&dir, "b", Strategy::Lww);
    let c = replica(&dir, "c", Strategy::Lww);
    for i in 1..=2 {
        a.execute("INSERT INTO todos(id, title) VALUES (?1, 'x')", &[Value::Integer(i)]).unwrap();
    }
    sync(&a, &b);
    sync(&b, &c);
    a.add_column("todos", "prio", "integer", Value::Integer(0)).unwrap();
    a.execute("UPDATE todos SET prio = 5 WHERE id = 2", &[]).unwrap();
    let report = sync(&a, &b);
    assert_eq!((report.migrated, report.applied), (1, 1), "{report:?}");
    assert_eq!(prio(&b), vec![vec![Value::Integer(1), Value::Integer(0)], vec![Value::Integer(2), Value::Integer(5)]]);
    let change = &b.status().unwrap().schema_changes[0];
    assert_eq!((change.column.as_str(), change.decl_type.as_str(), change.source.as_str()), ("prio", "INTEGER", "remote"));
    // b captures the new column and relays the migration to c, which never met a.
    b.execute("UPDATE todos SET prio = 7 WHERE id = 1", &[]).unwrap();
    let report = sync(&b, &c);
    assert_eq!(report.migrated, 1, "{report:?}");
    assert_eq!(prio(&c), vec![vec![Value::Integer(1), Value::Integer(7)], vec![Value::Integer(2), Value::Integer(5)]]);
    sync(&b, &a);
    assert_eq!(state_hash(&a), state_hash(&b));
    assert_eq!(state_hash(&a), state_hash(&c));
    // Once known, the migration is not sent again.
    let again = syncline::bundle::decode(&a.generate_bundle(Some(&b.site_id().unwrap())).unwrap()).unwrap().header;
    assert_eq!(again.migrations, None);
}

#[test]
fn the_same_column_added_on_two_replicas_is_compatible_and_a_different_type_is_not() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let b = replica(&dir, "b", Strategy::Lww);
    a.add_column("todos", "prio", "INTEGER", Value::Integer(0)).unwrap();
    b.add_column("todos", "prio", "INTEGER", Value::Integer(0)).unwrap();
    assert_eq!(sync(&a, &b).migrated, 0);
    assert_eq!(sync(&b, &a).migrated, 0);
    let c = replica(&dir, "c", Strategy::Lww);
    c.add_column("todos", "prio", "TEXT", Value::Integer(0)).unwrap();
    let before = full_dump(&c);
    let err = c.import_bundle(&a.generate_bundle(None).unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SchemaMismatch, "{err}");
    assert!(err.message().contains("\"prio\"") && err.message().contains("type"), "{err}");
    assert_eq!(full_dump(&c), before);
    // Adding a column twice locally is refused.
    assert_eq!(a.add_column("todos", "prio", "INTEGER", Value::Null).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn forged_migrations_are_refused_and_change_nothing() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    a.add_column("todos", "prio", "INTEGER", Value::Integer(0)).unwrap();
    a.execute("INSERT INTO todos(id, title, prio) VALUES (1, 'x', 3)", &[]).unwrap();
    let good = a.generate_bundle(None).unwrap();
    let forged = |edit: &dyn Fn(&mut WireMigration)| {
        forge(&good, |c| {
            let ms = c.header.migrations.as_mut().unwrap();
            edit(&mut ms[0]);
        })
    };
    let cases: Vec<(Vec<u8>, ErrorKind)> = vec![
        (forged(&|m| m.3 = "INTEGER PRIMARY KEY".into()), ErrorKind::InvalidBundle),
        (forged(&|m| m.3 = "TEXT); DROP TABLE todos; --".into()), ErrorKind::InvalidBundle),
        (forged(&|m| m.3 = "integer".into()), ErrorKind::InvalidBundle),
        (forged(&|m| m.2 = "_syncline_x".into()), ErrorKind::InvalidBundle),
        (forged(&|m| m.2 = "a\u{0}b".into()), ErrorKind::InvalidBundle),
        (forged(&|m| m.1 = "sqlite_master".into()), ErrorKind::InvalidBundle),
        (forged(&|m| m.0 = "drop_column".into()), ErrorKind::InvalidBundle),
        (forged(&|m| m.4 = Value::Real(f64::NAN)), ErrorKind::InvalidBundle),
        (forged(&|m| m.2 = "id".into()), ErrorKind::SchemaMismatch),
        (forged(&|m| m.6 = vec![1; 15]), ErrorKind::InvalidBundle),
    ];
    for (i, (bytes, kind)) in cases.into_iter().enumerate() {
        let b = replica(&dir, &format!("b{i}"), Strategy::Lww);
        let before = full_dump(&b);
        let err = b.import_bundle(&bytes).unwrap_err();
        assert_eq!(err.kind(), kind, "case {i}: {err}");
        assert_eq!(full_dump(&b), before, "case {i}");
    }
    // And the genuine one applies.
    let b = replica(&dir, "genuine", Strategy::Lww);
    b.import_bundle(&good).unwrap();
    assert_eq!(prio(&b), vec![vec![Value::Integer(1), Value::Integer(3)]]);
}
