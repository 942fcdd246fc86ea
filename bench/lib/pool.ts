// The requests a benchmark posts: realistic Chatwoot bodies (mixed events, 5-20 KB, some exact repeats),
// each signed like Chatwoot signs it. Signatures carry a timestamp accepted for ±300 s, so a pool is built
// just before the phase that uses it.
import {
  type EventColumns,
  eventColumns,
  parseChatwootEvent,
} from "../../supabase/functions/_shared/chatwoot_payload.ts";
import { chatwootSignatureHeaders, sha256Hex } from "../../supabase/functions/_shared/signature.ts";
import { type SampleEvent, samplePayload } from "../../scripts/lib/samples.ts";
import { seededRandom } from "./stats.ts";

/** Share of each event type, roughly what a busy support inbox sends. */
const EVENT_MIX: Array<[SampleEvent, number]> = [
  ["message_created", 40],
  ["message_updated", 8],
  ["conversation_updated", 12],
  ["conversation_status_changed", 6],
  ["conversation_created", 6],
  ["conversation_typing_on", 8],
  ["conversation_typing_off", 6],
  ["contact_updated", 6],
  ["contact_created", 3],
  ["webwidget_triggered", 3],
  ["inbox_updated", 2],
];

const WORDS = ("order shipping refund tracking package delivered delayed warehouse invoice please thanks " +
  "customer support account address payment card receipt return exchange size colour damaged missing " +
  "hello regards update status week today tomorrow email phone number reference ticket agent").split(" ");

export interface PoolOptions {
  count: number;
  secret: string;
  /** Share of entries that repeat an earlier body exactly (a duplicate delivery). */
  duplicateShare?: number;
  minBytes?: number;
  maxBytes?: number;
  seed?: number;
  /** Message ids start here (so separate batches never share keys). */
  firstMessageId?: number;
}

/** A signed request body with the columns the function would derive from it. */
export interface PooledBody extends EventColumns {
  body: string;
  deliveryId: string;
  bodySha256: string;
}

/** Deterministic bodies (same seed, same bodies and keys); signing happens separately. */
export function buildBodies(options: Omit<PoolOptions, "secret">): PooledBody[] {
  const { count, duplicateShare = 0.05, minBytes = 5_000, maxBytes = 20_000, seed = 6 } = options;
  const firstMessageId = options.firstMessageId ?? 1_000_000;
  const random = seededRandom(seed);
  const totalWeight = EVENT_MIX.reduce((sum, [, w]) => sum + w, 0);
  const pickEvent = (): SampleEvent => {
    let r = random() * totalWeight;
    for (const [event, weight] of EVENT_MIX) if ((r -= weight) < 0) return event;
    return EVENT_MIX[0][0];
  };
  const words = (bytes: number) => {
    const out: string[] = [];
    let size = 0;
    while (size < bytes) {
      const word = WORDS[Math.floor(random() * WORDS.length)];
      out.push(word);
      size += word.length + 1;
    }
    return out.join(" ");
  };
  const start = Date.UTC(2026, 0, 5, 9, 0, 0);
  const bodies: PooledBody[] = [];
  for (let i = 0; i < count; i++) {
    if (i > 0 && random() < duplicateShare) {
      const earlier = bodies[Math.max(0, i - 1 - Math.floor(random() * 50))];
      bodies.push({ ...earlier, deliveryId: deliveryId(random) });
      continue;
    }
    const event = pickEvent();
    const target = Math.round(minBytes + random() * (maxBytes - minBytes));
    // About a third of the size is varied text (it does not compress to nothing); the rest is padding.
    const payload = samplePayload(event, {
      messageId: firstMessageId + i,
      conversationId: 1 + Math.floor(random() * 5_000),
      contactId: 1 + Math.floor(random() * 20_000),
      inboxId: 1 + Math.floor(random() * 8),
      content: words(Math.round(target * 0.3)),
      padToBytes: target,
      at: new Date(start + (firstMessageId + i) * 250),
    });
    const body = JSON.stringify(payload);
    const parsed = parseChatwootEvent(body);
    if (!parsed.ok) throw new Error(`sample ${event} does not validate: ${parsed.message}`);
    const bodySha256 = sha256Hex(body);
    const columns = eventColumns(parsed.payload, parsed.event, bodySha256);
    bodies.push({ ...columns, body, bodySha256, deliveryId: deliveryId(random) });
  }
  return bodies;
}

function deliveryId(random: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(random() * 16).toString(16)).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${
    hex.slice(20)
  }`;
}

export interface SignedRequest {
  body: string;
  headers: Record<string, string>;
}

export function signBodies(bodies: PooledBody[], secret: string): SignedRequest[] {
  const now = Math.floor(Date.now() / 1000);
  return bodies.map((b) => ({
    body: b.body,
    headers: {
      "Content-Type": "application/json",
      "X-Chatwoot-Delivery": b.deliveryId,
      ...chatwootSignatureHeaders(secret, b.body, now),
    },
  }));
}

/** Separator between raw requests in the file the wrk script reads (cannot occur in a JSON body). */
export const WRK_POOL_SEPARATOR = "\0\0BENCH-REQUEST\0\0";

/** Writes a file and waits until it is on disk (see writeWrkPool for why). */
export async function writeTextFileToDisk(path: string, text: string): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const bytes = new TextEncoder().encode(text);
  for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
  await file.syncData();
}

/** Writes raw HTTP/1.1 requests for wrk's Lua script to replay in order. */
export async function writeWrkPool(
  path: string,
  requests: SignedRequest[],
  { host, path: urlPath }: { host: string; path: string },
): Promise<number> {
  const encoder = new TextEncoder();
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const writer = file.writable.getWriter();
  let bytes = 0;
  try {
    for (const r of requests) {
      const body = encoder.encode(r.body);
      const head = [
        `POST ${urlPath} HTTP/1.1`,
        `Host: ${host}`,
        `Content-Length: ${body.length}`,
        ...Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`),
        "",
        "",
      ].join("\r\n");
      const chunk = encoder.encode(head);
      await writer.write(chunk);
      await writer.write(body);
      await writer.write(encoder.encode(WRK_POOL_SEPARATOR));
      bytes += chunk.length + body.length;
    }
    // On disk before any phase reads it: left dirty, the kernel writes these hundreds of MB back ~30 s
    // later (vm.dirty_expire_centisecs), in the middle of a measured phase, stalling Postgres' WAL fsyncs.
    await file.syncData();
  } finally {
    await writer.close();
  }
  return bytes;
}
