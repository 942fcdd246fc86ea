// Each Edge Function deploys on its own with its own deno.json (Supabase's layout): its index.ts stays a few
// lines, its whole module graph resolves with only that import map, in the root's versions, and the dev
// server and config.toml know it.
import assert from "node:assert/strict";
import { FUNCTIONS } from "../scripts/lib/function_registry.ts";
import { dbIndependentTest } from "./_db.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const FUNCTIONS_DIR = `${ROOT}supabase/functions`;
const rootImports = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).imports as Record<string, string>;
const names: string[] = [];
for await (const entry of Deno.readDir(FUNCTIONS_DIR)) {
  if (entry.isDirectory && !entry.name.startsWith("_")) names.push(entry.name);
}
names.sort();

dbIndependentTest(
  "functions: every function folder is served by the dev server and configured in config.toml",
  async () => {
    assert.deepEqual(names, Object.keys(FUNCTIONS).sort());
    const config = await Deno.readTextFile(`${ROOT}supabase/config.toml`);
    for (const name of names) {
      // Chatwoot, pg_cron and uptime monitors send no Supabase JWT: every function checks its own credentials.
      assert.match(config, new RegExp(`\\[functions\\.${name}\\]\\nverify_jwt = false`), name);
    }
  },
);

for (const name of names) {
  dbIndependentTest(
    `functions: ${name} has a short index.ts and a deno.json that resolves its whole graph`,
    async () => {
      const dir = `${FUNCTIONS_DIR}/${name}`;
      const index = await Deno.readTextFile(`${dir}/index.ts`);
      const code = index.split("\n").filter((line) => line.trim() && !line.trim().startsWith("//"));
      assert.ok(code.length <= 6, `${name}/index.ts has ${code.length} lines of code`);
      assert.match(index, /Deno\.serve\(/);
      const imports = JSON.parse(await Deno.readTextFile(`${dir}/deno.json`)).imports as Record<
        string,
        string
      >;
      for (const [specifier, target] of Object.entries(imports)) {
        assert.equal(target, rootImports[specifier], `${name}: ${specifier} differs from the root deno.json`);
      }
      // Resolve the graph exactly as a deploy would: only this function's deno.json.
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["info", "--json", "--config", `${dir}/deno.json`, "--no-lock", `${dir}/index.ts`],
        cwd: dir,
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      const info = JSON.parse(new TextDecoder().decode(out.stdout));
      type Resolution = { error?: string };
      type Module = {
        specifier: string;
        error?: string;
        dependencies?: Array<{ specifier: string; code?: Resolution; type?: Resolution }>;
      };
      // An import the map cannot resolve shows up as an error on the module or on one of its dependencies.
      const unresolved = (info.modules as Module[]).flatMap((m) => [
        ...(m.error ? [`${m.specifier}: ${m.error}`] : []),
        ...(m.dependencies ?? []).flatMap((d) =>
          [d.code?.error, d.type?.error].filter(Boolean).map((e) => `${m.specifier} -> ${d.specifier}: ${e}`)
        ),
      ]);
      assert.deepEqual(unresolved, []);
      const local = (info.modules as Array<{ specifier: string }>).filter((m) =>
        m.specifier.startsWith("file:")
      );
      assert.ok(
        local.every((m) => m.specifier.includes("/supabase/functions/")),
        "nothing outside supabase/functions",
      );
    },
  );
}
