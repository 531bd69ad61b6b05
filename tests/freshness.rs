//! Freshness from the database itself, end to end: the real app on port 0 with
//! `watch.enabled`, against the writable copy of the Helsinki import
//! (`METATILED_RW_DATABASE_URL`, made by `scripts/test`; the shared test database is
//! never changed). Rows are changed in PostGIS and the served tiles must follow within
//! seconds, with no admin call and no restart; across a restart; across a killed
//! connection; and a 100,000-row statement must log a handful of boxes.
//!
//! Everything here happens in the northern part of the extract (z16 rows 18963-18966,
//! north of the admin tests' metatile 37304/18968), every test restores what it
//! changed, even when it fails, and the tests run one at a time (they share the
//! triggers). The change log is no longer consumed: each app reads it past its own
//! cursor (its `node.id`), so an app restarted with the same id resumes where it was,
//! and several watching apps each apply every change (`tests/fleet.rs` does that with
//! three processes).
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;

use metatiled::tile::{Bbox, MetatileCoord, TileCoord};
use std::future::Future;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::Client;

/// The tests share the triggers and the change log: one at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// `operator` of every row the tests insert, so they can always be found and removed.
/// (Not `name`: the style labels named parks, and a label would cover the pixels the
/// tests look at.)
const TEST_NAME: &str = "metatiled-freshness-test";
/// The acceptance bound: a change shows within this long after its COMMIT.
const FRESH_WITHIN: Duration = Duration::from_secs(5);
/// How long the tests wait before giving up (longer than the bound, to report the lag).
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);
/// A z16 tile north of the imported data (empty): test parks go here.
const PARK_TILE: (u8, u32, u32) = (16, 37308, 18965);
/// A z16 tile with Paasivuorenkatu (an unclassified street, osm_id 81149146) in it.
const STREET_TILE: (u8, u32, u32) = (16, 37309, 18966);
const STREET_ID: i64 = 81_149_146;
/// #c8facc, the park fill of the osm style.
const PARK_GREEN: [u8; 3] = [0xc8, 0xfa, 0xcc];

struct Env {
    url: String,
    db: Client,
    _serial: MutexGuard<'static, ()>,
}

/// The writable database and the test lock; `None` (after saying so) without one.
async fn env() -> Option<Env> {
    let serial = SERIAL.lock().await;
    let url = common::rw_database_url().or_else(|| {
        eprintln!("skipping: no METATILED_RW_DATABASE_URL");
        None
    })?;
    if common::database_url().is_none() {
        eprintln!("skipping: no DATABASE_URL");
        return None;
    }
    let db = common::connect(&url).await;
    remove_test_rows(&db).await;
    Some(Env {
        url,
        db,
        _serial: serial,
    })
}

async fn remove_test_rows(db: &Client) {
    for table in ["planet_osm_polygon", "planet_osm_point"] {
        db.execute(
            &format!("DELETE FROM {table} WHERE operator = $1"),
            &[&TEST_NAME],
        )
        .await
        .unwrap_or_else(|e| panic!("cleaning {table}: {}", common::pg_error(&e)));
    }
}

/// Runs `body` on its own task, then `cleanup`, then fails if `body` failed: what a test
/// changed in the shared copy is put back even when an assertion fails.
async fn with_cleanup<F, C>(body: F, cleanup: C)
where
    F: Future<Output = ()> + Send + 'static,
    C: Future<Output = ()>,
{
    let result = tokio::spawn(body).await;
    cleanup.await;
    if let Err(e) = result {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

/// The real app against the writable copy, watching, with the given cache directory
/// and a new node id.
async fn start(url: &str, cache: &Path) -> support::TestApp {
    start_as(url, cache, &support::next_node_id()).await
}

/// The same, as node `id`: an app restarted with its id resumes from its cursor.
async fn start_as(url: &str, cache: &Path, id: &str) -> support::TestApp {
    let (url, cache, id) = (url.to_string(), cache.to_path_buf(), id.to_string());
    support::spawn_app_with(move |s| {
        s.database.url = Some(url);
        s.cache.dir = cache;
        s.node.id = id;
        s.watch.enabled = true;
        s.watch.install_on_start = true;
    })
    .await
    .expect("the test database is there")
}

fn tile_path((z, x, y): (u8, u32, u32)) -> String {
    format!("/osm/{z}/{x}/{y}.png")
}

fn tile_bbox((z, x, y): (u8, u32, u32)) -> Bbox {
    TileCoord::try_new(u32::from(z), u64::from(x), u64::from(y))
        .unwrap()
        .bbox()
}

/// A box given in pixels of a 256 px tile (x right, y down), in EPSG:3857 metres.
fn rect_in_tile(tile: (u8, u32, u32), px: [f64; 4]) -> [f64; 4] {
    let b = tile_bbox(tile);
    let m = b.width() / 256.0;
    [
        b.min_x + px[0] * m,
        b.max_y - px[3] * m,
        b.min_x + px[2] * m,
        b.max_y - px[1] * m,
    ]
}

async fn insert_park(db: &Client, r: [f64; 4]) {
    db.execute(
        "INSERT INTO planet_osm_polygon (osm_id, leisure, operator, way, way_area)
         SELECT -900000000001, 'park', $1, g, ST_Area(g)
         FROM (SELECT ST_MakeEnvelope($2, $3, $4, $5, 3857) AS g) AS park",
        &[&TEST_NAME, &r[0], &r[1], &r[2], &r[3]],
    )
    .await
    .unwrap_or_else(|e| panic!("insert park: {}", common::pg_error(&e)));
}

async fn move_park(db: &Client, r: [f64; 4]) {
    let n = db
        .execute(
            "UPDATE planet_osm_polygon SET way = g, way_area = ST_Area(g)
             FROM (SELECT ST_MakeEnvelope($2, $3, $4, $5, 3857) AS g) AS park
             WHERE operator = $1",
            &[&TEST_NAME, &r[0], &r[1], &r[2], &r[3]],
        )
        .await
        .unwrap_or_else(|e| panic!("move park: {}", common::pg_error(&e)));
    assert_eq!(n, 1);
}

async fn get_tile(app: &support::TestApp, path: &str) -> (String, Vec<u8>) {
    let res = app.get(path).await;
    assert_eq!(res.status(), 200, "{path}");
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    (etag, res.bytes().await.unwrap().to_vec())
}

/// The RGBA pixel at (x, y) of a PNG.
fn pixel(png_bytes: &[u8], x: u32, y: u32) -> [u8; 4] {
    let mut dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let i = ((y * info.width + x) * 4) as usize;
    [buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]
}

fn is_park(png_bytes: &[u8], x: u32, y: u32) -> bool {
    let p = pixel(png_bytes, x, y);
    p[..3]
        .iter()
        .zip(PARK_GREEN)
        .all(|(a, b)| a.abs_diff(b) <= 12)
}

/// Polls `path` until `done(etag, png)`; returns the time since `since` and the tile.
async fn wait_for(
    app: &support::TestApp,
    path: &str,
    since: Instant,
    done: impl Fn(&str, &[u8]) -> bool,
) -> (Duration, String, Vec<u8>) {
    loop {
        let (etag, png) = get_tile(app, path).await;
        if done(&etag, &png) {
            return (since.elapsed(), etag, png);
        }
        assert!(
            since.elapsed() < GIVE_UP_AFTER,
            "{path} did not change within {GIVE_UP_AFTER:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_fresh_in_time(what: &str, lag: Duration) {
    eprintln!("{what}: fresh tile {} ms after COMMIT", lag.as_millis());
    assert!(
        lag <= FRESH_WITHIN,
        "{what}: took {lag:?}, more than {FRESH_WITHIN:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_park_inserted_moved_and_deleted_shows_on_the_map_within_seconds() {
    let Some(env) = env().await else { return };
    let cache = tempfile::tempdir().unwrap();
    let app = start(&env.url, cache.path()).await;
    let url = env.url.clone();
    let body = async move {
        let db = common::connect(&url).await;
        let path = tile_path(PARK_TILE);
        let (etag0, png0) = get_tile(&app, &path).await;
        assert!(!is_park(&png0, 64, 128) && !is_park(&png0, 192, 128));

        insert_park(&db, rect_in_tile(PARK_TILE, [20.0, 40.0, 110.0, 216.0])).await;
        let (lag, etag1, _) =
            wait_for(&app, &path, Instant::now(), |_, png| is_park(png, 64, 128)).await;
        assert_fresh_in_time("INSERT", lag);
        assert_ne!(etag1, etag0);

        move_park(&db, rect_in_tile(PARK_TILE, [146.0, 40.0, 236.0, 216.0])).await;
        let (lag, etag2, _) = wait_for(&app, &path, Instant::now(), |_, png| {
            is_park(png, 192, 128) && !is_park(png, 64, 128)
        })
        .await;
        assert_fresh_in_time("UPDATE", lag);
        assert_ne!(etag2, etag1);

        db.execute(
            "DELETE FROM planet_osm_polygon WHERE operator = $1",
            &[&TEST_NAME],
        )
        .await
        .unwrap();
        let (lag, etag3, _) = wait_for(&app, &path, Instant::now(), |_, png| {
            !is_park(png, 192, 128) && !is_park(png, 64, 128)
        })
        .await;
        assert_fresh_in_time("DELETE", lag);
        assert_eq!(etag3, etag0, "the tile is back to what it was");

        let changes = app
            .metric("metatiled_watch_changes_total{table=\"public.planet_osm_polygon\"}")
            .await;
        assert!(changes >= 3.0, "changes seen {changes}");
        let expired = app
            .metric("metatiled_watch_expired_metatiles_total{mode=\"dirty\",style=\"osm\"}")
            .await;
        assert!(expired >= 3.0, "metatiles expired {expired}");
        app.stop().await;
    };
    with_cleanup(body, remove_test_rows(&env.db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_street_moved_by_an_update_is_redrawn_and_then_restored() {
    let Some(env) = env().await else { return };
    let original: Vec<u8> = env
        .db
        .query_one(
            "SELECT ST_AsBinary(way) FROM planet_osm_line WHERE osm_id = $1",
            &[&STREET_ID],
        )
        .await
        .expect("Paasivuorenkatu is in the import")
        .get(0);
    let cache = tempfile::tempdir().unwrap();
    let node = support::next_node_id();
    let app = start_as(&env.url, cache.path(), &node).await;
    let url = env.url.clone();
    let body = async move {
        let db = common::connect(&url).await;
        let paths = [
            tile_path(STREET_TILE),
            "/osm/17/74619/37932.png".to_string(),
        ];
        let mut before = Vec::new();
        for p in &paths {
            before.push(get_tile(&app, p).await.0);
        }
        // 60 m north: a different picture at z16 and z17.
        db.execute(
            "UPDATE planet_osm_line SET way = ST_Translate(way, 0, 60) WHERE osm_id = $1",
            &[&STREET_ID],
        )
        .await
        .unwrap();
        let committed = Instant::now();
        for (p, etag0) in paths.iter().zip(&before) {
            let (lag, _, _) = wait_for(&app, p, committed, |etag, _| etag != etag0).await;
            assert_fresh_in_time(&format!("UPDATE street, {p}"), lag);
        }
        app.stop().await;
        before
    };
    // Restore the street whatever happened, then check the restore is seen too.
    let result = tokio::spawn(body).await;
    env.db
        .execute(
            "UPDATE planet_osm_line SET way = ST_SetSRID(ST_GeomFromWKB($2), 3857) WHERE osm_id = $1",
            &[&STREET_ID, &original],
        )
        .await
        .expect("restore the street");
    let before = match result {
        Ok(before) => before,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let app = start_as(&env.url, cache.path(), &node).await;
    let (lag, etag, _) = wait_for(&app, &tile_path(STREET_TILE), Instant::now(), |etag, _| {
        etag == before[0]
    })
    .await;
    eprintln!(
        "restored street drawn as before {} ms after start",
        lag.as_millis()
    );
    assert_eq!(etag, before[0]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_made_while_the_server_was_down_are_applied_when_it_starts() {
    let Some(env) = env().await else { return };
    let cache = tempfile::tempdir().unwrap();
    let url = env.url.clone();
    let cache_dir = cache.path().to_path_buf();
    let node = support::next_node_id();
    let id = node.clone();
    let body = async move {
        let db = common::connect(&url).await;
        let path = tile_path(PARK_TILE);
        let app = start_as(&url, &cache_dir, &id).await;
        let (etag0, png0) = get_tile(&app, &path).await;
        assert!(!is_park(&png0, 128, 128));
        app.stop().await;

        // Down: the change waits in the log.
        insert_park(&db, rect_in_tile(PARK_TILE, [60.0, 60.0, 196.0, 196.0])).await;
        let waiting: i64 = db
            .query_one(
                "SELECT count(*) FROM metatiled.change_log l
                 JOIN metatiled.fleet_cursor c ON c.node_id = $1 AND c.log = 'changes'
                 WHERE l.table_name = 'public.planet_osm_polygon'
                   AND l.xact >= c.horizon AND NOT (l.id = ANY(c.applied_ids))",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        assert!(waiting >= 1, "the change waits in the log for this node");

        let started = Instant::now();
        let app = start_as(&url, &cache_dir, &id).await;
        let (lag, etag1, _) = wait_for(&app, &path, started, |_, png| is_park(png, 128, 128)).await;
        eprintln!(
            "applied at start: {} ms after the server started",
            lag.as_millis()
        );
        assert_ne!(etag1, etag0);
        app.stop().await;
    };
    with_cleanup(body, remove_test_rows(&env.db)).await;
    // Once more with the park gone: the same node applies the removal at its start.
    let app = start_as(&env.url, cache.path(), &node).await;
    wait_for(&app, &tile_path(PARK_TILE), Instant::now(), |_, png| {
        !is_park(png, 128, 128)
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_that_commits_after_a_later_one_is_still_applied() {
    let Some(env) = env().await else { return };
    let cache = tempfile::tempdir().unwrap();
    let app = start(&env.url, cache.path()).await;
    let url = env.url.clone();
    let body = async move {
        let mut early = common::connect(&url).await;
        let late = common::connect(&url).await;
        let path = tile_path(PARK_TILE);
        let (_, png0) = get_tile(&app, &path).await;
        assert!(!is_park(&png0, 64, 128) && !is_park(&png0, 192, 128));
        let park = |r: [f64; 4], id: i64| {
            (
                "INSERT INTO planet_osm_polygon (osm_id, leisure, operator, way, way_area)
                 SELECT $6, 'park', $1, g, ST_Area(g)
                 FROM (SELECT ST_MakeEnvelope($2, $3, $4, $5, 3857) AS g) AS park",
                r,
                id,
            )
        };
        // The first transaction logs its change (lower id, older transaction) but
        // commits only after a second one has committed and been applied. The parks
        // are small (16 px at z16, 1,460 m2): below the size of sql/lowzoom.sql's
        // tables, whose trigger would otherwise rewrite the same low-zoom cell in both
        // transactions, and the second would wait for the first to commit.
        let tx = early.transaction().await.unwrap();
        let (sql, r, id) = park(
            rect_in_tile(PARK_TILE, [56.0, 120.0, 72.0, 136.0]),
            -900000000021,
        );
        tx.execute(sql, &[&TEST_NAME, &r[0], &r[1], &r[2], &r[3], &id])
            .await
            .unwrap();
        let (sql, r, id) = park(
            rect_in_tile(PARK_TILE, [184.0, 120.0, 200.0, 136.0]),
            -900000000022,
        );
        late.execute(sql, &[&TEST_NAME, &r[0], &r[1], &r[2], &r[3], &id])
            .await
            .unwrap();
        wait_for(&app, &path, Instant::now(), |_, png| is_park(png, 192, 128)).await;
        tx.commit().await.unwrap();
        let (lag, _, _) = wait_for(&app, &path, Instant::now(), |_, png| {
            is_park(png, 64, 128) && is_park(png, 192, 128)
        })
        .await;
        assert_fresh_in_time("the transaction that committed last", lag);
        app.stop().await;
    };
    with_cleanup(body, remove_test_rows(&env.db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_listener_reconnects_after_its_connection_is_killed_and_loses_no_change() {
    let Some(env) = env().await else { return };
    let cache = tempfile::tempdir().unwrap();
    let app = start(&env.url, cache.path()).await;
    let url = env.url.clone();
    let body = async move {
        let db = common::connect(&url).await;
        let path = tile_path(PARK_TILE);
        let (_, png0) = get_tile(&app, &path).await;
        assert!(!is_park(&png0, 128, 128));
        let since = Instant::now();
        while app.metric("metatiled_watch_connected").await < 1.0 {
            assert!(
                since.elapsed() < GIVE_UP_AFTER,
                "the watcher never connected"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let killed: i64 = db
            .query_one(
                "SELECT count(*) FROM (
                   SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                   WHERE application_name = 'metatiled-watch' AND datname = current_database()
                 ) AS k",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(killed >= 1, "the watcher's connection was found");
        // The notification of this change goes to no one: the log must carry it.
        insert_park(&db, rect_in_tile(PARK_TILE, [60.0, 60.0, 196.0, 196.0])).await;
        let (lag, _, _) =
            wait_for(&app, &path, Instant::now(), |_, png| is_park(png, 128, 128)).await;
        eprintln!(
            "change made while disconnected: fresh {} ms after COMMIT",
            lag.as_millis()
        );
        assert!(lag < Duration::from_secs(10), "took {lag:?}");
        let reconnects = app.metric("metatiled_watch_reconnects_total").await;
        assert!(reconnects >= 1.0, "reconnects {reconnects}");
        let listening: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = 'metatiled-watch' AND datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(listening, 1);
        app.stop().await;
    };
    with_cleanup(body, remove_test_rows(&env.db)).await;
}

/// Whether the metatile file is dirty-marked (mtime rewound 20 years).
fn is_dirty(app: &support::TestApp, meta: MetatileCoord) -> bool {
    let style = metatiled::tile::StyleName::parse("osm").unwrap();
    let stamp = app
        .service
        .cache()
        .disk()
        .stamp(&style, meta)
        .unwrap()
        .expect("the metatile is cached");
    metatiled::cache::freshness::is_dirty(stamp.mtime, SystemTime::now())
}

fn meta_of(z: u8, x: f64, y: f64) -> (MetatileCoord, String) {
    let r = Bbox {
        min_x: x,
        min_y: y,
        max_x: x,
        max_y: y,
    }
    .tile_range(z);
    let t = TileCoord {
        z,
        x: r.min_x,
        y: r.min_y,
    };
    (t.metatile(), format!("/osm/{}/{}/{}.png", t.z, t.x, t.y))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_insert_of_100k_points_logs_a_few_boxes_and_expires_only_its_area() {
    let Some(env) = env().await else { return };
    let cache = tempfile::tempdir().unwrap();
    let app = start(&env.url, cache.path()).await;
    let url = env.url.clone();
    let body = async move {
        let mut db = common::connect(&url).await;
        // 100,000 untagged points (drawn by no layer) over 200 m x 200 m in the empty
        // north; pois read points from z17, so z17 and z18 metatiles here are affected.
        let area = rect_in_tile((16, 37309, 18964), [44.0, 44.0, 128.0, 128.0]);
        let (cx, cy) = ((area[0] + area[2]) / 2.0, (area[1] + area[3]) / 2.0);
        let inside = [meta_of(17, cx, cy), meta_of(18, cx, cy)];
        // 3.7 km east: the same z12 cell of the log, but far from the change.
        let outside = meta_of(18, cx + 3_700.0, cy);
        for (_, p) in inside.iter().chain([&outside]) {
            get_tile(&app, p).await;
        }
        assert!(!is_dirty(&app, outside.0));
        let rows_metric = "metatiled_watch_changed_rows_total{table=\"public.planet_osm_point\"}";
        let seen_before = app.metric(rows_metric).await;

        let tx = db.transaction().await.unwrap();
        let before: i64 = tx
            .query_one("SELECT coalesce(max(id), 0) FROM metatiled.change_log", &[])
            .await
            .unwrap()
            .get(0);
        let inserted = tx
            .execute(
                "INSERT INTO planet_osm_point (osm_id, operator, way)
                 SELECT -800000000000 - i, $1,
                        ST_SetSRID(ST_MakePoint(
                            $2::float8 + (i % 400) * ($4::float8 - $2::float8) / 400,
                            $3::float8 + (i / 400) * ($5::float8 - $3::float8) / 250), 3857)
                 FROM generate_series(0, 99999) AS i",
                &[&TEST_NAME, &area[0], &area[1], &area[2], &area[3]],
            )
            .await
            .unwrap_or_else(|e| panic!("bulk insert: {}", common::pg_error(&e)));
        assert_eq!(inserted, 100_000);
        let (boxes, rows): (i64, i64) = {
            let r = tx
                .query_one(
                    "SELECT count(*), coalesce(sum(changed_rows), 0)::int8 FROM metatiled.change_log
                     WHERE id > $1 AND table_name = 'public.planet_osm_point'
                       AND minx >= $2 AND miny >= $3 AND maxx <= $4 AND maxy <= $5",
                    &[&before, &area[0], &area[1], &area[2], &area[3]],
                )
                .await
                .unwrap();
            (r.get(0), r.get(1))
        };
        tx.commit().await.unwrap();
        eprintln!("100,000 points inserted in one statement: {boxes} log row(s)");
        assert!((1..=4).contains(&boxes), "{boxes} log rows");
        assert_eq!(rows, 100_000);

        // The watcher's own progress says when it has handled the statement (the area
        // may already be dirty from an earlier change, so its state says nothing).
        let committed = Instant::now();
        while app.metric(rows_metric).await < seen_before + 100_000.0 {
            assert!(
                committed.elapsed() < GIVE_UP_AFTER,
                "the watcher never counted the 100,000 rows"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_fresh_in_time("bulk INSERT (changed rows expired)", committed.elapsed());
        assert!(
            inside.iter().all(|(m, _)| is_dirty(&app, *m)),
            "the changed area was expired"
        );
        assert!(
            !is_dirty(&app, outside.0),
            "a metatile 3.7 km away stayed fresh"
        );

        // Removing them is one statement too.
        let deleted = db
            .execute(
                "DELETE FROM planet_osm_point WHERE operator = $1",
                &[&TEST_NAME],
            )
            .await
            .unwrap();
        assert_eq!(deleted, 100_000);
        app.stop().await;
    };
    with_cleanup(body, remove_test_rows(&env.db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_triggers_log_bounded_boxes_in_3857_and_the_world_for_truncate() {
    let Some(env) = env().await else { return };
    let settings = metatiled::config::DatabaseSettings {
        url: Some(env.url.clone()),
        ..Default::default()
    };
    let pool = metatiled::source::build_pool(&settings).await.unwrap();
    metatiled::source::run_migrations(&pool).await.unwrap();
    let mut db = common::connect(&env.url).await;
    // Temporary tables in a rolled-back transaction: nothing shared changes.
    let tx = db.transaction().await.unwrap();
    let install = |table: &str| {
        metatiled::source::changes::install_sql(&metatiled::source::changes::GeometryTable {
            table: metatiled::source::changes::TableRef {
                schema: "pg_temp".into(),
                name: table.into(),
            },
            geometry_column: "way".into(),
            srid: if table == "lonlat_points" { 4326 } else { 3857 },
        })
    };
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE world_points (way geometry(Point, 3857));
         CREATE TEMP TABLE lonlat_points (way geometry(Point, 4326));
         {}{}",
        install("world_points"),
        install("lonlat_points")
    ))
    .await
    .unwrap_or_else(|e| panic!("{}", common::pg_error(&e)));
    let count = |rows: Vec<tokio_postgres::Row>| rows[0].get::<_, i64>(0);
    tx.execute(
        "INSERT INTO world_points SELECT ST_SetSRID(ST_MakePoint(
             -2.0e7 + random() * 4.0e7, -2.0e7 + random() * 4.0e7), 3857)
         FROM generate_series(1, 100000)",
        &[],
    )
    .await
    .unwrap();
    let world_rows = count(
        tx.query(
            "SELECT count(*) FROM metatiled.change_log WHERE table_name LIKE 'pg_temp%.world_points'",
            &[],
        )
        .await
        .unwrap(),
    );
    eprintln!("100,000 points all over the world: {world_rows} log rows");
    assert!((1..=289).contains(&world_rows), "{world_rows}");

    tx.execute(
        "INSERT INTO lonlat_points VALUES (ST_SetSRID(ST_MakePoint(24.94, 60.17), 4326))",
        &[],
    )
    .await
    .unwrap();
    let r = tx
        .query_one(
            "SELECT minx, miny FROM metatiled.change_log WHERE table_name LIKE 'pg_temp%.lonlat_points'",
            &[],
        )
        .await
        .unwrap();
    let (x, y): (f64, f64) = (r.get(0), r.get(1));
    assert!(
        (x - 2_776_308.1).abs() < 1.0 && (y - 8_437_684.2).abs() < 1.0,
        "{x} {y}"
    );

    tx.batch_execute("TRUNCATE world_points").await.unwrap();
    let world = tx
        .query_one(
            "SELECT minx, maxx FROM metatiled.change_log
             WHERE table_name LIKE 'pg_temp%.world_points' AND changed_rows = 0",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(world.get::<_, f64>(0), -20_037_508.342_789_244);
    assert_eq!(world.get::<_, f64>(1), 20_037_508.342_789_244);
    tx.rollback().await.unwrap();
}

fn metatiled(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_metatiled"))
        .args(args)
        .env("METATILED_STYLES_DIR", common::repo_root().join("styles"))
        .output()
        .expect("run metatiled")
}

async fn trigger_count(db: &Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'metatiled_change_%'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_unwatch_are_idempotent_and_name_what_they_did() {
    let Some(env) = env().await else { return };
    let url = env.url.as_str();
    for _ in 0..2 {
        let out = metatiled(&["watch", "--style", "osm", "--database-url", url]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        // The style reads three planet_osm_* tables, the generalised low-zoom tables
        // (sql/lowzoom.sql) and the sea (sql/water_polygons.sql).
        for table in [
            "planet_osm_line",
            "planet_osm_point",
            "planet_osm_polygon",
            "lowzoom_areas",
            "lowzoom_roads",
            "water_polygons",
            "simplified_water_polygons",
        ] {
            assert!(
                stdout.contains(&format!("watching public.{table} (geometry column way)")),
                "{stdout}"
            );
        }
        // Seven tables, one trigger per event (insert, update, delete, truncate).
        assert_eq!(trigger_count(&env.db).await, 28);
    }
    let out = metatiled(&[
        "unwatch",
        "--tables",
        "planet_osm_point",
        "--database-url",
        url,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no longer watching public.planet_osm_point\n"
    );
    assert_eq!(trigger_count(&env.db).await, 24);

    let out = metatiled(&["watch", "--style", "nope", "--database-url", url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown style nope"));
    let out = metatiled(&["watch", "--tables", "no_such_table", "--database-url", url]);
    assert_eq!(out.status.code(), Some(2));

    let out = metatiled(&[
        "watch",
        "--tables",
        "public.planet_osm_point",
        "--database-url",
        url,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(trigger_count(&env.db).await, 28);
}
