// PGlite behind pglite-socket as a process of its own (the benchmark's reference database):
// deno run -A bench/lib/pglite_server.ts <port>
import { startEmbeddedDb } from "../../scripts/lib/embedded_db.ts";

const db = await startEmbeddedDb({ port: Number(Deno.args[0] ?? 0) });
const stop = async () => {
  await db.stop();
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
