//! Graceful shutdown of the real binary: on SIGTERM it stops accepting, finishes the
//! render a client is waiting for (the client gets its tile, the metatile lands on
//! disk) and exits 0.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_render_in_flight_and_exits_cleanly() {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_metatiled"))
        .args(["serve", "--database-url", &url, "--styles-dir"])
        .arg(common::repo_root().join("styles"))
        .arg("--cache-dir")
        .arg(cache.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "server did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A miss (z18 metatile in central Helsinki), then SIGTERM while it renders.
    let tile = client.get(format!("{base}/osm/18/149236/75878.png")).send();
    let pending = tokio::spawn(tile);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let res = pending
        .await
        .unwrap()
        .expect("the waiting client got an answer");
    assert_eq!(res.status(), 200);
    assert!(!res.bytes().await.unwrap().is_empty());
    let status = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "exit {:?}: {log}", status.status);
    assert!(log.contains("shutting down"), "{log}");
    let meta = cache.path().join("osm/18");
    assert!(meta.exists(), "the metatile was not written");
}
