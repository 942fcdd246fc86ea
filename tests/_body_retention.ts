// Run by tests/read_body.test.ts as `deno run --v8-flags=--expose-gc`: serves readBodyWithin on loopback, sends
// it a body in small segments, and counts, once every chunk has been handed over, how many of the chunks
// readBodyWithin already read still hold their backing buffer (after a full GC). Prints one JSON line.
import { readBodyWithin } from "../supabase/functions/_shared/http.ts";
import { postInSegments } from "../bench/lib/segmented_client.ts";

const gc = (globalThis as unknown as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --v8-flags=--expose-gc");
const length = Deno.args[0] === "chunked" ? "chunked" : "exact";
const body = new Uint8Array(Number(Deno.args[1] ?? 1024 * 1024)).map((_, i) => (i * 7) % 251);

let report: Record<string, unknown> = {};
const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
  const buffers: WeakRef<ArrayBufferLike>[] = [];
  let retained = -1;
  // Passes the chunks through unchanged, noting each one's buffer; at the end, before readBodyWithin sees it,
  // collects garbage and counts the buffers still alive (the last two may still be on their way).
  const watched = req.body!.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        buffers.push(new WeakRef(chunk.buffer));
        controller.enqueue(chunk);
      },
      async flush() {
        await new Promise((resolve) => setTimeout(resolve, 0)); // WeakRefs hold their target for one task
        gc();
        retained = buffers.slice(0, -2).filter((ref) => ref.deref() !== undefined).length;
      },
    }),
  );
  const read = await readBodyWithin(
    new Request(req.url, { method: req.method, headers: req.headers, body: watched }),
    { maxBytes: body.length, deadlineMs: 60_000 },
  );
  report = {
    chunks: buffers.length,
    retained,
    ok: read.ok,
    equal: read.ok && read.body.length === body.length && read.body.every((b, i) => b === body[i]),
  };
  return new Response(null, { status: 204 });
});
const status = await postInSegments(server.addr.port, body, { length });
await server.shutdown();
console.log(JSON.stringify({ status, ...report }));
