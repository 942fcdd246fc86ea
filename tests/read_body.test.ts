// readBodyWithin over real TCP with a body sent in small segments: Deno yields each as a small view on a larger
// buffer (64 KiB), so keeping the chunks (in a list, or as results held by one deadline promise every read
// raced) kept ~45 times the body: a 6 MiB body ~270 MB, past the function's 256 MB. Checked here: the bytes,
// the size limit, lying Content-Lengths, and that no chunk outlives its read.
import assert from "node:assert/strict";
import { type BodyRead, readBodyWithin } from "../supabase/functions/_shared/http.ts";
import { postInSegments, type SegmentedPost } from "../bench/lib/segmented_client.ts";
import { dbIndependentTest } from "./_db.ts";

/** Distinct bytes, so that a chunk copied to the wrong place shows. */
function sampleBody(size: number): Uint8Array {
  const body = new Uint8Array(size);
  for (let i = 0; i < size; i += 65_536) crypto.getRandomValues(body.subarray(i, Math.min(i + 65_536, size)));
  return body;
}

/** Posts `body` in segments to a loopback server that reads it with readBodyWithin(maxBytes). */
async function readOverTcp(
  body: Uint8Array,
  maxBytes: number,
  opts: SegmentedPost = {},
): Promise<{ status: number; read: BodyRead | Error | null }> {
  let read: BodyRead | Error | null = null;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    try {
      read = await readBodyWithin(req, { maxBytes, deadlineMs: 60_000 });
      return new Response(null, { status: read.ok ? 204 : 413 });
    } catch (error) {
      read = error as Error;
      return new Response(null, { status: 500 });
    }
  });
  try {
    const status = await postInSegments(server.addr.port, body, opts);
    return { status, read };
  } finally {
    await server.shutdown();
  }
}

function assertBody(read: BodyRead | Error | null, expected: Uint8Array) {
  assert.ok(read && !(read instanceof Error) && read.ok, `read: ${read}`);
  // Its own buffer: neither a view on one of the chunks' nor a larger buffer kept alive behind it.
  assert.equal(read.body.buffer.byteLength, read.body.length);
  assert.equal(read.body.byteOffset, 0);
  assert.deepEqual(read.body, expected);
}

for (const length of ["exact", "chunked"] as const) {
  dbIndependentTest(
    `read body: 1 MiB in 1460-byte segments (${length}) arrives byte for byte in a buffer of its own`,
    async () => {
      const body = sampleBody(1024 * 1024 + 123);
      const { status, read } = await readOverTcp(body, 6 * 1024 * 1024, { length });
      assert.equal(status, 204);
      assertBody(read, body);
    },
  );

  dbIndependentTest(
    `read body: exactly maxBytes in segments (${length}) is read; one byte more is too large`,
    async () => {
      const body = sampleBody(200_000);
      assertBody((await readOverTcp(body, body.length, { length })).read, body);
      const over = await readOverTcp(body, body.length - 1, { length });
      assert.deepEqual([over.status, over.read], [413, { ok: false, reason: "too_large" }]);
    },
  );

  dbIndependentTest(
    `read body: chunks already read are not kept while the rest arrives (${length}, needs --expose-gc)`,
    async () => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--v8-flags=--expose-gc",
          new URL("./_body_retention.ts", import.meta.url).pathname,
          length,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.ok(out.success, stderr);
      const report = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
      assert.deepEqual([report.status, report.ok, report.equal], [204, true, true], stderr);
      // Many chunks, or the test proves nothing; of those read, none should survive a full GC.
      assert.ok(report.chunks > 50, `only ${report.chunks} chunks`);
      assert.equal(report.retained, 0, `${report.retained} of ${report.chunks} chunks kept`);
    },
  );
}

dbIndependentTest(
  "read body: a Content-Length that understates the body gives its first Content-Length bytes",
  async () => {
    // HTTP/1.1 frames the body by Content-Length: the bytes past it are not this request's.
    const body = sampleBody(300_000);
    const { read } = await readOverTcp(body, 6 * 1024 * 1024, { length: 100_000 });
    assertBody(read, body.subarray(0, 100_000));
  },
);

dbIndependentTest(
  "read body: a Content-Length over maxBytes is too large before any byte is read",
  async () => {
    const body = sampleBody(10_000);
    const { status, read } = await readOverTcp(body, 50_000, { length: 60_000, sendBytes: 10_000 });
    assert.deepEqual([status, read], [413, { ok: false, reason: "too_large" }]);
  },
);

dbIndependentTest(
  "read body: a body shorter than its Content-Length (the client gone) is incomplete, nothing returned",
  async () => {
    const body = sampleBody(300_000);
    const { read } = await readOverTcp(body, 6 * 1024 * 1024, { length: 300_000, sendBytes: 100_000 });
    assert.deepEqual(read, { ok: false, reason: "incomplete" });
  },
);

dbIndependentTest({
  name:
    "read body: a Content-Length is not allocated before its bytes arrive (clients declaring 6 MiB, stalled)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const maxBytes = 6 * 1024 * 1024;
    let reading = 0;
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
      reading++;
      await readBodyWithin(req, { maxBytes, deadlineMs: 60_000 });
      return new Response(null, { status: 204 });
    });
    const conns: Deno.Conn[] = [];
    const before = Deno.memoryUsage().external;
    try {
      for (let i = 0; i < 20; i++) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
        conns.push(conn);
        const head = `POST / HTTP/1.1\r\nHost: relay.test\r\nContent-Length: ${maxBytes}\r\n\r\nx`;
        await conn.write(new TextEncoder().encode(head));
      }
      while (reading < conns.length) await new Promise((resolve) => setTimeout(resolve, 10));
      await new Promise((resolve) => setTimeout(resolve, 100));
      // Sized by the header, 20 × 6 MiB = 120 MiB; grown as bytes arrive, 20 × 64 KiB.
      const grownMiB = (Deno.memoryUsage().external - before) / 2 ** 20;
      assert.ok(grownMiB < 40, `external memory grew ${grownMiB.toFixed(1)} MiB`);
    } finally {
      for (const conn of conns) conn.close();
      await server.shutdown();
    }
  },
});
