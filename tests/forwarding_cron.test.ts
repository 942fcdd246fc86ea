// The hosted-Supabase schedule (pg_cron + pg_net + Vault) is guarded: without them the migration applies and
// schedule_forwarder() says what is missing. With them (stand-in schemas with the same function signatures,
// since pg_net cannot run here) the migration schedules a job whose command posts to the Vault URL with the
// Vault token.
import assert from "node:assert/strict";
import postgres from "postgres";
import { dbTest, migrationsBefore, startTestDb } from "./_db.ts";
import { hostedStandIns } from "./_hosted.ts";
import { applyMigrations } from "../scripts/lib/migrations.ts";
import type { Sql } from "../supabase/functions/_shared/db.ts";

const STAND_INS = hostedStandIns();

/** A fresh database (PGlite, or one on the DATABASE_URL server); `prepare` runs before the migrations. */
async function withFreshDb(prepare: string | null, fn: (sql: Sql) => Promise<void>) {
  const db = await startTestDb(prepare ? { beforeMigrations: prepare } : {});
  try {
    await fn(db.sql);
  } finally {
    await db.close();
  }
}

dbTest(
  "forwarding: without pg_cron/pg_net/Vault the migration applies and nothing is scheduled",
  async () => {
    await withFreshDb(null, async (sql) => {
      const [{ result }] = await sql`select public.schedule_forwarder() as result`;
      assert.match(result, /^not scheduled: pg_cron is not installed/);
    });
  },
);

dbTest(
  "forwarding: with pg_cron, pg_net and the Vault secrets the migration schedules forward-events",
  async () => {
    await withFreshDb(STAND_INS, async (sql) => {
      const jobs = await sql<
        { jobname: string; schedule: string; command: string }[]
      >`select * from cron.job`;
      assert.deepEqual(jobs.map((j) => [j.jobname, j.schedule]), [["relay-forward-events", "30 seconds"]]);
      // Run the job's command as pg_cron would: it reads URL and token from Vault at run time.
      await sql.unsafe(jobs[0].command).simple();
      const [call] = await sql`select * from net.calls`;
      assert.equal(call.url, "https://ref.supabase.co/functions/v1/forward-events");
      assert.equal(call.headers.Authorization, "Bearer forwarder-token-from-vault");
      // The operator's one-time call (after creating the secrets) is idempotent; unschedule removes the job.
      const [{ again }] = await sql`select public.schedule_forwarder('10 seconds') as again`;
      assert.equal(again, "scheduled relay-forward-events every 10 seconds");
      assert.equal((await sql`select * from cron.job`).length, 1);
      await sql`select public.unschedule_forwarder()`;
      assert.equal((await sql`select * from cron.job`).length, 0);
      await sql`delete from vault.decrypted_secrets where name = 'relay_forwarder_token'`;
      const [{ missing }] = await sql`select public.schedule_forwarder() as missing`;
      assert.equal(missing, "not scheduled: missing Vault secrets relay_forwarder_token");
    });
  },
);

// pg_cron before 1.5 (Debian's 1.4, older self-hosted images) has no schedules in seconds: the stand-in refuses
// them with 1.4's error. Where seconds are taken (the stand-in above, as 1.6), the tests above cover the rest.
dbTest(
  "forwarding: on a pg_cron without seconds, schedule_forwarder() schedules every minute and says so, and " +
    "refuses a schedule in seconds, saying why and what to run",
  async () => {
    await withFreshDb(hostedStandIns(undefined, { seconds: false }), async (sql) => {
      const [{ result }] = await sql<{ result: string }[]>`select public.schedule_forwarder() as result`;
      assert.match(
        result,
        /^scheduled relay-forward-events every minute \('\* \* \* \* \*'\), not every 30 s/,
      );
      assert.match(result, /takes no schedules in seconds \(pg_cron 1\.5 or later does\)/);
      const jobs = await sql`select jobname, schedule, command from cron.job`;
      assert.deepEqual(jobs.map((j) => [j.jobname, j.schedule]), [["relay-forward-events", "* * * * *"]]);
      await sql.unsafe(jobs[0].command).simple();
      const [call] = await sql`select * from net.calls`;
      assert.equal(call.url, "https://ref.supabase.co/functions/v1/forward-events");
      assert.equal(call.headers.Authorization, "Bearer forwarder-token-from-vault");
      // Asked for by name, seconds are refused, the default's 30 too: the job stays as it was.
      for (const explicit of ["10 seconds", "30 seconds"]) {
        const [{ refused }] = await sql<{ refused: string }[]>`
          select public.schedule_forwarder(${explicit}) as refused`;
        assert.match(
          refused,
          new RegExp(`^not scheduled: this pg_cron refuses it \\(invalid schedule: ${explicit}\\)`),
        );
        assert.match(refused, /schedules in seconds need pg_cron 1\.5 or later/);
        assert.match(refused, /select public\.schedule_forwarder\(\);/, "what to run instead");
        const now = await sql`select jobname, schedule, command from cron.job`;
        assert.deepEqual(now.map((j) => ({ ...j })), [{ ...jobs[0] }], explicit);
      }
      // A cron schedule is named as one ("every */2 * * * *" read wrong); one in seconds reads "every …".
      const [{ minutes }] = await sql`select public.schedule_forwarder('*/2 * * * *') as minutes`;
      assert.equal(minutes, "scheduled relay-forward-events on cron schedule '*/2 * * * *'");
      assert.deepEqual([...await sql`select schedule from cron.job`].map((j) => j.schedule), ["*/2 * * * *"]);
      const [{ hourly }] = await sql`select public.schedule_forwarder('@hourly') as hourly`;
      assert.equal(hourly, "scheduled relay-forward-events on cron schedule '@hourly'");
    });
  },
);

dbTest(
  "forwarding: where pg_cron schedules forward-events, resuming (or setting a target) calls it once, now",
  async () => {
    await withFreshDb(STAND_INS, async (sql) => {
      const calls = async () => (await sql<{ n: number }[]>`select count(*)::int as n from net.calls`)[0].n;
      assert.equal(await calls(), 0);
      await sql`update public.relay_settings set forwarding_paused = true`;
      await sql`update public.relay_settings set max_attempts = 7, agent_sdk_url_override = 'https://a.example'`;
      assert.equal(await calls(), 0, "pausing, or changing settings while paused, calls nothing");
      await sql`update public.relay_settings set forwarding_paused = false`;
      assert.equal(await calls(), 1, "the resume");
      const [call] = await sql`select * from net.calls`;
      assert.equal(call.url, "https://ref.supabase.co/functions/v1/forward-events");
      assert.equal(call.headers.Authorization, "Bearer forwarder-token-from-vault");
      await sql`update public.relay_settings set forwarding_paused = false, max_attempts = 8`;
      await sql`update public.relay_settings set agent_sdk_url_override = null`;
      assert.equal(await calls(), 1, "not paused before, and no new target: nothing to wake for");
      await sql`update public.relay_settings set agent_sdk_url_override = 'https://staging.example'`;
      assert.equal(await calls(), 2, "a new target");
      // The API role the functions use may resume too (the trigger runs with its owner's rights).
      await sql.begin(async (tx) => {
        await tx`set local role service_role`;
        await tx`update public.relay_settings set forwarding_paused = true`;
        await tx`update public.relay_settings set forwarding_paused = false`;
      });
      assert.equal(await calls(), 3, "resumed by service_role");
      // A job the operator switched off (cron.alter_job(active := false)) is not called on resume either.
      await sql`update cron.job set active = false`;
      await sql`update public.relay_settings set forwarding_paused = true`;
      await sql`update public.relay_settings set forwarding_paused = false`;
      assert.equal(await calls(), 3, "the job is inactive");
      await sql`update cron.job set active = true`;
      // Unscheduled (forwarding runs elsewhere): a resume posts nothing, and still succeeds.
      await sql`select public.unschedule_forwarder()`;
      await sql`update public.relay_settings set forwarding_paused = true`;
      await sql`update public.relay_settings set forwarding_paused = false`;
      assert.equal(await calls(), 3);
    });
  },
);

dbTest(
  "forwarding: a resume whose forward-events call fails still resumes (pg_cron calls it later)",
  async () => {
    await withFreshDb(STAND_INS, async (sql) => {
      await sql`update public.relay_settings set forwarding_paused = true`;
      await sql`drop table net.calls`; // every http_post now fails
      await sql`update public.relay_settings set forwarding_paused = false`;
      const [{ paused }] = await sql`select forwarding_paused as paused from public.relay_settings`;
      assert.equal(paused, false);
    });
  },
);

dbTest(
  "forwarding: a resume stands where the trigger's owner may not look into pg_cron's schema (self-hosted)",
  async () => {
    await withFreshDb(STAND_INS, async (sql) => {
      // A plain role owns the trigger function, as a self-hosted server's migration owner would, without USAGE
      // on the cron schema: looking for cron.job raises "permission denied for schema cron".
      const owner = `relay_wake_owner_${crypto.randomUUID().slice(0, 8)}`;
      await sql.unsafe(`create role ${owner} nologin`);
      try {
        await sql.unsafe(`alter function public.wake_forwarders_on_resume() owner to ${owner}`);
        await sql`update public.relay_settings set forwarding_paused = true`;
        await sql`update public.relay_settings set forwarding_paused = false`;
        const [{ paused }] = await sql`select forwarding_paused as paused from public.relay_settings`;
        assert.equal(paused, false);
      } finally {
        await sql.unsafe(`alter function public.wake_forwarders_on_resume() owner to current_user`);
        await sql.unsafe(`drop role ${owner}`);
      }
    });
  },
);

dbTest(
  "forwarding: schedule_forwarder() refuses Vault secrets the job could never use, and says which and why",
  async () => {
    await withFreshDb(STAND_INS, async (sql) => {
      await sql`select public.unschedule_forwarder()`;
      const attempt = async (name: string, value: string) => {
        await sql`update vault.decrypted_secrets set decrypted_secret = ${value} where name = ${name}`;
        const [{ result }] = await sql`select public.schedule_forwarder() as result`;
        const jobs = await sql`select * from cron.job`;
        return { result: result as string, scheduled: jobs.length };
      };
      const goodToken = "forwarder-token-from-vault";
      const goodUrl = "https://ref.supabase.co/functions/v1/forward-events";
      for (
        const [name, value, reason] of [
          [
            "relay_forwarder_token",
            `${goodToken}\n`,
            /relay_forwarder_token holds spaces, a line break or a comma/,
          ],
          ["relay_forwarder_token", ` ${goodToken}`, /relay_forwarder_token holds spaces/],
          [
            "relay_forwarder_token",
            `${goodToken},${goodToken}-new`,
            /relay_forwarder_token holds .* a comma/,
          ],
          ["relay_forwarder_token", "   ", /relay_forwarder_token holds spaces/],
          ["relay_forwarder_token", "short-token", /relay_forwarder_token is shorter than 24 characters/],
          [
            "relay_forwarder_url",
            "ref.supabase.co/functions/v1/forward-events",
            /relay_forwarder_url must be/,
          ],
          ["relay_forwarder_url", `${goodUrl}\r\n`, /relay_forwarder_url must be/],
        ] as const
      ) {
        const { result, scheduled } = await attempt(name, value);
        assert.match(result, /^not scheduled: Vault secret /, JSON.stringify(value));
        assert.match(result, reason);
        assert.equal(scheduled, 0, JSON.stringify(value));
        assert.ok(!result.includes(goodToken), "the message never shows the secret");
        await attempt(name, name === "relay_forwarder_url" ? goodUrl : goodToken);
        await sql`select public.unschedule_forwarder()`;
      }
      // A service-role key (a JWT: dots, no spaces) is a token forward-events accepts too.
      const { result, scheduled } = await attempt(
        "relay_forwarder_token",
        "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2ln",
      );
      assert.equal(result, "scheduled relay-forward-events every 30 seconds");
      assert.equal(scheduled, 1);
    });
  },
);

dbTest(
  "forwarding: schedule_forwarder() refuses a token or URL holding a character past ASCII (invisible ones too)",
  async () => {
    await withFreshDb(STAND_INS, async (sql) => {
      await sql`select public.unschedule_forwarder()`;
      const goodToken = "forwarder-token-from-vault";
      const goodUrl = "https://ref.supabase.co/functions/v1/forward-events";
      // Each one pasted along with the value, or typed into it: pg_net sends its UTF-8 bytes, which
      // forward-events reads one character each and never matches with FORWARDER_TOKEN (or a path).
      for (
        const [name, value] of [
          ["relay_forwarder_token", `${goodToken}\u00a0`], // no-break space
          ["relay_forwarder_token", `\u200b${goodToken}`], // zero-width space
          ["relay_forwarder_token", `${goodToken}\ufeff`], // byte order mark
          ["relay_forwarder_token", `forwarder-tokén-from-vault`],
          ["relay_forwarder_url", `${goodUrl}\u200b`],
          ["relay_forwarder_url", `${goodUrl}\u00a0`],
        ] as const
      ) {
        await sql`update vault.decrypted_secrets set decrypted_secret = ${value} where name = ${name}`;
        const [{ result }] = await sql<{ result: string }[]>`select public.schedule_forwarder() as result`;
        assert.match(result, new RegExp(`^not scheduled: Vault secret ${name} `), JSON.stringify(value));
        assert.match(result, /past ASCII/);
        assert.equal((await sql`select * from cron.job`).length, 0, JSON.stringify(value));
        await sql`update vault.decrypted_secrets set decrypted_secret = ${
          name === "relay_forwarder_url" ? goodUrl : goodToken
        } where name = ${name}`;
      }
      const [{ result }] = await sql<{ result: string }[]>`select public.schedule_forwarder() as result`;
      assert.equal(result, "scheduled relay-forward-events every 30 seconds");
    });
  },
);

dbTest(
  "forwarding: Vault secrets set before the migrations and unusable leave no job scheduled",
  async () => {
    // Hosted, set up secrets first: migration 000200 schedules with the checks of its own time.
    const unusable = STAND_INS.replace("'forwarder-token-from-vault'", "'forwarder-token-from-vault\n'");
    assert.notEqual(unusable, STAND_INS);
    await withFreshDb(unusable, async (sql) => {
      assert.deepEqual([...await sql`select jobname from cron.job`], []);
      const [{ result }] = await sql<{ result: string }[]>`select public.schedule_forwarder() as result`;
      assert.match(result, /^not scheduled: Vault secret relay_forwarder_token holds spaces, a line break/);
    });
  },
);

/** The migration that warns when no job calls forward-events where one could. */
const WARNS_WITHOUT_JOB = "20261121010110";

/**
 * A database with `prepare` made, migrated up to `before` (from nothing by default), `between` run, then the
 * rest migrated over a session that keeps the migrations' warnings, which `fn` gets with the test's pool.
 */
async function migratedKeepingWarnings(
  { prepare, before = "0", between }: {
    prepare: string;
    before?: string;
    between?: (sql: Sql) => Promise<unknown>;
  },
  fn: (sql: Sql, warnings: string[]) => Promise<void>,
) {
  const dir = await migrationsBefore(before);
  const db = await startTestDb({ beforeMigrations: prepare, migrationsDir: dir });
  const warnings: string[] = [];
  const session = postgres(db.url, {
    max: 1,
    onnotice: (n) => n.severity === "WARNING" && warnings.push(n.message),
  });
  try {
    await between?.(db.sql);
    await applyMigrations(session);
    await fn(db.sql, warnings);
  } finally {
    await session.end();
    await db.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const forwarderJobs = async (sql: Sql) =>
  [...await sql`select schedule from cron.job where jobname = 'relay-forward-events'`].map((j) => j.schedule);

const NO_JOB_WARNING = new RegExp(
  "^forwarding: no relay-forward-events job, so pg_cron never calls forward-events.*" +
    "pg_cron before 1\\.5.*select public\\.schedule_forwarder\\(\\);",
  "s",
);

// pg_cron 1.4 (Debian's postgresql-15-cron, older self-hosted images) with pg_net and the Vault secrets made
// before the migrations: migration 000200 tries its default, every 30 seconds, which 1.4 refuses, and nothing
// after it scheduled. No migration can tell that from a job unscheduled on purpose (the next test), so none
// schedules: the migrations say so, naming what to run.
dbTest(
  "forwarding: secrets made before the migrations on a pg_cron without seconds: no job, and the migrations " +
    "warn, naming the command to run",
  async () => {
    await migratedKeepingWarnings(
      { prepare: hostedStandIns(undefined, { seconds: false }) },
      async (sql, warnings) => {
        assert.deepEqual(await forwarderJobs(sql), []);
        const about = warnings.filter((w) => w.includes("relay-forward-events"));
        assert.equal(about.length, 1, JSON.stringify(warnings));
        assert.match(about[0], NO_JOB_WARNING);
        assert.ok(!about[0].includes("forwarder-token-from-vault"), "the warning never shows the secret");
        // What it names schedules the job.
        const [{ result }] = await sql<{ result: string }[]>`select public.schedule_forwarder() as result`;
        assert.match(result, /^scheduled relay-forward-events every minute/);
        assert.deepEqual(await forwarderJobs(sql), ["* * * * *"]);
      },
    );
  },
);

dbTest(
  "forwarding: a job unscheduled on purpose before the upgrade stays unscheduled (with the warning); a job " +
    "scheduled, or secrets missing, warn of nothing",
  async () => {
    const prepare = hostedStandIns();
    await migratedKeepingWarnings({
      prepare,
      before: WARNS_WITHOUT_JOB,
      between: (sql) => sql`select public.unschedule_forwarder()`,
    }, async (sql, warnings) => {
      assert.deepEqual(await forwarderJobs(sql), [], "not scheduled again");
      assert.equal(warnings.length, 1, JSON.stringify(warnings));
      assert.match(warnings[0], NO_JOB_WARNING);
    });
    await migratedKeepingWarnings({ prepare, before: WARNS_WITHOUT_JOB }, async (sql, warnings) => {
      assert.deepEqual(await forwarderJobs(sql), ["30 seconds"]);
      assert.deepEqual(warnings, []);
    });
    await migratedKeepingWarnings({
      prepare,
      before: WARNS_WITHOUT_JOB,
      between: (sql) =>
        sql`select public.unschedule_forwarder();
            delete from vault.decrypted_secrets where name = 'relay_forwarder_token'`.simple(),
    }, async (sql, warnings) => {
      assert.deepEqual(await forwarderJobs(sql), []);
      assert.deepEqual(
        warnings,
        [],
        "nothing to schedule with: README's setup says to run it after the secrets",
      );
    });
  },
);
