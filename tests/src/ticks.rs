//! Reading the nodes' tick logs (`ARENA_TEST_TICK_LOG`: one line per tick a node runs,
//! `<room> <epoch> <node> <unix µs>`) to check that no room ever ran on two nodes at
//! once.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// One run: the node, and its first and last tick in unix µs.
pub type Run = (String, u64, u64);

/// The runs in the logs, by room and epoch.
pub type Runs = BTreeMap<(String, u64), Run>;

/// Read every log (a missing one is empty). A line that does not parse, or one epoch of
/// a room ticked by two nodes, is reported in the second value.
pub fn tick_runs(paths: &[PathBuf]) -> (Runs, Vec<String>) {
    let mut runs: Runs = BTreeMap::new();
    let mut problems = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let [room, epoch, node, at] = f[..] else {
                problems.push(format!("bad tick log line {line:?}"));
                continue;
            };
            let (Ok(epoch), Ok(at)) = (epoch.parse::<u64>(), at.parse::<u64>()) else {
                problems.push(format!("bad tick log line {line:?}"));
                continue;
            };
            let run = runs
                .entry((room.to_string(), epoch))
                .or_insert_with(|| (node.to_string(), at, at));
            if run.0 != node {
                problems.push(format!(
                    "epoch {epoch} of {room} ticked on {} and {node}",
                    run.0
                ));
            }
            run.1 = run.1.min(at);
            run.2 = run.2.max(at);
        }
    }
    (runs, problems)
}

/// For each room, its runs ordered by epoch must not overlap in time: the last tick of
/// one epoch comes before the first tick of the next. Each overlap, described.
pub fn overlaps(runs: &Runs) -> Vec<String> {
    let mut by_room: BTreeMap<&str, Vec<(u64, &Run)>> = BTreeMap::new();
    for ((room, epoch), run) in runs {
        by_room
            .entry(room.as_str())
            .or_default()
            .push((*epoch, run));
    }
    let mut found = Vec::new();
    for (room, runs) in &by_room {
        for pair in runs.windows(2) {
            let ((e1, (n1, _, last)), (e2, (n2, first, _))) = (pair[0], pair[1]);
            if last >= first {
                found.push(format!(
                    "room {room}: epoch {e1} on {n1} ticked until {last} µs, \
                     epoch {e2} on {n2} from {first} µs: two owners at once"
                ));
            }
        }
    }
    found
}
