// Where a request's CPU time goes inside the function, stage by stage, measured in this process on the same
// bodies (no HTTP, no database): what profiling the ingest path by stages shows.
import {
  eventColumns,
  jsonbText,
  parseChatwootEvent,
} from "../../supabase/functions/_shared/chatwoot_payload.ts";
import { ChatwootSignatureVerifier, sha256Hex } from "../../supabase/functions/_shared/signature.ts";
import type { SignedRequest } from "./pool.ts";

export type StageTimings = Record<string, number>;

/** Mean microseconds per request for each stage, over `rounds` passes of the requests. */
export function timeIngestStages(
  requests: SignedRequest[],
  secret: string,
  rounds = 2,
): StageTimings {
  const verifier = new ChatwootSignatureVerifier([secret]);
  const encoder = new TextEncoder();
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const totals: StageTimings = {
    "verify HMAC signature": 0,
    "decode UTF-8": 0,
    "JSON.parse + zod validation": 0,
    "sha256 of body": 0,
    "key and columns": 0,
    "log lines (JSON.stringify)": 0,
  };
  let n = 0;
  for (let round = 0; round < rounds; round++) {
    for (const r of requests) {
      const body = encoder.encode(r.body);
      let t = performance.now();
      const lap = (stage: string) => {
        const now = performance.now();
        totals[stage] += now - t;
        t = now;
      };
      const ok = verifier.verify(
        r.headers["X-Chatwoot-Signature"],
        r.headers["X-Chatwoot-Timestamp"],
        body,
      );
      if (!ok) throw new Error("stage timing: signature does not verify");
      lap("verify HMAC signature");
      const text = decoder.decode(body);
      lap("decode UTF-8");
      const parsed = parseChatwootEvent(text);
      if (!parsed.ok) throw new Error(parsed.message);
      lap("JSON.parse + zod validation");
      const sha = sha256Hex(body);
      lap("sha256 of body");
      const columns = eventColumns(parsed.payload, parsed.event, sha);
      jsonbText(text);
      lap("key and columns");
      JSON.stringify({ ts: new Date().toISOString(), level: "info", msg: "Received", bytes: body.length });
      JSON.stringify({
        ts: new Date().toISOString(),
        level: "info",
        msg: "Stored",
        ...columns,
        outcome: "stored",
      });
      lap("log lines (JSON.stringify)");
      n++;
    }
  }
  return Object.fromEntries(Object.entries(totals).map(([k, v]) => [k, Math.round((v / n) * 1000)]));
}
