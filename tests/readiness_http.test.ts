// The readiness function's HTTP surface on a real database, with a real Chatwoot stand-in on loopback.
import assert from "node:assert/strict";
import { dbIndependentTest, dbTest, HOLDS_DB, startTestDb, type TestDb } from "./_db.ts";
import {
  ADMIN_TOKEN,
  ensureDeliveryHealthView,
  fullEnv,
  SEED_PATH,
  setAllItems,
  STAND_IN_TOKEN,
  startChatwootStandIn,
  storeVerifiedWebhook,
} from "./_readiness.ts";
import {
  createReadinessApp,
  MAX_PATCH_BYTES,
  parsePatch,
  type ReadinessDeps,
} from "../supabase/functions/_shared/readiness.ts";
import { secretValues, withoutSecrets } from "../supabase/functions/_shared/env.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { connect } from "../supabase/functions/_shared/db.ts";
import { startDbProxy } from "./_proxy.ts";
import { documentBody, parseMarkdown } from "../supabase/functions/_shared/readiness_markdown.ts";
import { sha256Hex } from "../supabase/functions/_shared/signature.ts";
import { STATUSES } from "../supabase/functions/_shared/readiness_model.ts";

const db: TestDb = await startTestDb();
const chatwoot = startChatwootStandIn();

function app(extra: Partial<ReadinessDeps> = {}, env = fullEnv(chatwoot.url)) {
  return createReadinessApp({
    sql: db.sql,
    env,
    log: memoryLogger(),
    cacheMs: 0,
    checkTimeoutMs: 10_000, // generous: nothing here tests the timeout, and a loaded machine must not fail a check
    ...extra,
  });
}

// deno-lint-ignore no-explicit-any
type Json = any;

async function getJson(
  a: ReturnType<typeof app>,
  path = "/readiness",
): Promise<{ status: number; body: Json }> {
  const res = await a.request(path);
  return { status: res.status, body: await res.json() };
}

function patch(a: ReturnType<typeof app>, key: string, body: unknown, token: string | null = ADMIN_TOKEN) {
  return a.request(`/readiness/items/${key}`, {
    method: "PATCH",
    headers: {
      "content-type": "application/json",
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
    },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function historyCount(): Promise<number> {
  const [{ n }] = await db.sql<{ n: number }[]>`select count(*)::int as n from public.readiness_item_history`;
  return n;
}

dbTest(
  "readiness GET: JSON with ready, counts by status, overdue, every section and the live checks",
  async () => {
    const { status, body } = await getJson(app({ now: () => new Date("2025-10-12T08:00:00Z") }));
    assert.equal(status, 200);
    assert.equal(body.ok, true);
    assert.equal(body.ready, false);
    // As recorded, and as shown: /hc and the API token prove tasks 3 and 5, validations 1 and 2, blocker 2.
    assert.deepEqual(body.stored_counts, {
      pending: 21,
      in_progress: 1,
      blocked: 3,
      staging_only: 1,
      done: 0,
    });
    assert.deepEqual(body.counts, { pending: 17, in_progress: 1, blocked: 2, staging_only: 1, done: 5 });
    assert.deepEqual(Object.keys(body.sections), [
      "current_status",
      "credentials",
      "inbox_config",
      "blockers",
      "tasks",
      "support_plan",
      "validations",
      "evidence_requirements",
      "dependencies_risks",
      "contact_log",
      "timeline",
    ]);
    assert.equal(body.sections.tasks.length, 10);
    assert.equal(body.sections.credentials.length, 4);
    assert.deepEqual(Object.keys(body.sections.tasks[0]).sort(), [
      "due",
      "effective_status",
      "evidence",
      "evidence_required",
      "key",
      "number",
      "overdue",
      "owner",
      "required",
      "status",
      "status_text",
      "task",
      "updated_at",
      "updated_by",
      "verified",
    ]);
    assert.equal(body.sections.tasks[0].status_text, "⏳ In Progress");
    assert.equal(body.sections.credentials[3].status_text, "🚧 Staging only");
    assert.deepEqual(body.statuses.map((s: Json) => s.status), [...STATUSES]);
    assert.equal(body.document.owner, "integrations");
    assert.match(body.document.doc_hash, /^[0-9a-f]{64}$/);
    assert.equal(body.document.expired, false);
    assert.deepEqual(body.checks.map((c: Json) => c.name), [
      "database",
      "chatwoot_health",
      "chatwoot_credentials",
      "chatwoot_api",
      "webhook_pipeline",
    ]);
    for (const c of body.checks) {
      assert.ok(["pass", "warn", "fail"].includes(c.status));
      assert.equal(typeof c.detail, "string");
      assert.equal(c.checked_at, "2025-10-12T08:00:00.000Z");
      assert.equal(typeof c.duration_ms, "number");
    }
    assert.ok(!JSON.stringify(body).includes(STAND_IN_TOKEN), "no secret in the answer");
    assert.ok(!JSON.stringify(body).includes(ADMIN_TOKEN), "no secret in the answer");
  },
);

dbTest(
  "readiness GET: checks prove items ('verified by <check> at <time>') and overdue follows the injected clock",
  async () => {
    chatwoot.health = 200;
    const at = (iso: string) => app({ now: () => new Date(iso) });
    const before = await getJson(at("2025-10-11T23:59:59Z"));
    assert.deepEqual(before.body.overdue, []);

    const { body } = await getJson(at("2025-10-12T08:00:00Z"));
    const task3 = body.sections.tasks[2];
    assert.equal(task3.status, "pending");
    assert.equal(task3.effective_status, "done");
    assert.deepEqual(task3.verified, {
      check: "chatwoot_health",
      at: "2025-10-12T08:00:00.000Z",
      text: "verified by chatwoot_health at 2025-10-12T08:00:00.000Z",
    });
    assert.equal(body.sections.tasks[4].verified.check, "chatwoot_api");
    // Due 2025-10-11 and not done: tasks 1, 2, 4 (3 and 5 are proven by the checks); due 2025-10-12 not yet.
    assert.deepEqual(body.overdue.map((o: Json) => [o.key, o.days_overdue]), [["task-1", 1], ["task-2", 1], [
      "task-4",
      1,
    ]]);
    assert.deepEqual(body.sections.tasks.filter((t: Json) => t.overdue).map((t: Json) => t.key), [
      "task-1",
      "task-2",
      "task-4",
    ]);

    // Chatwoot down: task 3 is no longer proven and is overdue; a day later everything due is overdue.
    chatwoot.health = 503;
    try {
      const later = await getJson(at("2025-10-13T00:00:00Z"));
      assert.equal(later.body.sections.tasks[2].verified, null);
      assert.deepEqual(
        later.body.overdue.map((o: Json) => `${o.key}:${o.days_overdue}`),
        [
          "task-1:2",
          "task-2:2",
          "task-3:2",
          "task-4:2",
          "task-6:1",
          "task-7:1",
          "task-8:1",
          "task-9:1",
          "task-10:1",
        ],
      );
      const expired = await getJson(at("2025-10-26T00:00:00Z"));
      assert.equal(expired.body.document.expired, true);
    } finally {
      chatwoot.health = 200;
    }
  },
);

dbTest(
  "readiness GET: counts are of the statuses shown (a check's proof counts as done), in JSON and on the page",
  async () => {
    chatwoot.health = 200;
    chatwoot.api = 200;
    const a = app({ now: () => new Date("2025-10-12T08:00:00Z") });
    const { body } = await getJson(a);
    const tally = (field: "status" | "effective_status") => {
      const counts: Record<string, number> = Object.fromEntries(STATUSES.map((s) => [s, 0]));
      for (const section of ["credentials", "inbox_config", "blockers", "tasks", "validations"]) {
        for (const item of body.sections[section]) counts[item[field]]++;
      }
      return counts;
    };
    // /hc and the API token prove tasks 3 and 5, validations 1 and 2 and blocker 2.
    assert.equal(tally("effective_status").done, 5);
    assert.deepEqual(body.counts, tally("effective_status"));
    assert.deepEqual(body.stored_counts, tally("status"));
    const required = body.failing.items.length;
    assert.equal(
      Object.values(body.counts).reduce((x: number, y) => x + (y as number), 0) - body.counts.done,
      required + 1,
      "not done = failing items + the optional validation",
    );

    const html = await (await a.request("/readiness?format=html")).text();
    assert.match(html, /<span>✅ Done: <b>5<\/b><\/span>/);
    assert.match(html, /<tr data-key="task-3"[^]*?data-status="done"/);
    assert.match(html, /<tr data-key="task-1"[^]*?data-status="in_progress"/);
  },
);

dbTest("readiness GET and probe: ready goes false → true → false as items and checks change", async () => {
  await ensureDeliveryHealthView(db.sql);
  const a = app();
  let probe = await a.request("/readiness/probe");
  assert.equal(probe.status, 503);
  let p = await probe.json();
  assert.equal(p.ready, false);
  assert.ok(p.failing.items.some((i: Json) => i.key === "task-1" && i.status === "in_progress"));
  assert.ok(p.failing.checks.includes("webhook_pipeline"), "no verified webhook yet");

  await storeVerifiedWebhook(db.sql, 1);
  await setAllItems(db.sql, "done");
  try {
    const { body } = await getJson(a);
    assert.equal(body.ready, true, JSON.stringify({ failing: body.failing, checks: body.checks }));
    probe = await a.request("/readiness/probe");
    assert.equal(probe.status, 200);
    assert.deepEqual((await probe.json()).failing, { items: [], checks: [] });

    // The optional validation (SMTP) does not hold readiness back.
    await db.sql`select public.readiness_update_item('validation-5', 'pending', false, null, null, 'test')`;
    assert.equal((await a.request("/readiness/probe")).status, 200);

    // A failing live check does.
    chatwoot.health = 503;
    probe = await a.request("/readiness/probe");
    assert.equal(probe.status, 503);
    assert.deepEqual((await probe.json()).failing, { items: [], checks: ["chatwoot_health"] });
    chatwoot.health = 200;

    // So does a required item that is not done, even if others are.
    await db.sql`select public.readiness_update_item('task-7', 'blocked', false, null, null, 'test')`;
    probe = await a.request("/readiness/probe");
    assert.equal(probe.status, 503);
    p = await probe.json();
    assert.deepEqual(p.failing, {
      items: [{ key: "task-7", section: "tasks", status: "blocked" }],
      checks: [],
    });

    // Items proven by a check count as done: task 3 pending but /hc answers 200.
    await db.sql`select public.readiness_update_item('task-7', 'done', false, null, null, 'test')`;
    await db.sql`select public.readiness_update_item('task-3', 'pending', false, null, null, 'test')`;
    assert.equal((await a.request("/readiness/probe")).status, 200);
  } finally {
    chatwoot.health = 200;
    await db.sql`select public.readiness_update_item(key, 'pending', false, null, null, 'test')
                   from public.readiness_items`;
  }
});

dbTest("readiness GET ?format=markdown: the document with a real doc_hash", async () => {
  const res = await app().request("/readiness?format=markdown");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/markdown; charset=utf-8");
  const markdown = await res.text();
  const hash = /^doc_hash: ([0-9a-f]{64})$/m.exec(markdown)?.[1];
  assert.ok(hash);
  assert.equal(res.headers.get("x-doc-hash"), hash);
  assert.equal(sha256Hex(new TextEncoder().encode(documentBody(markdown))), hash);
  assert.match(markdown, /^## Readiness Checklist$/m);
});

dbTest("readiness GET: Accept text/html or ?format=html gives the page; a bad format is a 400", async () => {
  const res = await app().request("/readiness", { headers: { accept: "text/html,application/xhtml+xml" } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/html/);
  assert.match(res.headers.get("content-security-policy") ?? "", /default-src 'none'/);
  const html = await res.text();
  assert.match(html, /<h2>Readiness Checklist<\/h2>/);
  const viaQuery = await app().request("/readiness?format=html");
  assert.match(viaQuery.headers.get("content-type") ?? "", /^text\/html/);
  await viaQuery.body?.cancel();

  const bad = await app().request("/readiness?format=pdf");
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error, "bad_format");
  const post = await app().request("/readiness", { method: "POST" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET");
  await post.body?.cancel();
});

dbTest(
  "readiness GET ?format=html: every text of the user's document is on the page, front matter included",
  async () => {
    const { doc } = parseMarkdown(await Deno.readTextFile(SEED_PATH));
    const texts: string[] = [];
    const walk = (value: unknown, key: string) => {
      // Keys are the rows' names here, statuses show as badges (a check's proof may show another).
      if (key === "key" || key === "status") return;
      if (typeof value === "string" || typeof value === "number") texts.push(String(value));
      else if (Array.isArray(value)) value.forEach((v) => walk(v, key));
      else if (value && typeof value === "object") { for (const [k, v] of Object.entries(value)) walk(v, k); }
    };
    walk(doc, "");
    const res = await app().request("/readiness?format=html");
    // The page's text as a reader sees it: tags dropped, entities read, the document's `code` spans as code.
    const shown = (await res.text()).replace(/<[^>]*>/g, "").replace(/\s+/g, " ")
      .replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&quot;", '"').replaceAll("&#39;", "'")
      .replaceAll("&amp;", "&");
    const missing = texts.map((t) => t.replaceAll("`", "").replace(/\s+/g, " ")).filter((t) =>
      !shown.includes(t)
    );
    assert.deepEqual(missing, []);
    assert.ok(
      texts.includes("docs/integrations/chatwoot_readiness.md") && texts.length > 100,
      `${texts.length}`,
    );
  },
);

dbTest("readiness GET: Accept is weighed by its q-values and read case-insensitively", async () => {
  const a = app();
  for (
    const [accept, expected] of [
      // A client that prefers JSON and takes HTML at worst, or refuses HTML outright (q=0), gets JSON.
      ["application/json, text/html;q=0.1", "json"],
      ["text/html;q=0", "json"],
      ["text/html; q=0.0, */*", "json"],
      ["*/*", "json"],
      ["application/json", "json"],
      // A browser, a media type in capitals (they are case-insensitive), a range that only HTML matches.
      ["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "html"],
      ["TEXT/HTML", "html"],
      ["text/*", "html"],
      ["application/json;q=0.5, text/html", "html"],
    ] as const
  ) {
    const res = await a.request("/readiness", { headers: { accept } });
    assert.equal(res.status, 200, accept);
    assert.match(
      res.headers.get("content-type") ?? "",
      expected === "html" ? /^text\/html/ : /^application\/json/,
      accept,
    );
    await res.body?.cancel();
  }
});

dbTest(
  "readiness PATCH: admin token required (503 unset, 401 missing or wrong), nothing stored",
  async () => {
    const before = await historyCount();
    const unset = await patch(app({}, { ...fullEnv(chatwoot.url), READINESS_ADMIN_TOKEN: "" }), "task-2", {
      status: "done",
    });
    assert.equal(unset.status, 503);
    assert.equal((await unset.json()).error, "not_configured");
    const short = await patch(
      app({}, { ...fullEnv(chatwoot.url), READINESS_ADMIN_TOKEN: "short" }),
      "task-2",
      {
        status: "done",
      },
      "short",
    );
    assert.equal(short.status, 503);
    assert.match((await short.json()).message, /at least 24 characters/);

    const none = await patch(app(), "task-2", { status: "done" }, null);
    assert.equal(none.status, 401);
    assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer/);
    assert.equal((await none.json()).error, "unauthorized");
    const wrong = await patch(app(), "task-2", { status: "done" }, ADMIN_TOKEN.slice(0, -1) + "x");
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
    // Unknown items answer 401 too without the token: existence is not revealed.
    const unknown = await patch(app(), "task-99", { status: "done" }, null);
    assert.equal(unknown.status, 401);
    await unknown.body?.cancel();
    assert.equal(await historyCount(), before);
  },
);

dbTest(
  "readiness PATCH: validation (400 naming allowed statuses), unknown item 404, secrets refused",
  async () => {
    const before = await historyCount();
    const badStatus = await patch(app(), "task-2", { status: "finished" });
    assert.equal(badStatus.status, 400);
    const b = await badStatus.json();
    assert.equal(b.error, "invalid_status");
    assert.equal(b.message, "status must be one of pending, in_progress, blocked, staging_only, done");
    assert.deepEqual(b.allowed, [...STATUSES]);

    const cases: Array<[unknown, string]> = [
      ["{not json", "invalid_json"],
      [[1, 2], "invalid_json"],
      [{ stauts: "done" }, "invalid_body"],
      [{ note: "only a note" }, "nothing_to_update"],
      [{ evidence: "two\nlines" }, "invalid_evidence"],
      [{ evidence: "x".repeat(2001) }, "invalid_evidence"],
      [{ evidence: 42 }, "invalid_evidence"],
      [{ status: "done", by: "" }, "invalid_body"],
      [{ evidence: `token ${STAND_IN_TOKEN} works` }, "secret_in_evidence"],
      [{ status: "done", note: `admin token is ${ADMIN_TOKEN}` }, "secret_in_evidence"],
    ];
    for (const [body, error] of cases) {
      const res = await patch(app(), "task-2", body);
      assert.equal(res.status, 400, JSON.stringify(body));
      const json = await res.json();
      assert.equal(json.ok, false);
      assert.equal(json.error, error, JSON.stringify(body));
      assert.equal(typeof json.message, "string");
    }
    // Every secret the functions are given counts, not only the readiness page's own.
    const others = {
      AGENT_SDK_SECRET: "sdk-secret-0123456789",
      AGENT_SDK_TOKEN: "sdk-token-0123456789",
      FORWARDER_TOKEN: "forwarder-token-0123456789",
      SUPABASE_SERVICE_ROLE_KEY: "service-role-key-0123456789",
      SUPABASE_DB_URL: "postgresql://postgres.ref:db-pass%2Fword-0123@pooler.example:6543/postgres",
    };
    const pasted = { ...others, SUPABASE_DB_URL: "db-pass/word-0123" };
    for (const [name, value] of Object.entries(pasted)) {
      const res = await patch(app({}, { ...fullEnv(chatwoot.url), ...others }), "task-2", {
        evidence: `pasted ${value} here`,
      });
      assert.equal(res.status, 400, name);
      assert.equal((await res.json()).error, "secret_in_evidence", name);
    }
    // A local database's password ("postgres") is no secret to refuse in a note that names Postgres.
    const local = secretValues({ DATABASE_URL: "postgresql://postgres:postgres@127.0.0.1:54322/postgres" });
    assert.equal(parsePatch({ evidence: "migrations applied on postgres 15" }, local).ok, true);
    // The database refuses a secret-looking value on a credential row even when it is not a configured secret.
    const secretish = await patch(app(), "credential-chatwoot_token_prod", {
      evidence: "Xk29aPq7LmN4vB8sT1wZ3yR6",
    });
    assert.equal(secretish.status, 400);
    assert.equal((await secretish.json()).error, "secret_in_evidence");

    // The body itself: JSON only, 64 KB at most, UTF-8.
    const request = (headers: Record<string, string>, body: BodyInit) =>
      app().request("/readiness/items/task-2", {
        method: "PATCH",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...headers },
        body,
      });
    const plain = await request({ "content-type": "text/plain" }, JSON.stringify({ status: "done" }));
    assert.deepEqual([plain.status, (await plain.json()).error], [415, "unsupported_media_type"]);
    const big = JSON.stringify({ status: "done", note: "n".repeat(MAX_PATCH_BYTES) });
    const declared = await request({ "content-type": "application/json" }, big);
    assert.deepEqual([declared.status, (await declared.json()).error], [413, "payload_too_large"]);
    const streamed = await request(
      { "content-type": "application/json" },
      new Blob([big]).stream(), // no Content-Length: cut off as it grows past the limit
    );
    assert.deepEqual([streamed.status, (await streamed.json()).error], [413, "payload_too_large"]);
    const latin1 = await request(
      { "content-type": "application/json; charset=utf-8" },
      new Uint8Array([...new TextEncoder().encode('{"status":"done","note":"caf'), 0xe9, 0x22, 0x7d]),
    );
    assert.deepEqual([latin1.status, (await latin1.json()).error], [400, "invalid_json"]);

    const missing = await patch(app(), "task-99", { status: "done" });
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).error, "unknown_item");
    assert.equal(await historyCount(), before, "nothing stored by refused requests");
  },
);

dbTest(
  "readiness PATCH: a token-shaped `by` is refused (the public page shows it as updated_by, and it is logged)",
  async () => {
    const before = { task: await taskState("task-2"), history: await historyCount() };
    const log = memoryLogger();
    const token = "Xk29aPq7LmN4vB8sT1wZ3yR6"; // no configured secret: its shape alone says what it is
    const res = await patch(app({ log }), "task-2", { status: "done", by: `dana ${token}` });
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.equal(body.error, "secret_in_evidence");
    assert.ok(!JSON.stringify(body).includes(token));
    assert.ok(!JSON.stringify(log.lines).includes(token));
    assert.deepEqual(await taskState("task-2"), before.task);
    assert.equal(await historyCount(), before.history);
    // A name with a short id, or a long word, is a name.
    assert.equal(parsePatch({ status: "done", by: "dana (deploy 4f3a9c1)" }).ok, true);
    assert.equal(parsePatch({ status: "done", by: "integrations-oncall-secondary" }).ok, true);
  },
);

dbTest("readiness PATCH: token-shaped evidence is refused on every row, as the page is public", async () => {
  const before = await historyCount();
  // Every row's evidence is on the public page, not only a credential's: a token that is not configured here
  // (a staging token, a GitHub or Fly token pasted while mirroring secrets) is refused on any row.
  const items = () => db.sql`select key, status, evidence from public.readiness_items order by key`;
  const published = await items();
  for (const key of ["task-5", "task-10", "inbox-2", "blocker-3", "validation-2"]) {
    for (
      const evidence of [
        "token Xk29aPq7LmN4vB8sT1wZ3yR6 generated",
        `gh secret set CHATWOOT_TOKEN --body ghp_${"a1B2c3D4e5".repeat(4)}`,
        `deployed ${"0123456789abcdef".repeat(2)}`,
      ]
    ) {
      const res = await patch(app(), key, { status: "done", evidence });
      assert.equal(res.status, 400, `${key}: ${evidence}`);
      assert.equal((await res.json()).error, "secret_in_evidence", `${key}: ${evidence}`);
    }
  }
  assert.deepEqual(await items(), published, "nothing stored");
  // Text that only looks long is evidence all the same: a project ref of letters, a short commit id.
  for (
    const evidence of [
      "webhook at https://abcdefghijklmnopqrst.supabase.co/functions/v1/chatwoot-webhook",
      "commit 4c41480a9f3e, Internationalization_settings_v2 applied",
    ]
  ) {
    const res = await patch(app(), "inbox-4", { evidence });
    assert.equal(res.status, 200, evidence);
    assert.equal((await res.json()).item.evidence, evidence);
  }
  await db.sql`select public.readiness_update_item('inbox-4', null, true, null, null, 'test')`;
  assert.equal(await historyCount(), before + 3, "only the accepted evidence (and its clearing) is history");
});

dbTest(
  "readiness PATCH: a body declared in a charset other than UTF-8 is 415, never read as UTF-8 and stored",
  async () => {
    const before = await historyCount();
    const request = (contentType: string, bytes: number[]) =>
      app().request("/readiness/items/task-6", {
        method: "PATCH",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": contentType },
        body: new Uint8Array([...new TextEncoder().encode('{"evidence":"'), ...bytes, 0x22, 0x7d]),
      });
    // "Ã©" in Latin-1 is C3 A9, which is also valid UTF-8 ("é"): read as UTF-8 it was stored as "é".
    for (
      const contentType of [
        "application/json; charset=latin1",
        "application/json;charset=ISO-8859-1",
        'application/json; charset="windows-1252"',
      ]
    ) {
      const res = await request(contentType, [0xc3, 0xa9]);
      const body = await res.json();
      assert.deepEqual([res.status, body.error], [415, "unsupported_media_type"], contentType);
      assert.match(body.message, /UTF-8/);
    }
    assert.equal(await historyCount(), before, "nothing stored");
    const [{ evidence }] = await db.sql`select evidence from public.readiness_items where key = 'task-6'`;
    assert.equal(evidence, null);

    // Parameters as RFC 9110 writes them: a quoted value may hold ";" and "=", and a second charset that
    // contradicts the first declares another charset all the same.
    for (
      const contentType of [
        "application/json; charset=utf-8; charset=windows-1252",
        'application/json; profile="x;charset=utf-8"; charset=latin1',
        "application/json; charset=",
      ]
    ) {
      const res = await request(contentType, [0xc3, 0xa9]);
      assert.deepEqual([res.status, (await res.json()).error], [415, "unsupported_media_type"], contentType);
    }
    assert.equal(await historyCount(), before, "nothing stored");

    // UTF-8 declared in any spelling, or not declared (JSON is UTF-8), is read as UTF-8.
    for (
      const contentType of [
        'application/json; charset="UTF-8"',
        "application/json; charset=utf8",
        "application/json;CHARSET = UTF-8 ; q=1",
        'application/json; profile="a;charset=latin1"',
        'application/json; charset="utf\\-8"',
        "application/json; charset=utf-8; charset=UTF-8",
        "application/json; charset=unicode-1-1-utf-8",
      ]
    ) {
      const res = await request(contentType, [0xc3, 0xa9]);
      assert.equal(res.status, 200, contentType);
      assert.equal((await res.json()).item.evidence, "é");
    }
    await db.sql`select public.readiness_update_item('task-6', null, true, null, null, 'test')`;
  },
);

dbTest(
  "readiness PATCH: updates the item, records history (who/when/old → new/evidence/note), GET shows it",
  async () => {
    const before = await historyCount();
    const res = await patch(app(), "task-2", {
      status: "done",
      evidence: "db:chatwoot_prepare log in artifacts/…/migrate.txt",
      note: "ran on the web machine",
      by: "dana",
    });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.ok, true);
    assert.equal(body.item.key, "task-2");
    assert.equal(body.item.section, "tasks");
    assert.equal(body.item.status, "done");
    assert.equal(body.item.status_text, "✅ Done");
    assert.equal(body.item.updated_by, "admin:dana");

    const history = await db.sql`
    select item_key, changed_by, old_status, new_status, old_evidence, new_evidence, note, changed_at
      from public.readiness_item_history order by id desc limit 1`;
    assert.equal(await historyCount(), before + 1);
    assert.deepEqual({ ...history[0], changed_at: undefined }, {
      item_key: "task-2",
      changed_by: "admin:dana",
      old_status: "pending",
      new_status: "done",
      old_evidence: null,
      new_evidence: "db:chatwoot_prepare log in artifacts/…/migrate.txt",
      note: "ran on the web machine",
      changed_at: undefined,
    });
    assert.ok(history[0].changed_at instanceof Date);

    // Evidence null clears it; status alone keeps it.
    const cleared = await (await patch(app(), "task-2", { evidence: null })).json();
    assert.equal(cleared.item.evidence, null);
    assert.equal(cleared.item.status, "done");

    const { body: report } = await getJson(app());
    assert.equal(report.sections.tasks[1].status, "done");
    assert.equal(report.stored_counts.done, 1);
    const markdown = await (await app().request("/readiness?format=markdown")).text();
    assert.match(
      markdown,
      /^\| 2 \| Complete database migrations \| Integrations \| 2025-10-11 \| ✅ Done \|/m,
    );
  },
);

dbTest(
  "readiness: a CHATWOOT_API_TOKEN a header cannot carry fails the check, and is never shown",
  async () => {
    await ensureDeliveryHealthView(db.sql);
    const tail = "SECRET-rb-7d41c0a9e2";
    for (const token of [`tok-part-one\n${tail}`, `tok-part-one\u0000${tail}`]) {
      const log = memoryLogger();
      const app = createReadinessApp({
        sql: db.sql,
        env: fullEnv(chatwoot.url, { CHATWOOT_API_TOKEN: token }),
        log,
        cacheMs: 0,
        checkTimeoutMs: 10_000,
      });
      const json = await (await app.request("/readiness")).text();
      const api = JSON.parse(json).checks.find((c: { name: string }) => c.name === "chatwoot_api");
      assert.equal(api.status, "fail");
      assert.match(api.detail, /^CHATWOOT_API_TOKEN holds characters an HTTP header cannot carry/);
      const html = await (await app.request("/readiness?format=html")).text();
      const probe = await (await app.request("/readiness/probe")).text();
      for (
        const [where, text] of [["json", json], ["html", html], ["probe", probe], [
          "log",
          JSON.stringify(log.lines),
        ]]
      ) {
        assert.ok(!text.includes(tail), `${where} shows CHATWOOT_API_TOKEN`);
      }
    }
  },
);

dbIndependentTest(
  "readiness: an error's text loses every configured secret, and a header value fetch quotes",
  () => {
    const secrets = secretValues({
      CHATWOOT_API_TOKEN: "abcdefgh-12345",
      AGENT_SDK_TOKEN: "x\ny-0123456789",
    });
    assert.equal(
      withoutSecrets('Invalid header value: "x\\ny-0123456789"; token abcdefgh-12345 refused', secrets),
      "Invalid header value; token *** refused",
    );
    assert.equal(withoutSecrets("Invalid header value: x\ny-0123456789", secrets), "Invalid header value");
  },
);

dbIndependentTest("readiness: without a database every route answers 503 not_configured", async () => {
  const a = createReadinessApp({ sql: null, env: fullEnv(chatwoot.url), log: memoryLogger() });
  for (
    const [path, init] of [["/readiness", {}], ["/readiness/probe", {}], ["/readiness/items/task-1", {
      method: "PATCH",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      body: "{}",
    }]] as const
  ) {
    const res = await a.request(path, init);
    assert.equal(res.status, 503, path);
    assert.equal((await res.json()).error, "not_configured");
  }
}, HOLDS_DB);

dbTest(
  "readiness: a database that does not answer gets 503 database_unavailable, not a request left hanging",
  async () => {
    // Connections accepted and closed at once: postgres.js keeps reconnecting and holds the reads meanwhile.
    const proxy = startDbProxy(db.url, { cut: true });
    const proxiedSql = connect(proxy.url, { max: 2 });
    const log = memoryLogger();
    const a = createReadinessApp({
      sql: proxiedSql,
      env: fullEnv(chatwoot.url),
      log,
      cacheMs: 0,
      checkTimeoutMs: 200,
    });
    try {
      for (const path of ["/readiness", "/readiness/probe"]) {
        let guard: ReturnType<typeof setTimeout> | undefined;
        const res = await Promise.race([
          a.request(path),
          new Promise<never>((_, reject) => {
            guard = setTimeout(() => reject(new Error(`${path} still unanswered`)), 30_000);
          }),
        ]).finally(() => clearTimeout(guard));
        assert.equal(res.status, 503, path);
        const body = await res.json();
        assert.equal(body.error, "database_unavailable", path);
        assert.equal(body.reason, "unreachable", path);
      }
      const failed = log.lines.find((l) => l.msg === "[Readiness] Report failed");
      assert.match(String(failed?.error), /no answer from the database within 2200 ms/);
      // The field is always there: null when no error came back at all, only the bound.
      assert.ok(failed && "code" in failed);
    } finally {
      await proxiedSql.end({ timeout: 1 });
      await proxy.close();
    }
  },
);

/** `request`'s answer, or a failure naming `what` when none came within 30 s (a request left hanging). */
async function answeredWithin(request: Response | Promise<Response>, what: string): Promise<Response> {
  let guard: ReturnType<typeof setTimeout> | undefined;
  return await Promise.race([
    request,
    new Promise<never>((_, reject) => {
      guard = setTimeout(() => reject(new Error(`${what} still unanswered after 30 s`)), 30_000);
    }),
  ]).finally(() => clearTimeout(guard));
}

async function taskState(key: string): Promise<{ status: string; evidence: string | null }> {
  const [row] = await db.sql<{ status: string; evidence: string | null }[]>`
    select status, evidence from public.readiness_tasks where key = ${key}`;
  return { status: row.status, evidence: row.evidence };
}

dbTest(
  "readiness PATCH: a database that does not answer gets 503 within the write's bound, and the write does " +
    "not land once it is back",
  async () => {
    // Connections accepted and closed at once: postgres.js queues the write until it can connect again.
    const proxy = startDbProxy(db.url, { cut: true });
    // One connection, so a query made after the PATCH runs after whatever the PATCH left queued.
    const proxiedSql = connect(proxy.url, { max: 1 });
    const a = app({ sql: proxiedSql, writeTimeoutMs: 300 });
    const before = { task: await taskState("task-2"), history: await historyCount() };
    try {
      const res = await answeredWithin(
        patch(a, "task-2", { status: "done", evidence: "sent while the database was out of reach" }),
        "PATCH",
      );
      assert.equal(res.status, 503);
      assert.equal((await res.json()).error, "database_unavailable");
      // The editor was told nothing changed: the queued write must not be applied when the database is back.
      proxy.restore();
      await proxiedSql`select 1`;
      assert.deepEqual(await taskState("task-2"), before.task);
      assert.equal(await historyCount(), before.history);
    } finally {
      await proxiedSql.end({ timeout: 1 });
      await proxy.close();
      await db.sql`select public.readiness_update_item('task-2', 'pending', true, null, null, 'test')`;
    }
  },
);

dbTest(
  "readiness PATCH: a lock held on the item's table (a migration, an open SQL editor transaction) gets 503 " +
    "within the write's bound, and nothing is stored once it is released",
  async () => {
    // Read first: PGlite serves one transaction at a time, so while the holder's is open every other connection
    // waits (the writer's cannot even connect within its connect_timeout). The lock wait is Postgres's case.
    const before = { task: await taskState("task-4"), history: await historyCount() };
    const holder = connect(db.url, { max: 1 });
    // One connection, so a query made after the PATCH runs after whatever the PATCH left waiting.
    const writer = connect(db.url, { max: 1 });
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holding = holder.begin(async (tx) => {
      // Reads go on (the item is found); its update waits.
      await tx`lock table public.readiness_tasks in exclusive mode`;
      locked();
      await released;
    });
    await isLocked;
    // Without a bound the PATCH waits for the lock: let it go after a while, so the test ends (and fails).
    const unlock = setTimeout(release, 20_000);
    const a = app({ sql: writer, writeTimeoutMs: 300 });
    try {
      const res = await answeredWithin(patch(a, "task-4", { status: "done", by: "dana" }), "PATCH");
      assert.equal(res.status, 503, await res.clone().text());
      assert.equal((await res.json()).error, "database_unavailable");
    } finally {
      clearTimeout(unlock);
      release();
      await holding;
      await holder.end({ timeout: 1 });
    }
    try {
      await writer`select 1`;
      assert.deepEqual(await taskState("task-4"), before.task);
      assert.equal(await historyCount(), before.history);
    } finally {
      await writer.end({ timeout: 1 });
      await db.sql`select public.readiness_update_item('task-4', 'pending', true, null, null, 'test')`;
    }
  },
);

/** The item's updated_at as the database has it, as a PATCH's answer would give it (ISO 8601). */
async function taskUpdatedAt(key: string): Promise<string> {
  const [row] = await db.sql<{ at: string }[]>`
    select to_json(updated_at)#>>'{}' as at from public.readiness_tasks where key = ${key}`;
  return row.at;
}

/**
 * postgres.js' BEGIN (a simple Query: "Q", its length, 11, and the text: begin()'s options, none for a PATCH,
 * after "begin ") and COMMIT (the query text of a Parse message, NUL-terminated on both sides), as sent. No
 * parameter holds either: text parameters go length-prefixed and hold no NUL. The PATCH's statement is known
 * by its evidence, which only its Bind (the statement run, not just described) carries.
 */
const BEGIN_SENT = "Q\u0000\u0000\u0000\u000bbegin \u0000";
const COMMIT_SENT = "\u0000commit\u0000";

/**
 * A PATCH of `key` on a connection of its own through a proxy, which acts on the bytes `when` names: the
 * answer, with the connection's pool and proxy open (so that `after` can look and release), then cleaned up.
 */
async function patchThroughProxy(
  key: string,
  body: Record<string, unknown>,
  during: (proxy: ReturnType<typeof startDbProxy>) => Promise<void>,
  after: (
    res: Response,
    proxy: ReturnType<typeof startDbProxy>,
    sql: ReturnType<typeof connect>,
  ) => Promise<void>,
  writeTimeoutMs = 10_000,
): Promise<void> {
  const proxy = startDbProxy(db.url);
  // One connection, so a query made after the PATCH runs after whatever the PATCH left on it.
  const sql = connect(proxy.url, { max: 1 });
  const log = memoryLogger();
  const a = app({ sql, log, writeTimeoutMs });
  try {
    const answer = answeredWithin(patch(a, key, body), "PATCH");
    await answeredWithin(during(proxy).then(() => new Response()), "the proxy's cue");
    const res = await answer;
    await after(res, proxy, sql);
    // The log line names the key and the code, never the body (its evidence).
    const failed = log.lines.find((l) => l.msg === "[Readiness] Update failed");
    assert.ok(failed, "the failure is logged");
    assert.equal(failed.key, key);
    assert.ok(!JSON.stringify(log.lines).includes(String(body.evidence)), "evidence not logged");
  } finally {
    await sql.end({ timeout: 1 });
    await proxy.close();
    await db.sql`select public.readiness_update_item(${key}, 'pending', true, null, null, 'test')`;
  }
}

dbTest(
  "readiness PATCH: the connection lost before the statement reached the server is 503 " +
    "database_unavailable, nothing changed, and the item is unchanged",
  async () => {
    const before = { task: await taskState("task-5"), history: await historyCount() };
    await patchThroughProxy(
      "task-5",
      { status: "done", evidence: "cut before the statement", by: "dana" },
      (proxy) => proxy.when(BEGIN_SENT, "cut"),
      async (res) => {
        assert.equal(res.status, 503);
        const body = await res.json();
        assert.deepEqual([body.error, body.message], [
          "database_unavailable",
          "The item could not be updated; nothing changed",
        ]);
        assert.deepEqual(await taskState("task-5"), before.task);
        assert.equal(await historyCount(), before.history);
      },
      // The pool connects again (the proxy now refuses) until the bound: the write is abandoned, never sent.
      300,
    );
  },
);

dbTest(
  "readiness PATCH: the statement's answer not in within the bound is 503 nothing changed, and the answer " +
    "arriving after that does not commit the write",
  async () => {
    const before = { task: await taskState("task-6"), history: await historyCount() };
    await patchThroughProxy(
      "task-6",
      { status: "done", evidence: "answer held past the bound", by: "dana" },
      // Resolves once the server's answer to the update is held: it ran, in the transaction.
      async (proxy) => void await proxy.when("answer held past the bound", "hold"),
      async (res, proxy, sql) => {
        assert.equal(res.status, 503);
        const body = await res.json();
        assert.deepEqual([body.error, body.message, body.reason], [
          "database_unavailable",
          "The item could not be updated; nothing changed",
          "unreachable",
        ]);
        // The update's answer arrives now: the transaction must roll back, not commit what was said unstored.
        proxy.releaseHeld();
        await sql`select 1`; // one connection: after the PATCH's transaction ended
        assert.deepEqual(await taskState("task-6"), before.task);
        assert.equal(await historyCount(), before.history);
      },
      300,
    );
  },
);

dbTest(
  "readiness PATCH: the connection lost after COMMIT was sent (the server committed, its answer lost), or " +
    "no answer to it within the bound, is 503 outcome_unknown saying GET to see; the item did change, and " +
    "sending it again with if_updated_at is refused 412",
  async () => {
    for (const how of ["cut", "no answer"]) {
      const seen = await taskUpdatedAt("task-7");
      const history = await historyCount();
      const change = { status: "done", evidence: `committed, then ${how}`, by: "dana", if_updated_at: seen };
      await patchThroughProxy(
        "task-7",
        change,
        async (proxy) => {
          // Resolves once the server's answer to the COMMIT is held: it has committed.
          await proxy.when(COMMIT_SENT, "hold");
          if (how === "cut") proxy.cut();
        },
        async (res) => {
          assert.equal(res.status, 503, how);
          const body = await res.json();
          assert.equal(body.error, "outcome_unknown", `${how}: ${JSON.stringify(body)}`);
          assert.equal(body.reason, "unreachable", how);
          assert.match(body.message, /may have been stored\. GET the item to see/, how);
          assert.match(
            body.message,
            /again with if_updated_at.*if it was stored, that is 412 stale_item/,
            how,
          );
          assert.doesNotMatch(body.message, /nothing changed;|could not be updated/, how);
          // It did change, its history row written.
          assert.deepEqual(await taskState("task-7"), { status: "done", evidence: change.evidence }, how);
          assert.equal(await historyCount(), history + 1, how);
          // As the answer says: sent again with the updated_at the editor had, refused, the item as it is.
          const again = await patch(app(), "task-7", change);
          assert.equal(again.status, 412, how);
          const refusal = await again.json();
          assert.deepEqual([refusal.error, refusal.item.evidence], ["stale_item", change.evidence], how);
        },
        how === "cut" ? 10_000 : 300,
      );
    }
  },
);

dbTest(
  "readiness PATCH: a statement the server cancels (statement_timeout, 57014) is 503 nothing changed, and " +
    "the item is unchanged",
  async () => {
    // A trigger that outlasts the write's bound: the server cancels the update, rolls the transaction back.
    // PGlite runs no timer within a statement (pg_sleep holds it, past the bound): there the trigger raises
    // the same cancel itself.
    const slow = db.kind === "postgres"
      ? "perform pg_sleep(5)"
      : "raise exception 'canceling statement due to statement timeout' using errcode = 'query_canceled'";
    await db.sql.unsafe(`
      create function public.relay_test_slow_update() returns trigger language plpgsql as $$
      begin ${slow}; return new; end $$;
      create trigger relay_test_slow_update before update on public.readiness_tasks
        for each row when (new.evidence = 'outlasts the bound')
        execute function public.relay_test_slow_update();`);
    const before = { task: await taskState("task-10"), history: await historyCount() };
    const log = memoryLogger();
    try {
      const res = await answeredWithin(
        patch(app({ log, writeTimeoutMs: 300 }), "task-10", {
          status: "done",
          evidence: "outlasts the bound",
        }),
        "PATCH",
      );
      assert.equal(res.status, 503);
      const body = await res.json();
      assert.deepEqual([body.error, body.message, body.reason], [
        "database_unavailable",
        "The item could not be updated; nothing changed",
        "busy",
      ]);
      assert.equal(log.lines.find((l) => l.msg === "[Readiness] Update failed")?.code, "57014");
      assert.deepEqual(await taskState("task-10"), before.task);
      assert.equal(await historyCount(), before.history);
    } finally {
      await db.sql.unsafe(`
        drop trigger relay_test_slow_update on public.readiness_tasks;
        drop function public.relay_test_slow_update();`);
    }
  },
);

dbTest(
  "readiness PATCH: if_updated_at refuses a write made on a stale copy (412 with the item as it is, nothing " +
    "stored); the item's updated_at from GET or from a PATCH's answer lets it through",
  async () => {
    const a = app();
    // Two editors load the page; B writes first.
    const { body: page } = await getJson(a);
    const seen = page.sections.tasks.find((t: Json) => t.key === "task-8").updated_at;
    const b = await (await patch(a, "task-8", { evidence: "mail received 10:02, see artifacts/", by: "bea" }))
      .json();
    const before = await historyCount();
    // A, on the copy loaded before B's write: refused, B's evidence kept.
    const stale = await patch(a, "task-8", {
      status: "done",
      evidence: "tested",
      by: "al",
      if_updated_at: seen,
    });
    assert.equal(stale.status, 412, await stale.clone().text());
    const refusal = await stale.json();
    assert.equal(refusal.error, "stale_item");
    assert.equal(refusal.item.evidence, "mail received 10:02, see artifacts/");
    assert.equal(refusal.item.updated_by, "admin:bea");
    assert.deepEqual(await taskState("task-8"), {
      status: "pending",
      evidence: "mail received 10:02, see artifacts/",
    });
    assert.equal(await historyCount(), before);
    // With the updated_at B's answer gave (milliseconds), then the one the page shows after that write
    // (microseconds): taken.
    const first = await patch(a, "task-8", {
      status: "in_progress",
      by: "al",
      if_updated_at: b.item.updated_at,
    });
    assert.equal(first.status, 200, await first.clone().text());
    await first.body?.cancel();
    const { body: fresh } = await getJson(a);
    const current = fresh.sections.tasks.find((t: Json) => t.key === "task-8").updated_at;
    const second = await patch(a, "task-8", { status: "pending", by: "al", if_updated_at: current });
    assert.equal(second.status, 200, await second.clone().text());
    await second.body?.cancel();
    // Two editors at once on the same copy: one write is taken, the other refused.
    const { body: both } = await getJson(a);
    const shared = both.sections.tasks.find((t: Json) => t.key === "task-8").updated_at;
    const answers = await Promise.all(
      ["first editor's log", "second editor's log"].map((evidence) =>
        patch(a, "task-8", { evidence, if_updated_at: shared })
      ),
    );
    assert.deepEqual(answers.map((r) => r.status).sort(), [200, 412]);
    for (const r of answers) await r.body?.cancel();
    // Not a time: 400, nothing stored. An unknown item: 404 as without it.
    const bad = await patch(a, "task-8", { status: "done", if_updated_at: "yesterday" });
    assert.deepEqual([bad.status, (await bad.json()).error], [400, "invalid_body"]);
    const unknown = await patch(a, "task-99", { status: "done", if_updated_at: current });
    assert.deepEqual([unknown.status, (await unknown.json()).error], [404, "unknown_item"]);
    assert.equal((await taskState("task-8")).status, "pending");
    await db.sql`select public.readiness_update_item('task-8', 'pending', true, null, null, 'test')`;
  },
);

dbTest(
  "readiness PATCH: odd keys and text are 4xx; characters are code points; a no-op names nobody",
  async () => {
    const a = app();
    const history = async () =>
      (await db.sql<{ n: number }[]>`select count(*)::int as n from public.readiness_item_history`)[0].n;
    // A key holding an encoded NUL (text Postgres refuses) names no item: not a 503 "database unavailable".
    const nul = await patch(a, "task-1%00", { status: "done" });
    assert.deepEqual([nul.status, (await nul.json()).error], [404, "unknown_item"]);
    // A lone surrogate carried by a JSON escape is refused, as bytes that are not UTF-8 are.
    const before = await history();
    const lone = await patch(a, "task-2", '{"evidence":"log \\ud83d attached"}');
    assert.deepEqual([lone.status, (await lone.json()).error], [400, "invalid_evidence"]);
    assert.equal(await history(), before);
    // 2 000 characters are 2 000 code points: 1 500 emoji (3 000 UTF-16 units) fit.
    const emoji = await patch(a, "task-3", { evidence: "🚀".repeat(1500) });
    assert.equal(emoji.status, 200, await emoji.text());
    // A write that changes nothing leaves who last changed the item (the history records no such write).
    await patch(a, "task-6", { status: "in_progress", by: "alice" });
    const quiet = await history();
    const noop = await patch(a, "task-6", { status: "in_progress", by: "mallory" });
    assert.equal((await noop.json()).item.updated_by, "admin:alice");
    assert.equal(await history(), quiet);
    for (const key of ["task-3", "task-6"]) {
      await db.sql`select public.readiness_update_item(${key}, 'pending', true, null, null, 'test')`;
    }
  },
);

dbTest(
  "readiness: dates stay YYYY-MM-DD, and nothing is overdue early, under DateStyle 'SQL, MDY'",
  async () => {
    // A database (or server) configured so by someone else; postgres.js does not set DateStyle.
    let sql = db.sql;
    if (db.kind === "pglite") await db.sql.unsafe("set datestyle = 'SQL, MDY'"); // one session for all
    else {
      const [{ name }] = await db.sql<{ name: string }[]>`select current_database() as name`;
      await db.sql.unsafe(`alter database "${name}" set datestyle = 'SQL, MDY'`);
      sql = connect(db.url, { max: 2 });
    }
    try {
      const [{ style }] = await sql<{ style: string }[]>`select current_setting('datestyle') as style`;
      assert.equal(style, "SQL, MDY");
      // Ten days before the first due date.
      const a = app({ sql, now: () => new Date("2025-10-01T12:00:00Z") });
      const markdown = await (await a.request("/readiness?format=markdown")).text();
      const { body } = await getJson(a);
      assert.deepEqual(body.overdue, []);
      assert.match(markdown, /^\| 1 \| Fix Supabase DSN in Fly secrets \| Integrations \| 2025-10-11 \|/m);
      assert.match(markdown, /^last_reviewed: 2025-10-11$/m);
    } finally {
      if (db.kind === "pglite") await db.sql.unsafe("reset datestyle");
      else {
        await sql.end({ timeout: 1 });
        const [{ name }] = await db.sql<{ name: string }[]>`select current_database() as name`;
        await db.sql.unsafe(`alter database "${name}" reset datestyle`);
      }
    }
  },
);

dbTest(
  "readiness: on a connection whose last statement failed after sending rows, GET and PATCH answer 200 " +
    "(not a 503 or 500 for a result read as empty)",
  async () => {
    // As an error in a later row, a statement_timeout or an ended session leave it: postgres.js
    // (porsager/postgres#1119) put that many empty slots before the next result's rows.
    const failsAfterTwoRows = "select 1 / (3 - x) as n from generate_series(1, 5) x";
    const sql = connect(db.url, { max: 1 }); // one connection: the next statement takes the same one
    const log = memoryLogger();
    const a = app({ sql, log });
    try {
      // The next statement on this connection is GET's (its read's bounds, then the snapshot).
      await assert.rejects(sql.unsafe(failsAfterTwoRows), /division by zero/);
      const { status, body } = await getJson(a);
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(body.document.owner, "integrations");

      // PATCH read the updated item as rows[0]: undefined, answered 503 database_unavailable.
      await assert.rejects(sql.unsafe(failsAfterTwoRows), /division by zero/);
      const res = await patch(a, "task-9", { evidence: "read on a reused connection" });
      assert.equal(res.status, 200, await res.clone().text());
      assert.equal((await res.json()).item.evidence, "read on a reused connection");
      assert.deepEqual(log.lines.filter((l) => l.level === "error"), []);
    } finally {
      await sql.end({ timeout: 1 });
      await db.sql`select public.readiness_update_item('task-9', null, true, null, null, 'test')`;
    }
  },
);

/** `work`'s outcome, or a failure naming `what` when it has none within `ms`. */
async function settledWithin<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let guard: ReturnType<typeof setTimeout> | undefined;
  return await Promise.race([
    work,
    new Promise<never>((_, reject) => {
      guard = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(guard));
}

/** Holds `statement` (a lock) in a transaction on a connection of its own until `release()`. */
async function holdLock(statement: string): Promise<{ release: () => Promise<void> }> {
  const holder = connect(db.url, { max: 1 });
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let locked!: () => void;
  const isLocked = new Promise<void>((resolve) => (locked = resolve));
  const holding = holder.begin(async (tx) => {
    await tx.unsafe(statement);
    locked();
    await released;
  });
  await Promise.race([isLocked, holding]);
  // Let go after a minute whatever happens, so a failing test still ends.
  const unlock = setTimeout(release, 60_000);
  let ended: Promise<void> | null = null;
  return {
    release: () =>
      ended ??= (async () => {
        clearTimeout(unlock);
        release();
        await holding;
        await holder.end({ timeout: 1 });
      })(),
  };
}

const GET_PATHS = ["/readiness", "/readiness?format=markdown", "/readiness?format=html", "/readiness/probe"];

dbTest(
  "readiness GET: a lock held on a readiness table gets 503 database_unavailable within the read's bound, " +
    "leaves no read waiting on the lock, and GET answers 200 once it is released",
  async () => {
    // An access exclusive lock, as a migration altering the table takes: every read of the tasks waits.
    const lock = await holdLock("lock table public.readiness_tasks in access exclusive mode");
    // One connection, so a read left waiting on the lock would hold it.
    const reader = connect(db.url, { max: 1 });
    const log = memoryLogger();
    // The bound is also the one the GETs after the lock must answer within: 3 s (+2 s for the answer), not
    // 500 ms, which a loaded machine's PGlite missed ("unreachable": no answer within 2500 ms).
    const a = app({ sql: reader, checkTimeoutMs: 3_000, log });
    try {
      try {
        for (const path of GET_PATHS) {
          const res = await answeredWithin(a.request(path), `GET ${path}`);
          assert.equal(res.status, 503, path);
          const body = await res.json();
          assert.equal(body.error, "database_unavailable", path);
          assert.equal(body.ok, false, path);
        }
        if (db.kind === "postgres") {
          // The server ended the reads at their bound: the pool's one connection is free while the lock is
          // still held. (PGlite serves one transaction at a time: nothing runs while the holder's is open.)
          await settledWithin(reader`select 1`, 10_000, "a query on the GET's connection, the lock held");
        }
        assert.ok(log.lines.some((l) => l.msg === "[Readiness] Report failed"));
      } finally {
        await lock.release();
      }
      for (const path of GET_PATHS) {
        const res = await answeredWithin(a.request(path), `GET ${path} after the lock`);
        const text = await res.text();
        // The probe answers 503 while items are pending: its own answer, not the database's.
        if (path.endsWith("/probe")) assert.equal(JSON.parse(text).ok, true, text);
        else assert.equal(res.status, 200, `${path}: ${text}`);
      }
    } finally {
      await reader.end({ timeout: 1 });
    }
  },
);

/** Polls `condition` until it holds; fails naming `what` after 20 s, so a failing run ends. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 20_000;
  while (!condition()) {
    assert.ok(performance.now() < deadline, `${what}: not within 20 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

dbTest(
  "readiness GET: one bound for the read and the checks together: the checks run beside a read held by a " +
    "lock, and a Chatwoot that stalls is answered as timed out (its whole bound) while it still holds them",
  async () => {
    // An access exclusive lock, as a migration altering the table takes: the checklist's read waits on it.
    const lock = await holdLock("lock table public.readiness_tasks in access exclusive mode");
    // The default pool's size: the read waiting on the lock leaves the database checks connections.
    const reader = connect(db.url, { max: 5 });
    const a = app({ sql: reader, checkTimeoutMs: 4000 });
    chatwoot.health = "held";
    chatwoot.api = "held";
    try {
      let answered = false;
      const pending = Promise.resolve(a.request("/readiness")).finally(() => (answered = true));
      // Run beside the read, the checks ask Chatwoot while the lock still holds the read. Run after it, they
      // would not: the read would take its bound, then they theirs (here the read's bound ends it, a 503).
      await until(() => chatwoot.held === 2 || answered, "Chatwoot asked while the read waits, or an answer");
      await lock.release();
      const res = await answeredWithin(pending, "GET");
      const body = await res.json();
      // A report, not a 503: the checklist was read, and what failed is Chatwoot, which the checks name.
      assert.equal(res.status, 200, JSON.stringify(body));
      // Answered while the stand-in still holds both requests: the GET did not wait for Chatwoot past the
      // checks' bound, nor add the read's time to it.
      assert.equal(chatwoot.held, 2);
      const check = (name: string) => body.checks.find((c: Json) => c.name === name);
      // Each check had its whole bound (what a cached result says is what Chatwoot did in that time).
      for (const name of ["chatwoot_health", "chatwoot_api"]) {
        const { status, detail } = check(name);
        assert.deepEqual([status, detail], ["fail", "no answer within 4000 ms"], name);
      }
      assert.equal(check("database").status, "pass", check("database").detail);
      assert.equal(check("chatwoot_credentials").status, "pass", check("chatwoot_credentials").detail);
      assert.equal(body.document.owner, "integrations");
    } finally {
      chatwoot.health = 200;
      chatwoot.api = 200;
      chatwoot.letGo();
      await lock.release();
      await reader.end({ timeout: 1 });
    }
  },
);

dbTest(
  "readiness GET: on a pool of one connection, a lock held on a readiness table is a 503 that leaves the " +
    "checks' cache right: their reads go first, not behind the read waiting on the lock",
  async () => {
    // PGlite serves one transaction at a time: while the holder's is open, no check's read can run either.
    if (db.kind !== "postgres") return;
    const lock = await holdLock("lock table public.readiness_tasks in access exclusive mode");
    const reader = connect(db.url, { max: 1 }); // DATABASE_POOL_SIZE=1
    const a = app({ sql: reader, checkTimeoutMs: 2000, cacheMs: 600_000 });
    try {
      try {
        const { status, body } = await getJson(a);
        assert.deepEqual([status, body.error, body.reason], [503, "database_unavailable", "busy"]);
      } finally {
        await lock.release();
      }
      const asked = chatwoot.requests.length;
      // The checks the first GET started, from the cache: none timed out behind its read.
      const { status, body } = await getJson(a);
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(chatwoot.requests.length, asked);
      for (const name of ["database", "webhook_pipeline"]) {
        const check = body.checks.find((c: Json) => c.name === name);
        assert.doesNotMatch(check.detail, /no answer within|no database connection/, name);
      }
      assert.equal(body.checks.find((c: Json) => c.name === "database").status, "pass");
    } finally {
      await reader.end({ timeout: 1 });
    }
  },
);

dbTest(
  "readiness GET: on a pool of one held by a PATCH waiting on a lock, the database checks a GET starts get no " +
    "connection in time and are not cached: the next GET, the lock gone, runs them again",
  async () => {
    // PGlite serves one transaction at a time: while the holder's is open, nothing else runs at all.
    if (db.kind !== "postgres") return;
    let clock = Date.parse("2026-03-01T12:00:00Z");
    const reader = connect(db.url, { max: 1 }); // DATABASE_POOL_SIZE=1
    // A write may wait longer than a check (by default 10 s against 3 s): the checks queue behind it. The
    // checks' bound is also the one the GET after the lock must pass within, on one connection: 3 s, not the
    // 500 ms a loaded machine can take (readiness_checks' like test failed so at 300 ms).
    const a = app({
      sql: reader,
      checkTimeoutMs: 3_000,
      writeTimeoutMs: 20_000,
      cacheMs: 600_000,
      now: () => new Date(clock),
    });
    const lock = await holdLock("lock table public.readiness_tasks in access exclusive mode");
    try {
      let patched: Response | Promise<Response>;
      try {
        patched = patch(a, "task-9", { evidence: "stored once the lock was let go" });
        await untilLockWaits(1, "the PATCH's write waiting on the lock");
        // Its checks and its read queue behind the write, the lock still held. The database answered (the
        // write holds the pool's one connection): the read got no connection, which is the pool busy, not
        // the database out of reach.
        const { status, body } = await getJson(a);
        assert.deepEqual([status, body.error, body.reason], [503, "database_unavailable", "busy"]);
        assert.match(body.detail, /^no pooled connection within 5000 ms: each one held by other work/);
        assert.match(body.detail, /DATABASE_POOL_SIZE/);
      } finally {
        await lock.release();
      }
      const written = await answeredWithin(patched, "PATCH");
      assert.equal(written.status, 200, await written.text());
      // The same cache period: the database checks run again; Chatwoot's, which had their answer, are kept.
      const asked = chatwoot.requests.length;
      clock += 1000;
      const { status, body } = await getJson(a);
      assert.equal(status, 200, JSON.stringify(body));
      for (const name of ["database", "webhook_pipeline"]) {
        const check = body.checks.find((c: Json) => c.name === name);
        assert.equal(check.checked_at, new Date(clock).toISOString(), name);
        assert.doesNotMatch(check.detail, /no answer within|no database connection/, name);
      }
      assert.equal(body.checks.find((c: Json) => c.name === "database").status, "pass");
      assert.equal(chatwoot.requests.length, asked);
    } finally {
      await lock.release();
      await reader.end({ timeout: 1 });
      await db.sql`select public.readiness_update_item('task-9', null, true, null, null, 'test')`;
    }
  },
);

/** Sessions of this database waiting on a lock now (the holder of the lock waits on nothing). */
async function lockWaits(): Promise<number> {
  const [{ waiting }] = await db.sql<{ waiting: number }[]>`
    select count(*)::int as waiting from pg_stat_activity
     where datname = current_database() and wait_event_type = 'Lock'`;
  return waiting;
}

/** Polls lockWaits() until it is at least `n`; fails after 20 s, so a failing run ends. */
async function untilLockWaits(n: number, what: string): Promise<void> {
  const deadline = performance.now() + 20_000;
  while (await lockWaits() < n) {
    assert.ok(performance.now() < deadline, `${what}: not within 20 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

dbTest(
  "readiness GET: concurrent GETs under a held lock share one read: one pooled connection waits on the " +
    "lock, the checks a new cache period starts meanwhile get a connection, and a failed read is not kept",
  async () => {
    // PGlite serves one transaction at a time: while the holder's is open, nothing else runs at all.
    if (db.kind !== "postgres") return;
    let clock = Date.parse("2026-03-01T12:00:00Z");
    const reader = connect(db.url, { max: 2 }); // fewer connections than the GETs below
    const a = app({ sql: reader, checkTimeoutMs: 4000, cacheMs: 60_000, now: () => new Date(clock) });
    let lock: { release: () => Promise<void> } | null = null;
    try {
      // Checks cached before the lock: the first GETs below join them and start none.
      assert.equal((await getJson(a)).status, 200);
      lock = await holdLock("lock table public.readiness_tasks in access exclusive mode");
      let answered = 0;
      const send = (path: string) => Promise.resolve(a.request(path)).finally(() => answered++);
      const gets = [1, 2, 3, 4].map(() => send("/readiness"));
      await untilLockWaits(1, "a GET's read waiting on the lock");
      // A new cache period, the lock still held: this GET starts the checks, whose reads queue in the pool.
      clock += 60_000;
      gets.push(send("/readiness/probe"));
      // Queued behind the checks' reads (the pool serves in order): it answers once they have had a
      // connection. When each GET read for itself, their reads held both connections until the bound: this
      // came only after their 503s, and the checks had timed out in the queue, cached as the database's.
      await settledWithin(reader`select 1`, 20_000, "a query on the GETs' pool, the lock held");
      assert.equal(answered, 0, "the pool had no connection for the checks until GETs answered 503");
      assert.equal(await lockWaits(), 1, "connections waiting on the lock, for five GETs");
      await lock.release();
      // The shared read, let through: every GET answers from it.
      const answers = await Promise.all(gets.map((g, i) => answeredWithin(g, `GET ${i + 1}`)));
      for (const res of answers.slice(0, 4)) assert.equal(res.status, 200, await res.clone().text());
      assert.equal((await answers[4].json()).ok, true);
      // The checks the probe's GET started, from the cache: each had a connection, none timed out.
      const { status, body } = await getJson(a);
      assert.equal(status, 200, JSON.stringify(body));
      for (const name of ["database", "webhook_pipeline"]) {
        const check = body.checks.find((c: Json) => c.name === name);
        assert.equal(check.checked_at, new Date(clock).toISOString(), name);
        assert.doesNotMatch(check.detail, /no answer within|no database connection/, name);
        assert.equal(check.status, name === "database" ? "pass" : check.status, check.detail);
      }

      // A read that fails (the lock outlasts its bound) fails every GET that shares it, and only those.
      const b = app({ sql: reader, checkTimeoutMs: 500, cacheMs: 60_000, now: () => new Date(clock) });
      lock = await holdLock("lock table public.readiness_tasks in access exclusive mode");
      const failing = [1, 2, 3].map(() => b.request("/readiness"));
      await untilLockWaits(1, "the shared read waiting on the lock");
      assert.equal(await lockWaits(), 1);
      for (const [i, res] of (await Promise.all(failing)).entries()) {
        const failed = await res.json();
        assert.deepEqual(
          [res.status, failed.error, failed.reason],
          [503, "database_unavailable", "busy"],
          `${i}`,
        );
      }
      await lock.release();
      assert.equal((await getJson(b)).status, 200, "the failure was kept past its read");
    } finally {
      await lock?.release();
      await reader.end({ timeout: 1 });
    }
  },
);

dbTest(
  "readiness GET: a GET sent after a PATCH's answer shows the write, though a read begun before the PATCH " +
    "is still in flight (it does not join that read)",
  async () => {
    // PGlite serves one transaction at a time: while the holder's is open, nothing else runs at all.
    if (db.kind !== "postgres") return;
    const a = app();
    // A table the read waits on and the PATCH does not touch. The read's snapshot is taken before its wait.
    const lock = await holdLock("lock table public.readiness_milestones in access exclusive mode");
    try {
      const first = a.request("/readiness");
      await untilLockWaits(1, "the first GET's read waiting on the lock");
      const res = await patch(a, "task-9", { evidence: "stored while a read waited" });
      assert.equal(res.status, 200, await res.clone().text());
      const second = a.request("/readiness");
      await lock.release();
      const evidence = async (r: Response | Promise<Response>, what: string) =>
        (await (await answeredWithin(r, what)).json()).sections.tasks.find((t: Json) => t.key === "task-9")
          .evidence;
      assert.equal(await evidence(first, "GET before the PATCH"), null);
      assert.equal(await evidence(second, "GET after the PATCH"), "stored while a read waited");
    } finally {
      await lock.release();
      await db.sql`select public.readiness_update_item('task-9', null, true, null, null, 'test')`;
    }
  },
);

dbTest(
  "readiness GET: the credentials check names the credentials of the GET's own rows, though the checks " +
    "are cached from a GET that read other rows",
  async () => {
    const a = app({ cacheMs: 600_000 });
    const credentials = async () => {
      const { body } = await getJson(a);
      const check = body.checks.find((c: Json) => c.name === "chatwoot_credentials");
      return {
        names: body.sections.credentials.map((c: Json) => c.name),
        check,
        failing: body.failing.checks,
      };
    };
    const before = await credentials();
    assert.equal(before.check.status, "pass", before.check.detail);
    assert.deepEqual(Object.keys(before.check.data.present).sort(), [...before.names].sort());
    // A credential added in the cache period (a migration, the SQL editor) that nothing supplies.
    await db.sql`
      insert into public.readiness_credentials (key, position, name, description, storage_target, status)
      values ('credential-chatwoot_extra_key', 99, 'CHATWOOT_EXTRA_KEY', 'Added later', 'Vault', 'done')`;
    const asked = chatwoot.requests.length;
    try {
      const after = await credentials();
      assert.ok(after.names.includes("CHATWOOT_EXTRA_KEY"));
      assert.equal(after.check.status, "fail", after.check.detail);
      assert.deepEqual(after.check.data.missing, ["CHATWOOT_EXTRA_KEY"]);
      assert.ok(after.failing.includes("chatwoot_credentials"));
      // The checks that do I/O stay the cached run: Chatwoot was not asked again.
      assert.equal(chatwoot.requests.length, asked);
    } finally {
      await db.sql`delete from public.readiness_credentials where key = 'credential-chatwoot_extra_key'`;
    }
    // And back: the first names' result again.
    const again = await credentials();
    assert.equal(again.check.status, "pass", again.check.detail);
  },
);

dbTest(
  "readiness PATCH: two editors writing at once on one copy (the same if_updated_at) get exactly one 200 " +
    "and one 412, and the item holds the write that was taken",
  async () => {
    const a = app();
    const { body: page } = await getJson(a);
    const shared = page.sections.tasks.find((t: Json) => t.key === "task-7").updated_at;
    const before = await historyCount();
    // On the server, both wait on a lock held on the item's row first, so they are surely at it together.
    const lock = db.kind === "postgres"
      ? await holdLock("select 1 from public.readiness_tasks where key = 'task-7' for update")
      : null;
    let answers: Response[];
    try {
      const sent = ["first editor's log", "second editor's log"].map((evidence) =>
        patch(a, "task-7", { evidence, by: "editor", if_updated_at: shared })
      );
      if (lock) {
        // Polled until both wait (20 s at most, so a failing run ends).
        const deadline = performance.now() + 20_000;
        for (;;) {
          const [{ waiting }] = await db.sql<{ waiting: number }[]>`
            select count(*)::int as waiting from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock'`;
          if (waiting >= 2) break;
          assert.ok(performance.now() < deadline, "both PATCHes waiting on the row's lock: not within 20 s");
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        await lock.release();
      }
      answers = await Promise.all(sent.map((r, i) => answeredWithin(r, `PATCH ${i + 1}`)));
    } finally {
      await lock?.release();
    }
    const bodies = await Promise.all(answers.map((r) => r.json()));
    assert.deepEqual(answers.map((r) => r.status).sort(), [200, 412], JSON.stringify(bodies));
    const taken = bodies[answers.findIndex((r) => r.status === 200)];
    const refused = bodies[answers.findIndex((r) => r.status === 412)];
    assert.equal(refused.error, "stale_item");
    // The refusal shows the item as the other editor left it; the database holds that write alone.
    assert.deepEqual(refused.item, taken.item);
    assert.equal((await taskState("task-7")).evidence, taken.item.evidence);
    assert.equal(await historyCount(), before + 1);
    await db.sql`select public.readiness_update_item('task-7', 'pending', true, null, null, 'test')`;
  },
);

// Two transactions interleaved on one row: PGlite runs one at a time (scripts/lib/embedded_db.ts).
Deno.test({
  name: "readiness PATCH: a write committed in the millisecond a waiting PATCH began, then the PATCH: an " +
    "editor holding the first write's copy gets 412, not a 200 overwriting the PATCH unseen (PostgreSQL)",
  ignore: db.kind !== "postgres",
  ...HOLDS_DB,
  fn: async () => {
    const a = app();
    const holder = connect(db.url, { max: 1 });
    let patchWaits!: (pid: number) => void;
    const waitingPid = new Promise<number>((resolve) => (patchWaits = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    // Let go after a minute whatever happens, so a failing run ends.
    const guard = setTimeout(() => patchWaits(0), 60_000);
    try {
      const [{ holderPid }] = await holder<{ holderPid: number }[]>`select pg_backend_pid() as "holderPid"`;
      const holding = holder.begin(async (tx) => {
        await tx`select 1 from public.readiness_tasks where key = 'task-6' for update`;
        locked();
        const pid = await waitingPid;
        // The first write, timed as two writers within one millisecond would be: the waiting PATCH's now()
        // is its transaction's start. readiness_touch is off (replica role) so the time stands as given.
        await tx`set local session_replication_role = replica`;
        const [{ updated_at }] = await tx<{ updated_at: Date }[]>`
          update public.readiness_tasks
             set evidence = 'inbox screenshots, first upload', updated_by = 'admin:cy',
                 updated_at = (select xact_start from pg_stat_activity where pid = ${pid})
           where key = 'task-6' returning updated_at`;
        return updated_at;
      });
      await Promise.race([isLocked, holding]);
      const sent = patch(a, "task-6", { evidence: "inbox screenshots, second upload", by: "dee" });
      // Polled until the PATCH waits on the row's lock (20 s at most, so a failing run ends).
      const deadline = performance.now() + 20_000;
      for (;;) {
        const waiting = await db.sql<{ pid: number }[]>`
          select pid from pg_stat_activity
           where datname = current_database() and wait_event_type = 'Lock' and pid <> ${holderPid}`;
        if (waiting.length > 0) {
          patchWaits(waiting[0].pid);
          break;
        }
        assert.ok(performance.now() < deadline, "the PATCH waiting on the row's lock: not within 20 s");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // The copy an editor holds: the first write's updated_at, to the millisecond (as a PATCH answers it).
      const copy = (await holding).toISOString();
      const second = await answeredWithin(sent, "the waiting PATCH");
      assert.equal(second.status, 200, await second.clone().text());
      const taken = await second.json();
      const stale = await patch(a, "task-6", { status: "done", by: "cy", if_updated_at: copy });
      const refusal = await stale.json();
      assert.equal(stale.status, 412, `an editor's copy from before dee's write: ${JSON.stringify(refusal)}`);
      assert.equal(refusal.item.evidence, "inbox screenshots, second upload");
      assert.deepEqual(await taskState("task-6"), {
        status: "pending",
        evidence: "inbox screenshots, second upload",
      });
      // Its answer's updated_at, to the millisecond too, is after the copy: the two are told apart.
      assert.ok(
        taken.item.updated_at > copy,
        `the PATCH's updated_at ${taken.item.updated_at}, copy ${copy}`,
      );
    } finally {
      clearTimeout(guard);
      patchWaits(0);
      await holder.end({ timeout: 1 });
      await db.sql`select public.readiness_update_item('task-6', 'pending', true, null, null, 'test')`;
    }
  },
});

dbTest("readiness http: close the stand-in and the database", async () => {
  await chatwoot.close();
  await db.close();
});
