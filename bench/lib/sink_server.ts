// The Agent SDK stand-in of the forwarding benchmark and limit C's server: reads the body, answers 200 at once,
// and remembers when each event arrived (X-Relay-Event-Id), for end-to-end latency. Listens where
// DENO_SERVE_ADDRESS says. Control: GET /_bench/stats, GET /_bench/arrivals, GET /_bench/clock,
// POST /_bench/reset (the hot path is any other POST).
//
// Arrival times are wall-clock milliseconds with sub-millisecond precision: performance.timeOrigin (the
// system's CLOCK_REALTIME when the process started) + performance.now() (monotonic), the same clock
// Postgres's now() reads on this machine.
let ids: string[] = [];
let arrivals: number[] = [];
let count = 0;
let first = 0;
let last = 0;

const wallMs = () => performance.timeOrigin + performance.now();
const ok = () => new Response('{"ok":true}', { headers: { "content-type": "application/json" } });
const json = (value: unknown) => Response.json(value);

Deno.serve(async (req) => {
  if (req.method === "POST" && !req.url.includes("/_bench/")) {
    await req.arrayBuffer();
    const at = wallMs();
    if (count === 0) first = at;
    last = at;
    count++;
    const id = req.headers.get("x-relay-event-id");
    if (id !== null) {
      ids.push(id);
      arrivals.push(at);
    }
    return ok();
  }
  const path = new URL(req.url).pathname;
  if (path === "/_bench/stats") return json({ count, events: ids.length, first_ms: first, last_ms: last });
  if (path === "/_bench/arrivals") return json({ ids, arrivals });
  if (path === "/_bench/clock") return json({ now_ms: wallMs() });
  if (path === "/_bench/reset") {
    ids = [];
    arrivals = [];
    count = first = last = 0;
    return json({ ok: true });
  }
  return new Response("not found", { status: 404 });
});
