-- Readiness: the Chatwoot production-readiness checklist (docs/seeds/chatwoot_readiness.md) as rows, one
-- table per section of the document, seeded with its full content. The `readiness` function serves it as
-- JSON, Markdown (regenerated in the document's layout) and HTML, next to live checks.
-- Applies unchanged on hosted Supabase, plain PostgreSQL 15+ and PGlite.

-- The fixed set of statuses and how the document shows them. Glyphs follow the document: ⏳ for work not
-- finished (pending, in progress), 🚧 for a hold (blocked, staging only), ✅ for done; the label is always
-- printed next to the glyph, so two statuses sharing a glyph stay distinguishable.
create table public.readiness_statuses (
  status text primary key check (status in ('pending', 'in_progress', 'blocked', 'staging_only', 'done')),
  label text not null unique,
  glyph text not null check (glyph in ('⏳', '🚧', '✅')),
  position integer not null unique
);

insert into public.readiness_statuses (status, label, glyph, position) values
  ('pending', 'Pending', '⏳', 1),
  ('in_progress', 'In Progress', '⏳', 2),
  ('blocked', 'Blocked', '🚧', 3),
  ('staging_only', 'Staging only', '🚧', 4),
  ('done', 'Done', '✅', 5);

-- Front matter and the document's fixed prose (a single row).
create table public.readiness_document (
  id boolean primary key default true check (id),
  epoch text not null,
  doc_path text not null,
  owner text not null,
  last_reviewed date not null,
  expires date not null check (expires >= last_reviewed),
  title text not null,
  inbox_note text not null,
  evidence_location text not null,
  updated_at timestamptz not null default now()
);

comment on table public.readiness_document is
  'Front matter of the readiness document (doc_hash is computed when the Markdown is rendered, never stored).';

create table public.readiness_current_status (
  position integer primary key,
  label text not null,
  value text not null
);

-- Columns shared by every section whose rows carry a status (credentials, inbox configuration, blockers,
-- checklist tasks, pre-production validations). Keys are unique across sections (prefix per section), so
-- PATCH /readiness/items/<key> names one item.
--   evidence: what was provided to prove the item (null until someone provides it);
--   required: whether `ready` waits for the item.

-- Credential rows name a secret and where it is kept; they never hold its value.
create table public.readiness_credentials (
  key text primary key check (key ~ '^credential-[a-z0-9_]+$'),
  position integer not null unique,
  name text not null unique check (name ~ '^[A-Z][A-Z0-9_]*$'),
  description text not null,
  storage_target text not null,
  status text not null default 'pending' references public.readiness_statuses (status),
  notes text not null default '',
  evidence text,
  required boolean not null default true,
  updated_at timestamptz not null default now(),
  updated_by text not null default current_user,
  -- A long run of letters and digits only (API tokens, hex secrets) is refused: values belong in the vault.
  constraint readiness_credentials_no_secret_values check (
    concat_ws(' ', description, storage_target, notes, evidence) !~ '[A-Za-z0-9]{20,}'
  )
);

comment on table public.readiness_credentials is
  'Credentials the production setup needs: names and storage targets only, never secret values.';

create table public.readiness_inbox_config (
  key text primary key check (key ~ '^inbox-[0-9]+$'),
  position integer not null unique,
  item text not null,
  owner text not null,
  status text not null default 'pending' references public.readiness_statuses (status),
  evidence_required text not null,
  evidence text,
  required boolean not null default true,
  updated_at timestamptz not null default now(),
  updated_by text not null default current_user
);

create table public.readiness_blockers (
  key text primary key check (key ~ '^blocker-[0-9]+$'),
  position integer not null unique,
  title text not null,
  detail text not null,
  -- A current blocker is 'blocked'; resolving it means setting it to 'done'.
  status text not null default 'blocked' references public.readiness_statuses (status),
  evidence text,
  required boolean not null default true,
  updated_at timestamptz not null default now(),
  updated_by text not null default current_user
);

create table public.readiness_tasks (
  key text primary key check (key ~ '^task-[0-9]+$'),
  number integer not null unique check (number > 0),
  task text not null,
  owner text not null,
  due date not null,
  status text not null default 'pending' references public.readiness_statuses (status),
  evidence_required text not null,
  evidence text,
  required boolean not null default true,
  updated_at timestamptz not null default now(),
  updated_by text not null default current_user,
  constraint readiness_tasks_key_is_number check (key = 'task-' || number)
);

create table public.readiness_validations (
  key text primary key check (key ~ '^validation-[0-9]+$'),
  position integer not null unique,
  description text not null,
  status text not null default 'pending' references public.readiness_statuses (status),
  evidence text,
  required boolean not null default true,
  updated_at timestamptz not null default now(),
  updated_by text not null default current_user
);

create table public.readiness_support_plan (
  subsection text not null check (subsection in ('inbox_scope', 'action_items')),
  position integer not null,
  label text,
  text text not null,
  primary key (subsection, position),
  check ((subsection = 'inbox_scope') = (label is not null))
);

create table public.readiness_evidence_requirements (
  position integer primary key,
  text text not null
);

create table public.readiness_risks (
  position integer primary key,
  label text not null,
  text text not null
);

create table public.readiness_contacts (
  position integer primary key,
  contact_date date not null,
  contact text not null,
  team text not null,
  channel text not null,
  summary text not null,
  next_step text not null
);

create table public.readiness_milestones (
  position integer primary key,
  milestone_date date not null,
  milestone text not null
);

-- Every change to an item: written by a trigger on each item table, so no write path (PATCH, SQL editor,
-- a later migration) can skip it.
create table public.readiness_item_history (
  id bigint generated always as identity primary key,
  item_key text not null,
  section text not null,
  operation text not null check (operation in ('insert', 'update', 'delete')),
  changed_at timestamptz not null default now(),
  changed_by text not null,
  old_status text,
  new_status text,
  old_evidence text,
  new_evidence text,
  note text
);

create index readiness_item_history_item_idx on public.readiness_item_history (item_key, id);

comment on table public.readiness_item_history is
  'Append-only log of readiness item changes: who (readiness.actor setting, else the database user), when, status and evidence before/after, note.';

-- Every item of every section, for lookups by key and for counting.
create view public.readiness_items as
  select 'credentials'::text as section, key, position, status, evidence, required, updated_at, updated_by
    from public.readiness_credentials
  union all
  select 'inbox_config', key, position, status, evidence, required, updated_at, updated_by
    from public.readiness_inbox_config
  union all
  select 'blockers', key, position, status, evidence, required, updated_at, updated_by
    from public.readiness_blockers
  union all
  select 'tasks', key, number, status, evidence, required, updated_at, updated_by
    from public.readiness_tasks
  union all
  select 'validations', key, position, status, evidence, required, updated_at, updated_by
    from public.readiness_validations;

-- ---------------------------------------------------------------------------------------------------------
-- Seed: the document's content, as reviewed on 2025-10-11.
-- ---------------------------------------------------------------------------------------------------------
insert into public.readiness_document
  (epoch, doc_path, owner, last_reviewed, expires, title, inbox_note, evidence_location)
values (
  '2025.10.E1',
  'docs/integrations/chatwoot_readiness.md',
  'integrations',
  '2025-10-11',
  '2025-10-25',
  'Chatwoot Production Readiness Tracking',
  'Per integrations direction: "Coordinate with Support to ensure the shared inbox + automation scopes match the plan"',
  'artifacts/integrations/chatwoot-readiness-2025-10-11/'
);

insert into public.readiness_current_status (position, label, value) values
  (1, 'Deployment state', 'Fly app deployed, health checks returning 503 (per integration readiness dashboard)'),
  (2, 'Credential status', 'Secrets mirroring blocked on DB DSN fix; API token pending'),
  (3, 'Priority', 'Source production-ready API token and webhook secret per integrations direction'),
  (4, 'Next milestone', 'Complete Supabase DSN alignment, generate scoped API token, coordinate with Support team');

insert into public.readiness_credentials (key, position, name, description, storage_target, status, notes) values
  ('credential-chatwoot_token_prod', 1, 'CHATWOOT_TOKEN_PROD', 'Scoped API token for automation',
   'Vault (`vault/occ/chatwoot/api_token_prod.env`) + GitHub Actions secret', 'pending',
   'Requires super admin access to Chatwoot Fly deployment'),
  ('credential-chatwoot_account_id_prod', 2, 'CHATWOOT_ACCOUNT_ID_PROD', 'Account ID for API requests',
   'Vault + GitHub Actions secret', 'pending', 'Generated with API token'),
  ('credential-chatwoot_webhook_secret', 3, 'CHATWOOT_WEBHOOK_SECRET', 'Webhook validation secret',
   'Vault (`vault/occ/chatwoot/webhook_secret.env`) + GitHub Actions secret', 'pending',
   'For inbound automation webhooks'),
  ('credential-chatwoot_base_url_prod', 4, 'CHATWOOT_BASE_URL_PROD', 'Production Chatwoot instance URL',
   'Config + GitHub Actions secret', 'staging_only', 'Currently `https://hotdash-chatwoot.fly.dev`');

insert into public.readiness_inbox_config (key, position, item, owner, status, evidence_required) values
  ('inbox-1', 1, 'customer.support@hotrodan.com inbox setup', 'Support', 'pending',
   'IMAP/SMTP configuration screenshots'),
  ('inbox-2', 2, 'Automation scope definition', 'Support + Integrations', 'pending',
   'API token scope permissions document'),
  ('inbox-3', 3, 'Inbound email flow testing', 'Support', 'pending', 'Test email receipt + response evidence'),
  ('inbox-4', 4, 'Webhook endpoint coordination', 'Data + Integrations', 'pending',
   'Supabase webhook endpoint confirmation');

insert into public.readiness_blockers (key, position, title, detail, status) values
  ('blocker-1', 1, 'Supabase DSN alignment',
   'Web machine still pointed at Supabase pooler; need to rerun migrations after correcting Postgres secrets', 'blocked'),
  ('blocker-2', 2, 'Health check failure',
   '`/hc` returning 503, preventing progression to API token generation', 'blocked'),
  ('blocker-3', 3, 'Migration status',
   'Need successful `bundle exec rails db:chatwoot_prepare` completion', 'blocked');

insert into public.readiness_tasks (key, number, task, owner, due, status, evidence_required) values
  ('task-1', 1, 'Fix Supabase DSN in Fly secrets', 'Integrations', '2025-10-11', 'in_progress',
   'Update POSTGRES_* secrets to match `vault/occ/supabase/database_url_staging.env`'),
  ('task-2', 2, 'Complete database migrations', 'Integrations', '2025-10-11', 'pending',
   'Successful `db:chatwoot_prepare` output log'),
  ('task-3', 3, 'Verify health check endpoint', 'Integrations', '2025-10-11', 'pending', '`/hc` returning 200 status'),
  ('task-4', 4, 'Create super admin account', 'Integrations', '2025-10-11', 'pending', 'Admin credentials stored in vault'),
  ('task-5', 5, 'Generate production API token', 'Integrations', '2025-10-11', 'pending', 'Token + account ID stored in vault'),
  ('task-6', 6, 'Configure customer.support inbox', 'Support', '2025-10-12', 'pending', 'Inbox configuration screenshots'),
  ('task-7', 7, 'Define automation scopes', 'Support', '2025-10-12', 'pending', 'API permissions documentation'),
  ('task-8', 8, 'Test inbound email flow', 'Support', '2025-10-12', 'pending', 'Email receipt + processing evidence'),
  ('task-9', 9, 'Configure webhook endpoint', 'Data', '2025-10-12', 'pending', 'Supabase webhook URL confirmation'),
  ('task-10', 10, 'Mirror secrets to GitHub/Fly', 'Integrations', '2025-10-12', 'pending', 'Secret mirroring evidence logs');

insert into public.readiness_support_plan (subsection, position, label, text) values
  ('inbox_scope', 1, 'Email', 'customer.support@hotrodan.com'),
  ('inbox_scope', 2, 'Integration type', 'IMAP/SMTP or API (to be confirmed with Support)'),
  ('inbox_scope', 3, 'Automation scope', 'Reply curation and Supabase posting (coordinate with Data team)'),
  ('inbox_scope', 4, 'Permissions', 'Read/write access for automation API token'),
  ('action_items', 1, null, 'Review Chatwoot shared inbox configuration requirements'),
  ('action_items', 2, null, 'Provide IMAP/SMTP credentials OR confirm API-based integration preference'),
  ('action_items', 3, null, 'Define automation scope and permissions for API token generation'),
  ('action_items', 4, null, 'Test inbound email routing once Chatwoot health checks pass');

-- The last validation depends on SMTP being configured, so `ready` does not wait for it.
insert into public.readiness_validations (key, position, description, status, required) values
  ('validation-1', 1, 'Health check returns 200 (`curl https://hotdash-chatwoot.fly.dev/hc`)', 'pending', true),
  ('validation-2', 2, 'API token authentication test', 'pending', true),
  ('validation-3', 3, 'Webhook payload validation', 'pending', true),
  ('validation-4', 4, 'Inbound email processing test', 'pending', true),
  ('validation-5', 5, 'Outbound email delivery test (if SMTP configured)', 'pending', false);

insert into public.readiness_evidence_requirements (position, text) values
  (1, 'Health check curl outputs with timestamps'),
  (2, 'API token generation screenshots'),
  (3, 'Webhook test payload examples'),
  (4, 'Email flow test results'),
  (5, 'Secret mirroring command outputs');

insert into public.readiness_risks (position, label, text) values
  (1, 'Critical dependency', 'Supabase DSN fix must complete before API token generation'),
  (2, 'Support coordination', 'Inbox configuration blocked until Support defines requirements'),
  (3, 'Secret rotation', 'API tokens should be rotated after initial production deployment'),
  (4, 'SMTP dependency', 'Email features limited until SMTP credentials provided');

insert into public.readiness_contacts (position, contact_date, contact, team, channel, summary, next_step) values
  (1, '2025-10-11', 'TBD', 'Support', 'TBD', 'Initial coordination for inbox scopes', 'Awaiting Support team contact');

insert into public.readiness_milestones (position, milestone_date, milestone) values
  (1, '2025-10-11', 'Fix Supabase DSN, complete migrations, generate API token'),
  (2, '2025-10-12', 'Support coordination for inbox setup, webhook configuration'),
  (3, '2025-10-13', 'Complete integration testing and secret mirroring'),
  (4, '2025-10-14', 'Production readiness approval');

-- ---------------------------------------------------------------------------------------------------------
-- Change tracking (created after the seed, so history starts with the first real change).
-- ---------------------------------------------------------------------------------------------------------

-- Who changes an item: the readiness.actor setting when a caller sets it (the PATCH endpoint does, per
-- transaction), otherwise the database user (SQL editor, migrations).
create or replace function public.readiness_actor()
returns text
language sql
stable
as $$ select coalesce(nullif(current_setting('readiness.actor', true), ''), current_user::text) $$;

create or replace function public.readiness_touch_item()
returns trigger
language plpgsql
as $$
begin
  new.updated_at := now();
  new.updated_by := public.readiness_actor();
  return new;
end
$$;

create or replace function public.readiness_record_item_history()
returns trigger
language plpgsql
as $$
declare
  v_note text := nullif(current_setting('readiness.note', true), '');
begin
  if tg_op = 'INSERT' then
    insert into public.readiness_item_history
      (item_key, section, operation, changed_by, new_status, new_evidence, note)
    values (new.key, tg_argv[0], 'insert', public.readiness_actor(), new.status, new.evidence, v_note);
  elsif tg_op = 'UPDATE' then
    -- A write that changes neither status nor evidence is only recorded when it carries a note.
    if new.status is distinct from old.status or new.evidence is distinct from old.evidence
       or new.key is distinct from old.key or v_note is not null then
      insert into public.readiness_item_history
        (item_key, section, operation, changed_by, old_status, new_status, old_evidence, new_evidence, note)
      values (new.key, tg_argv[0], 'update', public.readiness_actor(), old.status, new.status, old.evidence,
              new.evidence, v_note);
    end if;
  else
    insert into public.readiness_item_history
      (item_key, section, operation, changed_by, old_status, old_evidence, note)
    values (old.key, tg_argv[0], 'delete', public.readiness_actor(), old.status, old.evidence, v_note);
  end if;
  return null;
end
$$;

do $$
declare
  v_section text;
begin
  foreach v_section in array array['credentials', 'inbox_config', 'blockers', 'tasks', 'validations'] loop
    execute format(
      'create trigger readiness_touch before insert or update on public.%I
         for each row execute function public.readiness_touch_item()',
      'readiness_' || v_section);
    execute format(
      'create trigger readiness_history after insert or update or delete on public.%I
         for each row execute function public.readiness_record_item_history(%L)',
      'readiness_' || v_section, v_section);
  end loop;
end
$$;

-- The one write path the function uses: sets status and/or evidence of one item in a single statement,
-- recording who and why. p_status null keeps the status; p_set_evidence false keeps the evidence.
-- Returns the updated item, or no row when the key names no item.
create or replace function public.readiness_update_item(
  p_key text,
  p_status text,
  p_set_evidence boolean,
  p_evidence text,
  p_note text,
  p_actor text
)
returns setof public.readiness_items
language plpgsql
as $$
declare
  v_section text;
begin
  if p_status is not null and not exists (select 1 from public.readiness_statuses s where s.status = p_status) then
    raise exception using errcode = '22023',
      message = format('unknown readiness status %L', p_status),
      hint = (select string_agg(s.status, ', ' order by s.position) from public.readiness_statuses s);
  end if;
  select i.section into v_section from public.readiness_items i where i.key = p_key;
  if v_section is null then
    return;
  end if;
  perform set_config('readiness.actor', coalesce(p_actor, ''), true);
  perform set_config('readiness.note', coalesce(p_note, ''), true);
  execute format(
    'update public.%I set status = coalesce($1, status), evidence = case when $2 then $3 else evidence end
      where key = $4',
    'readiness_' || v_section)
    using p_status, p_set_evidence, p_evidence, p_key;
  -- Later statements of the caller's transaction must not inherit this actor or note.
  perform set_config('readiness.actor', '', true);
  perform set_config('readiness.note', '', true);
  return query select * from public.readiness_items i where i.key = p_key;
end
$$;

-- Everything the function renders, in one round trip: every section ordered as in the document.
create or replace function public.readiness_snapshot()
returns jsonb
language sql
stable
as $$
  select jsonb_build_object(
    'document', (select jsonb_build_object(
        'epoch', d.epoch, 'doc', d.doc_path, 'owner', d.owner,
        'last_reviewed', d.last_reviewed::text, 'expires', d.expires::text, 'title', d.title,
        'inbox_note', d.inbox_note, 'evidence_location', d.evidence_location)
      from public.readiness_document d),
    'statuses', (select jsonb_agg(jsonb_build_object('status', s.status, 'label', s.label, 'glyph', s.glyph)
        order by s.position) from public.readiness_statuses s),
    'current_status', coalesce((select jsonb_agg(jsonb_build_object('label', c.label,
        'value', c.value) order by c.position) from public.readiness_current_status c), '[]'),
    'credentials', coalesce((select jsonb_agg(jsonb_build_object('key', r.key,
        'name', r.name, 'description', r.description, 'storage_target', r.storage_target,
        'status', r.status, 'notes', r.notes, 'evidence', r.evidence, 'required', r.required,
        'updated_at', r.updated_at, 'updated_by', r.updated_by) order by r.position)
      from public.readiness_credentials r), '[]'),
    'inbox_config', coalesce((select jsonb_agg(jsonb_build_object('key', r.key,
        'item', r.item, 'owner', r.owner, 'status', r.status, 'evidence_required', r.evidence_required,
        'evidence', r.evidence, 'required', r.required, 'updated_at', r.updated_at,
        'updated_by', r.updated_by) order by r.position)
      from public.readiness_inbox_config r), '[]'),
    'blockers', coalesce((select jsonb_agg(jsonb_build_object('key', r.key,
        'title', r.title, 'detail', r.detail, 'status', r.status, 'evidence', r.evidence,
        'required', r.required, 'updated_at', r.updated_at, 'updated_by', r.updated_by) order by r.position)
      from public.readiness_blockers r), '[]'),
    'tasks', coalesce((select jsonb_agg(jsonb_build_object('key', r.key, 'number', r.number,
        'task', r.task, 'owner', r.owner, 'due', r.due::text, 'status', r.status,
        'evidence_required', r.evidence_required, 'evidence', r.evidence, 'required', r.required,
        'updated_at', r.updated_at, 'updated_by', r.updated_by) order by r.number)
      from public.readiness_tasks r), '[]'),
    'support_plan', jsonb_build_object(
      'inbox_scope', coalesce((select jsonb_agg(jsonb_build_object('label', p.label, 'text', p.text)
          order by p.position) from public.readiness_support_plan p where p.subsection = 'inbox_scope'), '[]'),
      'action_items', coalesce((select jsonb_agg(jsonb_build_object('text', p.text) order by p.position)
          from public.readiness_support_plan p where p.subsection = 'action_items'), '[]')),
    'validations', coalesce((select jsonb_agg(jsonb_build_object('key', r.key,
        'description', r.description, 'status', r.status, 'evidence', r.evidence, 'required', r.required,
        'updated_at', r.updated_at, 'updated_by', r.updated_by) order by r.position)
      from public.readiness_validations r), '[]'),
    'evidence_requirements', coalesce((select jsonb_agg(jsonb_build_object('text', e.text) order by e.position)
      from public.readiness_evidence_requirements e), '[]'),
    'dependencies_risks', coalesce((select jsonb_agg(jsonb_build_object('label', r.label, 'text', r.text)
        order by r.position) from public.readiness_risks r), '[]'),
    'contact_log', coalesce((select jsonb_agg(jsonb_build_object('date', c.contact_date::text,
        'contact', c.contact, 'team', c.team, 'channel', c.channel, 'summary', c.summary,
        'next_step', c.next_step) order by c.position) from public.readiness_contacts c), '[]'),
    'timeline', coalesce((select jsonb_agg(jsonb_build_object('date', m.milestone_date::text,
        'milestone', m.milestone) order by m.position) from public.readiness_milestones m), '[]')
  )
$$;

-- ---------------------------------------------------------------------------------------------------------
-- Access: nothing for anon/authenticated (hosted Supabase grants them new objects by default), everything
-- the function needs for service_role.
-- ---------------------------------------------------------------------------------------------------------
do $$
declare
  v_table text;
begin
  foreach v_table in array array[
    'readiness_statuses', 'readiness_document', 'readiness_current_status', 'readiness_credentials',
    'readiness_inbox_config', 'readiness_blockers', 'readiness_tasks', 'readiness_validations',
    'readiness_support_plan', 'readiness_evidence_requirements', 'readiness_risks', 'readiness_contacts',
    'readiness_milestones', 'readiness_item_history'
  ] loop
    execute format('alter table public.%I enable row level security', v_table);
    execute format('revoke all on table public.%I from public, anon, authenticated', v_table);
    execute format('grant select, insert, update, delete on table public.%I to service_role', v_table);
  end loop;
end
$$;

-- History is append-only for the function's role too.
revoke update, delete on table public.readiness_item_history from service_role;
revoke all on table public.readiness_items from public, anon, authenticated;
grant select on table public.readiness_items to service_role;
revoke all on sequence public.readiness_item_history_id_seq from public, anon, authenticated;
grant usage, select on sequence public.readiness_item_history_id_seq to service_role;

revoke all on function public.readiness_actor() from public, anon, authenticated;
revoke all on function public.readiness_touch_item() from public, anon, authenticated;
revoke all on function public.readiness_record_item_history() from public, anon, authenticated;
revoke all on function public.readiness_update_item(text, text, boolean, text, text, text) from public, anon, authenticated;
revoke all on function public.readiness_snapshot() from public, anon, authenticated;
grant execute on function public.readiness_actor() to service_role;
grant execute on function public.readiness_update_item(text, text, boolean, text, text, text) to service_role;
grant execute on function public.readiness_snapshot() to service_role;
