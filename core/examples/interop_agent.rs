//! The Rust interop agent (spec/vectors/README.md §Interop script):
//! `interop_agent export interop.json OUT.bundle` / `interop_agent import interop.json IN.bundle`,
//! each printing the replica's state hash.

use serde_json::Value as Json;
use syncline::{EnableOptions, Options, SiteId, Strategy, SyncEngine};

fn replica(dir: &std::path::Path, spec: &Json, role: &str) -> syncline::Result<SyncEngine> {
    let e = SyncEngine::open(dir.join(format!("{role}.db")), Options::default())?;
    let who = &spec[role];
    e.set_site_id(who["site"].as_str().unwrap_or_default().parse::<SiteId>()?)?;
    e.set_manual_clock(who["clock_ms"].as_u64())?;
    for sql in spec["schema"].as_array().into_iter().flatten() {
        e.execute_batch(sql.as_str().unwrap_or_default())?;
    }
    for (table, strategy) in spec["tables"].as_object().into_iter().flatten() {
        let strategy: Strategy = strategy.as_str().unwrap_or_default().parse()?;
        e.enable_sync(table, EnableOptions { strategy, ..Default::default() })?;
    }
    Ok(e)
}

fn main() -> syncline::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, command, spec_path, bundle] = args.as_slice() else {
        eprintln!("usage: interop_agent export|import interop.json BUNDLE");
        std::process::exit(2);
    };
    let spec: Json = serde_json::from_str(&std::fs::read_to_string(spec_path)?).expect("interop.json is JSON");
    let dir = tempfile::tempdir()?;
    let hash = match command.as_str() {
        "export" => {
            let e = replica(dir.path(), &spec, "writer")?;
            for step in spec["steps"].as_array().into_iter().flatten() {
                if let Some(sql) = step["sql"].as_str() {
                    e.execute(sql, &[])?;
                }
                if let Some(ms) = step["clock_ms"].as_u64() {
                    e.set_manual_clock(Some(ms))?;
                }
            }
            std::fs::write(bundle, e.generate_bundle(None)?)?;
            e.state_hash()?
        }
        "import" => {
            let e = replica(dir.path(), &spec, "reader")?;
            e.import_bundle_file(bundle)?;
            e.state_hash()?
        }
        other => {
            eprintln!("unknown command {other}");
            std::process::exit(2);
        }
    };
    println!("{hash}");
    Ok(())
}
