//! The tables `scripts/setup` derives from the import: the sea built from the
//! coastlines (sql/water_polygons.sql) and the generalised low-zoom tables
//! (sql/lowzoom.sql), which their triggers keep in step with the imported rows.
//!
//! The read-only checks use the shared test database (`DATABASE_URL`); the change
//! test uses the writable copy (`METATILED_RW_DATABASE_URL`) inside a transaction
//! that is rolled back, so it leaves nothing behind. Skips without a database, fails
//! under `CI=true`.

mod common;

use tokio_postgres::GenericClient;

async fn count(db: &impl GenericClient, sql: &str) -> i64 {
    db.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", common::pg_error(&e)))
        .get(0)
}

/// How many sea polygons cover a point given in degrees.
fn sea_at(lon: f64, lat: f64) -> String {
    format!(
        "SELECT count(*) FROM water_polygons
          WHERE ST_Covers(way, ST_Transform(ST_SetSRID(ST_MakePoint({lon}, {lat}), 4326), 3857))"
    )
}

#[tokio::test]
async fn the_harbour_is_sea_and_the_station_square_is_land() {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    let db = common::connect(&url).await;
    // Kaisaniemenlahti, the bay north of Kaisaniemi park, and the pier basin of the
    // South Harbour at the extract's eastern edge.
    assert_eq!(
        count(&db, &sea_at(24.9441, 60.1775)).await,
        1,
        "Kaisaniemenlahti is not sea"
    );
    assert_eq!(
        count(&db, &sea_at(24.95331, 60.16555)).await,
        1,
        "the South Harbour basin is not sea"
    );
    // Rautatientori and Kaisaniemi park are land.
    assert_eq!(
        count(&db, &sea_at(24.9441, 60.1710)).await,
        0,
        "Rautatientori is sea"
    );
    assert_eq!(
        count(&db, &sea_at(24.9480, 60.1745)).await,
        0,
        "Kaisaniemi park is sea"
    );
    assert!(count(&db, "SELECT count(*) FROM simplified_water_polygons").await > 0);
}

#[tokio::test]
async fn the_low_zoom_tables_hold_the_big_areas_and_main_roads_with_their_triggers() {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    let db = common::connect(&url).await;
    // Kaisaniemi park (57 ha in EPSG:3857) shows from z9 (more than two pixels there).
    let park = count(
        &db,
        "SELECT count(*) FROM lowzoom_areas WHERE kind = 'park' AND minzoom = 9",
    )
    .await;
    assert_eq!(park, 1, "Kaisaniemi park is not in lowzoom_areas at z9");
    // Nothing of two z12 pixels or less.
    let tiny = count(
        &db,
        "SELECT count(*) FROM metatiled.lowzoom_area_parts
          WHERE way_area <= 2 * (156543.03392804097 / 4096) ^ 2",
    )
    .await;
    assert_eq!(tiny, 0, "lowzoom_area_parts has areas too small for z12");
    for kind in ["primary", "secondary", "rail"] {
        let n = count(
            &db,
            &format!("SELECT count(*) FROM lowzoom_roads WHERE kind = '{kind}'"),
        )
        .await;
        assert_eq!(
            n, 1,
            "lowzoom_roads has {n} rows of {kind}, expected one merged row"
        );
    }
    let triggers = count(
        &db,
        "SELECT count(*) FROM pg_trigger
          WHERE tgname LIKE 'lowzoom_%'
            AND tgrelid IN ('public.planet_osm_polygon'::regclass, 'public.planet_osm_roads'::regclass)",
    )
    .await;
    assert_eq!(triggers, 8, "the low-zoom triggers are not all installed");
}

#[tokio::test]
async fn changed_rows_reach_the_low_zoom_tables_in_the_same_transaction() {
    let Some(url) = common::rw_database_url() else {
        eprintln!("skipping: no METATILED_RW_DATABASE_URL");
        return;
    };
    let mut db = common::connect(&url).await;
    let tx = db.transaction().await.expect("BEGIN");
    // A 1 km2 forest north of the extract (empty there): size class z8.
    let forest_at = |x: f64| {
        format!(
            "SELECT count(*) FROM lowzoom_areas
              WHERE kind = 'wood' AND minzoom = 8 AND ST_Covers(way, ST_SetSRID(ST_MakePoint({x}, 8440500), 3857))"
        )
    };
    tx.execute(
        "INSERT INTO planet_osm_polygon (osm_id, landuse, way_area, way)
         VALUES (-990001, 'forest', 1e6, ST_MakeEnvelope(2776000, 8440000, 2777000, 8441000, 3857))",
        &[],
    )
    .await
    .expect("insert a forest");
    assert_eq!(
        count(&tx, &forest_at(2776500.0)).await,
        1,
        "the new forest is not in lowzoom_areas"
    );

    tx.execute(
        "UPDATE planet_osm_polygon SET way = ST_Translate(way, 5000, 0) WHERE osm_id = -990001",
        &[],
    )
    .await
    .expect("move the forest");
    assert_eq!(
        count(&tx, &forest_at(2776500.0)).await,
        0,
        "the forest's old place is still wood"
    );
    assert_eq!(
        count(&tx, &forest_at(2781500.0)).await,
        1,
        "the moved forest is not in lowzoom_areas"
    );

    tx.execute("DELETE FROM planet_osm_polygon WHERE osm_id = -990001", &[])
        .await
        .expect("delete the forest");
    assert_eq!(
        count(&tx, &forest_at(2781500.0)).await,
        0,
        "the deleted forest is still there"
    );
    assert_eq!(
        count(
            &tx,
            "SELECT count(*) FROM metatiled.lowzoom_area_parts WHERE osm_id = -990001"
        )
        .await,
        0
    );

    // A motorway joins the merged main roads of its cell, and leaves with its row.
    tx.execute(
        "INSERT INTO planet_osm_roads (osm_id, highway, z_order, way)
         VALUES (-990002, 'motorway', 380,
                 ST_SetSRID(ST_MakeLine(ST_MakePoint(2770000, 8440000), ST_MakePoint(2790000, 8445000)), 3857))",
        &[],
    )
    .await
    .expect("insert a motorway");
    assert_eq!(
        count(
            &tx,
            "SELECT count(*) FROM lowzoom_roads WHERE kind = 'motorway'"
        )
        .await,
        1
    );
    tx.execute("DELETE FROM planet_osm_roads WHERE osm_id = -990002", &[])
        .await
        .expect("delete the motorway");
    assert_eq!(
        count(
            &tx,
            "SELECT count(*) FROM lowzoom_roads WHERE kind = 'motorway'"
        )
        .await,
        0
    );
    tx.rollback().await.expect("ROLLBACK");
}
