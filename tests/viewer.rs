//! The viewer page in a real headless browser (Debian's chromium): it loads tiles from
//! the server and shows a map. The screenshot is kept in `target/viewer-test.png` to be
//! looked at.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;

use std::path::PathBuf;
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_viewer_shows_a_map_of_rendered_tiles_in_a_browser() {
    let Some(browser) = chromium() else {
        assert!(
            !common::is_ci(),
            "chromium is missing; scripts/test installs it"
        );
        eprintln!("skipping: no chromium");
        return;
    };
    let Some(app) = support::spawn_app().await else {
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("viewer-test.png");
    let _ = std::fs::remove_file(&shot);
    let url = app.url("/");
    let args = [
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        format!("--user-data-dir={}", profile.path().display()),
        "--window-size=900,700".into(),
        // Lets the page's scripts and tile loads run before the screenshot.
        "--virtual-time-budget=30000".into(),
        format!("--screenshot={}", shot.display()),
        url,
    ];
    let out = tokio::task::spawn_blocking(move || Command::new(browser).args(args).output())
        .await
        .unwrap()
        .expect("chromium runs");
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The browser asked for tiles and got them.
    let served = app
        .metric("metatiled_http_requests_total{status=\"200\"}")
        .await;
    assert!(served >= 10.0, "only {served} successful requests");

    // The screenshot is a map: many pixels in the style's road, building and park
    // colours, not just the land background.
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let close = |p: &[u8], c: [u8; 3]| p.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 6);
    let (mut building, mut park, mut total) = (0usize, 0usize, 0usize);
    for p in pixels.chunks(channels) {
        total += 1;
        if close(p, [0xd9, 0xd0, 0xc9]) {
            building += 1;
        }
        if close(p, [0xc8, 0xfa, 0xcc]) {
            park += 1;
        }
    }
    assert!(
        building * 100 > total,
        "buildings cover {building} of {total} pixels"
    );
    assert!(park * 500 > total, "parks cover {park} of {total} pixels");
    eprintln!("viewer screenshot: {}", shot.display());
    app.stop().await;
}
