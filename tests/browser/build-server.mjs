// `npm test` runs this first (pretest): build the debug arena-server outside any test's
// timeout, so that a rebuild after a source change cannot make the first test file time
// out. Skipped when ARENA_SERVER_BIN names a binary to use instead.
import { spawnSync } from "node:child_process";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

if (!process.env.ARENA_SERVER_BIN) {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
  const build = spawnSync("cargo", ["build", "-q", "-p", "arena-server"], { cwd: root, stdio: "inherit" });
  process.exit(build.status ?? 1);
}
