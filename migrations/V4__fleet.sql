-- A fleet of nodes over one database: every node applies every logged change and every
-- admin expiry exactly once, each at its own pace, including nodes that were down when
-- it happened (within fleet.retention_secs). Until V3 the change log was consumed: the
-- first server to read a row deleted it, so a second server never saw it.
--
-- Each log row records the id of the transaction that wrote it (`xact`). A node's
-- cursor is a horizon plus a short list of rows it applied above it:
--   every row with xact < horizon is applied, and so are the rows in applied_ids.
-- After a complete read in one snapshot, the horizon moves to the snapshot's xmin (the
-- oldest transaction still running): any row that commits later was written by a
-- transaction at or above it, so it is read on a later pass. This keeps what V2 did
-- with "read by id, delete by id": a transaction that commits late with a lower id is
-- never skipped. Rows leave the log once every live node is past them, or after
-- fleet.retention_secs.

ALTER TABLE metatiled.change_log
    ADD COLUMN IF NOT EXISTS xact bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX IF NOT EXISTS change_log_xact ON metatiled.change_log (xact, id);
CREATE INDEX IF NOT EXISTS change_log_changed_at ON metatiled.change_log (changed_at);

-- Expiries sent to one node's admin API, for the other nodes. The area is the
-- deduplicated quadtree of the request (MetatileSet: level, x, y triples), so a
-- million-line expire list is stored as the squares it reduces to.
CREATE TABLE IF NOT EXISTS metatiled.expiry_log (
    id bigserial PRIMARY KEY,
    xact bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    -- fleet.name: only the nodes of this fleet apply it.
    fleet text NOT NULL,
    -- node.id of the node that received it (and applied it already).
    origin text NOT NULL,
    styles text[] NOT NULL,
    min_zoom smallint NOT NULL,
    max_zoom smallint NOT NULL,
    delete_from smallint,
    touch_from smallint,
    -- The set's own max zoom and its squares, flattened: level, x, y, level, x, y, ...
    set_max_zoom smallint NOT NULL,
    squares integer[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS expiry_log_xact ON metatiled.expiry_log (xact, id);
CREATE INDEX IF NOT EXISTS expiry_log_created_at ON metatiled.expiry_log (created_at);

-- The nodes, as they registered and last reported. Node ids are unique in the
-- database; several fleets (fleet.name) may share it.
CREATE TABLE IF NOT EXISTS metatiled.fleet_node (
    node_id text PRIMARY KEY,
    fleet text NOT NULL,
    -- Random per process: tells two processes that share a node id apart.
    instance text NOT NULL,
    started_at timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    version text NOT NULL,
    cache_shared boolean NOT NULL,
    draining boolean NOT NULL DEFAULT false
);

-- Each node's position in each log ('changes' = change_log, 'expiries' = expiry_log).
CREATE TABLE IF NOT EXISTS metatiled.fleet_cursor (
    node_id text NOT NULL,
    log text NOT NULL CHECK (log IN ('changes', 'expiries')),
    horizon bigint NOT NULL,
    applied_ids bigint[] NOT NULL DEFAULT '{}',
    applied_xacts bigint[] NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, log)
);

COMMENT ON TABLE metatiled.change_log IS
    'Areas (EPSG:3857 boxes) changed in watched tables, written by statement-level triggers '
    '(metatiled watch). Every watching node applies every row (metatiled.fleet_cursor); rows '
    'are deleted once every live node is past them, or after fleet.retention_secs.';
COMMENT ON TABLE metatiled.expiry_log IS
    'Admin expiries received by one node, applied by every other node (metatiled.fleet_cursor).';
COMMENT ON TABLE metatiled.fleet_node IS
    'Nodes of the fleet: node.id, last heartbeat, whether draining.';
COMMENT ON TABLE metatiled.fleet_cursor IS
    'Per node and log: every row with xact < horizon is applied, and so are applied_ids.';
