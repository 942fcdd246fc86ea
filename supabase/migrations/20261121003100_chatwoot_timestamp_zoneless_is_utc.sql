-- chatwoot_timestamp() read a time without a zone ("2026-11-21T10:00:00") in the session's TimeZone, so one
-- stored message had a different chatwoot_messages.created_at for each analyst whose client sets its own zone
-- (psql with PGTZ, JDBC tools with the JVM's zone), and a server not on UTC moved them all. It also read a
-- lowercase "t" or "z" (RFC 3339 allows both, Postgres reads both) as no time at all: null. A time without a
-- zone is now UTC, as Chatwoot's Rails app writes its times in UTC; "t" and "z" read as "T" and "Z". The TS
-- side (supabase/functions/_shared/chatwoot_time.ts) reads times by the same rule. Found by review.
-- Otherwise as in migration 001700: null for anything that is not a real time, one expression the planner
-- inlines into the views (which pick up the new body without being recreated).
create or replace function public.chatwoot_timestamp(p_value jsonb)
returns timestamptz
language sql
stable
as $$
  select case jsonb_typeof(p_value)
    -- Epoch seconds within ±3 000 years of 1970 (timestamptz ends at year 294276, double precision at 1e308),
    -- to the microsecond timestamptz keeps (1e-400 does not fit a double either).
    when 'number' then case
      when p_value::numeric between -1e11 and 1e11
        then to_timestamp(round(p_value::numeric, 6)::double precision)
    end
    when 'string' then case
      when (p_value #>> '{}')
           -- (Literals on separate lines are one string in SQL.)
           ~ '^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]([01]\d|2[0-3]):[0-5]\d'
             '(:([0-5]\d(\.\d+)?|60))?([Zz]|[+-](0\d|1[0-5])(:?[0-5]\d)?)?$'
        then case
          -- Year 0 does not exist; a day past the 28th must exist in its month (30 February does not).
          when left(p_value #>> '{}', 4) = '0000' then null
          when substr(p_value #>> '{}', 9, 2) > '28'
               and substr(p_value #>> '{}', 9, 2)::int > extract(day from
                 make_date(left(p_value #>> '{}', 4)::int, substr(p_value #>> '{}', 6, 2)::int, 1)
                 + interval '1 month - 1 day')
            then null
          -- A zone or offset is read as written; without one the time is UTC, whatever the session's zone.
          when (p_value #>> '{}') ~ '([Zz]|\d[+-]\d\d(:?\d\d)?)$' then (p_value #>> '{}')::timestamptz
          else (p_value #>> '{}')::timestamp at time zone 'UTC'
        end
      when (p_value #>> '{}') ~ '^\d{9,11}(\.\d+)?$'
        then to_timestamp((p_value #>> '{}')::double precision)
    end
  end
$$;

comment on function public.chatwoot_timestamp(jsonb) is
  'A Chatwoot time (ISO-8601 string, UTC when it names no zone, or epoch seconds) as timestamptz; null '
  'when it is neither, or names no real time.';
