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

/// The scans of one plan that ran (`Actual Loops` > 0) on a planet_osm_* table: the
/// node type, the table and the index, for the assertions below.
fn executed_scans(plan: &serde_json::Value, out: &mut Vec<(String, String, String)>) {
    let loops = plan["Actual Loops"].as_f64().unwrap_or(0.0);
    let node = plan["Node Type"].as_str().unwrap_or_default();
    let relation = plan["Relation Name"].as_str().unwrap_or_default();
    let index = plan["Index Name"].as_str().unwrap_or_default();
    if loops > 0.0 && (relation.starts_with("planet_osm_") || index.starts_with("planet_osm_")) {
        out.push((node.to_string(), relation.to_string(), index.to_string()));
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        executed_scans(child, out);
    }
}

#[tokio::test]
async fn up_to_z13_the_styles_read_the_base_tables_only_through_partial_indexes() {
    // On a country a z12 metatile covers hundreds of towns: a layer that reached
    // planet_osm_line through its full index would read every path and driveway under
    // it. The style's queries repeat the predicates of sql/lowzoom.sql's partial
    // indexes word for word; this catches one that drifted. Plans are checked as the
    // server runs them: prepared with typed parameters, custom plans and the generic
    // plan a connection switches to after five executions. The test database is small
    // enough for the planner to prefer a sequential scan anywhere; with those off, one
    // is left only where no index fits the query.
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    let db = common::connect(&url).await;
    let styles = metatiled::style::StyleSet::load_dir(&common::repo_root().join("styles"))
        .expect("the bundled styles load");
    // A z19 tile in central Helsinki; at each zoom, the metatile holding it.
    let center = metatiled::tile::TileCoord::try_new(19, 298_472, 151_753).expect("a z19 tile");
    let mut checked = 0;
    for style in styles.iter() {
        for z in 0..=13u8 {
            let meta = center.ancestor(z).metatile();
            let bbox = metatiled::source::query_bbox(style, meta);
            let own = meta.bbox();
            let args = format!(
                "({}, {}, {}, {}, {z}, {}, {}, {}, {}, {}, {})",
                bbox.min_x,
                bbox.min_y,
                bbox.max_x,
                bbox.max_y,
                style.pixel_size(z),
                style.scale,
                own.min_x,
                own.min_y,
                own.max_x,
                own.max_y
            );
            for layer in style.layers.iter().filter(|l| l.active_at(z)) {
                for mode in ["force_custom_plan", "force_generic_plan"] {
                    db.batch_execute(&format!(
                        "SET plan_cache_mode = {mode}; SET enable_seqscan = off; DEALLOCATE ALL;
                         PREPARE layer(float8, float8, float8, float8, int4, float8, float8,
                                       float8, float8, float8, float8) AS {}",
                        layer.query
                    ))
                    .await
                    .unwrap_or_else(|e| {
                        panic!("{} {}: {}", style.name, layer.name, common::pg_error(&e))
                    });
                    let messages = db
                        .simple_query(&format!(
                            "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE layer {args}"
                        ))
                        .await
                        .unwrap_or_else(|e| {
                            panic!("{} {}: {}", style.name, layer.name, common::pg_error(&e))
                        });
                    let text = messages
                        .iter()
                        .find_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
                            _ => None,
                        })
                        .expect("EXPLAIN returns its plan");
                    let explained: serde_json::Value =
                        serde_json::from_str(text).expect("EXPLAIN's JSON parses");
                    let mut scans = Vec::new();
                    executed_scans(&explained[0]["Plan"], &mut scans);
                    for (node, relation, index) in scans {
                        let place =
                            format!("style {}, layer {}, z{z}, {mode}", style.name, layer.name);
                        assert_ne!(node, "Seq Scan", "{place}: a sequential scan of {relation}");
                        // osm2pgsql names a table's full GiST index <table>_way_idx. From
                        // z13 the style reads every area and building it draws from
                        // planet_osm_polygon and planet_osm_point; the lines stay partial.
                        let full_index_allowed = z >= 13
                            && relation != "planet_osm_line"
                            && !index.starts_with("planet_osm_line");
                        assert!(
                            full_index_allowed || !index.ends_with("_way_idx"),
                            "{place}: {node} through {index}, a table's full index, not a partial one"
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} layer plans were checked");
}
