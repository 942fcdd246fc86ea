// Structured JSON log lines. Callers pass ids, counts and codes only: never secrets, signatures or payloads.
export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Record<string, unknown>;
export type Logger = (level: LogLevel, msg: string, fields?: LogFields) => void;

export const jsonLogger: Logger = (level, msg, fields = {}) => {
  const line = JSON.stringify({ ts: new Date().toISOString(), level, msg, ...fields });
  if (level === "error" || level === "warn") console.error(line);
  else console.log(line);
};

export const silentLogger: Logger = () => {};

/** Collects log lines in memory (tests assert on them). */
export function memoryLogger(): Logger & { lines: Array<{ level: LogLevel; msg: string } & LogFields> } {
  const lines: Array<{ level: LogLevel; msg: string } & LogFields> = [];
  const logger: Logger = (level, msg, fields = {}) => {
    lines.push({ level, msg, ...fields });
  };
  return Object.assign(logger, { lines });
}
