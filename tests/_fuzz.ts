// Seeded mutations of realistic Chatwoot bodies, for tests/webhook_fuzz.test.ts: the same seed gives the same
// bodies, so a failure names a seed and an index that reproduce it.
import { KNOWN_EVENTS, MESSAGE_EVENTS } from "../supabase/functions/_shared/chatwoot_events.ts";
import { seededRandom } from "../bench/lib/stats.ts";
import { SAMPLE_EVENTS, samplePayload } from "../scripts/lib/samples.ts";

/** JSON text written as is: what JSON.stringify never writes (1e-400, a lone surrogate escape, 1e1000). */
class Raw {
  constructor(readonly text: string) {}
}

type Value = null | boolean | number | string | Raw | Value[] | { [key: string]: Value };

const LONG_FRACTION = "1234" + "5".repeat(196);
const nest = (depth: number) => new Raw("[".repeat(depth) + "]".repeat(depth));

/** Values a field may be given: wrong types, edges of numeric and timestamptz, text Postgres may refuse. */
const ODD_VALUES: Value[] = [
  null,
  true,
  false,
  0,
  -1,
  new Raw("-0"),
  1.5,
  new Raw("1e5"),
  new Raw("2.5E-3"),
  new Raw("1e308"),
  new Raw("1e309"),
  new Raw("-1e309"),
  new Raw("1e-400"),
  new Raw("1e1000"),
  new Raw("1E-1000"),
  new Raw("1e1001"),
  new Raw("1e130000"),
  new Raw("9007199254740993"),
  new Raw("123456789012345678901234567890"),
  new Raw("1.0"),
  new Raw("512.000000000000000000001"),
  -1e20,
  1e11,
  99999999999,
  1795255200.123456,
  new Raw(`1795255200.${LONG_FRACTION}`),
  "",
  " ",
  "\u0000",
  new Raw('"\\u0000"'),
  new Raw('"\\ud83d"'),
  new Raw('"\\udc00x"'),
  "😀",
  "a".repeat(20_000),
  "x\u2028y",
  "2026-02-30T10:00:00Z",
  "2026-13-01T10:00:00Z",
  "0000-01-01T00:00:00Z",
  "0001-01-01T00:00:00Z",
  "9999-12-31T23:59:59Z",
  "2026-12-31T23:59:60Z",
  "2026-11-21T24:00:00",
  "2026-11-21T10:00:00+15:59",
  "2026-11-21T10:00:00-15:59",
  "2026-11-21t10:00:00.5z",
  `2026-11-21T10:00:00.${LONG_FRACTION}Z`,
  `2026-11-21 10:00:00.${LONG_FRACTION}`,
  `2026-11-21T10:00:00.${LONG_FRACTION}+05:30`,
  "1795255200",
  "1795255200.5",
  `1795255200.${LONG_FRACTION}`,
  "99999999999",
  "1e11",
  "NaN",
  "null",
  "true",
  "constructor",
  "__proto__",
  "toString",
  "<script>alert(1)</script>",
  "\\",
  "'; drop table webhook_events; --",
  [],
  {},
  [null],
  { id: null },
  { id: -1 },
  { id: "1" },
  { previous_value: null, current_value: new Raw("1e1000") },
  nest(100),
  nest(600),
];

const ODD_KEYS = ["__proto__", "constructor", "id", "event", "", "\u0000", "created_at", "updated_at", "a.b"];
const ODD_EVENTS = [...KNOWN_EVENTS, "", "message", "Message_Created", "x".repeat(200), "a b", "ÿ"];

/** Where a mutation can land: each object or array in the tree and one of its keys. */
type Slot = { parent: Record<string, Value> | Value[]; key: string | number };

function slotsOf(value: Value, out: Slot[] = []): Slot[] {
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      out.push({ parent: value, key: i });
      slotsOf(v, out);
    });
  } else if (value !== null && typeof value === "object" && !(value instanceof Raw)) {
    for (const key of Object.keys(value)) {
      out.push({ parent: value, key });
      slotsOf(value[key], out);
    }
  }
  return out;
}

/** A fresh copy, so that a later mutation inside a value from ODD_VALUES changes no other case. */
function copy(value: Value): Value {
  if (Array.isArray(value)) return value.map(copy);
  if (value !== null && typeof value === "object" && !(value instanceof Raw)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, copy(v)]));
  }
  return value;
}

/** JSON text of `value`, Raw pieces as written. */
function serialize(value: Value): string {
  if (value instanceof Raw) return value.text;
  if (Array.isArray(value)) return `[${value.map(serialize).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${serialize(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export interface FuzzCase {
  index: number;
  /** What was done to the base body, for a failure's message. */
  mutations: string[];
  body: string;
}

/**
 * `count` bodies from `seed`: each a sample of a known event (ids unique to the seed and index) given
 * 1 to 3 mutations, mostly to values (any field, an event name, a time), some to the text itself.
 */
export function fuzzCases(seed: number, count: number): FuzzCase[] {
  const r = seededRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(r() * items.length)];
  const cases: FuzzCase[] = [];
  for (let index = 0; index < count; index++) {
    // Half of them message events: the ones forwarded, ordered by their times, and read by chatwoot_messages.
    const event = r() < 0.5 ? pick(MESSAGE_EVENTS) : pick(SAMPLE_EVENTS);
    const id = seed * 1_000_000 + index;
    const payload = samplePayload(event, { messageId: id, conversationId: id }) as Record<string, Value>;
    const mutations = [`${event} #${id}`];
    let textMutation = false;
    for (let n = 1 + Math.floor(r() * 3); n > 0; n--) {
      const slots = slotsOf(payload);
      const kind = r();
      if (kind < 0.45) {
        const slot = pick(slots);
        const value = copy(pick(ODD_VALUES));
        (slot.parent as Record<string | number, Value>)[slot.key] = value;
        mutations.push(`${String(slot.key)} = ${serialize(value).slice(0, 40)}`);
      } else if (kind < 0.6) {
        const slot = pick(slots);
        if (Array.isArray(slot.parent)) slot.parent.splice(slot.key as number, 1);
        else delete slot.parent[slot.key as string];
        mutations.push(`delete ${String(slot.key)}`);
      } else if (kind < 0.7) {
        const objects = [payload, ...slots.map((s) => s.parent).filter((p) => !Array.isArray(p))];
        const target = pick(objects) as Record<string, Value>;
        const key = pick(ODD_KEYS);
        const value = copy(pick(ODD_VALUES));
        Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
        mutations.push(`add ${JSON.stringify(key)} = ${serialize(value).slice(0, 40)}`);
      } else if (kind < 0.8) {
        payload.event = pick(ODD_EVENTS);
        mutations.push(`event = ${String(payload.event).slice(0, 40)}`);
      } else if (kind < 0.92) {
        // A time, where the views and the ingest read one.
        const times = slots.filter((s) => ["created_at", "updated_at", "timestamp"].includes(String(s.key)));
        const slot = times.length ? pick(times) : pick(slots);
        const value = pick(ODD_VALUES.filter((v) => typeof v === "string" || typeof v === "number"));
        (slot.parent as Record<string | number, Value>)[slot.key] = value;
        mutations.push(`time ${String(slot.key)} = ${serialize(value).slice(0, 40)}`);
      } else {
        textMutation = true;
      }
    }
    let body = serialize(payload);
    if (textMutation) {
      const at = Math.floor(r() * body.length);
      const how = Math.floor(r() * 4);
      body = how === 0
        ? body.slice(0, at)
        : how === 1
        ? body.slice(0, at) + pick(['"', "\\", "{", "]", ",", "\u0000", "\ud800", "é"]) + body.slice(at)
        : how === 2
        ? body.slice(0, at) + body.slice(at + 1)
        : body.slice(0, at) + body.slice(at, at + 50) + body.slice(at);
      mutations.push(`text ${["cut", "insert", "drop", "repeat"][how]} at ${at}`);
    }
    cases.push({ index, mutations, body });
  }
  return cases;
}

/** Seeds from FUZZ_SEEDS ("1,2,3" or "4-10"), else `fallback`. */
export function fuzzSeeds(fallback: number[]): number[] {
  const text = Deno.env.get("FUZZ_SEEDS")?.trim();
  if (!text) return fallback;
  return text.split(",").flatMap((part) => {
    const [from, to = from] = part.split("-").map((s) => Number(s.trim()));
    if (!Number.isInteger(from) || !Number.isInteger(to) || to < from) {
      throw new Error(`FUZZ_SEEDS: "${part}" is not a seed or a range of seeds`);
    }
    return Array.from({ length: to - from + 1 }, (_, i) => from + i);
  });
}
