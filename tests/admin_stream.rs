//! A text expire list of 1,000,000 lines streams through `POST /expire` in bounded
//! memory. Alone in its own test binary, so the resident set size of the process (the
//! app runs in it) measures this request and nothing else.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;

use serde_json::Value;
use std::time::{Duration, Instant};

const LINES: u64 = 1_000_000;
/// Lines per chunk of the generated body (~16 KB).
const LINES_PER_CHUNK: u64 = 1_000;
/// Where the bad line goes (1-based).
const BAD_LINE: u64 = 500_001;

/// z18 tiles in a 1000 x 1000 block over Helsinki, line by line, one bad line in the
/// middle; generated as sent, never held whole.
fn body_chunks(lines: u64) -> impl Iterator<Item = Vec<u8>> {
    (0..lines.div_ceil(LINES_PER_CHUNK)).map(move |c| {
        let mut chunk = String::with_capacity(LINES_PER_CHUNK as usize * 17);
        for k in c * LINES_PER_CHUNK..((c + 1) * LINES_PER_CHUNK).min(lines) {
            if k + 1 == BAD_LINE {
                chunk.push_str("oops\n");
            } else {
                chunk.push_str(&format!(
                    "18/{}/{}\n",
                    149_000 + k % 1000,
                    75_800 + k / 1000
                ));
            }
        }
        chunk.into_bytes()
    })
}

async fn wait_job(app: &support::TestApp, id: u64) -> Value {
    let started = Instant::now();
    loop {
        let job: Value = app
            .client
            .get(app.admin_url(&format!("/jobs/{id}")))
            .send()
            .await
            .expect("job request")
            .json()
            .await
            .expect("job JSON");
        if !matches!(job["state"].as_str(), Some("queued" | "running")) {
            return job;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends a list and returns its report (waiting for the job when it became one).
async fn expire_list(app: &support::TestApp, lines: u64) -> Value {
    let (status, body) = support::post_chunked(
        app.admin_addr,
        "/expire?style=osm&minzoom=10&maxzoom=18",
        &[("Content-Type", "text/plain")],
        body_chunks(lines),
    )
    .await;
    let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    match status {
        200 => answer,
        202 => {
            let job = wait_job(app, answer["id"].as_u64().expect("id")).await;
            assert_eq!(job["state"], "done", "{job}");
            job["result"].clone()
        }
        other => panic!("status {other}: {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_million_line_expire_list_streams_in_bounded_memory() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    // Warm up: the first list and the first job allocate what every later one reuses.
    expire_list(&app, 20_000).await;
    expire_list(&app, 20_000).await;
    let before = support::vm_rss_kib();
    let started = Instant::now();
    let report = expire_list(&app, LINES).await;
    let secs = started.elapsed().as_secs_f64();
    let after = support::vm_rss_kib();
    let grown_kib = after.saturating_sub(before);
    eprintln!(
        "1,000,000 lines in {secs:.1}s ({:.0} lines/s); RSS {before} -> {after} KiB (+{grown_kib})",
        LINES as f64 / secs
    );
    assert_eq!(report["lines"], LINES, "{report}");
    assert_eq!(report["tiles"], LINES - 1, "{report}");
    assert_eq!(report["bad_lines"], 1, "{report}");
    assert_eq!(report["bad_line_examples"][0]["line"], BAD_LINE, "{report}");
    assert_eq!(report["bad_line_examples"][0]["text"], "oops", "{report}");
    // 125 x 125 metatiles at z18, and their ancestors down to z10.
    assert!(report["matched"].as_u64().unwrap() > 125 * 125, "{report}");
    // The body is ~16 MB; holding it (or its lines) would show.
    assert!(
        grown_kib < 8 * 1024,
        "RSS grew by {grown_kib} KiB while streaming {LINES} lines"
    );
    app.stop().await;
}
