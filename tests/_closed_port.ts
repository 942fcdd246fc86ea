// A loopback port on which nothing listens, for tests of a connection refused. A port picked by listening on
// 0 and closing it is free for any other test running in parallel to take before it is used; port 4 is below
// 1024, where no listener on port 0 is ever given a port, and nothing here binds it. (Not 1, 7, 9 …: undici
// refuses those "bad ports" itself, before connecting.)
export const CLOSED_PORT = 4;

// Checked once per test file: should something listen there after all, the tests say so instead of failing
// on an answer they did not expect.
const listening = await Deno.connect({ hostname: "127.0.0.1", port: CLOSED_PORT }).then((conn) => {
  conn.close();
  return true;
}, (error) => !(error instanceof Deno.errors.ConnectionRefused));
if (listening) {
  throw new Error(
    `tests/_closed_port.ts: 127.0.0.1:${CLOSED_PORT} accepts connections; tests need it closed`,
  );
}

/** `http://127.0.0.1:<CLOSED_PORT>`: every connection to it is refused at once. */
export function closedPortUrl(): string {
  return `http://127.0.0.1:${CLOSED_PORT}`;
}
