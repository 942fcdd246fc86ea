// deno task recover --since <time> [--until <time>] [--store]
// Finds the messages Chatwoot sent (or would have sent) as message_created in [since, until) that
// webhook_events lacks, by reading Chatwoot's REST API, and with --store stores them to be forwarded.
// Chatwoot: CHATWOOT_BASE_URL, CHATWOOT_API_TOKEN, CHATWOOT_ACCOUNT_ID (or their _PROD names); the database:
// DATABASE_URL (or SUPABASE_DB_URL). scripts/lib/chatwoot_recover.ts says how, and what a rebuilt event lacks.
import { errorMessageWithCause } from "../supabase/functions/_shared/background.ts";
import { chatwootTime } from "../supabase/functions/_shared/chatwoot_time.ts";
import { withoutSecrets } from "../supabase/functions/_shared/env.ts";
import { chatwootTargetFromEnv } from "../supabase/functions/_shared/readiness_checks.ts";
import {
  type ChatwootApi,
  ChatwootApiError,
  RebuiltPayloadInvalid,
  RecoveryDatabaseError,
  RecoveryInterrupted,
  RecoveryWindowError,
  scanForMissing,
  type ScanStop,
} from "./lib/chatwoot_recover.ts";
import {
  connectOrExit,
  onStopSignals,
  parseArgsOrExit,
  redact,
  reportFailure,
  requireDatabaseUrl,
  urlSecrets,
  usageError,
} from "./lib/cli.ts";
import { loadDotenv } from "./lib/dotenv.ts";

const USAGE = `usage:
  deno task recover --since <time> [--until <time>]     list the messages of [since, until) we never stored
  deno task recover --since <time> [--until <time>] --store [--no-forward]
                                                         ... and store them, to be forwarded (or not)
options: --inbox <id>[,<id>...] (only these inboxes; all the token sees by default)
times: ISO 8601, in UTC unless they name an offset, e.g. 2026-11-21T10:00 or 2026-11-21T10:00:00+01:00;
--until defaults to 5 minutes ago
(a webhook for a newer message may still be on its way: late stores go on for 120 s)
--store stores each conversation's missing messages as soon as it is read in full (all of them or none)
exit status: 0 done; 1 failed (Chatwoot's API, the database, a payload rebuilt from the API that is no valid
event, or an unexpected error; failing part-way through the messages, what the conversations read before lack
is still listed, or stored, and the rest named); 2 a command line, setting or window it cannot use; 3 done
with what it found (listed, or stored), but the conversation list kept changing and a conversation may have
been missed: run it again for the same window; 130 (SIGINT, Ctrl-C) or 143 (SIGTERM) stopped: the conversation
in flight is abandoned, what was read before is listed, or stored, and the rest named (a second signal quits
at once)`;
const UNTIL_DEFAULT_AGO_MS = 5 * 60 * 1000;
/** Distinct from a failure (1) and a usage error (2): a cron can tell "run again" from "look into it". */
const EXIT_LIST_UNSETTLED = 3;
/** Stopped by a signal, as a shell reports it (128 + its number). */
const EXIT_SIGINT = 130;
const EXIT_SIGTERM = 143;

await loadDotenv(".env");
const { values } = parseArgsOrExit(
  {
    args: Deno.args,
    options: {
      since: { type: "string" },
      until: { type: "string" },
      store: { type: "boolean", default: false },
      "no-forward": { type: "boolean", default: false },
      inbox: { type: "string" },
    },
  },
  USAGE,
);
/** A time of the command line, read as chatwoot_timestamp() reads one; a date alone is its UTC midnight. */
function timeArg(name: string, text: string): Date {
  const time = chatwootTime(/^\d{4}-\d\d-\d\d$/.test(text) ? `${text}T00:00Z` : text);
  if (time === null || Number.isNaN(time.getTime())) {
    usageError(`--${name}: ${JSON.stringify(text)} is not a time`, USAGE);
  }
  return time;
}
if (values.since === undefined) usageError("--since is required", USAGE);
const since = timeArg("since", values.since);
const until = values.until === undefined
  ? new Date(Date.now() - UNTIL_DEFAULT_AGO_MS)
  : timeArg("until", values.until);
if (since >= until) {
  // Most likely a loss of the last minutes, with --until left at its default.
  const defaulted = values.until === undefined ? " (by default 5 minutes ago)" : "";
  usageError(
    `--since ${since.toISOString()} is not before --until ${until.toISOString()}${defaulted}`,
    USAGE,
  );
}
const inboxIds = values.inbox?.split(",").map((v) => Number(v.trim()));
if (inboxIds?.some((id) => !Number.isSafeInteger(id) || id <= 0)) {
  usageError(`--inbox takes inbox ids (whole numbers), not ${values.inbox}`, USAGE);
}
if (values["no-forward"] && !values.store) usageError("--no-forward goes with --store", USAGE);

// A setting it cannot use is the operator's to fix, like a usage error: one line naming it, exit 2.
const { target: chatwoot, problem } = chatwootTargetFromEnv(Deno.env.toObject());
if (problem !== null) {
  console.error(problem);
  Deno.exit(2);
}
const api: ChatwootApi = {
  ...chatwoot,
  // A network error's text may quote the URL: shown as failures are, without the token or a password in it.
  onRetry: (line) =>
    console.log(`warning: ${withoutSecrets(line, [chatwoot.apiToken, ...urlSecrets(chatwoot.baseUrl)])}`),
};
const url = requireDatabaseUrl("the database holding the events");
const sql = connectOrExit("recover", url, {
  max: 1,
  connectTimeout: 10,
  applicationName: "chatwoot-relay-recover",
});
// SIGINT/SIGTERM: the conversation being read is abandoned (one being stored is stored whole first), what was
// stored is said and the rest named, exit 130 (143 for SIGTERM); a second signal quits at once.
const stopping = new AbortController();
let stopSignal: "SIGINT" | "SIGTERM" = "SIGINT";
onStopSignals((signal) => {
  stopSignal = signal;
  console.error(
    `${signal}: stopping (a conversation being read is abandoned, one being stored is stored first); ` +
      `again to quit at once`,
  );
  stopping.abort();
});
const exitForSignal = () => (stopSignal === "SIGINT" ? EXIT_SIGINT : EXIT_SIGTERM);
const done = values.store ? "stored" : "listed";
try {
  console.log(`database ${redact(url)}; Chatwoot ${redact(api.baseUrl)}, account ${api.accountId}`);
  const forward = !values["no-forward"];
  const scan = await scanForMissing(api, sql, since, until, {
    inboxIds,
    progress: (line) => console.log(line),
    store: values.store ? { forward } : undefined,
    signal: stopping.signal,
  });
  const { stopped } = scan;
  const wording = stopped === null ? null : stopWording(stopped);
  const readPart = stopped === null
    ? ""
    : ` in the ${stopped.conversationsRead} of ${scan.conversations} conversations read before ` +
      wording!.by;
  console.log(
    `messages created in [${since.toISOString()}, ${until.toISOString()}) that Chatwoot sends as ` +
      `message_created${readPart}: ${scan.messages}; stored: ${scan.alreadyStored}; ` +
      `missing: ${scan.missingLines.length}`,
  );
  for (const line of scan.missingLines) {
    console.log(
      `  message ${line.id} in conversation ${line.conversationId ?? "?"}, ` +
        `${new Date(line.createdAt * 1000).toISOString()}${line.private ? ", private" : ""}`,
    );
  }
  if (scan.stored !== null) {
    const { stored, storedMeanwhile } = scan.stored;
    console.log(
      `stored ${stored} (verified_by chatwoot_api, ${
        forward ? "forwarded as usual" : "skipped: not forwarded"
      })` +
        (storedMeanwhile > 0 ? `; ${storedMeanwhile} had been stored meanwhile` : ""),
    );
  } else if (scan.missingLines.length > 0) {
    console.log("run again with --store to store them");
  }
  if (!scan.listSettled) {
    console.error(
      `recover incomplete: the conversation list was still changing after its last pass, so a conversation ` +
        `may have been missed; what was found is ${done} above: run again for the same window ` +
        `(exit ${EXIT_LIST_UNSETTLED})`,
    );
    Deno.exitCode = EXIT_LIST_UNSETTLED;
  }
  if (stopped !== null) {
    // What the conversations handled before it lack is listed (stored) above, and the rest is named.
    if (stopped.reason === "interrupted") {
      console.error(`recover stopped (${stopSignal})`);
      Deno.exitCode = exitForSignal();
    } else if (stopped.reason === "unexpected") {
      reportUnexpected(stopped.error);
    } else {
      // Exit 1, as any failure; the target named is the one that failed (a payload refused names none).
      const target = stopped.reason === "chatwoot" ? api.baseUrl : stopped.reason === "database" ? url : null;
      reportFailure("recover", target, stopped.error, [api.apiToken]);
    }
    const { notReached } = stopped;
    const SHOWN = 20;
    const ids = notReached.slice(0, SHOWN).join(", ") +
      (notReached.length > SHOWN ? `, and ${notReached.length - SHOWN} more` : "");
    console.error(
      `not reached: ${notReached.length} of ${scan.conversations} conversations (${ids}), none of their ` +
        `messages ${done}; what the ${stopped.conversationsRead} read in full lack is ${done} above. ` +
        wording!.next,
    );
  }
} catch (error) {
  if (error instanceof RecoveryWindowError) {
    console.error(`recover failed: ${error.message}`);
    Deno.exitCode = 2;
  } else if (error instanceof RecoveryInterrupted) {
    console.error(
      `recover stopped (${stopSignal}) before any conversation's messages were read: nothing ${done}`,
    );
    Deno.exitCode = exitForSignal();
  } else if (error instanceof ChatwootApiError) {
    reportFailure("recover", api.baseUrl, error, [api.apiToken]);
  } else if (error instanceof RecoveryDatabaseError) {
    reportFailure("recover", url, error.cause, [api.apiToken]);
  } else {
    reportUnexpected(error);
  }
} finally {
  await sql.end({ timeout: 5 });
}

/**
 * What stopped a scan, for the summary line ("read before <by>"), and what to do next. One case per reason: a
 * reason left out of such lists was said as a signal's stop (a prune's retention stop was).
 */
function stopWording(stopped: ScanStop): { by: string; next: string } {
  const runAgain = (when = "") => `Run the same command again${when}: what is stored is not stored twice`;
  switch (stopped.reason) {
    case "chatwoot":
      return { by: "Chatwoot's API failed", next: runAgain(" once Chatwoot answers") };
    case "database":
      return { by: "the database failed", next: runAgain(" once the database answers") };
    case "payload":
      // Refused again: running again would only stop at the same message.
      return {
        by: "a payload rebuilt from Chatwoot's API failed validation",
        next: stopped.error instanceof RebuiltPayloadInvalid
          ? `A run again stops at message ${stopped.error.messageId} too: Chatwoot's API answers for it ` +
            `what no webhook carries (report it)`
          : runAgain(),
      };
    case "retention":
      // The prune that ran meanwhile moved the horizon: the same window is refused from now on.
      return {
        by: "a prune moved the retention horizon",
        next: `Retention deleted delivered events of this window while it ran, so a message it lacks may ` +
          `have been delivered already: a run again must start later (the line above says from when)`,
      };
    case "unexpected":
      // Neither Chatwoot's nor the database's: a bug of this task, which a run again may meet again.
      return {
        by: "an unexpected error",
        next: `${runAgain()}; stopped here again, it is this task's bug: report it, with the line above`,
      };
    case "interrupted":
      return { by: `it was stopped (${stopSignal})`, next: runAgain() };
  }
}

/**
 * Neither Chatwoot's API nor the database failed, nor answered wrongly (a list that is no list of objects is
 * Chatwoot's failure): a bug of this task, such as a TypeError reading an answer or rebuilding a payload,
 * before the messages or while they were read or stored (a scan stop). Said as that, naming neither, every
 * secret of the run masked; exit 1.
 */
function reportUnexpected(error: unknown): void {
  const kind = error instanceof Error ? error.name : typeof error;
  reportFailure(
    "recover",
    null,
    new Error(`unexpected error (${kind}): ${errorMessageWithCause(error)}`),
    [api.apiToken, ...urlSecrets(url), ...urlSecrets(api.baseUrl)],
  );
}
