// Context for limit C: the most a Deno process can POST to the sink with the forwarder's own means (fetch,
// a fresh HMAC signature per request, the same bodies and headers) and nothing else: no database, no claim,
// no write-back, no log line. `deno run bare_client.ts <url> <bodies.json> <connections> <seconds> <secret>`
// prints {"requests": n, "seconds": s}. bodies.json: [{ "body": "...", "headers": {...} }].
import { chatwootSignatureHeaders } from "../../supabase/functions/_shared/signature.ts";

const [url, bodiesFile, connectionsArg, secondsArg, secret] = Deno.args;
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
    const response = await fetch(url, {
      method: "POST",
      headers: { ...r.headers, ...chatwootSignatureHeaders(secret, body) },
      body,
    });
    await response.body?.cancel();
    if (!response.ok) throw new Error(`sink answered ${response.status}`);
    sent++;
  }
}

const started = performance.now();
await Promise.all(Array.from({ length: Number(connectionsArg) }, lane));
console.log(JSON.stringify({ requests: sent, seconds: (performance.now() - started) / 1000 }));
