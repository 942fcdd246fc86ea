-- chatwoot_timestamp() promised null for anything it cannot read "rather than breaking a whole query", but a
-- value of the right shape and the wrong content raised: a date that does not exist ("2026-02-30T10:00:00Z",
-- month 13, year 0), or epoch seconds outside timestamptz's range (1e20). Such a value, stored as Chatwoot
-- sent it, made every query over chatwoot_messages (created_at) or chatwoot_conversation_events (updated_at)
-- that reached its row fail. Now each part is checked before the cast, in nested CASEs (evaluated in order),
-- still one SQL expression that the planner inlines into the views.
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
           ~ '^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[T ]([01]\d|2[0-3]):[0-5]\d(:([0-5]\d(\.\d+)?|60))?(Z|[+-](0\d|1[0-5])(:?[0-5]\d)?)?$'
        then case
          -- Year 0 does not exist; a day past the 28th must exist in its month (30 February does not).
          when left(p_value #>> '{}', 4) = '0000' then null
          when substr(p_value #>> '{}', 9, 2) <= '28' then (p_value #>> '{}')::timestamptz
          when substr(p_value #>> '{}', 9, 2)::int <= extract(day from
                 make_date(left(p_value #>> '{}', 4)::int, substr(p_value #>> '{}', 6, 2)::int, 1)
                 + interval '1 month - 1 day')
            then (p_value #>> '{}')::timestamptz
        end
      when (p_value #>> '{}') ~ '^\d{9,11}(\.\d+)?$'
        then to_timestamp((p_value #>> '{}')::double precision)
    end
  end
$$;

comment on function public.chatwoot_timestamp(jsonb) is
  'A Chatwoot time (ISO-8601 string or epoch seconds) as timestamptz; null when it is neither, or names no real time.';
