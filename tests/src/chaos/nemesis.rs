//! The nemesis: one fault at a time, each healed before the next.

use std::time::{Duration, Instant};

use super::world::{NodeState, Shared};
use super::{FaultRecord, NODES};
use crate::cluster::Cluster;
use crate::*;

/// Inject faults one at a time until `duration` has passed, healing each.
pub(super) async fn nemesis(
    shared: &Shared,
    c: &mut Cluster,
    duration: Duration,
) -> Vec<FaultRecord> {
    let mut faults = Vec::new();
    let mut last_restore: Option<Instant> = None;
    while shared.t0.elapsed() < duration {
        tokio::time::sleep(shared.millis(800, 2000)).await;
        let started = Instant::now();
        let node = shared.rand(NODES);
        let kind = match shared.rand(5) {
            0 => {
                set_state(shared, node, NodeState::Down, None);
                c.kill(node).await;
                tokio::time::sleep(shared.millis(300, 1500)).await;
                c.restart(node).await;
                set_state(shared, node, NodeState::Up, Some(c.node(node).addr.clone()));
                "node SIGKILLed and restarted"
            }
            1 => {
                let pid = c.node(node).pid();
                signal(pid, "STOP");
                set_state(shared, node, NodeState::Paused, None);
                shared.pauses.lock().unwrap().push((node, started, None));
                tokio::time::sleep(shared.millis(500, 3000)).await;
                signal(pid, "CONT");
                if let Some(p) = shared.pauses.lock().unwrap().last_mut() {
                    p.2 = Some(Instant::now());
                }
                set_state(shared, node, NodeState::Up, None);
                "node paused (SIGSTOP) and continued"
            }
            2 => {
                // Half the time a snapshot first, so that the restart restores leases,
                // eras and memberships of a moment ago rather than nothing.
                if shared.rand(2) == 0 {
                    c.dep.redis.save().await;
                    tokio::time::sleep(shared.millis(100, 1500)).await;
                }
                c.dep.redis.kill().await;
                tokio::time::sleep(shared.millis(100, 1000)).await;
                c.dep.redis.restart().await;
                "Redis SIGKILLed and restarted from its snapshot"
            }
            3 => {
                c.links(node).0.cut();
                tokio::time::sleep(shared.millis(500, 4000)).await;
                c.links(node).0.restore();
                "node's database link cut and restored"
            }
            _ if last_restore.is_some_and(|t| t.elapsed() < Duration::from_secs(20)) => continue,
            _ => {
                last_restore = Some(started);
                restore_from_dump(shared, c).await;
                "database restored from a dump"
            }
        };
        let node = (!kind.starts_with("Redis") && !kind.starts_with("database")).then_some(node);
        faults.push(FaultRecord {
            at_ms: started.duration_since(shared.t0).as_millis() as u64,
            kind,
            node,
            lasted_ms: started.elapsed().as_millis() as u64,
        });
        eprintln!(
            "chaos {:>6} ms: {kind}{}",
            started.duration_since(shared.t0).as_millis(),
            node.map(|n| format!(" (node {n})")).unwrap_or_default()
        );
    }
    faults
}

fn set_state(shared: &Shared, node: usize, state: NodeState, addr: Option<String>) {
    shared.states.lock().unwrap()[node] = state;
    shared.changed.lock().unwrap()[node] = Instant::now();
    match state {
        NodeState::Down => shared.addrs.write().unwrap()[node] = None,
        _ if addr.is_some() => shared.addrs.write().unwrap()[node] = addr,
        _ => {}
    }
}

/// `pg_dump` the database, let the cluster go on for a moment (what it commits then is
/// what the restore loses), then drop it and restore the dump over it, as an operator
/// restoring last night's backup would.
async fn restore_from_dump(shared: &Shared, c: &Cluster) {
    let started = Instant::now();
    shared.restores.lock().unwrap().push((started, None));
    let name = c.dep.db.name.clone();
    let dump = std::env::temp_dir().join(format!("{}.dump", unique("arena-chaos")));
    let ok = run_cmd(
        "pg_dump",
        &["-h", "127.0.0.1", "-U", "postgres", "-Fc", "-f"],
        &dump,
        &name,
    );
    if ok {
        tokio::time::sleep(shared.millis(200, 1500)).await;
        psql(&format!("DROP DATABASE {name} WITH (FORCE)"));
        psql(&format!("CREATE DATABASE {name}"));
        run_cmd(
            "pg_restore",
            &["-h", "127.0.0.1", "-U", "postgres", "-d", &name],
            &dump,
            "",
        );
    }
    let _ = std::fs::remove_file(&dump);
    // Answers may still be in flight from before the restore: keep the window open a
    // little past its end.
    tokio::time::sleep(Duration::from_millis(200)).await;
    if let Some(r) = shared.restores.lock().unwrap().last_mut() {
        r.1 = Some(Instant::now());
    }
}

fn run_cmd(cmd: &str, args: &[&str], file: &std::path::Path, last: &str) -> bool {
    let mut command = std::process::Command::new(cmd);
    command.args(args).arg(file);
    if !last.is_empty() {
        command.arg(last);
    }
    command.output().is_ok_and(|o| o.status.success())
}
