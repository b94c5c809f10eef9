//! Helpers shared by the CLI's integration tests: a `todos` replica, its ids, waiting for a
//! condition, and the URL a starting `syncline serve` prints on its first line.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};
use syncline::{EnableOptions, Options, SyncEngine, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_syncline");
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS todos(id TEXT PRIMARY KEY, title TEXT)";

pub fn replica(path: &Path) -> SyncEngine {
    let e = SyncEngine::open(path, Options::default()).unwrap();
    e.execute_batch(SCHEMA).unwrap();
    e.enable_sync("todos", EnableOptions::default()).unwrap();
    e
}

pub fn ids(e: &SyncEngine) -> Vec<String> {
    e.query("SELECT id FROM todos ORDER BY id", &[])
        .unwrap()
        .rows
        .into_iter()
        .map(|r| match &r[0] {
            Value::Text(t) => t.clone(),
            v => panic!("{v:?}"),
        })
        .collect()
}

pub fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The URL a `syncline serve` child (stdout piped) announces: "listening on URL".
pub fn listening(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_owned()
}
