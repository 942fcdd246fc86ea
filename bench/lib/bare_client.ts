// Context for limit C: the most a Deno process can POST to the sink with the forwarder's own means (one of
// its delivery transports, a fresh HMAC signature per request, the same bodies and headers) and nothing else:
// no database, no claim, no write-back, no log line.
// `deno run bare_client.ts <undici|fetch> <url> <bodies.json> <connections> <seconds> <secret>` prints
// {"requests": n, "seconds": s}. bodies.json: [{ "body": "...", "headers": {...} }].
import { type DeliveryTransport, fetchTransport } from "../../supabase/functions/_shared/forwarder.ts";
import { chatwootSignatureHeaders } from "../../supabase/functions/_shared/signature.ts";
import { undiciTransport } from "../../scripts/lib/undici_transport.ts";

const [transportName, url, bodiesFile, connectionsArg, secondsArg, secret] = Deno.args;
const send: DeliveryTransport = transportName === "undici" ? undiciTransport().send : fetchTransport;
const requests = JSON.parse(await Deno.readTextFile(bodiesFile)) as Array<
  { body: string; headers: Record<string, string> }
>;
const encoder = new TextEncoder();
const deadline = performance.now() + Number(secondsArg) * 1000;
let sent = 0;
let next = 0;

async function lane() {
  while (performance.now() < deadline) {
    const r = requests[next++ % requests.length];
    const body = encoder.encode(r.body);
    const headers = { ...r.headers, ...chatwootSignatureHeaders(secret, body) };
    const answer = await send({ url, headers, body, timeoutMs: 10_000 });
    if (answer.status !== 200) throw new Error(`sink answered ${answer.status}`);
    sent++;
  }
}

const started = performance.now();
await Promise.all(Array.from({ length: Number(connectionsArg) }, lane));
console.log(JSON.stringify({ requests: sent, seconds: (performance.now() - started) / 1000 }));
Deno.exit(0); // the undici pool keeps its connections open
