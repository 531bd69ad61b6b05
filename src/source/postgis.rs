//! One query per style layer per metatile, and WKB -> geo decoding.
//!
//! A layer's SQL returns one row per feature with a WKB geometry column `geom`
//! (`ST_AsBinary(...)`), optionally a text column `kind` (what the layer's rules match),
//! an integer column `draw_group` and a text column `label` (the text of `text` rules;
//! see `styles/README.md`). The SQL is prepared once
//! per pooled connection with typed bind parameters (deadpool's statement cache) and
//! executed for each metatile; the layers of a metatile run pipelined on one connection,
//! or dealt to two when the pool has one to spare.

use super::health::{Abort, NoAnswer, SourceHealth, Unavailable};
use crate::source::DbPool;
use crate::style::{Layer, Style};
use crate::tile::{MetatileCoord, StyleName};
use geozero::ToGeo;
use rayon::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

/// The types of the bind parameters every layer query gets, in order (see
/// [`crate::style::QUERY_PARAMS`]): bbox (4 x float8), zoom, pixel size, scale, the
/// metatile's own bbox (4 x float8).
const PARAM_TYPES: [Type; 11] = [
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::INT4,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
];

/// Why fetching a metatile's features failed. The Display text names the style, layer
/// and metatile; the database's error is the source (never the SQL text, which is
/// logged at debug).
#[derive(Debug, Error)]
pub enum SourceError {
    #[error(
        "style {style}: no database connection: {}",
        super::pool::chain(source)
    )]
    Pool {
        style: StyleName,
        meta: Option<MetatileCoord>,
        #[source]
        source: deadpool_postgres::PoolError,
    },
    #[error("style {style}, layer {layer:?}: the SQL does not prepare: {message}")]
    Prepare {
        style: StyleName,
        layer: String,
        message: String,
    },
    #[error("style {style}, layer {layer:?}: {message}")]
    Columns {
        style: StyleName,
        layer: String,
        message: String,
    },
    #[error(
        "style {style}, layer {layer:?}, metatile {meta}: query failed: {}",
        db_message(source)
    )]
    Query {
        style: StyleName,
        layer: String,
        meta: MetatileCoord,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database is known to be down: failed at once, or given up when it was
    /// found down while this fetch waited.
    #[error("style {style}, metatile {meta}: {source}")]
    Unavailable {
        style: StyleName,
        meta: MetatileCoord,
        #[source]
        source: Unavailable,
    },
    /// No answer at all within the fetch's deadline (the statement timeouts of its
    /// layers plus the connect timeout): the connection is given up.
    #[error("style {style}, metatile {meta}: {source}")]
    NoAnswer {
        style: StyleName,
        meta: MetatileCoord,
        #[source]
        source: NoAnswer,
    },
    #[error(
        "style {style}, layer {layer:?}, metatile {meta}: bad geometry in row {row}: {message}"
    )]
    Decode {
        style: StyleName,
        layer: String,
        meta: MetatileCoord,
        row: usize,
        message: String,
    },
}

impl SourceError {
    /// Whether the database (or the way to it) failed, as opposed to the style's SQL or
    /// data: a fault outside the server, worth a retry, never a bug.
    pub fn is_database_fault(&self) -> bool {
        match self {
            SourceError::Unavailable { .. } | SourceError::NoAnswer { .. } => true,
            SourceError::Pool { source, .. } => !matches!(
                source,
                deadpool_postgres::PoolError::NoRuntimeSpecified
                    | deadpool_postgres::PoolError::PostCreateHook(_)
            ),
            SourceError::Query { source, .. } => query_fault(source) != QueryFault::Sql,
            SourceError::Prepare { .. }
            | SourceError::Columns { .. }
            | SourceError::Decode { .. } => false,
        }
    }

    /// Whether this failure says the database cannot be reached at all (so the source
    /// is marked down), rather than that it answered with an error.
    pub fn marks_unavailable(&self) -> bool {
        match self {
            SourceError::NoAnswer { .. } => true,
            SourceError::Pool { .. } => self.is_database_fault(),
            SourceError::Query { source, .. } => query_fault(source) == QueryFault::Connection,
            _ => false,
        }
    }
}

/// What a failed query says about the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryFault {
    /// The connection broke or the server is going away: unreachable.
    Connection,
    /// The server answered but could not run it now (statement timeout, out of memory
    /// or disk, too many connections): a fault, but the database is there.
    Server,
    /// The statement itself is wrong (syntax, types, data): a bug in a style.
    Sql,
}

fn query_fault(e: &tokio_postgres::Error) -> QueryFault {
    let Some(code) = e.code() else {
        // Not an error the server sent: the socket, the protocol, a closed connection.
        return QueryFault::Connection;
    };
    let class = &code.code()[..2.min(code.code().len())];
    if class == "08"
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
    {
        QueryFault::Connection
    } else if matches!(class, "53" | "57" | "58" | "XX") {
        QueryFault::Server
    } else {
        QueryFault::Sql
    }
}

/// One feature to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    /// In EPSG:3857 metres.
    pub geometry: geo::Geometry<f64>,
    /// The row's `kind`, if the query returns one.
    pub kind: Option<String>,
    /// The row's `draw_group` (0 when the query has none).
    pub group: i64,
    /// The row's `label`: what the layer's `text` rules draw (None: no column or NULL).
    pub label: Option<String>,
}

/// The features of one layer, in the query's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerData {
    pub features: Vec<Feature>,
    /// For the style's interactivity layer: per feature (same index), the values of the
    /// interactivity fields in their order. Empty for every other layer.
    pub attributes: Vec<Vec<AttributeValue>>,
}

/// A column value a UTFGrid exposes, as JSON writes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum AttributeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// Where the time of a fetch went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FetchTimings {
    /// Waiting for a pooled connection.
    pub connect: Duration,
    /// From sending the queries until every row arrived.
    pub query: Duration,
    /// WKB -> geo decoding.
    pub decode: Duration,
    /// Rows received, all layers.
    pub rows: usize,
}

/// Everything the renderer needs for one metatile: per style layer (same index as
/// `style.layers`), its features; empty for layers not active at this zoom.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetatileData {
    pub layers: Vec<LayerData>,
    pub timings: FetchTimings,
}

/// The bbox (metatile + buffer), zoom, pixel size and scale bound to every query.
pub fn query_bbox(style: &Style, meta: MetatileCoord) -> crate::tile::Bbox {
    let buffer_m = f64::from(style.buffer_px) * style.pixel_size(meta.z);
    meta.bbox().buffered(buffer_m)
}

/// Fetches metatile features from PostGIS for the styles' layers.
#[derive(Clone)]
pub struct PostgisSource {
    pool: DbPool,
    /// Shared with the service and `/ready`; `None` for tools, which just try.
    health: Option<Arc<SourceHealth>>,
    /// The server's statement timeout and connect timeout: what bounds a fetch.
    statement_timeout: Duration,
    connect_timeout: Duration,
}

impl PostgisSource {
    pub fn new(pool: DbPool) -> Self {
        let defaults = super::DatabaseSettings::default();
        Self {
            pool,
            health: None,
            statement_timeout: Duration::from_millis(defaults.statement_timeout_ms),
            connect_timeout: Duration::from_millis(defaults.connect_timeout_ms),
        }
    }

    /// Watches fetches with `health` (see [`super::health`]): fails fast while the
    /// database is down and gives up on fetches when it goes down. The timeouts are the
    /// pool's (`settings`), which bound how long a fetch can legitimately take.
    pub fn with_health(
        mut self,
        health: Arc<SourceHealth>,
        settings: &super::DatabaseSettings,
    ) -> Self {
        self.health = Some(health);
        self.statement_timeout = Duration::from_millis(settings.statement_timeout_ms);
        self.connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
        self
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    pub fn health(&self) -> Option<&Arc<SourceHealth>> {
        self.health.as_ref()
    }

    async fn client(
        &self,
        style: &Style,
        meta: Option<MetatileCoord>,
    ) -> Result<deadpool_postgres::Client, SourceError> {
        self.pool.get().await.map_err(|source| SourceError::Pool {
            style: style.name.clone(),
            meta,
            source,
        })
    }

    /// Prepares every layer's SQL (no rows are read) and checks the columns it returns,
    /// so bad SQL fails at start naming the style, the layer and the database's message.
    pub async fn check_style(&self, style: &Style) -> Result<(), SourceError> {
        let client = self.client(style, None).await?;
        for layer in &style.layers {
            let stmt = client
                .prepare_typed_cached(&layer.query, &PARAM_TYPES)
                .await
                .map_err(|e| {
                    tracing::error!(style = %style.name, layer = %layer.name, sql = %layer.sql, error = %db_message(&e), "layer SQL does not prepare");
                    SourceError::Prepare {
                        style: style.name.clone(),
                        layer: layer.name.clone(),
                        message: db_message(&e),
                    }
                })?;
            Columns::of(style, layer, stmt.columns())?;
        }
        Ok(())
    }

    /// Runs the query of every layer active at `meta.z` over the metatile bbox plus the
    /// buffer and decodes the geometries: [`PostgisSource::query_metatile`] then
    /// [`RawMetatile::decode`], for tools and tests. The server decodes on a render
    /// thread instead.
    pub async fn fetch_metatile(
        &self,
        style: &Style,
        meta: MetatileCoord,
    ) -> Result<MetatileData, SourceError> {
        self.query_metatile(style, meta).await?.decode(style)
    }

    /// Runs the query of every layer active at `meta.z` over the metatile bbox plus the
    /// buffer; I/O only: the rows are decoded later, off the async runtime. With a
    /// health state: fails at once while the database is down, gives up (dropping the
    /// connection) when it goes down meanwhile, and reports the outcome.
    pub async fn query_metatile(
        &self,
        style: &Style,
        meta: MetatileCoord,
    ) -> Result<RawMetatile, SourceError> {
        let Some(health) = &self.health else {
            let started = Instant::now();
            let clients = self.clients(style, meta).await?;
            return self.run_queries(&clients, style, meta, started).await;
        };
        let abort = |abort: Abort| match abort {
            Abort::Down(source) => SourceError::Unavailable {
                style: style.name.clone(),
                meta,
                source,
            },
            Abort::NoAnswer(source) => SourceError::NoAnswer {
                style: style.name.clone(),
                meta,
                source,
            },
        };
        health
            .check()
            .map_err(|source| abort(Abort::Down(source)))?;
        let started = Instant::now();
        let active = style.layers.iter().filter(|l| l.active_at(meta.z)).count();
        let deadline = tokio::time::Instant::now()
            + self.connect_timeout * 2
            + self.statement_timeout * active.max(1) as u32;
        let result = match health
            .watch(deadline, self.clients(style, meta))
            .await
            .map_err(abort)
        {
            Ok(Ok(clients)) => {
                let queried = health
                    .watch(deadline, self.run_queries(&clients, style, meta, started))
                    .await;
                match queried {
                    Ok(result) => result,
                    Err(e) => {
                        // Their answers may never come: never hand them to someone else.
                        for client in clients {
                            drop(deadpool_postgres::Object::take(client));
                        }
                        Err(abort(e))
                    }
                }
            }
            Ok(Err(e)) | Err(e) => Err(e),
        };
        match &result {
            Ok(_) => health.record_ok(),
            Err(e) if e.marks_unavailable() => {
                health.record_failure(e);
            }
            // The server answered (an SQL error, a statement timeout): it is there.
            Err(SourceError::Query { .. }) => health.record_ok(),
            Err(_) => {}
        }
        result
    }

    /// The connections a fetch runs its layers on: one, waited for like any other, and
    /// a second when the pool has one to spare right now, leaving a connection free
    /// (never waited for): an idle server answers a big metatile's queries on two
    /// database cores at once (as Mapnik's `max_async_connection`), a busy one, whose
    /// fetches hold the pool, one layer after another as before.
    async fn clients(
        &self,
        style: &Style,
        meta: MetatileCoord,
    ) -> Result<Vec<deadpool_postgres::Client>, SourceError> {
        let first = self.client(style, Some(meta)).await?;
        let mut clients = vec![first];
        let status = self.pool.status();
        let in_use = status.size.saturating_sub(status.available);
        if in_use + 2 <= status.max_size {
            let at_once = deadpool_postgres::Timeouts {
                wait: Some(Duration::ZERO),
                create: Some(self.connect_timeout),
                recycle: Some(self.connect_timeout),
            };
            if let Ok(second) = self.pool.timeout_get(&at_once).await {
                clients.push(second);
            }
        }
        Ok(clients)
    }

    /// Runs the active layers' queries, pipelined on each connection, the layers dealt
    /// to the connections in turn (neighbouring layers tend to differ in cost: areas,
    /// then lines, then names).
    async fn run_queries(
        &self,
        clients: &[deadpool_postgres::Client],
        style: &Style,
        meta: MetatileCoord,
        started: Instant,
    ) -> Result<RawMetatile, SourceError> {
        let connect = started.elapsed();

        let bbox = query_bbox(style, meta);
        let zoom = i32::from(meta.z);
        let pixel_size = style.pixel_size(meta.z);
        let scale = f64::from(style.scale);
        let own = meta.bbox();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 11] = [
            &bbox.min_x,
            &bbox.min_y,
            &bbox.max_x,
            &bbox.max_y,
            &zoom,
            &pixel_size,
            &scale,
            &own.min_x,
            &own.min_y,
            &own.max_x,
            &own.max_y,
        ];

        let query_started = Instant::now();
        // Every connection is there (`clients` always holds the first): the cycle never
        // ends while layers are active.
        let mut turns = clients.iter().cycle();
        let queries = style.layers.iter().map(|layer| {
            let client = if layer.active_at(meta.z) {
                turns.next()
            } else {
                None
            };
            query_layer(client, style, layer, meta, &params)
        });
        let layers = futures_util::future::try_join_all(queries).await?;
        let query = query_started.elapsed();
        Ok(RawMetatile {
            meta,
            layers,
            timings: FetchTimings {
                connect,
                query,
                ..FetchTimings::default()
            },
        })
    }
}

/// One layer's query on `client`, or nothing for a layer not active at the zoom (no
/// client).
async fn query_layer(
    client: Option<&deadpool_postgres::Client>,
    style: &Style,
    layer: &Layer,
    meta: MetatileCoord,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<(Columns, Vec<tokio_postgres::Row>)>, SourceError> {
    let Some(client) = client else {
        return Ok(None);
    };
    let query_err = |e: tokio_postgres::Error| {
        tracing::debug!(style = %style.name, layer = %layer.name, meta = %meta, sql = %layer.sql, error = %db_message(&e), "layer query failed");
        SourceError::Query {
            style: style.name.clone(),
            layer: layer.name.clone(),
            meta,
            source: e,
        }
    };
    let stmt = client
        .prepare_typed_cached(&layer.query, &PARAM_TYPES)
        .await
        .map_err(query_err)?;
    let columns = Columns::of(style, layer, stmt.columns())?;
    let rows = client.query(&stmt, params).await.map_err(query_err)?;
    Ok(Some((columns, rows)))
}

/// The rows of a metatile's layer queries, not yet decoded (see
/// [`PostgisSource::query_metatile`]).
pub struct RawMetatile {
    meta: MetatileCoord,
    /// Per style layer: its columns and rows, `None` for layers not active at the zoom.
    layers: Vec<Option<(Columns, Vec<tokio_postgres::Row>)>>,
    timings: FetchTimings,
}

impl RawMetatile {
    pub fn timings(&self) -> FetchTimings {
        self.timings
    }

    /// WKB -> geo and the other columns: CPU work, for a render thread.
    pub fn decode(self, style: &Style) -> Result<MetatileData, SourceError> {
        self.decode_giving_way(style, &|| {})
    }

    /// [`RawMetatile::decode`], calling `give_way` before each row: the render pool
    /// passes its yield point (`render::give_way`), so a long decode leaves the CPU to
    /// hits now and then.
    pub fn decode_giving_way(
        self,
        style: &Style,
        give_way: &(dyn Fn() + Sync),
    ) -> Result<MetatileData, SourceError> {
        let meta = self.meta;
        let decode_started = Instant::now();
        let mut layers = Vec::with_capacity(self.layers.len());
        let mut total_rows = 0;
        for (layer, result) in style.layers.iter().zip(self.layers) {
            let Some((columns, rows)) = result else {
                layers.push(LayerData::default());
                continue;
            };
            total_rows += rows.len();
            // Rows decode in parallel on the render threads that are free.
            let decoded: Vec<Option<DecodedRow>> = rows
                .par_iter()
                .enumerate()
                .map(|(i, row)| {
                    give_way();
                    decode_row(row, &columns).map_err(|message| SourceError::Decode {
                        style: style.name.clone(),
                        layer: layer.name.clone(),
                        meta,
                        row: i,
                        message,
                    })
                })
                .collect::<Result<_, _>>()?;
            let mut features = Vec::with_capacity(decoded.len());
            let mut attributes = Vec::new();
            for row in decoded.into_iter().flatten() {
                features.push(row.feature);
                attributes.extend(row.values);
            }
            layers.push(LayerData {
                features,
                attributes,
            });
        }
        Ok(MetatileData {
            layers,
            timings: FetchTimings {
                decode: decode_started.elapsed(),
                rows: total_rows,
                ..self.timings
            },
        })
    }
}

/// A decoded row: its feature and, when the layer has interactivity fields, their values.
struct DecodedRow {
    feature: Feature,
    values: Option<Vec<AttributeValue>>,
}

/// One row, `None` when it has no geometry.
fn decode_row(row: &tokio_postgres::Row, columns: &Columns) -> Result<Option<DecodedRow>, String> {
    let wkb: Option<&[u8]> = row.try_get(columns.geom).map_err(|e| e.to_string())?;
    let Some(wkb) = wkb.filter(|wkb| !wkb.is_empty()) else {
        return Ok(None);
    };
    let geometry = geozero::wkb::Wkb(wkb).to_geo().map_err(|e| e.to_string())?;
    let kind = match columns.kind {
        Some(k) => row
            .try_get::<_, Option<String>>(k)
            .map_err(|e| e.to_string())?,
        None => None,
    };
    let group = match columns.group {
        Some((g, Type::INT2)) => row.try_get::<_, Option<i16>>(g).map(|v| v.map(i64::from)),
        Some((g, Type::INT4)) => row.try_get::<_, Option<i32>>(g).map(|v| v.map(i64::from)),
        Some((g, _)) => row.try_get::<_, Option<i64>>(g),
        None => Ok(None),
    }
    .map_err(|e| e.to_string())?
    .unwrap_or(0);
    let label = match columns.label {
        Some(l) => row
            .try_get::<_, Option<String>>(l)
            .map_err(|e| e.to_string())?,
        None => None,
    };
    let values = if columns.fields.is_empty() {
        None
    } else {
        let mut values = Vec::with_capacity(columns.fields.len());
        for (f, t) in &columns.fields {
            values.push(attribute(row, *f, t).map_err(|e| e.to_string())?);
        }
        Some(values)
    };
    let feature = Feature {
        geometry,
        kind,
        group,
        label,
    };
    Ok(Some(DecodedRow { feature, values }))
}

/// One interactivity column's value, by its type.
fn attribute(
    row: &tokio_postgres::Row,
    i: usize,
    t: &Type,
) -> Result<AttributeValue, tokio_postgres::Error> {
    let v = match *t {
        Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(AttributeValue::Bool),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map(|v| AttributeValue::Int(v.into())),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map(|v| AttributeValue::Int(v.into())),
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(AttributeValue::Int),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)?
            .map(|v| AttributeValue::Float(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(AttributeValue::Float),
        _ => row
            .try_get::<_, Option<String>>(i)?
            .map(AttributeValue::Text),
    };
    Ok(v.unwrap_or(AttributeValue::Null))
}

/// Column types an interactivity field may have (anything else: cast it to text).
const FIELD_TYPES: [Type; 10] = [
    Type::TEXT,
    Type::VARCHAR,
    Type::NAME,
    Type::BPCHAR,
    Type::BOOL,
    Type::INT2,
    Type::INT4,
    Type::INT8,
    Type::FLOAT4,
    Type::FLOAT8,
];

/// Positions of the columns a layer query returns.
struct Columns {
    geom: usize,
    kind: Option<usize>,
    group: Option<(usize, Type)>,
    label: Option<usize>,
    /// The interactivity fields, for the style's interactivity layer.
    fields: Vec<(usize, Type)>,
}

impl Columns {
    fn of(
        style: &Style,
        layer: &Layer,
        columns: &[tokio_postgres::Column],
    ) -> Result<Columns, SourceError> {
        let err = |message: String| SourceError::Columns {
            style: style.name.clone(),
            layer: layer.name.clone(),
            message,
        };
        let find = |name: &str| columns.iter().position(|c| c.name() == name);
        let geom = find("geom").ok_or_else(|| {
            err("the query returns no `geom` column (use ST_AsBinary(...) AS geom)".into())
        })?;
        if columns[geom].type_() != &Type::BYTEA {
            return Err(err(format!(
                "column `geom` is {}, not bytea (use ST_AsBinary(...) AS geom)",
                columns[geom].type_()
            )));
        }
        let kind = find("kind");
        if let Some(k) = kind {
            if !matches!(*columns[k].type_(), Type::TEXT | Type::VARCHAR) {
                return Err(err(format!(
                    "column `kind` is {}, not text",
                    columns[k].type_()
                )));
            }
        } else if layer.uses_kind() {
            return Err(err(
                "its rules match on `kind` but the query returns no `kind` column".into(),
            ));
        }
        let group = match find("draw_group") {
            None => None,
            Some(g) => {
                let t = columns[g].type_().clone();
                if !matches!(t, Type::INT2 | Type::INT4 | Type::INT8) {
                    return Err(err(format!("column `draw_group` is {t}, not an integer")));
                }
                Some((g, t))
            }
        };
        let label = find("label");
        if let Some(l) = label {
            if !matches!(*columns[l].type_(), Type::TEXT | Type::VARCHAR) {
                return Err(err(format!(
                    "column `label` is {}, not text",
                    columns[l].type_()
                )));
            }
        } else if layer.uses_label() {
            return Err(err(
                "its rules draw `text` but the query returns no `label` column (e.g. name AS label)"
                    .into(),
            ));
        }
        let mut fields = Vec::new();
        let interactive = style.interactivity.as_ref().filter(|i| {
            style
                .layers
                .get(i.layer)
                .is_some_and(|l| l.name == layer.name)
        });
        for field in interactive.map_or(&[][..], |i| &i.fields[..]) {
            let Some(f) = find(field) else {
                return Err(err(format!(
                    "interactivity field `{field}` is not a column of the query (add it to the SELECT)"
                )));
            };
            let t = columns[f].type_().clone();
            if !FIELD_TYPES.contains(&t) {
                return Err(err(format!(
                    "interactivity field `{field}` is {t}: use text, a number or a boolean (e.g. {field}::text)"
                )));
            }
            fields.push((f, t));
        }
        Ok(Columns {
            geom,
            kind,
            group,
            label,
            fields,
        })
    }
}

/// The database's own message (e.g. `column "foo" does not exist`), without the SQL.
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => super::pool::chain(e),
    }
}
