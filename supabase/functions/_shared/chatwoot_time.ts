// Chatwoot's times read as SQL's chatwoot_timestamp() reads them (migration 003100), so that a time given
// to a CLI and the same time in a payload name one instant: ISO 8601 with a zone or offset as written,
// without one in UTC (Chatwoot's Rails app writes UTC; JavaScript's Date would take the machine's zone,
// Postgres the session's), "t" and "z" as "T" and "Z"; or epoch seconds. Anything else, or a date that does
// not exist, is null.

const ISO_TIME = new RegExp(
  "^(\\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])[Tt ]([01]\\d|2[0-3]):([0-5]\\d)" + // date, hours, minutes
    "(?::([0-5]\\d(?:\\.\\d+)?|60))?" + // seconds (60: a leap second, read as the next minute's 0)
    "(?:([Zz])|([+-])(0\\d|1[0-5])(?::?([0-5]\\d))?)?$", // zone: Z, ±hh, ±hhmm, ±hh:mm, or none (UTC)
);
const EPOCH_TEXT = /^\d{9,11}(?:\.\d+)?$/;
/** Epoch seconds beyond ±3 000 years of 1970 are no Chatwoot time (as in SQL). */
const EPOCH_LIMIT = 1e11;

/** A Chatwoot time (a JSON string or number) as a Date; null when it is no time (see above). */
export function chatwootTime(value: unknown): Date | null {
  if (typeof value === "number") {
    return Number.isFinite(value) && Math.abs(value) <= EPOCH_LIMIT
      ? new Date(Math.round(value * 1000))
      : null;
  }
  if (typeof value !== "string") return null;
  if (EPOCH_TEXT.test(value)) return new Date(Math.round(Number(value) * 1000));
  const m = ISO_TIME.exec(value);
  if (!m) return null;
  const [, year, month, day, hour, minute, second = "0", zulu, sign, offsetHours, offsetMinutes = "0"] = m;
  if (year === "0000") return null;
  const date = new Date(0);
  // setUTCFullYear, not Date.UTC: Date.UTC reads years 0-99 as 1900-1999.
  date.setUTCFullYear(Number(year), Number(month) - 1, Number(day));
  if (date.getUTCDate() !== Number(day)) return null; // 30 February rolled over into March
  const offset = zulu || !sign
    ? 0
    : (sign === "-" ? -1 : 1) * (Number(offsetHours) * 60 + Number(offsetMinutes));
  date.setUTCHours(Number(hour), Number(minute) - offset, 0, Math.round(Number(second) * 1000));
  return date;
}
