// deno task stats [--json] [--days N]: the pipeline's health and recent volume, from the Data team's views.
// Reads DATABASE_URL / SUPABASE_DB_URL (any server, hosted Supabase included).
import {
  connectOrExit,
  parseArgsOrExit,
  redact,
  reportFailure,
  requireDatabaseUrl,
  usageError,
} from "./lib/cli.ts";
import { loadDotenv } from "./lib/dotenv.ts";
import { readOnlyProblem } from "../supabase/functions/_shared/db.ts";
import {
  isClockRefusal,
  lostEventsSince,
  REFUSAL_CODES,
  refusalAdvice,
} from "../supabase/functions/_shared/lost_events.ts";

await loadDotenv(".env");
const USAGE = "usage: deno task stats [--json] [--days N]";
const parsed = parseArgsOrExit(
  {
    args: Deno.args,
    options: { json: { type: "boolean", default: false }, days: { type: "string", default: "7" } },
  },
  USAGE,
);
const { values } = parsed;
const days = Number(values.days);
// A century at most, as relay_settings.retention_days: past about 2.4 million days the window starts before
// Postgres' dates do, and the run failed on an SQL error ("date out of range") instead of its usage.
const MAX_DAYS = 36_500;
if (!Number.isInteger(days) || days < 1 || days > MAX_DAYS) {
  usageError(`--days takes a whole number of days (1 to ${MAX_DAYS})`, USAGE);
}
const url = requireDatabaseUrl("the database to report on");
const sql = connectOrExit("stats", url, {
  max: 1,
  connectTimeout: 10,
  applicationName: "chatwoot-relay-stats",
});
try {
  const [health] = await sql`select * from public.webhook_pipeline_health`;
  // It answers every read here, and refuses every webhook's store.
  const readOnly = await readOnlyProblem(sql);
  const daily = await sql`
    select to_char(day, 'YYYY-MM-DD') as day, event, events, received, duplicates, changed, delivered, dead, skipped,
           pending + delivering as open, recovered
      from public.chatwoot_daily_event_stats
     where day > (now() at time zone 'UTC')::date - ${days}::int -- day is a UTC date; current_date is local
     order by day desc, event`;
  const lost = await lostWithin(days);
  if (values.json) {
    console.log(
      JSON.stringify(
        {
          read_only: readOnly !== null,
          health: numeric(health),
          lost: lost?.count ?? null,
          lost_missing: lost?.missing ?? null,
          lost_acknowledged: lost?.acknowledged ?? null,
          last_lost_at: lost?.last ?? null,
          lost_missing_by_code: lost?.missingByCode ?? null,
          daily: daily.map(numeric),
        },
        null,
        2,
      ),
    );
  } else {
    const when = (d: Date | null) => d ? `${d.toISOString()} (${ago(d)} ago)` : "never";
    console.log(`Pipeline health  ${redact(url)}`);
    if (readOnly) console.log(`  READ-ONLY       ${readOnly}`);
    const lines: Array<[string, string]> = [
      [
        "backlog",
        `${health.backlog} pending or in delivery` +
        (health.oldest_pending_at ? `, oldest ${ago(health.oldest_pending_at)} old` : ""),
      ],
      ["delivered", `${health.delivered_last_hour} last hour, ${health.delivered_last_day} last day`],
      [
        "dead",
        // The first two count events that went dead (a replay does not undo that); the last, those dead now,
        // and of those how many still want the operator's look (README, Operations: acknowledge dead events).
        `${health.dead_last_hour} went dead last hour, ${health.dead_last_day} last day; ` +
        `${health.dead_total} dead now${deadAcknowledgement(health)}`,
      ],
      ["last received", when(health.last_received_at)],
      ["last delivered", when(health.last_delivered_at)],
      ["failing since", health.failing_since ? when(health.failing_since) : "-"],
      ["stalled since", health.stalled_since ? when(health.stalled_since) : "-"],
      [
        "escalate",
        !health.escalate
          ? "no"
          : health.stalled_since
          ? "YES: events are due and no forwarder has claimed one for 5 minutes (runbook: escalate)"
          : "YES: deliveries failing for more than 5 minutes (runbook: escalate)",
      ],
      ["paused", health.paused ? "YES: forwarding is paused" : "no"],
      [
        "lost",
        lost === null
          ? "unknown (public.webhook_lost_events is missing or not readable by this role)"
          : lost.count === 0
          ? `none in the last ${days} day(s)`
          : `${lost.count} in the last ${days} day(s), last ${when(lost.last)}: ` + (lost.missing === 0
            ? (lost.acknowledged === 0
              ? "all stored since (recovered or sent again)"
              : `none missing unacknowledged (${lost.acknowledged} acknowledged, ` +
                `${lost.count - lost.acknowledged} stored since)`)
            : `${lost.missing} not stored` +
              (lost.count > lost.missing
                ? ` (${lost.count - lost.missing - lost.acknowledged} stored since` +
                  (lost.acknowledged > 0 ? `, ${lost.acknowledged} acknowledged)` : ")")
                : "") +
              "; recover them (public.webhook_lost_events.recover_command); what nothing can fetch back " +
              "(no recover_command), once looked at: select public.acknowledge_lost_events();"),
      ],
    ];
    // Chatwoot's authenticated webhooks we refused, still missing: what to do is not a recovery alone. A line
    // per cause (a clock, a body), worded as readiness's warning is (refusalAdvice).
    const refused = REFUSAL_CODES.filter((code) => (lost?.missingByCode[code] ?? 0) > 0);
    for (const codes of [refused.filter(isClockRefusal), refused.filter((code) => !isClockRefusal(code))]) {
      if (codes.length === 0) continue;
      lines.push([
        "refused",
        codes.map((code) => `${code} ${lost!.missingByCode[code]}`).join(", ") +
        ` not stored (Chatwoot's authenticated webhooks, refused): ${refusalAdvice(codes[0])}; ` +
        "readiness's webhook_pipeline says the same",
      ]);
    }
    for (const [label, value] of lines) console.log(`  ${label.padEnd(15)} ${value}`);
    console.log(`\nLast ${days} day(s) by event (UTC day of receipt)`);
    const header = [
      "day",
      "event",
      "events",
      "received",
      "duplicates",
      "changed",
      "delivered",
      "dead",
      "skipped",
      "open",
      "recovered",
    ];
    const rows = daily.map((r) => header.map((h) => String(r[h])));
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const fmt = (cells: string[]) =>
      cells.map((c, i) => i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join("  ");
    console.log(`  ${fmt(header)}`);
    for (const row of rows) console.log(`  ${fmt(row)}`);
    if (rows.length === 0) console.log("  (no events)");
  }
} catch (error) {
  if ((error as { code?: string }).code === "42P01") {
    console.error(
      `${redact(url)} has no Chatwoot Relay schema yet: apply the migrations (deno task migrate).`,
    );
    Deno.exitCode = 1;
  } else {
    reportFailure("stats", url, error);
  }
} finally {
  await sql.end({ timeout: 2 });
}

/**
 * Events the webhook gave up on (README, "Lost events") in the last `days` days, or null where the table is
 * missing (migrations not applied yet) or this role may not read it (data_analyst has the views only).
 */
async function lostWithin(
  days: number,
): Promise<
  {
    count: number;
    missing: number;
    acknowledged: number;
    last: Date | null;
    missingByCode: Record<string, number>;
  } | null
> {
  const [{ readable, viaFunction, since }] = await sql<
    { readable: boolean; viaFunction: boolean; since: Date }[]
  >`
    select coalesce(has_table_privilege(to_regclass('public.webhook_lost_events'), 'select'), false)
      as readable,
      to_regprocedure('public.webhook_lost_events_since(timestamptz)') is not null as "viaFunction",
      now() - make_interval(days => ${days}::int) as since`;
  if (!readable) return null;
  const lost = await lostEventsSince(sql, since, viaFunction);
  const missingByCode = Object.fromEntries(
    Object.entries(lost.missing_by_code ?? {}).map(([code, m]) => [code, m.missing]),
  );
  const { count, missing, acknowledged, last_lost_at: last } = lost;
  return { count, missing, acknowledged, last, missingByCode };
}

/**
 * ", N not acknowledged (M acknowledged)" after the dead count, from
 * webhook_pipeline_health.dead_unacknowledged (migration 008500); nothing on a database without it, or with
 * nothing dead.
 */
function deadAcknowledgement(health: Record<string, unknown>): string {
  const dead = Number(health.dead_total);
  if (health.dead_unacknowledged == null || dead === 0) return "";
  const unacknowledged = Number(health.dead_unacknowledged);
  if (unacknowledged === 0) return ", all acknowledged";
  const acknowledged = dead - unacknowledged;
  return `, ${unacknowledged} not acknowledged` +
    (acknowledged > 0 ? ` (${acknowledged} acknowledged)` : "") +
    ": look at them, then replay or acknowledge (README, Operations)";
}

/** postgres.js returns bigint and numeric columns as strings; JSON readers want numbers. */
function numeric(row: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(row).map((
      [k, v],
    ) => [k, typeof v === "string" && k !== "day" && /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v]),
  );
}

function ago(date: Date): string {
  const s = Math.max(0, (Date.now() - date.getTime()) / 1000);
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}
