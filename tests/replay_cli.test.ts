// `deno task replay` when the dead letters change under it: each event it counted is requeued at most once,
// none is left out, and its summary says what happened. Runs the real script against a real database.
import assert from "node:assert/strict";
import { connect } from "../supabase/functions/_shared/db.ts";
import { dbTest, startTestDb } from "./_db.ts";
import { runScript } from "./_dev.ts";

const db = await startTestDb();
const sql = db.sql;

async function deadEvents(prefix: string, n: number): Promise<number[]> {
  const rows = await sql<{ id: string }[]>`
    insert into webhook_events (event_key, event, conversation_id, account_id, payload, raw_body, body_sha256,
                                verified_by, status, attempts, received_at, last_received_at)
    select ${prefix} || g, 'message_created', 880000 + g, 1, '{}', '{}', repeat('a', 64), 'signature', 'dead', 9,
           now() - interval '1 hour', now() - interval '1 hour'
      from generate_series(1, ${n}) g
    returning id`;
  return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}

async function replay(...args: string[]) {
  const out = await runScript("scripts/replay.ts", args, db.url);
  const text = out.stdout + out.stderr;
  const summary = /summary (\{.*\})/.exec(text);
  return { code: out.code, text, summary: summary ? JSON.parse(summary[1]) : null };
}

dbTest(
  `replay cli [${db.kind}]: an event that dies again during a run is not requeued twice, and none is skipped`,
  async () => {
    const ids = await deadEvents("redie-", 3);
    // Stands in for a forwarder that delivers each requeued event at once and gets a 410: the event is dead
    // again before the next chunk. Every requeue is logged.
    await sql.unsafe(`
      create table replay_log (event_id bigint not null);
      create function test_dies_again() returns trigger language plpgsql as $$
      begin
        insert into public.replay_log values (new.id);
        new.status := 'dead';
        return new;
      end $$;
      create trigger test_dies_again before update of status on webhook_events for each row
        when (old.status = 'dead' and new.status = 'pending' and old.event_key like 'redie-%')
        execute function test_dies_again();`);
    try {
      const run = await replay("--since", "2000-01-01T00:00Z", "--chunk", "1");
      assert.equal(run.code, 0, run.text);
      const log = await sql<{ event_id: string }[]>`select event_id from replay_log order by event_id`;
      assert.deepEqual(log.map((r) => Number(r.event_id)), ids, "each counted event requeued exactly once");
      assert.equal(run.summary.matched_dead, 3);
      assert.equal(run.summary.requeued, 3);
    } finally {
      await sql.unsafe(`drop trigger test_dies_again on webhook_events; drop function test_dies_again();
                        drop table replay_log; delete from webhook_events where event_key like 'redie-%';`);
    }
  },
);

dbTest(
  `replay cli [${db.kind}]: events no longer dead when their turn comes are left alone, and the summary says so`,
  async () => {
    const ids = await deadEvents("gone-", 4);
    // Between the count and the requeue, another operator replays one and it is delivered; one is deleted.
    await sql`create function test_meanwhile() returns trigger language plpgsql as $$
      begin
        update public.webhook_events set status = 'delivered', delivered_at = now()
         where event_key = 'gone-2' and status = 'dead';
        delete from public.webhook_events where event_key = 'gone-3';
        return null;
      end $$`;
    // Fires once, at the run's first requeue (of gone-1).
    await sql`create trigger test_meanwhile after update of status on webhook_events for each row
      when (old.event_key = 'gone-1' and new.status = 'pending') execute function test_meanwhile()`;
    try {
      const run = await replay(...ids.map(String), "--chunk", "1");
      assert.equal(run.code, 0, run.text);
      assert.equal(run.summary.matched_dead, 4);
      assert.equal(run.summary.requeued, 2);
      assert.match(run.text, /2 .*no longer dead/);
      const rows = await sql<{ event_key: string; status: string }[]>`
        select event_key, status from webhook_events where event_key like 'gone-%' order by event_key`;
      assert.deepEqual(rows.map((r) => `${r.event_key}:${r.status}`), [
        "gone-1:pending",
        "gone-2:delivered",
        "gone-4:pending",
      ]);
    } finally {
      await sql.unsafe(`drop trigger test_meanwhile on webhook_events; drop function test_meanwhile();
                        delete from webhook_events where event_key like 'gone-%';`);
    }
  },
);

dbTest(`replay cli [${db.kind}]: usage errors of the CLIs exit 2 and change nothing`, async () => {
  const [{ n: before }] = await sql<{ n: number }[]>`select count(*)::int as n from webhook_events`;
  // A time Postgres cannot read.
  const badTime = await replay("--since", "2026-13-45", "--dry-run");
  assert.equal(badTime.code, 2, badTime.text);
  assert.match(badTime.text, /out of range/);
  // An empty window (the two times swapped, a typo) matched nothing and said "ok": as deno task recover does,
  // it is refused, naming both, so that the operator does not take "0 dead" for an answer.
  for (const [since, until] of [["2026-12-02T00:00Z", "2026-12-01T00:00Z"], ["2026-12-01", "2026-12-01"]]) {
    const swapped = await replay("--since", since, "--until", until);
    assert.equal(swapped.code, 2, swapped.text);
    assert.match(swapped.text, /--since .* is not before --until /);
    assert.equal(swapped.summary, null);
  }
  // A mistyped flag of migrate applies nothing (it used to apply every pending migration and exit 0).
  const migrations = async () =>
    (await sql<{ n: number }[]>`select count(*)::int as n from supabase_migrations.schema_migrations`)[0].n;
  const applied = await migrations();
  const [latest] = await sql`delete from supabase_migrations.schema_migrations
    where version = (select max(version) from supabase_migrations.schema_migrations) returning *`;
  try {
    for (const flag of ["--chek", "-c"]) {
      const run = await runScript("scripts/migrate.ts", [flag], db.url);
      assert.equal(run.code, 2, run.stdout + run.stderr);
      assert.match(run.stderr, /usage: deno task migrate/);
      assert.equal(await migrations(), applied - 1, `migrate ${flag} applied something`);
    }
    const help = await runScript("scripts/migrate.ts", ["--help"], db.url);
    assert.deepEqual([help.code, /usage/.test(help.stdout), await migrations()], [0, true, applied - 1]);
  } finally {
    // The history row back as it was (the migration itself stayed applied).
    await sql`insert into supabase_migrations.schema_migrations ${sql(latest)} on conflict do nothing`;
  }
  for (
    const script of ["scripts/stats.ts", "scripts/send.ts", "bench/run.ts", "bench/profile_half_rate.ts"]
  ) {
    const run = await runScript(script, ["--bogus"], db.url, { CHATWOOT_WEBHOOK_SECRET: "x".repeat(32) });
    assert.equal(run.code, 2, `${script}: ${run.stderr}`);
    assert.match(run.stderr, /usage: deno task/);
  }
  const [{ n: after }] = await sql<{ n: number }[]>`select count(*)::int as n from webhook_events`;
  assert.equal(after, before);
});

dbTest(
  `replay cli [${db.kind}]: a time without a zone is UTC, whatever the server's or the connection's zone`,
  async () => {
    // 12 h behind UTC: read there, 10:00 is 22:00 UTC and the window misses the event.
    const url = new URL(db.url);
    url.searchParams.set("TimeZone", "Etc/GMT+12");
    const probe = connect(url.toString(), { max: 1 });
    const [{ tz }] = await probe`select current_setting('TimeZone') as tz`;
    await probe.end();
    if (tz !== "Etc/GMT+12") return; // PGlite's socket keeps one session and its settings: nothing to show there.
    await sql`insert into webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by, status,
                received_at, last_received_at)
              values ('replay-utc', 'replay_utc_probe', '{}', '{}', repeat('a', 64), 'signature', 'dead',
                      '2026-11-21T10:30:00Z', '2026-11-21T10:30:00Z')`;
    try {
      for (
        const [since, until] of [["2026-11-21T10:00", "2026-11-21T11:00"], [
          "2026-11-21t10:00",
          "2026-11-21 11:00",
        ]]
      ) {
        const out = await runScript(
          "scripts/replay.ts",
          ["--since", since, "--until", until, "--event", "replay_utc_probe", "--dry-run"],
          url.toString(),
        );
        assert.equal(out.code, 0, out.stdout + out.stderr);
        assert.match(out.stdout, /"matched_dead":1\b/, `${since} .. ${until}: ${out.stdout}`);
      }
    } finally {
      await sql`delete from webhook_events where event_key = 'replay-utc'`;
    }
  },
);

dbTest(`replay cli [${db.kind}]: close database`, () => db.close());
