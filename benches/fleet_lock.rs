//! What one render lock costs across nodes that share a cache (`cache.shared`): the
//! PostgreSQL advisory lock metatiled takes (`pg_try_advisory_lock` + unlock on the
//! node's lock connection, as `FleetLocks` sends them) against the lock-file pattern a
//! shared directory would use instead (create the file exclusively, remove it), and how
//! late a waiting node notices that the holder let go (it polls).
//!
//! `DATABASE_URL=... cargo bench --bench fleet_lock` (optionally `-- ROUNDS`, default
//! 2000). Without `--bench` (as `cargo test --all-targets` does) a short smoke run;
//! without a database it says so and stops.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

use metatiled::config::DatabaseSettings;
use metatiled::source::fleet::{render_lock_key, FleetLocks};
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p) as usize]
}

#[tokio::main]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if bench { 2000 } else { 20 });
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("fleet_lock: no DATABASE_URL; nothing to measure");
        return;
    };
    let settings = DatabaseSettings {
        url: Some(url),
        ..Default::default()
    };
    let locks = FleetLocks::new(&settings);
    locks.try_lock(1).await.unwrap();
    locks.unlock(1).await.unwrap();

    // Lock + unlock, free lock, one node.
    let mut pg = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let key = render_lock_key("osm", 18, 149232 + (i as u32 % 64) * 8, 75872);
        let t = Instant::now();
        assert!(locks.try_lock(key).await.unwrap());
        locks.unlock(key).await.unwrap();
        pg.push(t.elapsed().as_secs_f64() * 1e6);
    }

    // The lock-file pattern: O_EXCL create, then remove (local disk here; NFS adds a
    // round trip to the server for each).
    let dir = tempfile::tempdir().unwrap();
    let mut file = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let path = dir.path().join(format!("{}.meta.lock", i % 64));
        let t = Instant::now();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        drop(f);
        std::fs::remove_file(&path).unwrap();
        file.push(t.elapsed().as_secs_f64() * 1e6);
    }

    // A second node waits while the first "renders" for 100 ms: how long after the
    // release does the waiter hold the lock? (It retries every 20 ms, like the server.)
    let holder = std::sync::Arc::new(locks);
    let waiter = std::sync::Arc::new(FleetLocks::new(&settings));
    let waits = if bench { 20 } else { 2 };
    let mut late = Vec::new();
    for i in 0..waits {
        let key = render_lock_key("osm", 19, 300000 + i * 8, 150000);
        assert!(holder.try_lock(key).await.unwrap());
        let h = holder.clone();
        let released = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let at = Instant::now();
            h.unlock(key).await.unwrap();
            at
        });
        let w = waiter.clone();
        let acquired = tokio::spawn(async move {
            while !w.try_lock(key).await.unwrap() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let at = Instant::now();
            w.unlock(key).await.unwrap();
            at
        });
        let (released, acquired) = (released.await.unwrap(), acquired.await.unwrap());
        late.push(acquired.duration_since(released).as_secs_f64() * 1e3);
    }

    println!("render lock, {rounds} rounds (median / p99, microseconds per lock + release):");
    println!(
        "  PostgreSQL advisory lock (2 round trips): {:.0} / {:.0} us",
        median(pg.clone()),
        percentile(pg, 0.99)
    );
    println!(
        "  lock file (create_new + remove, local disk): {:.0} / {:.0} us",
        median(file.clone()),
        percentile(file, 0.99)
    );
    println!(
        "  a waiting node holds the lock {:.1} ms (median of {waits}) after the holder let go",
        median(late)
    );
}
