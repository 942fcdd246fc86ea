// The standalone forwarder's HTTP client (`deno task forward`, the dev server's loop): undici, Node's own HTTP
// client, over keep-alive connections it pools per origin. Against the same loopback sink it costs a third
// less CPU per delivery than Deno's fetch (docs/benchmarks.md), which is what bounds a forwarder process.
// The Edge Functions keep fetchTransport: the edge runtime gives them fetch natively, and their import graph
// stays free of a large npm package that a cold start would have to load.
import { Agent, request } from "undici";
import { type DeliveryTransport, readExcerpt } from "../../supabase/functions/_shared/forwarder.ts";

/** A transport with its own connection pool; close() ends the pool's connections. */
export interface PooledTransport {
  send: DeliveryTransport;
  close(): Promise<void>;
}

export function undiciTransport(): PooledTransport {
  // 128 connections per origin: more than the batch size × lanes of any process (100 × 8 at most is not a
  // useful setting on one core); beyond it requests queue on the pool.
  const dispatcher = new Agent({ keepAliveTimeout: 10_000, connections: 128 });
  const send: DeliveryTransport = async ({ url, headers, body, timeoutMs }) => {
    // undici's request() never follows redirects (that takes an interceptor this dispatcher does not have).
    const answer = await request(url, {
      method: "POST",
      headers,
      body,
      signal: AbortSignal.timeout(timeoutMs),
      dispatcher,
    });
    const retryAfter = answer.headers["retry-after"];
    const date = answer.headers["date"];
    return {
      status: answer.statusCode,
      retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter ?? null,
      date: Array.isArray(date) ? date[0] : date ?? null,
      excerpt: await readExcerpt(answer.body),
    };
  };
  return { send, close: () => dispatcher.close() };
}
