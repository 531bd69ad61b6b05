//! The imported OpenStreetMap data is real and complete enough to draw a map
//! of central Helsinki: what `scripts/setup` leaves behind, checked against
//! the database the other tests render from.
//!
//! Needs `DATABASE_URL` (or `METATILED_TEST_DATABASE_URL`) with the Helsinki
//! sample imported (`scripts/test-db` prints one); skips without one, fails
//! under `CI=true`.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;

use tokio_postgres::Client;

/// The four tables of osm2pgsql's classic pgsql output.
const TABLES: [&str; 4] = [
    "planet_osm_point",
    "planet_osm_line",
    "planet_osm_polygon",
    "planet_osm_roads",
];

/// Connects, and checks the import is the Helsinki sample these numbers are
/// about; `None` (after printing why) when there is no database to test.
async fn helsinki_db() -> Option<Client> {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return None;
    };
    let client = common::connect(&url).await;
    let row = client
        .query_opt(
            "SELECT source_file, source_sha256 FROM metatiled.import_info",
            &[],
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no metatiled.import_info in {} ({}); run scripts/setup",
                common::redact_url(&url),
                common::pg_error(&e)
            )
        })
        .expect("metatiled.import_info is empty: the import did not finish; run scripts/setup");
    let (file, sha): (String, String) = (row.get(0), row.get(1));
    assert_eq!(
        sha,
        common::HELSINKI_SHA256,
        "{} holds {file}, not the Helsinki sample these tests describe; \
         point DATABASE_URL at the database scripts/test-db prints",
        common::redact_url(&url)
    );
    Some(client)
}

async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", common::pg_error(&e)))
        .get(0)
}

#[tokio::test]
async fn every_table_has_the_rows_of_central_helsinki() {
    let Some(db) = helsinki_db().await else {
        return;
    };
    // About half of what osm2pgsql 1.8 gives for the sample (8041, 4027,
    // 1025, 628): loose enough for another osm2pgsql, tight enough to catch
    // a truncated or filtered import.
    let minimums = [4000, 2000, 500, 300];
    for (table, minimum) in TABLES.into_iter().zip(minimums) {
        let n = count(&db, &format!("SELECT count(*) FROM public.{table}")).await;
        assert!(
            n >= minimum,
            "{table} has {n} rows, expected at least {minimum}"
        );
    }
}

#[tokio::test]
async fn buildings_are_there_to_draw() {
    let Some(db) = helsinki_db().await else {
        return;
    };
    let n = count(
        &db,
        "SELECT count(*) FROM planet_osm_polygon WHERE building IS NOT NULL",
    )
    .await;
    assert!(
        n >= 250,
        "only {n} building polygons (the sample has about 460)"
    );
    let named = count(
        &db,
        "SELECT count(*) FROM planet_osm_polygon WHERE building IS NOT NULL AND name IS NOT NULL",
    )
    .await;
    assert!(
        named >= 10,
        "only {named} named buildings: names are missing"
    );
}

#[tokio::test]
async fn roads_of_every_main_class_are_there() {
    let Some(db) = helsinki_db().await else {
        return;
    };
    let classes: [(&str, &[&str], i64); 4] = [
        ("primary", &["primary", "primary_link"], 20),
        (
            "secondary/tertiary",
            &["secondary", "tertiary", "secondary_link", "tertiary_link"],
            20,
        ),
        ("residential", &["residential", "living_street"], 20),
        ("footway", &["footway", "pedestrian", "path"], 50),
    ];
    for (label, values, minimum) in classes {
        let rows = db
            .query_one(
                "SELECT count(*) FROM planet_osm_line WHERE highway = ANY($1)",
                &[&values],
            )
            .await
            .expect("count highways");
        let n: i64 = rows.get(0);
        assert!(
            n >= minimum,
            "{n} {label} lines, expected at least {minimum}"
        );
    }
    // The low-zoom table carries the major roads (and railways) too.
    let n = count(
        &db,
        "SELECT count(*) FROM planet_osm_roads WHERE highway IN ('primary', 'secondary')",
    )
    .await;
    assert!(
        n >= 20,
        "planet_osm_roads has only {n} primary/secondary roads"
    );
    let n = count(
        &db,
        "SELECT count(*) FROM planet_osm_line WHERE railway IS NOT NULL",
    )
    .await;
    assert!(
        n >= 20,
        "only {n} railway lines (trams, the railway station tracks)"
    );
}

#[tokio::test]
async fn water_and_parks_are_there() {
    let Some(db) = helsinki_db().await else {
        return;
    };
    let water = count(
        &db,
        "SELECT count(*) FROM planet_osm_polygon
          WHERE \"natural\" = 'water' OR water IS NOT NULL OR waterway IS NOT NULL
             OR landuse IN ('reservoir', 'basin')",
    )
    .await;
    assert!(water >= 3, "only {water} water polygons");
    let parks = count(
        &db,
        "SELECT count(*) FROM planet_osm_polygon WHERE leisure = 'park'",
    )
    .await;
    assert!(
        parks >= 3,
        "only {parks} parks (Kaisaniemi, Esplanadi, ... are in the sample)"
    );
    let area: f64 = db
        .query_one(
            "SELECT coalesce(sum(ST_Area(way)), 0)::float8 FROM planet_osm_polygon WHERE leisure = 'park'",
            &[],
        )
        .await
        .expect("park area")
        .get(0);
    assert!(
        area > 50_000.0,
        "parks cover only {area:.0} m² (Web Mercator)"
    );
}

#[tokio::test]
async fn geometries_are_web_mercator() {
    let Some(db) = helsinki_db().await else {
        return;
    };
    for table in TABLES {
        let srid: i32 = db
            .query_one("SELECT Find_SRID('public', $1, 'way')", &[&table])
            .await
            .unwrap_or_else(|e| panic!("Find_SRID for {table}: {}", common::pg_error(&e)))
            .get(0);
        assert_eq!(srid, 3857, "{table}.way is declared with SRID {srid}");
        let other = count(
            &db,
            &format!("SELECT count(*) FROM public.{table} WHERE ST_SRID(way) <> 3857"),
        )
        .await;
        assert_eq!(other, 0, "{table} has {other} geometries not in EPSG:3857");
    }
}

#[tokio::test]
async fn every_table_has_a_gist_index_on_way() {
    let Some(db) = helsinki_db().await else {
        return;
    };
    for table in TABLES {
        let n = db
            .query_one(
                // Partial indexes (sql/lowzoom.sql's, for the few rows low zooms
                // read) are not the table's index.
                "SELECT count(*) FROM pg_indexes
                  WHERE schemaname = 'public' AND tablename = $1
                    AND indexdef ~* 'USING gist \\(way\\)' AND indexdef !~* ' WHERE '",
                &[&table],
            )
            .await
            .expect("query pg_indexes")
            .get::<_, i64>(0);
        assert!(
            n >= 1,
            "{table} has no GiST index on way: bbox queries would scan"
        );
        assert!(n <= 1, "{table} has {n} GiST indexes on way: one is enough");
    }
}

#[tokio::test]
async fn unqualified_table_names_reach_the_imported_tables() {
    let Some(db) = helsinki_db().await else {
        return;
    };
    // The role's search_path is "$user", public and schema metatiled exists:
    // a planet_osm_* table there would hide the imported one from the styles.
    for table in TABLES {
        let schema: Option<String> = db
            .query_one(
                "SELECT n.nspname::text FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = to_regclass($1)",
                &[&table],
            )
            .await
            .map(|row| row.get(0))
            .ok();
        assert_eq!(
            schema.as_deref(),
            Some("public"),
            "{table} resolves to {schema:?}"
        );
    }
}

#[tokio::test]
async fn tags_are_kept_in_hstore() {
    let Some(db) = helsinki_db().await else {
        return;
    };
    // --hstore: keys without a column of their own stay reachable as tags->'key'.
    let n = count(
        &db,
        "SELECT count(*) FROM planet_osm_point WHERE tags ? 'opening_hours' OR tags ? 'wheelchair'",
    )
    .await;
    assert!(
        n >= 50,
        "only {n} points with hstore tags: was --hstore used?"
    );
}

#[tokio::test]
async fn import_info_bounds_are_central_helsinki() {
    let Some(db) = helsinki_db().await else {
        return;
    };
    let row = db
        .query_one(
            "SELECT minlon, minlat, maxlon, maxlat, osm2pgsql_version, imported_at <= now()
               FROM metatiled.import_info",
            &[],
        )
        .await
        .expect("read metatiled.import_info");
    let (minlon, minlat, maxlon, maxlat): (f64, f64, f64, f64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let version: String = row.get(4);
    let in_the_past: bool = row.get(5);
    // The extract is 24.9352,60.1642,24.9534,60.1791; allow for ways that
    // reach a little beyond it, but not for another city.
    let bounds = format!("{minlon},{minlat},{maxlon},{maxlat}");
    assert!((24.90..=24.94).contains(&minlon), "minlon of {bounds}");
    assert!((24.95..=24.99).contains(&maxlon), "maxlon of {bounds}");
    assert!((60.14..=60.17).contains(&minlat), "minlat of {bounds}");
    assert!((60.175..=60.20).contains(&maxlat), "maxlat of {bounds}");
    assert!(
        maxlon - minlon < 0.1 && maxlat - minlat < 0.05,
        "bounds {bounds} are far larger than the extract"
    );
    assert!(
        version.split('.').all(|p| p.parse::<u32>().is_ok()),
        "osm2pgsql_version {version:?} is not a version number"
    );
    assert!(in_the_past, "imported_at is in the future");
}

#[test]
fn redact_url_hides_only_the_password() {
    assert_eq!(
        common::redact_url("postgres://metatiled:secret@127.0.0.1:5432/metatiled"),
        "postgres://metatiled:***@127.0.0.1:5432/metatiled"
    );
    assert_eq!(common::redact_url("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(
        common::redact_url("host=/tmp dbname=x"),
        "host=/tmp dbname=x"
    );
}
