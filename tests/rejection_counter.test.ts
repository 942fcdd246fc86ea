// Refusals are written one statement at a time, however many arrive meanwhile, and none is lost.
import assert from "node:assert/strict";
import { type RejectionCount, RejectionCounter } from "../supabase/functions/_shared/rejection_counter.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { dbIndependentTest } from "./_db.ts";

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

dbIndependentTest(
  "rejection counter: a flood during a write becomes one more write, with every refusal counted",
  async () => {
    const writes: RejectionCount[][] = [];
    let release = () => {};
    const counter = new RejectionCounter(
      (counts) => {
        // What is counted; when, in the test below.
        writes.push(counts.map(({ reason, status, count }) => ({ reason, status, count }) as RejectionCount));
        return writes.length === 1 ? new Promise<void>((resolve) => release = resolve) : Promise.resolve();
      },
      memoryLogger(),
      { now: () => 0 },
    );
    counter.add("signature_invalid", 401);
    await tick();
    for (let i = 0; i < 200; i++) counter.add("signature_invalid", 401);
    for (let i = 0; i < 3; i++) counter.add("invalid_json", 400);
    await tick();
    assert.equal(writes.length, 1, "no second write while the first is under way");
    release();
    for (let i = 0; i < 5; i++) await tick();
    assert.deepEqual(writes, [
      [{ reason: "signature_invalid", status: 401, count: 1 }],
      // By reason, whatever order they came in: every instance locks the rows in one order.
      [{ reason: "invalid_json", status: 400, count: 3 }, {
        reason: "signature_invalid",
        status: 401,
        count: 200,
      }],
    ]);
    counter.add("token_invalid", 401);
    for (let i = 0; i < 5; i++) await tick();
    assert.deepEqual(
      writes[2],
      [{ reason: "token_invalid", status: 401, count: 1 }],
      "a later refusal writes again",
    );
  },
);

dbIndependentTest(
  "rejection counter: a failed write is logged, and the next refusal writes again",
  async () => {
    const log = memoryLogger();
    const writes: RejectionCount[][] = [];
    const counter = new RejectionCounter((counts) => {
      writes.push(structuredClone(counts));
      return writes.length === 1 ? Promise.reject(new Error("database down")) : Promise.resolve();
    }, log);
    counter.add("signature_invalid", 401);
    for (let i = 0; i < 5; i++) await tick();
    assert.ok(log.lines.some((l) => l.msg === "Background task failed"));
    counter.add("signature_invalid", 401);
    for (let i = 0; i < 5; i++) await tick();
    assert.equal(writes.length, 2);
  },
);

dbIndependentTest(
  "rejection counter: once closed, a later beforeunload writes nothing (its pool is ended by then)",
  async () => {
    const log = memoryLogger();
    const writes: RejectionCount[][] = [];
    const counter = new RejectionCounter((counts) => {
      writes.push(structuredClone(counts));
      return Promise.reject(new Error("database down"));
    }, log);
    counter.add("signature_invalid", 401);
    for (let i = 0; i < 5; i++) await tick();
    await counter.close();
    assert.equal(writes.length, 2, "the refusal's write, then close()'s one more");
    // Another app's worker or test ending: the counts kept by a counter closed before are not written again.
    dispatchEvent(new Event("beforeunload"));
    for (let i = 0; i < 5; i++) await tick();
    assert.equal(writes.length, 2);
  },
);

dbIndependentTest(
  "rejection counter: counts keep the minute they were refused in, and their age at the write, retried too",
  async () => {
    let now = 10 * 60_000 + 5_000; // 00:10:05
    const writes: RejectionCount[][] = [];
    const counter = new RejectionCounter(
      (counts) => {
        writes.push(structuredClone(counts));
        return writes.length === 1 ? Promise.reject(new Error("database down")) : Promise.resolve();
      },
      memoryLogger(),
      { now: () => now },
    );
    counter.add("signature_invalid", 401); // taken at once, and fails: kept
    for (let i = 0; i < 5; i++) await tick();
    now += 20_000; // 00:10:25, the same minute
    counter.add("signature_invalid", 401);
    now += 60_000; // 00:11:25
    counter.add("signature_invalid", 401);
    now += 90_000; // 00:12:55: written, retried (close writes what is kept)
    await counter.close();
    assert.deepEqual(writes.at(-1), [
      {
        reason: "signature_invalid",
        status: 401,
        count: 2,
        refused_at: 10 * 60_000 + 25_000,
        age_ms: 150_000,
      },
      {
        reason: "signature_invalid",
        status: 401,
        count: 1,
        refused_at: 11 * 60_000 + 25_000,
        age_ms: 90_000,
      },
    ]);
  },
);
