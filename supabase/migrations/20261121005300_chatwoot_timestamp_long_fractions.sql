-- chatwoot_timestamp() raised on a time string with a long fractional-seconds part, which the pattern below
-- accepts: from about 130 digits on, Postgres' date/time parser refuses the field as too long. Stored as sent,
-- one such created_at made every query over chatwoot_messages fail, and a message_updated whose
-- conversation.updated_at had one failed to store (500, and Chatwoot does not send it again). Digits past the
-- 9th (nanoseconds; timestamptz keeps microseconds) are now dropped before the cast. Found by fuzzing.
-- Otherwise as in migration 003100: null for anything that is not a real time, never an error, one expression
-- the planner inlines into the views; same signature, so its grants and comment stay.
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
          -- The only "." the pattern allows is the seconds': its digits past the 9th are dropped.
          when (p_value #>> '{}') ~ '([Zz]|\d[+-]\d\d(:?\d\d)?)$'
            then regexp_replace(p_value #>> '{}', '(\.\d{9})\d+', '\1')::timestamptz
          else regexp_replace(p_value #>> '{}', '(\.\d{9})\d+', '\1')::timestamp at time zone 'UTC'
        end
      when (p_value #>> '{}') ~ '^\d{9,11}(\.\d+)?$'
        then to_timestamp((p_value #>> '{}')::double precision)
    end
  end
$$;
