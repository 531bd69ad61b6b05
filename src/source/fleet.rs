//! Fleet bookkeeping in PostgreSQL (`migrations/V4__fleet.sql`): the nodes and their
//! heartbeats, each node's [`LogCursor`] in the change log and in the expiry log,
//! reading a log past a cursor in one snapshot, publishing admin expiries, pruning what
//! every node has applied, the fleet as the database sees it, and [`FleetLocks`]
//! (advisory locks: one render per metatile among nodes that share a cache).
//!
//! # Cursors
//! Log rows carry the id of the transaction that wrote them (`xact`). A cursor says
//! "every row with `xact < horizon` is applied, and so are these few rows above it".
//! A read takes the rows above the horizon that are not applied yet, ordered by
//! `(xact, id)`, together with the xmin of the very snapshot it read them in (the
//! oldest transaction still running then). A transaction that had not committed by then
//! has an id at or above that xmin, so moving the horizon there skips nothing: its rows
//! are read on a later pass, however late it commits and whatever ids its rows got.
//! The rows read above the new horizon are remembered until the horizon passes them.

use super::changes::ChangeRow;
use super::pool::{chain, describe_target, session_config, DatabaseSettings, DbUrlError};
use crate::tile::Bbox;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

/// The channel an admin expiry is announced on (payload: the origin node).
pub const EXPIRY_CHANNEL: &str = "metatiled_expiries";
/// `application_name` of the connection that follows the expiry log.
pub const FLEET_APPLICATION_NAME: &str = "metatiled-fleet";
/// `application_name` of the connection that holds render locks.
pub const LOCK_APPLICATION_NAME: &str = "metatiled-locks";
/// First key of the two-key advisory locks metatiled takes for renders ("mtld"): the
/// two-key space is apart from single-bigint locks other software may use.
const RENDER_LOCK_CLASS: i32 = 0x6d74_6c64;

#[derive(Debug, Error)]
pub enum FleetDbError {
    #[error(transparent)]
    Url(#[from] DbUrlError),
    #[error("cannot connect to PostgreSQL at {target}")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("fleet bookkeeping failed: {what}")]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}

fn query(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> FleetDbError {
    move |source| FleetDbError::Query { what, source }
}

/// Which log a cursor walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogKind {
    /// `metatiled.change_log`: row changes logged by the triggers.
    Changes,
    /// `metatiled.expiry_log`: admin expiries received by one node.
    Expiries,
}

impl LogKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::Changes => "changes",
            LogKind::Expiries => "expiries",
        }
    }
}

/// Where a node is in one log (see the module docs). Pure: reads and saves are below.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCursor {
    /// Every row with `xact` below this is applied.
    pub horizon: i64,
    /// Rows at or above the horizon that are applied: id -> xact.
    applied: BTreeMap<i64, i64>,
}

impl LogCursor {
    /// At the very start of the log.
    pub fn start() -> Self {
        Self::default()
    }

    pub fn new(horizon: i64, applied: impl IntoIterator<Item = (i64, i64)>) -> Self {
        let mut cursor = Self {
            horizon,
            applied: applied.into_iter().collect(),
        };
        cursor.applied.retain(|_, xact| *xact >= horizon);
        cursor
    }

    /// Ids applied above the horizon, ascending.
    pub fn applied_ids(&self) -> Vec<i64> {
        self.applied.keys().copied().collect()
    }

    pub fn applied_xacts(&self) -> Vec<i64> {
        self.applied.values().copied().collect()
    }

    pub fn is_applied(&self, id: i64, xact: i64) -> bool {
        xact < self.horizon || self.applied.contains_key(&id)
    }

    /// Records a read as applied: the rows (`(id, xact)`, in `(xact, id)` order) read in
    /// a snapshot whose xmin was `snapshot_xmin`; `complete` when the read returned every
    /// row above the cursor (not cut by its limit). Returns whether anything changed.
    pub fn advance(
        &mut self,
        rows: impl IntoIterator<Item = (i64, i64)>,
        snapshot_xmin: i64,
        complete: bool,
    ) -> bool {
        let before = self.clone();
        let mut last_xact = None;
        for (id, xact) in rows {
            if xact >= self.horizon {
                self.applied.insert(id, xact);
            }
            last_xact = Some(xact);
        }
        // A cut read saw every visible row below its last one's xact, not beyond.
        let reached = match (complete, last_xact) {
            (true, _) | (false, None) => snapshot_xmin,
            (false, Some(last)) => snapshot_xmin.min(last),
        };
        self.horizon = self.horizon.max(reached);
        let horizon = self.horizon;
        self.applied.retain(|_, xact| *xact >= horizon);
        *self != before
    }
}

/// Rows read past a cursor, with what [`LogCursor::advance`] needs.
#[derive(Debug, Clone)]
pub struct LogRead<T> {
    pub rows: Vec<T>,
    /// xmin of the snapshot the rows were read in.
    pub snapshot_xmin: i64,
    /// Fewer rows than the limit: everything above the cursor was read.
    pub complete: bool,
}

/// One admin expiry as stored (the fleet module turns it into a plan and a set).
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiryRecord {
    /// The fleet whose nodes apply it.
    pub fleet: String,
    /// Node that received it.
    pub origin: String,
    pub styles: Vec<String>,
    pub min_zoom: u8,
    pub max_zoom: u8,
    pub delete_from: Option<u8>,
    pub touch_from: Option<u8>,
    /// The set's max zoom and its squares as (level, x, y) triples, flattened.
    pub set_max_zoom: u8,
    pub squares: Vec<i32>,
}

/// An [`ExpiryRecord`] read back from the log.
#[derive(Debug, Clone)]
pub struct ExpiryRow {
    pub id: i64,
    pub xact: i64,
    pub record: ExpiryRecord,
    /// Time since it was published, by the database's clock.
    pub age: Duration,
}

/// What registering found about this node id.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// Seconds since the id was last seen (`None`: a new node).
    pub away_secs: Option<f64>,
    /// The instance that last used the id.
    pub previous_instance: Option<String>,
}

/// A node as it registers.
#[derive(Debug, Clone)]
pub struct NodeRecord {
    pub node_id: String,
    pub fleet: String,
    /// Random per process.
    pub instance: String,
    pub version: String,
    pub cache_shared: bool,
}

/// How far a node is behind in one log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLag {
    /// Rows it has not applied yet.
    pub pending: i64,
    /// Age of the oldest of them.
    pub oldest_pending_secs: Option<f64>,
}

/// One node as the database sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    pub node_id: String,
    pub version: String,
    pub cache_shared: bool,
    pub draining: bool,
    pub started_secs_ago: f64,
    pub last_seen_secs_ago: f64,
    /// `None` when the node does not follow the change log (watch off).
    pub changes: Option<LogLag>,
    pub expiries: Option<LogLag>,
}

/// What one pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub changes: u64,
    pub expiries: u64,
    pub nodes: u64,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn age(v: f64) -> Duration {
    Duration::try_from_secs_f64(v.max(0.0)).unwrap_or(Duration::ZERO)
}

/// Registers (or re-registers) a node.
pub async fn register_node(
    client: &Client,
    node: &NodeRecord,
) -> Result<Registration, FleetDbError> {
    let row = client
        .query_one(
            "WITH prev AS (
                 SELECT instance, extract(epoch FROM now() - last_seen)::float8 AS away
                 FROM metatiled.fleet_node WHERE node_id = $1
             )
             INSERT INTO metatiled.fleet_node
                 (node_id, fleet, instance, started_at, last_seen, version, cache_shared, draining)
             VALUES ($1, $5, $2, now(), now(), $3, $4, false)
             ON CONFLICT (node_id) DO UPDATE SET
                 fleet = excluded.fleet, instance = excluded.instance, started_at = now(),
                 last_seen = now(), version = excluded.version,
                 cache_shared = excluded.cache_shared, draining = false
             RETURNING (SELECT away FROM prev), (SELECT instance FROM prev)",
            &[
                &node.node_id,
                &node.instance,
                &node.version,
                &node.cache_shared,
                &node.fleet,
            ],
        )
        .await
        .map_err(query("registering the node"))?;
    Ok(Registration {
        away_secs: row.get(0),
        previous_instance: row.get(1),
    })
}

/// Updates the node's heartbeat; returns the instance that holds the id now (`None`
/// when the node's row is gone, e.g. after `metatiled fleet forget`).
pub async fn heartbeat(
    client: &Client,
    node_id: &str,
    draining: bool,
) -> Result<Option<String>, FleetDbError> {
    let row = client
        .query_opt(
            "UPDATE metatiled.fleet_node SET last_seen = now(), draining = $2
             WHERE node_id = $1 RETURNING instance",
            &[&node_id, &draining],
        )
        .await
        .map_err(query("heartbeat"))?;
    Ok(row.map(|r| r.get(0)))
}

/// Marks the node as stopped (its instance released): a process that registers the
/// id next is not taken for a second process sharing it.
pub async fn release_node(
    client: &Client,
    node_id: &str,
    instance: &str,
) -> Result<(), FleetDbError> {
    client
        .execute(
            "UPDATE metatiled.fleet_node SET instance = '', last_seen = now(), draining = true
             WHERE node_id = $1 AND instance = $2",
            &[&node_id, &instance],
        )
        .await
        .map_err(query("releasing the node"))?;
    Ok(())
}

/// Where a node seen for the first time starts in a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the beginning of what the log holds.
    Beginning,
    /// At its current end: everything visible now counts as applied.
    End,
    /// At the end if another node already follows the log (a node joining a shared
    /// cache that the others keep current), else at the beginning (the first node,
    /// e.g. a server upgraded from a version that consumed the log).
    EndIfOthers,
}

/// The node's cursor in a log (and whether it was just created, see [`Start`]).
pub async fn load_cursor(
    client: &Client,
    node_id: &str,
    kind: LogKind,
    start: Start,
) -> Result<(LogCursor, bool), FleetDbError> {
    let row = client
        .query_opt(
            "SELECT horizon, applied_ids, applied_xacts FROM metatiled.fleet_cursor
             WHERE node_id = $1 AND log = $2",
            &[&node_id, &kind.as_str()],
        )
        .await
        .map_err(query("reading the node's cursor"))?;
    if let Some(row) = row {
        let ids: Vec<i64> = row.get(1);
        let xacts: Vec<i64> = row.get(2);
        return Ok((
            LogCursor::new(row.get(0), ids.into_iter().zip(xacts)),
            false,
        ));
    }
    let at_end = match start {
        Start::Beginning => false,
        Start::End => true,
        Start::EndIfOthers => client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM metatiled.fleet_cursor
                                WHERE log = $1 AND node_id <> $2)",
                &[&kind.as_str(), &node_id],
            )
            .await
            .map_err(query("looking for other nodes"))?
            .get(0),
    };
    let cursor = if at_end {
        let table = log_table(kind);
        let rows = client
            .query(
                &format!(
                    "WITH snap AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin)
                     SELECT snap.xmin, l.id, l.xact FROM snap
                     LEFT JOIN {table} l ON l.xact >= snap.xmin"
                ),
                &[],
            )
            .await
            .map_err(query("reading the end of the log"))?;
        let xmin = rows.first().map_or(0, |r| r.get::<_, i64>(0));
        LogCursor::new(
            xmin,
            rows.iter().filter_map(|r| {
                let id: Option<i64> = r.get(1);
                let xact: Option<i64> = r.get(2);
                id.zip(xact)
            }),
        )
    } else {
        LogCursor::start()
    };
    save_cursor(client, node_id, kind, &cursor).await?;
    Ok((cursor, true))
}

/// Stores the node's cursor.
pub async fn save_cursor(
    client: &Client,
    node_id: &str,
    kind: LogKind,
    cursor: &LogCursor,
) -> Result<(), FleetDbError> {
    client
        .execute(
            "INSERT INTO metatiled.fleet_cursor (node_id, log, horizon, applied_ids, applied_xacts)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (node_id, log) DO UPDATE SET horizon = excluded.horizon,
                 applied_ids = excluded.applied_ids, applied_xacts = excluded.applied_xacts,
                 updated_at = now()",
            &[
                &node_id,
                &kind.as_str(),
                &cursor.horizon,
                &cursor.applied_ids(),
                &cursor.applied_xacts(),
            ],
        )
        .await
        .map_err(query("saving the node's cursor"))?;
    Ok(())
}

fn log_table(kind: LogKind) -> &'static str {
    match kind {
        LogKind::Changes => "metatiled.change_log",
        LogKind::Expiries => "metatiled.expiry_log",
    }
}

/// The change-log rows past `cursor`, at most `limit`, in `(xact, id)` order, read in
/// one statement (one snapshot) with that snapshot's xmin.
pub async fn read_changes(
    client: &Client,
    cursor: &LogCursor,
    limit: i64,
) -> Result<LogRead<ChangeRow>, FleetDbError> {
    let rows = client
        .query(
            "WITH snap AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin)
             SELECT snap.xmin, c.id, c.xact, c.table_name, c.minx, c.miny, c.maxx, c.maxy,
                    c.changed_rows, c.age
             FROM snap LEFT JOIN LATERAL (
                 SELECT id, xact, table_name, minx, miny, maxx, maxy, changed_rows,
                        extract(epoch FROM clock_timestamp() - changed_at)::float8 AS age
                 FROM metatiled.change_log
                 WHERE xact >= $1 AND NOT (id = ANY($2))
                 ORDER BY xact, id LIMIT $3
             ) AS c ON true",
            &[&cursor.horizon, &cursor.applied_ids(), &limit],
        )
        .await
        .map_err(query("reading the change log"))?;
    let snapshot_xmin = rows.first().map_or(cursor.horizon, |r| r.get::<_, i64>(0));
    let mut out = Vec::new();
    for r in &rows {
        let Some(id) = r.get::<_, Option<i64>>(1) else {
            continue;
        };
        out.push(ChangeRow {
            id,
            xact: r.get(2),
            table: r.get(3),
            bbox: Bbox {
                min_x: r.get(4),
                min_y: r.get(5),
                max_x: r.get(6),
                max_y: r.get(7),
            },
            changed_rows: r.get(8),
            age: age(r.get(9)),
        });
    }
    Ok(LogRead {
        complete: (out.len() as i64) < limit,
        rows: out,
        snapshot_xmin,
    })
}

/// The expiries past `cursor` that other nodes of `fleet` published, at most `limit`,
/// like [`read_changes`].
pub async fn read_expiries(
    client: &Client,
    cursor: &LogCursor,
    (fleet, node_id): (&str, &str),
    limit: i64,
) -> Result<LogRead<ExpiryRow>, FleetDbError> {
    let rows = client
        .query(
            "WITH snap AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin)
             SELECT snap.xmin, e.id, e.xact, e.origin, e.styles, e.min_zoom, e.max_zoom,
                    e.delete_from, e.touch_from, e.set_max_zoom, e.squares, e.age
             FROM snap LEFT JOIN LATERAL (
                 SELECT id, xact, origin, styles, min_zoom, max_zoom, delete_from, touch_from,
                        set_max_zoom, squares,
                        extract(epoch FROM clock_timestamp() - created_at)::float8 AS age
                 FROM metatiled.expiry_log
                 WHERE xact >= $1 AND NOT (id = ANY($2)) AND origin <> $3 AND fleet = $5
                 ORDER BY xact, id LIMIT $4
             ) AS e ON true",
            &[
                &cursor.horizon,
                &cursor.applied_ids(),
                &node_id,
                &limit,
                &fleet,
            ],
        )
        .await
        .map_err(query("reading the expiry log"))?;
    let snapshot_xmin = rows.first().map_or(cursor.horizon, |r| r.get::<_, i64>(0));
    let zoom = |v: i16| u8::try_from(v).unwrap_or(u8::MAX);
    let mut out = Vec::new();
    for r in &rows {
        let Some(id) = r.get::<_, Option<i64>>(1) else {
            continue;
        };
        out.push(ExpiryRow {
            id,
            xact: r.get(2),
            record: ExpiryRecord {
                fleet: fleet.to_string(),
                origin: r.get(3),
                styles: r.get(4),
                min_zoom: zoom(r.get(5)),
                max_zoom: zoom(r.get(6)),
                delete_from: r.get::<_, Option<i16>>(7).map(zoom),
                touch_from: r.get::<_, Option<i16>>(8).map(zoom),
                set_max_zoom: zoom(r.get(9)),
                squares: r.get(10),
            },
            age: age(r.get(11)),
        });
    }
    Ok(LogRead {
        complete: (out.len() as i64) < limit,
        rows: out,
        snapshot_xmin,
    })
}

/// Publishes an expiry for the other nodes and wakes their followers; returns its id.
pub async fn publish_expiry(client: &Client, e: &ExpiryRecord) -> Result<i64, FleetDbError> {
    let row = client
        .query_one(
            "WITH e AS (
                 INSERT INTO metatiled.expiry_log (origin, styles, min_zoom, max_zoom,
                     delete_from, touch_from, set_max_zoom, squares, fleet)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10) RETURNING id
             )
             SELECT e.id FROM e CROSS JOIN LATERAL (SELECT pg_notify($9::text, $1::text)) AS n",
            &[
                &e.origin,
                &e.styles,
                &i16::from(e.min_zoom),
                &i16::from(e.max_zoom),
                &e.delete_from.map(i16::from),
                &e.touch_from.map(i16::from),
                &i16::from(e.set_max_zoom),
                &e.squares,
                &EXPIRY_CHANNEL,
                &e.fleet,
            ],
        )
        .await
        .map_err(query("publishing an expiry"))?;
    Ok(row.get(0))
}

/// Removes what no live node needs: log rows every live node (seen within `retention`)
/// is past, rows older than `retention`, and nodes not seen for `forget_after`.
pub async fn prune(
    client: &Client,
    retention: Duration,
    forget_after: Duration,
) -> Result<Pruned, FleetDbError> {
    let retention = secs(retention);
    let forget_after = secs(forget_after);
    let live_horizon = |log: &str| {
        format!(
            "(SELECT min(c.horizon) FROM metatiled.fleet_cursor c
              JOIN metatiled.fleet_node n USING (node_id)
              WHERE c.log = '{log}' AND n.last_seen > now() - make_interval(secs => $1))"
        )
    };
    let changes = client
        .execute(
            &format!(
                "DELETE FROM metatiled.change_log
                 WHERE changed_at < now() - make_interval(secs => $1) OR xact < {}",
                live_horizon("changes")
            ),
            &[&retention],
        )
        .await
        .map_err(query("pruning the change log"))?;
    let expiries = client
        .execute(
            &format!(
                "DELETE FROM metatiled.expiry_log
                 WHERE created_at < now() - make_interval(secs => $1) OR xact < {}",
                live_horizon("expiries")
            ),
            &[&retention],
        )
        .await
        .map_err(query("pruning the expiry log"))?;
    let nodes = client
        .execute(
            "DELETE FROM metatiled.fleet_node WHERE last_seen < now() - make_interval(secs => $1)",
            &[&forget_after],
        )
        .await
        .map_err(query("forgetting old nodes"))?;
    if nodes > 0 {
        client
            .execute(
                "DELETE FROM metatiled.fleet_cursor
                 WHERE node_id NOT IN (SELECT node_id FROM metatiled.fleet_node)",
                &[],
            )
            .await
            .map_err(query("forgetting old cursors"))?;
    }
    Ok(Pruned {
        changes,
        expiries,
        nodes,
    })
}

/// Removes a node and its cursors (it left for good); whether it was there.
pub async fn forget_node(client: &Client, node_id: &str) -> Result<bool, FleetDbError> {
    let n = client
        .execute(
            "DELETE FROM metatiled.fleet_node WHERE node_id = $1",
            &[&node_id],
        )
        .await
        .map_err(query("forgetting a node"))?;
    client
        .execute(
            "DELETE FROM metatiled.fleet_cursor WHERE node_id = $1",
            &[&node_id],
        )
        .await
        .map_err(query("forgetting a node's cursors"))?;
    Ok(n > 0)
}

/// Every node of `fleet` with its heartbeat and how far behind it is in each log.
pub async fn fleet_status(client: &Client, fleet: &str) -> Result<Vec<NodeStatus>, FleetDbError> {
    let rows = client
        .query(
            "SELECT n.node_id, n.version, n.cache_shared, n.draining,
                    extract(epoch FROM now() - n.started_at)::float8,
                    extract(epoch FROM now() - n.last_seen)::float8,
                    ch.node_id IS NOT NULL, chl.pending, chl.oldest,
                    ex.node_id IS NOT NULL, exl.pending, exl.oldest
             FROM metatiled.fleet_node n
             LEFT JOIN metatiled.fleet_cursor ch ON ch.node_id = n.node_id AND ch.log = 'changes'
             LEFT JOIN metatiled.fleet_cursor ex ON ex.node_id = n.node_id AND ex.log = 'expiries'
             LEFT JOIN LATERAL (
                 SELECT count(*) AS pending,
                        extract(epoch FROM clock_timestamp() - min(l.changed_at))::float8 AS oldest
                 FROM metatiled.change_log l
                 WHERE ch.node_id IS NOT NULL AND l.xact >= ch.horizon
                   AND NOT (l.id = ANY(ch.applied_ids))
             ) AS chl ON true
             LEFT JOIN LATERAL (
                 SELECT count(*) AS pending,
                        extract(epoch FROM clock_timestamp() - min(l.created_at))::float8 AS oldest
                 FROM metatiled.expiry_log l
                 WHERE ex.node_id IS NOT NULL AND l.xact >= ex.horizon
                   AND NOT (l.id = ANY(ex.applied_ids)) AND l.origin <> n.node_id
                   AND l.fleet = n.fleet
             ) AS exl ON true
             WHERE n.fleet = $1
             ORDER BY n.node_id",
            &[&fleet],
        )
        .await
        .map_err(query("reading the fleet"))?;
    let lag = |present: bool, pending: i64, oldest: Option<f64>| {
        present.then_some(LogLag {
            pending,
            oldest_pending_secs: oldest,
        })
    };
    Ok(rows
        .iter()
        .map(|r| NodeStatus {
            node_id: r.get(0),
            version: r.get(1),
            cache_shared: r.get(2),
            draining: r.get(3),
            started_secs_ago: r.get(4),
            last_seen_secs_ago: r.get(5),
            changes: lag(r.get(6), r.get(7), r.get(8)),
            expiries: lag(r.get(9), r.get(10), r.get(11)),
        })
        .collect())
}

/// The advisory-lock key of a metatile: the second half of a two-key lock whose first
/// half is [`RENDER_LOCK_CLASS`]. A stable hash (FNV-1a of `style/z/x/y`), the same on
/// every node; two metatiles sharing a key only render one after the other.
pub fn render_lock_key(style: &str, z: u8, x: u32, y: u32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in format!("{style}/{z}/{x}/{y}").bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(h.to_ne_bytes())
}

/// A connection of its own that takes and releases render locks (session-level
/// advisory locks, released by PostgreSQL if this process dies). Only non-blocking
/// `pg_try_advisory_lock` is sent, so one connection serves every render of the node.
/// Connects on first use and again after a failure.
pub struct FleetLocks {
    settings: DatabaseSettings,
    conn: Mutex<Option<Arc<LockConn>>>,
}

struct LockConn {
    client: Client,
    driver: JoinHandle<()>,
}

impl Drop for LockConn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl FleetLocks {
    pub fn new(settings: &DatabaseSettings) -> Self {
        Self {
            settings: settings.clone(),
            conn: Mutex::new(None),
        }
    }

    async fn conn(&self) -> Result<Arc<LockConn>, FleetDbError> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            if !c.client.is_closed() {
                return Ok(c);
            }
        }
        // Unlocking a lock a lost connection already released only warns: not news.
        let pg = session_config(&self.settings, LOCK_APPLICATION_NAME, "error")?;
        let (client, connection) =
            pg.connect(NoTls)
                .await
                .map_err(|source| FleetDbError::Connect {
                    target: describe_target(&pg),
                    source,
                })?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %chain(&e), "fleet: the lock connection closed");
            }
        });
        let conn = Arc::new(LockConn { client, driver });
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    fn forget(&self, failed: &Arc<LockConn>) {
        let mut slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, failed)) {
            *slot = None;
        }
    }

    /// Takes the lock if free (this node's session holds it until [`FleetLocks::unlock`]).
    pub async fn try_lock(&self, key: i32) -> Result<bool, FleetDbError> {
        let conn = self.conn().await?;
        match conn
            .client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&RENDER_LOCK_CLASS, &key],
            )
            .await
        {
            Ok(row) => Ok(row.get(0)),
            Err(e) => {
                self.forget(&conn);
                Err(query("taking a render lock")(e))
            }
        }
    }

    /// Releases a lock taken with [`FleetLocks::try_lock`].
    pub async fn unlock(&self, key: i32) -> Result<(), FleetDbError> {
        let conn = self.conn().await?;
        if let Err(e) = conn
            .client
            .query_one(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&RENDER_LOCK_CLASS, &key],
            )
            .await
        {
            self.forget(&conn);
            return Err(query("releasing a render lock")(e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_read_moves_the_horizon_to_the_snapshot_xmin() {
        let mut c = LogCursor::start();
        // Rows of transactions 100 and 105; transaction 103 still running (xmin 103).
        assert!(c.advance([(1, 100), (3, 105)], 103, true));
        assert_eq!(c.horizon, 103);
        assert_eq!(c.applied_ids(), vec![3]);
        assert!(c.is_applied(1, 100) && c.is_applied(3, 105));
        // 103 commits late with the lower id 2: not applied, so read next time.
        assert!(!c.is_applied(2, 103));
        assert!(c.advance([(2, 103)], 110, true));
        assert_eq!(c.horizon, 110);
        assert!(c.applied_ids().is_empty(), "the horizon passed them all");
        assert!(!c.advance([], 110, true), "nothing new: nothing to save");
    }

    #[test]
    fn a_read_cut_by_its_limit_stops_the_horizon_at_its_last_row() {
        let mut c = LogCursor::start();
        c.advance([(1, 50), (2, 60)], 90, false);
        // Rows of transactions 60..90 may be unread: the horizon stays at 60, and row 2
        // (xact 60) is remembered as applied.
        assert_eq!(c.horizon, 60);
        assert_eq!(c.applied_ids(), vec![2]);
        assert!(!c.is_applied(7, 61));
        c.advance([(7, 61)], 90, true);
        assert_eq!(c.horizon, 90);
    }

    #[test]
    fn the_horizon_never_goes_back() {
        let mut c = LogCursor::new(200, [(9, 205)]);
        c.advance([], 150, true);
        assert_eq!(c.horizon, 200);
        assert_eq!(c.applied_ids(), vec![9]);
        let restored = LogCursor::new(200, c.applied_ids().into_iter().zip(c.applied_xacts()));
        assert_eq!(restored, c);
    }

    #[test]
    fn render_lock_keys_are_stable_and_differ_per_metatile() {
        let a = render_lock_key("osm", 18, 149232, 75872);
        assert_eq!(a, render_lock_key("osm", 18, 149232, 75872));
        assert_ne!(a, render_lock_key("osm", 18, 149240, 75872));
        assert_ne!(a, render_lock_key("osm@2x", 18, 149232, 75872));
    }
}
