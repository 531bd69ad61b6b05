//! Purges sent per second for a 10,000-metatile expiry, through the real fan-out
//! (queue, batches, requests) to a real Varnish with the xkey vmod (`keys` target), to
//! a local webhook, and (for 1,000 metatiles: 64,000 requests) to Varnish per URL.
//!
//!   cargo bench --bench purge              # METATILES=10000 URL_METATILES=1000 ROUNDS=3
//!
//! Each figure is the median of ROUNDS runs (a fresh queue each), the runs listed.
//!
//! Needs `varnishd` and Debian's `varnish-modules`; the webhook part runs without.
#![allow(clippy::unwrap_used)] // benchmarks fail loudly on what they set up

use metatiled::purge::{Change, PurgeSettings, Purger, TargetKind, TargetSettings};
use metatiled::tile::{MetatileCoord, StyleName};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const VCL: &str = r#"vcl 4.1;
import xkey;
backend origin { .host = "127.0.0.1"; .port = "9"; }
sub vcl_recv {
    if (req.method == "PURGE") {
        if (req.http.xkey) {
            set req.http.n-gone = xkey.purge(req.http.xkey);
            return (synth(200, "Invalidated " + req.http.n-gone + " objects"));
        }
        return (purge);
    }
}
"#;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A webhook that answers 200 to everything (HTTP/1.1 keep-alive).
async fn sink() -> String {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
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
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    stream.read_exact(&mut body).await.unwrap();
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if stream.get_mut().write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn sent(registry: &prometheus::Registry, target: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "metatiled_purge_items_total")
        .flat_map(|f| f.get_metric().to_vec())
        .filter(|m| {
            let labels = m.get_label();
            labels.iter().any(|l| l.value() == target) && labels.iter().any(|l| l.value() == "sent")
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

/// Queues `n` metatile changes and returns how long until `target` acknowledged
/// `expected` items.
async fn run(target: TargetSettings, n: usize, expected: f64) -> Duration {
    let registry = prometheus::Registry::new();
    let name = target.name.clone().unwrap();
    let settings = PurgeSettings {
        targets: vec![target],
        batch_delay_ms: 10,
        ..PurgeSettings::default()
    };
    let purger = Arc::new(Purger::new(&settings, None, &registry).unwrap());
    let stop = CancellationToken::new();
    let task = purger.run(stop.clone());
    let style = StyleName::parse("osm").unwrap();
    let started = Instant::now();
    // A 10,000-metatile expiry: a 100 x 100 block at zoom 19.
    for i in 0..n as u32 {
        let meta = MetatileCoord {
            z: 19,
            x: (37_000 + (i % 100)) * 8,
            y: (18_900 + i / 100) * 8,
        };
        purger.changed(Change::Metatile(style.clone(), meta));
    }
    while sent(&registry, &name) < expected {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{name}: too slow"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed();
    stop.cancel();
    let _ = task.await;
    took
}

/// The median of `rounds` runs of `target`, and every run's time.
async fn median(
    rounds: usize,
    target: TargetSettings,
    n: usize,
    expected: f64,
) -> (Duration, Vec<Duration>) {
    let mut runs = Vec::new();
    for _ in 0..rounds.max(1) {
        runs.push(run(target.clone(), n, expected).await);
    }
    let mut sorted = runs.clone();
    sorted.sort();
    (sorted[sorted.len() / 2], runs)
}

fn secs(runs: &[Duration]) -> String {
    let list: Vec<String> = runs
        .iter()
        .map(|d| format!("{:.3}", d.as_secs_f64()))
        .collect();
    format!("runs {} s", list.join(" / "))
}

fn target(name: &str, kind: TargetKind, url: String) -> TargetSettings {
    TargetSettings {
        name: Some(name.into()),
        kind,
        url,
        method: None,
        header: None,
        headers: Default::default(),
        with_urls: false,
        concurrency: 16,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let n = env_or("METATILES", 10_000);
    let n_urls = env_or("URL_METATILES", 1_000);
    let rounds = env_or("ROUNDS", 3);
    let hook = sink().await;
    let (took, runs) = median(
        rounds,
        target("webhook", TargetKind::Webhook, hook),
        n,
        n as f64,
    )
    .await;
    println!(
        "webhook: {n} metatiles in {:.3} s (median; {}) = {:.0} metatiles/s",
        took.as_secs_f64(),
        secs(&runs),
        n as f64 / took.as_secs_f64()
    );
    let have_xkey = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| d.path().join("varnish/vmods/libvmod_xkey.so").exists());
    if !have_xkey || !std::path::Path::new("/usr/sbin/varnishd").exists() {
        println!("varnish: skipped (no varnishd with the xkey vmod)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let vcl = dir.path().join("bench.vcl");
    std::fs::write(&vcl, VCL).unwrap();
    std::fs::set_permissions(&vcl, std::fs::Permissions::from_mode(0o644)).unwrap();
    let addr = free_addr();
    let mut varnish = Command::new("/usr/sbin/varnishd")
        .arg("-F")
        .arg("-n")
        .arg(dir.path().join("n"))
        .args(["-a", &addr.to_string(), "-f"])
        .arg(&vcl)
        .args(["-s", "malloc,64m"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .request(
            reqwest::Method::from_bytes(b"PURGE").unwrap(),
            format!("http://{addr}/"),
        )
        .header("xkey", "warmup")
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "varnishd did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!("http://{addr}/");
    let (took, runs) = median(
        rounds,
        target("keys", TargetKind::Keys, url.clone()),
        n,
        n as f64,
    )
    .await;
    println!(
        "varnish xkey (keys): {n} metatiles in {:.3} s (median; {}) = {:.0} metatiles/s",
        took.as_secs_f64(),
        secs(&runs),
        n as f64 / took.as_secs_f64()
    );
    let urls = (n_urls * 64) as f64;
    let (took, runs) = median(
        rounds,
        target("urls", TargetKind::Urls, format!("http://{addr}")),
        n_urls,
        urls,
    )
    .await;
    println!(
        "varnish per URL (urls): {n_urls} metatiles = {urls} PURGEs in {:.3} s (median; {}) = {:.0} metatiles/s, {:.0} PURGEs/s",
        took.as_secs_f64(),
        secs(&runs),
        n_urls as f64 / took.as_secs_f64(),
        urls / took.as_secs_f64()
    );
    let _ = varnish.kill();
    let _ = varnish.wait();
}
