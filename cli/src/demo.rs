//! `syncline demo`: three replicas in a temporary folder edit offline, exchange bundles,
//! converge, and a manual conflict is shown and resolved.

use crate::output::Out;
use syncline::{EnableOptions, Error, ErrorKind, Options, Resolution, Strategy, SyncEngine, Value};

fn table(e: &SyncEngine) -> Result<String, Error> {
    let rows = e.query("SELECT id, title, done, note FROM todos ORDER BY id", &[])?;
    Ok(rows.rows.iter().map(|r| format!("    {:<3} {:<22} done={} note={}", r[0], r[1], r[2], r[3])).collect::<Vec<_>>().join("\n"))
}

fn exchange(from: &SyncEngine, to: &SyncEngine) -> Result<syncline::ImportReport, Error> {
    let bundle = from.generate_bundle(Some(&to.site_id()?))?;
    to.import_bundle(&bundle)
}

/// Every replica sends every other what it lacks, twice round (so relayed changes arrive too).
fn exchange_all(replicas: &[(&str, SyncEngine)]) -> Result<(), Error> {
    for _ in 0..2 {
        for (i, (_, from)) in replicas.iter().enumerate() {
            for (j, (_, to)) in replicas.iter().enumerate() {
                if i != j {
                    exchange(from, to)?;
                }
            }
        }
    }
    Ok(())
}

pub fn run(out: &Out) -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?;
    let say = |s: String| {
        if !out.json {
            println!("{s}");
        }
    };
    say(format!("Three replicas in {}\n", dir.path().display()));
    let mut replicas = Vec::new();
    for name in ["laptop", "phone", "tablet"] {
        let e = SyncEngine::open(dir.path().join(format!("{name}.db")), Options::default())?;
        e.execute_batch("CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT, done INTEGER NOT NULL DEFAULT 0, note TEXT)")?;
        e.enable_sync("todos", EnableOptions { strategy: Strategy::Manual, ..Default::default() })?;
        replicas.push((name, e));
    }
    let (laptop, phone, tablet) = (&replicas[0].1, &replicas[1].1, &replicas[2].1);
    laptop.execute("INSERT INTO todos(id, title) VALUES (1, 'buy milk'), (2, 'call mum'), (3, 'file taxes')", &[])?;
    for (_, e) in &replicas[1..] {
        exchange(laptop, e)?;
    }
    say("1. laptop wrote three todos and every replica imported them.\n".into());

    say("2. Offline edits, each on another column or row:".into());
    laptop.execute("UPDATE todos SET title = 'buy oat milk' WHERE id = 1", &[])?;
    phone.execute("UPDATE todos SET done = 1 WHERE id = 1", &[])?;
    tablet.execute("UPDATE todos SET note = 'before Friday' WHERE id = 3", &[])?;
    phone.execute("INSERT INTO todos(id, title) VALUES (4, 'water plants')", &[])?;
    tablet.execute("DELETE FROM todos WHERE id = 2", &[])?;
    say("   laptop renames #1, phone ticks #1 and adds #4, tablet notes #3 and deletes #2\n".into());

    exchange_all(&replicas)?;
    say("3. After exchanging bundles every replica holds the same table:".into());
    for (name, e) in &replicas {
        say(format!("  {name}:\n{}", table(e)?));
    }

    say("\n4. The same cell edited on two replicas (the table uses the manual strategy):".into());
    laptop.execute("UPDATE todos SET title = 'buy milk and bread' WHERE id = 1", &[])?;
    phone.execute("UPDATE todos SET title = 'buy almond milk' WHERE id = 1", &[])?;
    let report = exchange(phone, laptop)?;
    let conflicts = laptop.conflicts()?;
    say(format!("   laptop imported phone's bundle: {} conflict(s) recorded", report.conflicts));
    for c in &conflicts {
        say(format!("   #{} todos.{}: local {} vs remote {}", c.id.unwrap_or(0), c.column, c.local.value, c.remote.value));
    }
    let Some(first) = conflicts.first() else {
        return Err(Error::new(ErrorKind::NotFound, "the demo expected a conflict"));
    };
    laptop.resolve(first.id.unwrap_or(0), Resolution::Value(Value::Text("buy milk, bread and almond milk".into())))?;
    exchange_all(&replicas)?;
    say("   resolved on laptop with a merged title; after the next exchange:".into());
    for (name, e) in &replicas {
        say(format!("  {name}:\n{}", table(e)?));
    }
    let first_table = table(laptop)?;
    let converged = replicas.iter().all(|(_, e)| table(e).map(|t| t == first_table).unwrap_or(false));
    let open: usize = replicas.iter().map(|(_, e)| e.conflicts().map(|c| c.len()).unwrap_or(0)).sum();
    if out.json {
        println!("{}", serde_json::json!({ "converged": converged, "open_conflicts": open }));
    } else {
        println!("\nconverged: {converged}, open conflicts: {open}");
    }
    if !converged {
        return Err(Error::new(ErrorKind::Sqlite, "the replicas did not converge"));
    }
    Ok(())
}
