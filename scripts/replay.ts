// deno task replay <id>... | --since <time> [--until <time>] [--event <name>] [--dry-run] [--chunk N]
// Requeues the dead events matching when the run starts (replay_webhook_events, by id) in chunks, printing
// progress and a summary. Works against any server: DATABASE_URL (or SUPABASE_DB_URL).
import { connectOrExit, parseArgsOrExit, redact, reportFailure, requireDatabaseUrl } from "./lib/cli.ts";
import { loadDotenv } from "./lib/dotenv.ts";
import { beginSurvivingClose } from "../supabase/functions/_shared/db.ts";

const USAGE = `usage:
  deno task replay <id> [<id>...]                        requeue these dead events
  deno task replay --since <time> [--until <time>] [--event <name>]
                                                         requeue dead events received in [since, until)
options: --dry-run (count only)  --chunk <n> (rows per call, default 500)
times: anything Postgres reads as timestamptz, in UTC unless it names a zone, e.g. 2026-11-21T10:00 or
"2026-11-21 10:00+01"`;

/** Said already, with the usage; ends the run with exit 2. */
class UsageError extends Error {}

await loadDotenv(".env");
const parsed = parseArgsOrExit(
  {
    args: Deno.args,
    allowPositionals: true,
    options: {
      since: { type: "string" },
      until: { type: "string" },
      event: { type: "string" },
      "dry-run": { type: "boolean", default: false },
      chunk: { type: "string", default: "500" },
    },
  },
  USAGE,
);
const { values, positionals } = parsed;
const ids = positionals.flatMap((p) => p.split(",")).filter((p) => p !== "");
const chunk = Number(values.chunk);
const byRange = values.since !== undefined;
if (
  (ids.length === 0) === !byRange || !Number.isInteger(chunk) || chunk < 1 ||
  ids.some((id) => !/^\d+$/.test(id)) || (!byRange && (values.until || values.event))
) {
  console.error(USAGE);
  Deno.exit(2);
}
const url = requireDatabaseUrl("the database holding the events");

const sql = connectOrExit("replay", url, {
  max: 1,
  connectTimeout: 10,
  applicationName: "chatwoot-relay-replay",
});
const started = performance.now();
try {
  console.log(`database ${redact(url)}`);
  const until = values.until ?? "infinity";
  const event = values.event ?? null;
  // The dead events matching, taken once: the run requeues exactly these (by id, oldest first). Selecting
  // again per chunk would take an event requeued earlier in this run that died again meanwhile, in place of
  // one not yet requeued, and leave that one dead while the count said all were done.
  const matched = byRange
    // beginSurvivingClose: a connection lost meanwhile is a failure reported, not a crash (postgres.js#1066).
    ? await beginSurvivingClose(sql, "", async (tx) => {
      // A time without a zone is UTC, as deno task recover and chatwoot_timestamp() read one, not whatever
      // TimeZone the server or the connection has.
      await tx`select set_config('TimeZone', 'UTC', true)`;
      // A time Postgres cannot read (a class 22 error) is the caller's, as the usage says: exit 2, not 1.
      let ordered: boolean;
      try {
        [{ ordered }] = await tx<{ ordered: boolean }[]>`
          select ${values.since!}::text::timestamptz < ${until}::text::timestamptz as ordered`;
      } catch (error) {
        if (!/^22/.test((error as { code?: string }).code ?? "")) throw error;
        console.error(`${(error as Error).message}\n${USAGE}`);
        Deno.exitCode = 2;
        throw new UsageError();
      }
      // An empty window (the times swapped) would match nothing and end "ok": refused, as recover does.
      if (!ordered) {
        console.error(`--since ${values.since} is not before --until ${until}\n${USAGE}`);
        Deno.exitCode = 2;
        throw new UsageError();
      }
      const [{ ids }] = await tx<{ ids: string[] }[]>`
        select coalesce(array_agg(id order by id), '{}') as ids from public.webhook_events
         where status = 'dead' and received_at >= ${values.since!}::text::timestamptz
           and received_at < ${until}::text::timestamptz
           and (${event}::text is null or event = ${event}::text)`;
      return ids;
    })
    : (await sql<{ ids: string[] }[]>`
        select coalesce(array_agg(id order by id), '{}') as ids from public.webhook_events
         where status = 'dead' and id = any(${ids}::bigint[])`)[0].ids;
  const dead = matched.length;
  const selection = byRange
    ? `received in [${values.since}, ${until})${event ? `, event ${event}` : ""}`
    : `${ids.length} id(s)`;
  console.log(`dead events matching ${selection}: ${dead}`);

  let replayed = 0;
  if (!values["dry-run"]) {
    // replay_webhook_events requeues only what is still dead when its turn comes: an event replayed by
    // someone else, delivered or deleted meanwhile is left as it is (and counted below).
    for (let i = 0; i < dead; i += chunk) {
      const part = matched.slice(i, i + chunk);
      const [{ n }] = await sql<{ n: string }[]>`select public.replay_webhook_events(${part}::bigint[]) as n`;
      replayed += Number(n);
      console.log(`  requeued ${replayed} / ${dead}`);
    }
    if (replayed < dead) {
      console.log(
        `  ${dead - replayed} no longer dead when their turn came (replayed, delivered or deleted meanwhile)`,
      );
    }
  }
  const summary = {
    ok: true,
    dry_run: values["dry-run"],
    matched_dead: dead,
    requeued: replayed,
    duration_ms: Math.round(performance.now() - started),
  };
  console.log(`summary ${JSON.stringify(summary)}`);
} catch (error) {
  if (!(error instanceof UsageError)) reportFailure("replay", url, error);
} finally {
  await sql.end({ timeout: 2 });
}
