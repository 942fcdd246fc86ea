// The growth section's filler (bench/sections/growth.ts) is a history like a real one: every delivered event
// has its delivery attempt and every dead one its death, so webhook_pipeline_health's hour and day counts
// have rows to read; a larger table is a longer history (inside retention), with the same last day.
import assert from "node:assert/strict";
import { dbTest, startTestDb } from "./_db.ts";
import { FILL_RECENT_ROWS, fillEvents } from "../bench/sections/growth.ts";

const db = await startTestDb();
const sql = db.sql;
const total = FILL_RECENT_ROWS + 2_000;

dbTest(
  "growth filler: attempts as a real history has them, a longer history with the same last day",
  async () => {
    await fillEvents({ kind: db.kind, url: db.url, sql, close: () => Promise.resolve() }, total);
    const [c] = await sql<Record<string, number>[]>`
    select count(*)::int as events,
           count(*) filter (where e.received_at > now() - interval '1 day')::int as last_day,
           count(*) filter (where e.received_at <= now() - interval '29 days')::int as past_29_days,
           count(*) filter (where e.status = 'delivered')::int as delivered,
           count(*) filter (where e.status = 'dead')::int as dead,
           count(*) filter (where e.status = 'delivered' and e.received_at > now() - interval '1 day')::int
             as delivered_last_day,
           count(*) filter (where e.status = 'dead' and e.received_at > now() - interval '1 day')::int
             as dead_last_day
      from public.webhook_events e`;
    assert.equal(c.events, total);
    assert.equal(c.last_day, FILL_RECENT_ROWS, "the newest rows only are in the last day");
    assert.equal(c.past_29_days, 0, "the history stays inside the 30 days of retention");

    const [a] = await sql<Record<string, number>[]>`
    select count(*) filter (where a.outcome = 'delivered' and a.succeeded
                              and a.recorded_at = e.delivered_at and e.status = 'delivered')::int as delivered,
           count(*) filter (where a.outcome = 'dead' and not a.succeeded and e.status = 'dead')::int as dead,
           count(*)::int as attempts
      from public.webhook_delivery_attempts a join public.webhook_events e on e.id = a.event_id`;
    assert.deepEqual(a, { delivered: c.delivered, dead: c.dead, attempts: c.delivered + c.dead });

    const [h] = await sql<{ delivered_last_day: string; dead_last_day: string; dead_total: string }[]>`
    select delivered_last_day, dead_last_day, dead_total from public.webhook_pipeline_health`;
    assert.equal(Number(h.delivered_last_day), c.delivered_last_day);
    assert.equal(Number(h.dead_last_day), c.dead_last_day);
    assert.equal(Number(h.dead_total), c.dead);
  },
);

dbTest("growth filler: close", () => db.close());
