//! The randomized fault run (`arena_tests::chaos`): 60 s by default, or
//! `ARENA_CHAOS_SECS`; `ARENA_CHAOS_SEED` repeats a run's choices; `ARENA_CHAOS_REPORT`
//! names a file for the JSON report (`bench/chaos.sh` runs it for 30 minutes). It fails
//! on any violation of the promises, listing them.

use std::time::Duration;

use arena_tests::chaos::{run, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_promises_hold_under_random_faults() {
    let secs = std::env::var("ARENA_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed = std::env::var("ARENA_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
    println!("chaos: {secs} s, seed {seed} (ARENA_CHAOS_SEED={seed} repeats its choices)");
    let report = run(Options {
        duration: Duration::from_secs(secs),
        players: 6,
        seed,
    })
    .await;
    let text = serde_json::to_string_pretty(&report).expect("report");
    if let Ok(path) = std::env::var("ARENA_CHAOS_REPORT") {
        std::fs::write(&path, &text).expect("write the report");
    }
    println!("faults by kind: {:?}", report.fault_counts);
    println!("operations: {:?}", report.ops);
    println!("room runs: {}", report.room_runs);
    assert!(
        report.violations.is_empty(),
        "{} violation(s):\n{}",
        report.violations.len(),
        report.violations.join("\n")
    );
    assert!(
        report.faults.len() as u64 >= secs / 5,
        "too few faults injected: {:?}",
        report.fault_counts
    );
}
