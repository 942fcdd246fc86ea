// The Agent SDK stand-in: a real HTTP server on 127.0.0.1 (port 0) that records every request and answers
// as the test says: 2xx, 500, 410, 429 with Retry-After, or too slowly (held until released or closed).
export interface Received {
  /** The request's URL as the stand-in saw it (path and query). */
  url: string;
  body: Uint8Array;
  text: string;
  headers: Headers;
  eventId: number;
  attempt: number;
  /** Set once the stand-in answered (absent while held, or when the client went away first). */
  answered?: number;
}

export type Answer = Response | { hold: true; then?: Response } | { delayMs: number; then: Response };
export type Behaviour = (request: Received, index: number) => Answer | Promise<Answer>;

export interface AgentSdkStandIn {
  url: string;
  received: Received[];
  /** Requests answered with a 2xx, in the order they were answered. */
  accepted(): Received[];
  behave(behaviour: Behaviour): void;
  /** Answers every held request: with its `then`, or 200. */
  releaseHeld(): void;
  waitFor(predicate: () => boolean, what: string, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export const ok = () =>
  new Response('{"ok":true}', { status: 200, headers: { "content-type": "application/json" } });

export function startAgentSdk(behaviour: Behaviour = () => ok()): AgentSdkStandIn {
  let current = behaviour;
  const received: Received[] = [];
  const acceptedList: Received[] = [];
  const held: Array<() => void> = [];
  const closing = new AbortController();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const body = new Uint8Array(await req.arrayBuffer());
    const r: Received = {
      url: req.url,
      body,
      text: new TextDecoder().decode(body),
      headers: req.headers,
      eventId: Number(req.headers.get("x-relay-event-id")),
      attempt: Number(req.headers.get("x-relay-attempt")),
    };
    received.push(r);
    let answer = await current(r, received.length - 1);
    if ("hold" in answer) {
      await new Promise<void>((resolve) => {
        held.push(resolve);
        closing.signal.addEventListener("abort", () => resolve());
      });
      answer = answer.then ?? ok();
    } else if ("delayMs" in answer) {
      const { delayMs, then } = answer;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delayMs);
        closing.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve();
        });
      });
      answer = then;
    }
    const response = answer as Response;
    // The client may be gone (timeout, killed): then nothing was accepted. (deno.json's unstable
    // "no-legacy-abort", the coming default: the signal aborts only for a client gone, and Deno 2.9 does not
    // warn of the old behaviour in every test file reading it. Read before the answer, it is the same.)
    if (!req.signal.aborted && !closing.signal.aborted) {
      r.answered = Date.now();
      if (response.ok) acceptedList.push(r);
    }
    return response;
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    received,
    accepted: () => acceptedList,
    behave(next) {
      current = next;
    },
    releaseHeld() {
      for (const release of held.splice(0)) release();
    },
    async waitFor(predicate, what, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async close() {
      closing.abort();
      await server.shutdown();
    },
  };
}
