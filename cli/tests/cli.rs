//! The `syncline` binary end to end: every subcommand, text and JSON output, and a one-line
//! error with a non-zero exit code on bad input.

use std::path::Path;
use std::process::{Command, Output};

fn syncline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_syncline")).args(args).output().expect("run syncline")
}

fn ok(args: &[&str]) -> String {
    let out = syncline(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(&all)).expect("valid JSON")
}

fn sqlite(db: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(sql).unwrap();
}

#[test]
fn init_export_import_status_conflicts_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    let b = dir.path().join("b.db");
    for db in [&a, &b] {
        sqlite(db, "CREATE TABLE notes(id TEXT PRIMARY KEY, body TEXT)");
    }
    let init = json(&["init", a.to_str().unwrap(), "--table", "notes", "--strategy", "manual"]);
    assert_eq!(init["enabled"][0], "notes");
    json(&["init", b.to_str().unwrap(), "--table", "notes", "--strategy", "manual"]);
    let b_site = json(&["site-id", b.to_str().unwrap()])["site_id"].as_str().unwrap().to_owned();
    let a_site = json(&["site-id", a.to_str().unwrap()])["site_id"].as_str().unwrap().to_owned();

    sqlite(&a, "INSERT INTO notes VALUES ('n1', 'hello')");
    let bundle = dir.path().join("a-to-b.bundle");
    let exp = json(&["export", a.to_str().unwrap(), "--peer", &b_site, "-o", bundle.to_str().unwrap()]);
    assert_eq!(exp["rows"], 1);
    let imp = json(&["import", b.to_str().unwrap(), bundle.to_str().unwrap()]);
    assert_eq!(imp["applied"], 2);
    assert_eq!(imp["sender"], a_site.as_str());
    let text = ok(&["import", b.to_str().unwrap(), bundle.to_str().unwrap()]);
    assert!(text.contains("0 applied, 2 already known"), "{text}");

    // b -> a so a knows b; then concurrent edits and a conflict on b
    let back = dir.path().join("b-to-a.bundle");
    ok(&["export", b.to_str().unwrap(), "--peer", &a_site, "-o", back.to_str().unwrap()]);
    ok(&["import", a.to_str().unwrap(), back.to_str().unwrap()]);
    sqlite(&a, "UPDATE notes SET body = 'from a' WHERE id = 'n1'");
    sqlite(&b, "UPDATE notes SET body = 'from b' WHERE id = 'n1'");
    ok(&["export", a.to_str().unwrap(), "--peer", &b_site, "-o", bundle.to_str().unwrap(), "--compress"]);
    let imp = json(&["import", b.to_str().unwrap(), bundle.to_str().unwrap()]);
    assert_eq!(imp["conflicts"], 1);
    let conflicts = json(&["conflicts", b.to_str().unwrap()]);
    assert_eq!(conflicts[0]["local"]["value"], "from b");
    assert_eq!(conflicts[0]["remote"]["value"], "from a");
    let id = conflicts[0]["id"].as_i64().unwrap().to_string();
    assert!(ok(&["conflicts", b.to_str().unwrap()]).contains("\"from b\""));

    let status = json(&["status", b.to_str().unwrap()]);
    assert_eq!(status["unresolved_conflicts"], 1);
    assert_eq!(status["tables"][0]["name"], "notes");
    assert_eq!(status["peers"][0]["site_id"], a_site.as_str());
    assert!(ok(&["status", b.to_str().unwrap()]).contains("1 unresolved"));

    json(&["resolve", b.to_str().unwrap(), &id, "--value", "\"merged\""]);
    let status = json(&["status", b.to_str().unwrap()]);
    assert_eq!(status["unresolved_conflicts"], 0);
    assert!(status["peers"][0]["pending"].as_u64().unwrap() >= 1, "the resolution waits for a: {status}");
    ok(&["export", b.to_str().unwrap(), "--peer", &a_site, "-o", back.to_str().unwrap()]);
    ok(&["import", a.to_str().unwrap(), back.to_str().unwrap()]);
    let conn = rusqlite::Connection::open(&a).unwrap();
    let body: String = conn.query_row("SELECT body FROM notes WHERE id = 'n1'", [], |r| r.get(0)).unwrap();
    assert_eq!(body, "merged");

    let reset = json(&["site-id", a.to_str().unwrap(), "--reset"]);
    assert_ne!(reset["site_id"], a_site.as_str());
}

#[test]
fn errors_are_one_line_with_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    let junk = dir.path().join("junk.bundle");
    std::fs::write(&junk, b"not a bundle").unwrap();
    ok(&["init", a.to_str().unwrap()]); // only init creates a database
    let out = syncline(&["import", a.to_str().unwrap(), junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: InvalidBundle:"), "{err}");

    let out = syncline(&["init", a.to_str().unwrap(), "--table", "missing", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(doc["error"], "UnknownTable");

    let out = syncline(&["resolve", a.to_str().unwrap(), "99", "--local"]);
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: NotFound:"));
    let out = syncline(&["export", a.to_str().unwrap(), "--peer", "xyz", "-o", "/dev/null"]);
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: InvalidArgument:"));
    let out = syncline(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_demo_converges() {
    let out = json(&["demo"]);
    assert_eq!(out["converged"], true);
    assert_eq!(out["open_conflicts"], 0);
}

#[test]
fn migrate_adds_a_column_that_travels() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    let b = dir.path().join("b.db");
    for db in [&a, &b] {
        sqlite(db, "CREATE TABLE todos(id TEXT PRIMARY KEY, title TEXT)");
        ok(&["init", db.to_str().unwrap(), "--table", "todos"]);
    }
    sqlite(&a, "INSERT INTO todos VALUES ('t1', 'milk')");
    let text = ok(&["migrate", a.to_str().unwrap(), "--table", "todos", "--add-column", "prio", "--type", "INTEGER", "--default", "0"]);
    assert!(text.contains("added column prio INTEGER to todos"), "{text}");
    sqlite(&a, "UPDATE todos SET prio = 5");
    let bundle = dir.path().join("a.bundle");
    ok(&["export", a.to_str().unwrap(), "-o", bundle.to_str().unwrap()]);
    let imp = json(&["import", b.to_str().unwrap(), bundle.to_str().unwrap()]);
    assert_eq!(imp["migrated"], 1);
    let conn = rusqlite::Connection::open(&b).unwrap();
    let p: i64 = conn.query_row("SELECT prio FROM todos WHERE id = 't1'", [], |r| r.get(0)).unwrap();
    assert_eq!(p, 5);
    let status = json(&["status", b.to_str().unwrap()]);
    assert_eq!(status["schema_changes"][0]["column"], "prio");
    assert_eq!(status["schema_changes"][0]["source"], "remote");
    // A type that smuggles a constraint is one line of error, and nothing changes.
    let out = syncline(&["migrate", a.to_str().unwrap(), "-t", "todos", "--add-column", "x", "--type", "TEXT UNIQUE"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: InvalidArgument:"));
}
