// A client that sends a request body in small TCP writes (1460 bytes: one Ethernet segment each), pausing now
// and then so they reach the server apart, as a body from a slow or distant client does. Deno then yields
// many small chunks, each a view on its own larger buffer (64 KiB here).

export interface SegmentedPost {
  /** Request path, "/" by default. */
  path?: string;
  headers?: Record<string, string>;
  /** "exact": Content-Length is the body's length; a number: that Content-Length; "chunked": none. */
  length?: "exact" | "chunked" | number;
  /** Bytes per write. */
  segmentBytes?: number;
  /** Yield to the event loop after this many writes. */
  pauseEvery?: number;
  /** Send only this many bytes of the body, then stop writing (a body shorter than its Content-Length). */
  sendBytes?: number;
}

/** Posts `body` to 127.0.0.1:`port` as `opts` says; returns the answer's status (0: none). */
export async function postInSegments(
  port: number,
  body: Uint8Array,
  opts: SegmentedPost = {},
): Promise<number> {
  const { path = "/", headers = {}, length = "exact", segmentBytes = 1460, pauseEvery = 8 } = opts;
  const sendBytes = Math.min(opts.sendBytes ?? body.length, body.length);
  const lines = [`POST ${path} HTTP/1.1`, "Host: 127.0.0.1"];
  if (length === "chunked") lines.push("Transfer-Encoding: chunked");
  else lines.push(`Content-Length: ${length === "exact" ? body.length : length}`);
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(conn, new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n"));
    await writeBody(conn, body, sendBytes, { length, segmentBytes, pauseEvery })
      .catch(() => {}); // the server may answer (a 413) and close before the whole body is sent
    return await readStatus(conn);
  } finally {
    try {
      conn.close();
    } catch {
      // closed already
    }
  }
}

/** Writes the first `sendBytes` of `body`, framed as `length` says; half-closes when it stops short. */
async function writeBody(
  conn: Deno.Conn,
  body: Uint8Array,
  sendBytes: number,
  { length, segmentBytes, pauseEvery }: Required<
    Pick<SegmentedPost, "length" | "segmentBytes" | "pauseEvery">
  >,
): Promise<void> {
  const encoder = new TextEncoder();
  for (let sent = 0, writes = 0; sent < sendBytes; sent += segmentBytes) {
    const part = body.subarray(sent, Math.min(sent + segmentBytes, sendBytes));
    if (length === "chunked") {
      // One write per chunk, framing included, so each still goes out as one segment.
      await writeAll(
        conn,
        new Uint8Array([...encoder.encode(`${part.length.toString(16)}\r\n`), ...part, 13, 10]),
      );
    } else {
      await writeAll(conn, part);
    }
    if (++writes % pauseEvery === 0) await new Promise((resolve) => setTimeout(resolve, 0));
  }
  if (length === "chunked" && sendBytes === body.length) await writeAll(conn, encoder.encode("0\r\n\r\n"));
  if (sendBytes < body.length) await conn.closeWrite();
}

/** conn.write may write only part of what it is given. */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) written += await conn.write(bytes.subarray(written));
}

/** The status of the first answer on `conn`, read up to the end of its head; 0 when none comes. */
async function readStatus(conn: Deno.Conn): Promise<number> {
  const buf = new Uint8Array(4096);
  let head = "";
  while (!head.includes("\r\n")) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    head += new TextDecoder().decode(buf.subarray(0, n));
  }
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
}
