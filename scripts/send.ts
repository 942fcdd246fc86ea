// deno task send [event] [--url URL] [--message-id N] [--conversation-id N] [--content TEXT]
// Posts one correctly signed sample webhook to the local server and prints the answer (with only a URL token
// configured, an unsigned one carrying ?token=, as Chatwoot versions that cannot sign send it).
import { errorMessageWithCause } from "../supabase/functions/_shared/background.ts";
import { chatwootSignatureHeaders } from "../supabase/functions/_shared/signature.ts";
import { exitWithFailure, parseArgsOrExit, redact, usageError } from "./lib/cli.ts";
import { loadDotenv } from "./lib/dotenv.ts";
import { localCredential } from "./lib/dev_secret.ts";
import { SAMPLE_EVENTS, type SampleEvent, samplePayload } from "./lib/samples.ts";

await loadDotenv(".env");
const USAGE =
  "usage: deno task send [event] [--url URL] [--message-id N] [--conversation-id N] [--content TEXT]\n" +
  `events (default message_created): ${SAMPLE_EVENTS.join(", ")}`;
const parsed = parseArgsOrExit(
  {
    args: Deno.args,
    allowPositionals: true,
    options: {
      url: { type: "string" },
      "message-id": { type: "string" },
      "conversation-id": { type: "string" },
      content: { type: "string" },
    },
  },
  USAGE,
);
const { values, positionals } = parsed;
const event = (positionals[0] ?? "message_created") as SampleEvent;
if (!SAMPLE_EVENTS.includes(event)) {
  usageError(`Unknown event ${event}`, USAGE);
}
/** A whole-number option (an id, 1 or more), or exit 2 with the usage: a bad one is the caller's, not a 4xx. */
function idOption(name: "message-id" | "conversation-id"): number | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) < 1) {
    usageError(`--${name} takes a whole number (1 or more), not ${text}`, USAGE);
  }
  return Number(text);
}
const messageId = idOption("message-id");
const conversationId = idOption("conversation-id");
const credential = await localCredential();
if (!credential) {
  console.error(
    "No secret: set CHATWOOT_WEBHOOK_SECRET (or CHATWOOT_WEBHOOK_URL_TOKEN), or start `deno task dev` once " +
      "to create the dev secret.",
  );
  Deno.exit(2);
}
const port = Deno.env.get("PORT") || "54321";
let url = values.url ?? `http://127.0.0.1:${port}/functions/v1/chatwoot-webhook`;
// Only a URL token configured: sent as ?token=, unless the URL already carries one.
if ("urlToken" in credential && URL.canParse(url) && !new URL(url).searchParams.has("token")) {
  const withToken = new URL(url);
  withToken.searchParams.set("token", credential.urlToken);
  url = withToken.toString();
}
const body = JSON.stringify(samplePayload(event, {
  // New each run, also for several runs within one second (the same message id again is a duplicate).
  messageId: messageId ?? Date.now(),
  conversationId,
  content: values.content,
}));
// Credentials in the URL (user:password@, every ?token=) are shown as ***.
const shownUrl = redact(url);
let response: Response;
let answer: string;
try {
  response = await fetch(url, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "X-Chatwoot-Delivery": crypto.randomUUID(),
      ...("secret" in credential ? chatwootSignatureHeaders(credential.secret, body) : {}),
    },
    body,
  });
  answer = await response.text();
} catch (error) {
  // The default URL is task dev's: nothing there most likely means it is not started (or not Ready) yet.
  exitWithFailure(
    "send",
    url,
    values.url === undefined
      ? new Error(`${errorMessageWithCause(error)}; is \`deno task dev\` running (on PORT ${port})?`)
      : error,
  );
}
console.log(`${event} -> ${shownUrl}`);
console.log(`HTTP ${response.status} ${answer}`);
Deno.exit(response.ok ? 0 : 1);
