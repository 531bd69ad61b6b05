//! Graceful shutdown of the real binary: on SIGTERM it stops accepting, finishes the
//! render a client is waiting for (the client gets its tile, the metatile lands on
//! disk) and exits 0. With `node.drain_secs` it first answers `/ready` with 503 for
//! that long while serving (a second signal ends the drain at once).
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The real binary serving `cache` on the two ports, with extra environment; its
/// stderr is kept for the test to read.
fn serve(url: &str, cache: &std::path::Path, ports: (u16, u16), env: &[(&str, &str)]) -> Child {
    let (port, admin_port) = ports;
    Command::new(env!("CARGO_BIN_EXE_metatiled"))
        .args(["serve", "--database-url", url, "--styles-dir"])
        .arg(common::repo_root().join("styles"))
        .arg("--cache-dir")
        .arg(cache)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts")
}

/// Waits for the server to exit, which must be with status 0; its log.
async fn exits_cleanly(child: Child) -> String {
    let status = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&status.stderr).into_owned();
    assert!(status.status.success(), "exit {:?}: {log}", status.status);
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_render_in_flight_and_exits_cleanly() {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let child = serve(&url, cache.path(), (port, admin_port), &[]);
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
    let log = exits_cleanly(child).await;
    assert!(log.contains("shutting down"), "{log}");
    let meta = cache.path().join("osm/18");
    assert!(meta.exists(), "the metatile was not written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_first_ready_503_while_serving_and_a_second_signal_stops_at_once() {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let mut child = serve(
        &url,
        cache.path(),
        (port, admin_port),
        // Longer than this test may take: only the second signal can end the drain.
        &[
            ("METATILED_NODE_DRAIN_SECS", "120"),
            ("METATILED_NODE_ID", "test-shutdown-drain"),
            ("METATILED_FLEET_NAME", "test-shutdown-drain"),
        ],
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/ready")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().to_string();
    let term = || {
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success());
    };
    term();
    // Draining: not ready, yet alive and serving tiles.
    let since = Instant::now();
    loop {
        let r = client.get(format!("{base}/ready")).send().await.unwrap();
        if r.status() == 503 {
            assert_eq!(r.text().await.unwrap(), "draining\n");
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "/ready never said 503"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let tile = client
        .get(format!("{base}/osm/16/37309/18966.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(tile.status(), 200, "still serving while draining");
    assert!(child.try_wait().unwrap().is_none(), "still running");

    let second = Instant::now();
    term();
    let log = exits_cleanly(child).await;
    assert!(
        second.elapsed() < Duration::from_secs(30),
        "the second signal did not cut the drain short ({:?}): {log}",
        second.elapsed()
    );
    assert!(
        log.contains("draining") && log.contains("drain cut short"),
        "{log}"
    );
}

/// A client that connects and never sends a byte (a port scanner, a browser's
/// preconnect, someone holding sockets) is closed after 5 s, and one still silent when
/// the server stops does not hold the stop up for `server.shutdown_timeout_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_speaks_is_closed_and_does_not_hold_up_a_stop() {
    use tokio::io::AsyncReadExt;
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let child = serve(
        &url,
        cache.path(),
        (port, admin_port),
        &[("METATILED_SERVER_SHUTDOWN_TIMEOUT_SECS", "60")],
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while !matches!(client.get(format!("{base}/health")).send().await, Ok(r) if r.status() == 200) {
        assert!(started.elapsed() < Duration::from_secs(60), "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let connected = Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(30), silent.read(&mut byte))
        .await
        .expect("the server closed the silent connection");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, not answered: {read:?}"
    );
    let after = connected.elapsed();
    assert!(
        after >= Duration::from_secs(4) && after < Duration::from_secs(15),
        "closed after {after:?}, not after about 5 s"
    );

    let _still_silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let term = Instant::now();
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    let log = exits_cleanly(child).await;
    assert!(
        term.elapsed() < Duration::from_secs(5),
        "a silent connection held the stop up for {:?}: {log}",
        term.elapsed()
    );
}
