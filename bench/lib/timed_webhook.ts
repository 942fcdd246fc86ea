// The chatwoot-webhook function as deployed (runtimeFromEnv, its app, its logger), with timers around it for
// bench/profile_half_rate.ts: each app.fetch call, each statement the app sends, and the event loop's lag
// (how late a 1 ms interval fires). GET /_profile/stats returns the samples since the last call and clears
// them. Not used by `deno task bench`: the timers cost a little of what they measure.
// TIMED_WEBHOOK_QUIET_LOG=1 drops the log lines inside the process, so that stdout carries only V8's GC trace.
import { chatwootWebhookApp } from "../../supabase/functions/_shared/chatwoot_webhook.ts";
import { silentLogger } from "../../supabase/functions/_shared/log.ts";
import { runtimeFromEnv } from "../../supabase/functions/_shared/runtime.ts";
import { summarize } from "./stats.ts";

const runtime = runtimeFromEnv();
if (Deno.env.get("TIMED_WEBHOOK_QUIET_LOG") === "1") runtime.log = silentLogger;
const handlerMs: number[] = [], statementMs: number[] = [], lagMs: number[] = [];

const sql = runtime.sql;
if (sql) {
  // storeEvent sends its one statement through sql.unsafe; time from the call to its result.
  const unsafe = sql.unsafe.bind(sql);
  sql.unsafe = ((...args: Parameters<typeof unsafe>) => {
    const started = performance.now();
    const query = unsafe(...args);
    query.then(() => statementMs.push(performance.now() - started), () => {});
    return query;
  }) as typeof sql.unsafe;
}
const app = chatwootWebhookApp(runtime);

let tick = performance.now();
setInterval(() => {
  const now = performance.now();
  lagMs.push(Math.max(0, now - tick - 1));
  tick = now;
}, 1);

Deno.serve(async (req) => {
  if (new URL(req.url).pathname === "/_profile/stats") {
    const stats = {
      handler: summarize(handlerMs),
      statement: summarize(statementMs),
      lag: { ...summarize(lagMs), over5: lagMs.filter((ms) => ms > 5).length },
    };
    handlerMs.length = statementMs.length = lagMs.length = 0;
    return Response.json(stats);
  }
  const started = performance.now();
  const res = await app.fetch(req);
  handlerMs.push(performance.now() - started);
  return res;
});
