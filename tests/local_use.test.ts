// Local use: the .env reader the scripts share, and `deno task send`.
import assert from "node:assert/strict";
import { loadDotenv } from "../scripts/lib/dotenv.ts";
import { readinessConfigFromEnv } from "../supabase/functions/_shared/readiness_checks.ts";
import { CLOSED_PORT } from "./_closed_port.ts";
import { dbIndependentTest } from "./_db.ts";

const ROOT = new URL("..", import.meta.url).pathname;

dbIndependentTest("dotenv: quotes, comments and exported variables", async () => {
  const dir = await Deno.makeTempDir({ prefix: "relay-dotenv-" });
  const names = [
    "DOTENV_T_DQ",
    "DOTENV_T_SQ",
    "DOTENV_T_PLAIN",
    "DOTENV_T_HASH",
    "DOTENV_T_SET",
    "DOTENV_T_EXP",
  ];
  try {
    await Deno.writeTextFile(
      `${dir}/.env`,
      [
        "# a comment",
        'DOTENV_T_DQ="https://staging-agent.example.com" # staging',
        "DOTENV_T_SQ='two words' # note",
        "DOTENV_T_PLAIN=value # comment",
        "DOTENV_T_HASH=abc#def",
        "DOTENV_T_SET=from-file",
        "export DOTENV_T_EXP=exported\r",
      ].join("\n"),
    );
    Deno.env.set("DOTENV_T_SET", "from-shell");
    const loaded = await loadDotenv(`${dir}/.env`);
    assert.deepEqual(loaded.sort(), names.filter((n) => n !== "DOTENV_T_SET").sort());
    assert.deepEqual(names.map((n) => Deno.env.get(n)), [
      "https://staging-agent.example.com",
      "two words",
      "value",
      "abc#def",
      "from-shell",
      "exported",
    ]);
    assert.deepEqual(await loadDotenv(`${dir}/missing.env`), []);
  } finally {
    for (const n of names) Deno.env.delete(n);
    await Deno.remove(dir, { recursive: true });
  }
});

dbIndependentTest({
  name: "send: each run posts a new message, also several within one second",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const ids: number[] = [];
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
      ids.push((await req.json()).id);
      return Response.json({ ok: true });
    });
    try {
      const url = `http://127.0.0.1:${server.addr.port}/functions/v1/chatwoot-webhook`;
      for (let i = 0; i < 4; i++) {
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "scripts/send.ts", "message_created", "--url", url],
          cwd: ROOT,
          env: { CHATWOOT_WEBHOOK_SECRET: "local-secret-for-send-tests", NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      }
      assert.equal(new Set(ids).size, 4, `message ids ${ids.join(", ")}`);
    } finally {
      await server.shutdown();
    }
  },
});

dbIndependentTest({
  name: "send: a --url's credentials (user:password@, every token=) are never shown, sent or failing",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => Response.json({}),
    );
    try {
      for (const port of [server.addr.port, CLOSED_PORT]) {
        const url = `http://relay:hunter2-password@127.0.0.1:${port}/functions/v1/chatwoot-webhook` +
          "?token=first-token-secret&token=second-token-secret";
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "scripts/send.ts", "message_created", "--url", url],
          cwd: ROOT,
          env: { CHATWOOT_WEBHOOK_SECRET: "local-secret-for-send-tests", NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
        assert.equal(out.code, port === CLOSED_PORT ? 1 : 0, said);
        assert.doesNotMatch(said, /hunter2-password|first-token-secret|second-token-secret/);
        assert.match(
          said,
          /http:\/\/relay:\*\*\*@127\.0\.0\.1:\d+\/functions\/v1\/chatwoot-webhook\?token=\*\*\*/,
        );
      }
    } finally {
      await server.shutdown();
    }
  },
});

dbIndependentTest(
  "dotenv: a key written twice takes its last value, as other dotenv readers do; the shell still wins",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "relay-dotenv-" });
    try {
      await Deno.writeTextFile(
        `${dir}/.env`,
        [
          "DOTENV_T_TWICE=first",
          "DOTENV_T_SHELL=first",
          "DOTENV_T_TWICE=second",
          "DOTENV_T_SHELL=second",
        ].join("\n"),
      );
      Deno.env.set("DOTENV_T_SHELL", "from-shell");
      const loaded = await loadDotenv(`${dir}/.env`);
      assert.deepEqual(loaded, ["DOTENV_T_TWICE"]);
      assert.equal(Deno.env.get("DOTENV_T_TWICE"), "second");
      assert.equal(Deno.env.get("DOTENV_T_SHELL"), "from-shell");
    } finally {
      Deno.env.delete("DOTENV_T_TWICE");
      Deno.env.delete("DOTENV_T_SHELL");
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// The database URLs are the process's own, and test files share the process: setting them here for a moment
// could make another file's database (or its dbIndependentTest) read the wrong one. So a child process, with
// only the environment each case gives it, loads the file.
async function dotenvDatabaseUrls(file: string, exported: Record<string, string>) {
  const script = `
    import { loadDotenv } from ${JSON.stringify(new URL("../scripts/lib/dotenv.ts", import.meta.url).href)};
    import { databaseUrlFromEnv } from ${
    JSON.stringify(new URL("../supabase/functions/_shared/db.ts", import.meta.url).href)
  };
    const loaded = await loadDotenv(${JSON.stringify(file)});
    console.log(JSON.stringify({ loaded, url: databaseUrlFromEnv() }));`;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--config", new URL("../deno.json", import.meta.url).pathname, script],
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "", ...exported },
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  return JSON.parse(new TextDecoder().decode(stdout)) as { loaded: string[]; url: string };
}

dbIndependentTest(
  "dotenv: a database URL exported under either name keeps both of the file's database URLs out",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "relay-dotenv-" });
    try {
      await Deno.writeTextFile(
        `${dir}/.env`,
        "DATABASE_URL=postgresql://file@127.0.0.1:1/file\nSUPABASE_DB_URL=postgresql://file@127.0.0.1:2/file\n",
      );
      for (const exported of ["SUPABASE_DB_URL", "DATABASE_URL"]) {
        const run = await dotenvDatabaseUrls(`${dir}/.env`, {
          [exported]: "postgresql://shell@127.0.0.1:3/shell",
        });
        assert.deepEqual(run, { loaded: [], url: "postgresql://shell@127.0.0.1:3/shell" }, exported);
      }
      // Exported as neither, the file's database URLs load (DATABASE_URL first, as always).
      assert.deepEqual(await dotenvDatabaseUrls(`${dir}/.env`, {}), {
        loaded: ["DATABASE_URL", "SUPABASE_DB_URL"],
        url: "postgresql://file@127.0.0.1:1/file",
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

dbIndependentTest(
  "dotenv: a Chatwoot setting exported under its _PROD name keeps both of the file's names out",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "relay-dotenv-" });
    const pairs = [
      ["CHATWOOT_BASE_URL", "CHATWOOT_BASE_URL_PROD", "https://file.example", "https://shell.example"],
      ["CHATWOOT_API_TOKEN", "CHATWOOT_TOKEN_PROD", "file-token", "shell-token"],
      ["CHATWOOT_ACCOUNT_ID", "CHATWOOT_ACCOUNT_ID_PROD", "1", "2"],
    ];
    const names = pairs.flatMap(([generic, prod]) => [generic, prod]);
    const saved = Object.fromEntries(names.map((name) => [name, Deno.env.get(name)]));
    try {
      // The file holds the generic names (read first); the shell exports the document's _PROD names.
      await Deno.writeTextFile(
        `${dir}/.env`,
        pairs.map(([generic, , file]) => `${generic}=${file}`).join("\n"),
      );
      for (const name of names) Deno.env.delete(name);
      for (const [, prod, , shell] of pairs) Deno.env.set(prod, shell);
      assert.deepEqual(await loadDotenv(`${dir}/.env`), []);
      const { chatwoot } = readinessConfigFromEnv(Deno.env.toObject());
      assert.deepEqual([chatwoot.baseUrl, chatwoot.apiToken, chatwoot.accountId], pairs.map((p) => p[3]));
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) Deno.env.delete(name);
        else Deno.env.set(name, value);
      }
      await Deno.remove(dir, { recursive: true });
    }
  },
);

dbIndependentTest(
  "send: a --message-id or --conversation-id that is not a whole number is a usage error, exit 2",
  async () => {
    // Nothing listens there: a run that sent anyway would fail with exit 1 instead.
    const url = `http://127.0.0.1:${CLOSED_PORT}/functions/v1/chatwoot-webhook`;
    for (const option of ["--message-id", "--conversation-id"]) {
      for (const value of ["abc", "1.5", "0"]) {
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "scripts/send.ts", "message_created", "--url", url, option, value],
          cwd: ROOT,
          env: { CHATWOOT_WEBHOOK_SECRET: "local-secret-for-send-tests", NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const stderr = new TextDecoder().decode(out.stderr);
        assert.equal(out.code, 2, `${option} ${value}: ${stderr}`);
        assert.match(stderr, new RegExp(`${option} takes a whole number`));
      }
    }
  },
);
