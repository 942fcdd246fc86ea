// Refusals counted in memory and written one statement at a time. Each refused request used to start its own
// upsert of one hot row: a flood of bad signatures, which costs its sender nothing, then held the function's
// few database connections that real events need to be stored within Chatwoot's 5 s.
import { runInBackground } from "./background.ts";
import type { Logger } from "./log.ts";

export interface RejectionCount {
  reason: string;
  status: number;
  count: number;
}

export type RejectionWriter = (counts: RejectionCount[]) => Promise<unknown>;

export class RejectionCounter {
  #gathered = new Map<string, RejectionCount>();
  #writing = false;

  constructor(private readonly write: RejectionWriter, private readonly log: Logger) {}

  /** Counts one refusal; a write starts unless one is under way (it takes this one along when it is done). */
  add(reason: string, status: number): void {
    const entry = this.#gathered.get(reason);
    if (entry) entry.count++;
    else this.#gathered.set(reason, { reason, status, count: 1 });
    if (this.#writing) return;
    this.#writing = true;
    runInBackground(() => this.#writeAll(), this.log, "record_webhook_rejection");
  }

  async #writeAll(): Promise<void> {
    try {
      while (this.#gathered.size > 0) {
        // In one order everywhere: two instances writing the same reasons must not lock their rows crosswise.
        const counts = [...this.#gathered.values()].sort((a, b) =>
          a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0
        );
        this.#gathered.clear();
        await this.write(counts);
      }
    } finally {
      this.#writing = false;
    }
  }
}
