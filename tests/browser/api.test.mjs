// The HTTP API reference page (/api/): it renders every operation of GET /openapi.json,
// each with every status the document gives it, and every schema it names resolves to a
// section of the page; nothing it needs is refused by the Content-Security-Policy.
// Screenshot: artifacts/api-reference.png.
//
// Run: npm test (from this directory), after `cargo build -p arena-server`.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import * as h from "./harness.mjs";

const { DEADLINE } = h;
let server, browser;

before(async () => {
  mkdirSync(h.artifacts, { recursive: true });
  h.serverBinary();
  server = await new h.ArenaServer("api-page", []).start();
  browser = await h.launchBrowser();
});

after(async () => {
  await h.cleanUp(browser);
  h.assertNoTokenInUrls();
});

test("the API page shows every route of the OpenAPI document with every status it answers", async () => {
  const spec = await (await fetch(server.base + "/openapi.json")).json();
  const expected = [];
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const method of ["get", "post", "put", "patch", "delete"]) {
      if (item[method]) expected.push({ method, path, statuses: Object.keys(item[method].responses).sort() });
    }
  }
  assert.ok(expected.length >= 20, `the document has ${expected.length} operations`);

  const page = await h.newPage(browser, await browser.newContext({ viewport: { width: 1280, height: 900 } }));
  await page.goto(server.base + "/api/");
  await page.waitForSelector("body[data-ready]", { timeout: DEADLINE });
  assert.equal(Number(await page.getAttribute("body", "data-ready")), expected.length);
  const shown = await page.evaluate(() => [...document.querySelectorAll("section.operation")].map((s) => ({
    method: s.dataset.method,
    path: s.dataset.path,
    statuses: [...s.querySelectorAll("tr[data-status]")].map((r) => r.dataset.status).sort(),
  })));
  const key = (o) => o.method + " " + o.path;
  assert.deepEqual(shown.map(key).sort(), expected.map(key).sort());
  for (const o of expected) {
    assert.deepEqual(shown.find((s) => key(s) === key(o)).statuses, o.statuses, key(o));
  }
  // Every link to a schema lands on that schema's section.
  const dangling = await page.evaluate(() => [...document.querySelectorAll("a.schema-link")]
    .map((a) => a.getAttribute("href").slice(1)).filter((id) => !document.getElementById(id)));
  assert.deepEqual([...new Set(dangling)], []);
  // The login route names its error codes and the ban's 403.
  const login = page.locator("section.operation[data-path='/auth/login'][data-method='post']");
  assert.match(await login.textContent(), /invalid_credentials/);
  assert.equal(await login.locator("tr[data-status='403']").count(), 1);
  await page.screenshot({ path: join(h.artifacts, "api-reference.png") });
});
