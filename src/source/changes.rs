//! The database side of change tracking (`migrations/V2__change_log.sql`, `V3__...`):
//! which tables have a geometry column, installing and removing the statement-level
//! triggers that log changed boxes to `metatiled.change_log`, and [`ChangeFeed`], a
//! dedicated connection that LISTENs on a channel ([`CHANGE_CHANNEL`] for the change
//! log) and wakes its reader.
//!
//! The log is the truth; a notification only wakes the reader. Every node reads the
//! log past its own cursor (`super::fleet`): a transaction that committed late with a
//! lower id is read on a later pass instead of being skipped.

use super::pool::DatabaseSettings;
use super::pool::{chain, describe_target, session_config, DbUrlError};
use crate::tile::Bbox;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tokio_util::sync::CancellationToken;

/// The channel the triggers NOTIFY (once per statement, payload `schema.table`).
pub const CHANGE_CHANNEL: &str = "metatiled_changes";
/// `application_name` of the listener's connection (find it in `pg_stat_activity`).
pub const WATCH_APPLICATION_NAME: &str = "metatiled-watch";
/// Prefix of the triggers' names; the full names are in [`TRIGGERS`].
pub const TRIGGER_PREFIX: &str = "metatiled_change_";

/// The triggers installed on a watched table: name suffix, event, and the transition
/// tables the function reads (`None` for TRUNCATE, which logs the whole world).
pub const TRIGGERS: [(&str, &str, Option<&str>); 4] = [
    (
        "insert",
        "INSERT",
        Some("REFERENCING NEW TABLE AS new_rows"),
    ),
    (
        "update",
        "UPDATE",
        Some("REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ),
    (
        "delete",
        "DELETE",
        Some("REFERENCING OLD TABLE AS old_rows"),
    ),
    ("truncate", "TRUNCATE", None),
];

#[derive(Debug, Error)]
pub enum ChangeError {
    #[error(transparent)]
    Url(#[from] DbUrlError),
    #[error("cannot connect to PostgreSQL at {target}")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database query failed{context}")]
    Query {
        /// What was being done, `": watching public.x"`, or empty.
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{0}")]
    UnknownTable(String),
    #[error("the listener's database connection closed: {0}")]
    Closed(String),
}

fn query_error(source: tokio_postgres::Error) -> ChangeError {
    ChangeError::Query {
        context: String::new(),
        source,
    }
}

/// The server's own message for a database error (tokio-postgres' Display says only
/// "db error"), else the error chain.
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => chain(e),
    }
}

/// A table by schema and name, as the triggers log it (`schema.table`, unquoted).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    pub schema: String,
    pub name: String,
}

impl TableRef {
    /// Splits `schema.table` at the first dot; a name without a dot has schema `""`
    /// (meaning "any schema" to [`resolve_tables`]).
    pub fn parse(text: &str) -> TableRef {
        match text.split_once('.') {
            Some((schema, name)) => TableRef {
                schema: schema.to_string(),
                name: name.to_string(),
            },
            None => TableRef {
                schema: String::new(),
                name: text.to_string(),
            },
        }
    }

    /// `"schema"."name"`, safe to put in SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.schema.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}.{}", self.schema, self.name)
        }
    }
}

/// A base table with a geometry column: what can be watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeometryTable {
    pub table: TableRef,
    /// The column whose boxes are logged (`way` for osm2pgsql's tables).
    pub geometry_column: String,
    /// The column's SRID as `geometry_columns` declares it (0 = any).
    pub srid: i32,
}

/// `"name"` with inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with inner quotes doubled (standard_conforming_strings is on since 9.1).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The statements that (re)install the triggers on one table: drop-then-create of
/// each, so running it again replaces them (e.g. after the geometry column changed).
/// Run as one simple-query batch, they form one transaction.
pub fn install_sql(table: &GeometryTable) -> String {
    let target = table.table.quoted();
    let column = quote_literal(&table.geometry_column);
    let srid = quote_literal(&table.srid.to_string());
    // "trigger does not exist, skipping" is expected the first time: not worth a NOTICE.
    let mut sql = String::from("SET LOCAL client_min_messages = warning;\n");
    for (suffix, event, transition) in TRIGGERS {
        let name = quote_ident(&format!("{TRIGGER_PREFIX}{suffix}"));
        sql.push_str(&format!("DROP TRIGGER IF EXISTS {name} ON {target};\n"));
        match transition {
            Some(referencing) => sql.push_str(&format!(
                "CREATE TRIGGER {name} AFTER {event} ON {target} {referencing} \
                 FOR EACH STATEMENT EXECUTE FUNCTION metatiled.log_change({column}, {srid});\n"
            )),
            None => sql.push_str(&format!(
                "CREATE TRIGGER {name} AFTER {event} ON {target} \
                 FOR EACH STATEMENT EXECUTE FUNCTION metatiled.log_truncate();\n"
            )),
        }
    }
    sql
}

/// The statements that remove the triggers from one table (idempotent).
pub fn remove_sql(table: &TableRef) -> String {
    let target = table.quoted();
    let mut sql = String::from("SET LOCAL client_min_messages = warning;\n");
    for (suffix, _, _) in TRIGGERS {
        let name = quote_ident(&format!("{TRIGGER_PREFIX}{suffix}"));
        sql.push_str(&format!("DROP TRIGGER IF EXISTS {name} ON {target};\n"));
    }
    sql
}

/// Every base (or partitioned) table with a geometry column, outside the server's own
/// and the system schemas, one entry per table: its `way` column if it has one, else
/// its first geometry column by name.
pub async fn geometry_tables(client: &Client) -> Result<Vec<GeometryTable>, ChangeError> {
    let rows = client
        .query(
            "SELECT g.f_table_schema::text, g.f_table_name::text, g.f_geometry_column::text,
                    g.srid
             FROM geometry_columns g
             JOIN pg_namespace n ON n.nspname = g.f_table_schema::name
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = g.f_table_name::name
             WHERE c.relkind IN ('r', 'p')
               AND g.f_table_schema NOT IN ('metatiled', 'pg_catalog', 'information_schema')
             ORDER BY 1, 2, (g.f_geometry_column <> 'way'), 3",
            &[],
        )
        .await
        .map_err(query_error)?;
    let mut out: Vec<GeometryTable> = Vec::new();
    for row in rows {
        let table = TableRef {
            schema: row.get(0),
            name: row.get(1),
        };
        if out.last().is_some_and(|t| t.table == table) {
            continue;
        }
        out.push(GeometryTable {
            table,
            geometry_column: row.get(2),
            srid: row.get(3),
        });
    }
    Ok(out)
}

/// Looks up tables named by a user (`table` or `schema.table`) among `candidates`.
/// An unqualified name must be unique across schemas.
pub fn resolve_tables(
    candidates: &[GeometryTable],
    wanted: &[TableRef],
) -> Result<Vec<GeometryTable>, ChangeError> {
    let mut out: Vec<GeometryTable> = Vec::new();
    for w in wanted {
        let found: Vec<&GeometryTable> = candidates
            .iter()
            .filter(|c| {
                c.table.name == w.name && (w.schema.is_empty() || c.table.schema == w.schema)
            })
            .collect();
        match found.as_slice() {
            [one] => {
                if !out.contains(one) {
                    out.push((*one).clone());
                }
            }
            [] => {
                return Err(ChangeError::UnknownTable(format!(
                    "no table {w} with a geometry column (views cannot be watched)"
                )))
            }
            many => {
                let names: Vec<String> = many.iter().map(|t| t.table.to_string()).collect();
                return Err(ChangeError::UnknownTable(format!(
                    "table name {w} is ambiguous ({}); qualify it with its schema",
                    names.join(", ")
                )));
            }
        }
    }
    Ok(out)
}

/// Installs (or replaces) the triggers on one table, atomically.
pub async fn install_triggers(client: &Client, table: &GeometryTable) -> Result<(), ChangeError> {
    client
        .batch_execute(&install_sql(table))
        .await
        .map_err(|source| ChangeError::Query {
            context: format!(": watching {}", table.table),
            source,
        })
}

/// Removes the triggers from one table (nothing happens when there are none).
pub async fn remove_triggers(client: &Client, table: &TableRef) -> Result<(), ChangeError> {
    client
        .batch_execute(&remove_sql(table))
        .await
        .map_err(|source| ChangeError::Query {
            context: format!(": unwatching {table}"),
            source,
        })
}

/// The tables that have at least one of our triggers.
pub async fn watched_tables(client: &Client) -> Result<Vec<TableRef>, ChangeError> {
    let rows = client
        .query(
            "SELECT DISTINCT n.nspname::text, c.relname::text
             FROM pg_trigger t
             JOIN pg_class c ON c.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_proc p ON p.oid = t.tgfoid
             WHERE NOT t.tgisinternal
               AND p.pronamespace = 'metatiled'::regnamespace
               AND p.proname IN ('log_change', 'log_truncate')
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(query_error)?;
    Ok(rows
        .iter()
        .map(|r| TableRef {
            schema: r.get(0),
            name: r.get(1),
        })
        .collect())
}

/// One row of `metatiled.change_log`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    pub id: i64,
    /// The transaction that wrote it (see `super::fleet` on cursors).
    pub xact: i64,
    /// `schema.table`, as the trigger logged it.
    pub table: String,
    /// The changed extent in EPSG:3857 (as stored: not checked or clamped).
    pub bbox: Bbox,
    /// Geometries looked at (old and new for an UPDATE); 0 = unknown.
    pub changed_rows: i64,
    /// Time from the trigger (inside the writing transaction) to this read, by the
    /// database's clock.
    pub age: Duration,
}

/// What ended a [`ChangeFeed::wait_to_read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Time to read the log: a notification arrived (several are folded into one), or
    /// the poll interval passed.
    Read,
    /// Asked to stop.
    Stopped,
    /// The connection is gone; the reason.
    Closed(String),
}

/// The poll interval of a reader of the logs, first due one interval from now: the log is
/// read on every notification and at least this often, so a notification lost with a
/// connection costs at most one interval.
pub fn poll_interval(poll: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + poll, poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// A listener's own connection (not from the pool): LISTENs on one channel.
pub struct ChangeFeed {
    client: Client,
    wake: mpsc::Receiver<()>,
    driver: JoinHandle<String>,
}

impl ChangeFeed {
    /// Connects (as [`WATCH_APPLICATION_NAME`], with the pool's timeouts) and LISTENs
    /// on [`CHANGE_CHANNEL`].
    pub async fn connect(settings: &DatabaseSettings) -> Result<ChangeFeed, ChangeError> {
        Self::connect_to(settings, CHANGE_CHANNEL, WATCH_APPLICATION_NAME).await
    }

    /// Connects as `application_name` and LISTENs on `channel`.
    pub async fn connect_to(
        settings: &DatabaseSettings,
        channel: &str,
        application_name: &str,
    ) -> Result<ChangeFeed, ChangeError> {
        let pg = session_config(settings, application_name, "warning")?;
        let target = describe_target(&pg);
        let (client, mut connection) =
            pg.connect(NoTls)
                .await
                .map_err(|source| ChangeError::Connect {
                    target: target.clone(),
                    source,
                })?;
        // One pending wake-up is enough: the reader reads the whole log when it wakes.
        let (wake_tx, wake) = mpsc::channel(1);
        let driver = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(_))) => {
                        let _ = wake_tx.try_send(());
                    }
                    Some(Ok(AsyncMessage::Notice(notice))) => {
                        tracing::debug!(notice = %notice.message(), "database notice (watch connection)");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return db_message(&e),
                    None => return "closed by the server".to_string(),
                }
            }
        });
        let feed = ChangeFeed {
            client,
            wake,
            driver,
        };
        feed.client
            .batch_execute(&format!("LISTEN {}", quote_ident(channel)))
            .await
            .map_err(|source| ChangeError::Query {
                context: format!(": LISTEN on {target}"),
                source,
            })?;
        Ok(feed)
    }

    /// Waits until the log is to be read again (a notification, or `poll` from
    /// [`poll_interval`] is due), until `stop`, or until the connection closes.
    pub async fn wait_to_read(
        &mut self,
        poll: &mut tokio::time::Interval,
        stop: &CancellationToken,
    ) -> Wake {
        tokio::select! {
            _ = stop.cancelled() => Wake::Stopped,
            _ = poll.tick() => Wake::Read,
            woken = self.wake.recv() => match woken {
                Some(()) => Wake::Read,
                None => Wake::Closed(match (&mut self.driver).await {
                    Ok(reason) => reason,
                    Err(e) => e.to_string(),
                }),
            },
        }
    }

    /// The connection, for reading past a cursor (`super::fleet`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The tables that have our triggers (to warn when there are none).
    pub async fn watched_tables(&self) -> Result<Vec<TableRef>, ChangeError> {
        watched_tables(&self.client).await
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: &str, name: &str) -> GeometryTable {
        GeometryTable {
            table: TableRef {
                schema: schema.into(),
                name: name.into(),
            },
            geometry_column: "way".into(),
            srid: 3857,
        }
    }

    #[test]
    fn names_are_quoted_so_no_identifier_can_escape() {
        assert_eq!(quote_ident("planet_osm_line"), "\"planet_osm_line\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        let t = GeometryTable {
            table: TableRef {
                schema: "s\"x".into(),
                name: "t".into(),
            },
            geometry_column: "g'eom".into(),
            srid: 4326,
        };
        let sql = install_sql(&t);
        assert!(sql.contains("ON \"s\"\"x\".\"t\""), "{sql}");
        assert!(
            sql.contains("metatiled.log_change('g''eom', '4326')"),
            "{sql}"
        );
    }

    #[test]
    fn install_drops_then_creates_one_trigger_per_event() {
        let sql = install_sql(&table("public", "planet_osm_line"));
        assert_eq!(sql.matches("DROP TRIGGER IF EXISTS").count(), 4);
        assert_eq!(sql.matches("CREATE TRIGGER").count(), 4);
        assert!(sql.contains(
            "AFTER UPDATE ON \"public\".\"planet_osm_line\" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT"
        ));
        assert!(sql.contains("AFTER TRUNCATE ON \"public\".\"planet_osm_line\" FOR EACH STATEMENT EXECUTE FUNCTION metatiled.log_truncate()"));
        let drop = sql.find("DROP TRIGGER IF EXISTS \"metatiled_change_insert\"");
        let create = sql.find("CREATE TRIGGER \"metatiled_change_insert\"");
        assert!(drop < create);
        assert_eq!(
            remove_sql(&table("public", "planet_osm_line").table)
                .matches("DROP TRIGGER IF EXISTS")
                .count(),
            4
        );
    }

    #[test]
    fn user_table_names_resolve_with_or_without_schema() {
        let candidates = vec![
            table("public", "planet_osm_line"),
            table("public", "roads"),
            table("other", "roads"),
        ];
        let got = resolve_tables(&candidates, &[TableRef::parse("planet_osm_line")]).unwrap();
        assert_eq!(got, vec![table("public", "planet_osm_line")]);
        let got = resolve_tables(&candidates, &[TableRef::parse("other.roads")]).unwrap();
        assert_eq!(got, vec![table("other", "roads")]);
        let err = resolve_tables(&candidates, &[TableRef::parse("roads")]).unwrap_err();
        assert!(err.to_string().contains("ambiguous"), "{err}");
        let err = resolve_tables(&candidates, &[TableRef::parse("nope")]).unwrap_err();
        assert!(err.to_string().contains("no table nope"), "{err}");
    }
}
