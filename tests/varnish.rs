//! A real Varnish (Debian's `varnish`) in front of the app: a client's
//! `X-Forwarded-Host` reaches the origin through it, and must change nothing any other
//! client gets from Varnish's cache. With Varnish's address trusted, forwarded host and
//! scheme are honoured, and `Vary` keeps one cached answer per value.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VARNISHD: &str = "/usr/sbin/varnishd";

/// varnishd in the foreground, in front of `backend`, on a free loopback port.
struct Varnish {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Varnish {
    async fn start(backend: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Varnish's worker process runs as its own user: it must reach the work dir.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(VARNISHD)
            .arg("-F")
            .arg("-n")
            .arg(dir.path().join("n"))
            .args(["-a", &addr.to_string(), "-b", &backend.to_string()])
            .args(["-s", "malloc,32m"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("varnishd starts");
        let varnish = Self {
            child,
            addr,
            _dir: dir,
        };
        // Up when it answers through to the backend.
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let res = client.get(varnish.url("/health")).send().await;
            if res.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "varnishd did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        varnish
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Varnish {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tile URL template of `/osm/tile.json` fetched through Varnish, and whether
/// Varnish answered from its cache.
async fn tiles_url(varnish: &Varnish, headers: &[(&str, &str)]) -> (String, bool) {
    let mut req = reqwest::Client::new().get(varnish.url("/osm/tile.json"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    // Varnish's `X-Varnish` carries two ids on a hit (this request's and the cached one's).
    let hit = res
        .headers()
        .get("x-varnish")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split_whitespace().count() == 2);
    let tj: serde_json::Value = res.json().await.unwrap();
    (tj["tiles"][0].as_str().unwrap().to_string(), hit)
}

fn have_varnish() -> bool {
    if PathBuf::from(VARNISHD).exists() {
        return true;
    }
    assert!(
        !common::is_ci(),
        "varnishd is missing; scripts/test installs it (scripts/test-packages)"
    );
    eprintln!("skipping: no varnishd");
    false
}

const EVIL: [(&str, &str); 2] = [
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "https"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forwarded_host_from_an_untrusted_peer_changes_nothing_in_varnish() {
    if !have_varnish() {
        return;
    }
    let Some(app) = support::spawn_app().await else {
        return;
    };
    let varnish = Varnish::start(app.addr).await;
    let clean = format!("http://{}/osm/{{z}}/{{x}}/{{y}}.png", varnish.addr);
    // The attacker goes first, so that its answer is the one Varnish keeps.
    let (evil, _) = tiles_url(&varnish, &EVIL).await;
    assert_eq!(evil, clean, "the origin believed an untrusted peer");
    let (seen, hit) = tiles_url(&varnish, &[]).await;
    assert!(hit, "the second request should be a Varnish hit");
    assert_eq!(seen, clean);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trusted_varnish_has_its_forwarded_host_and_scheme_honoured() {
    if !have_varnish() {
        return;
    }
    let Some(app) = support::spawn_app_with(|s| {
        s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
    else {
        return;
    };
    let varnish = Varnish::start(app.addr).await;
    let (forwarded, _) = tiles_url(&varnish, &EVIL).await;
    assert_eq!(forwarded, "https://evil.example/osm/{z}/{x}/{y}.png");
    // Another client, without those headers, does not get that answer: Varnish varies
    // its cache on the headers the origin named.
    let clean = format!("http://{}/osm/{{z}}/{{x}}/{{y}}.png", varnish.addr);
    let (seen, _) = tiles_url(&varnish, &[]).await;
    assert_eq!(seen, clean);
    let (again, hit) = tiles_url(&varnish, &[]).await;
    assert!(hit && again == clean);
    // The client behind Varnish is the address Varnish names, not Varnish itself.
    let res = reqwest::Client::new()
        .get(varnish.url("/osm/15/18654/9484.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;
}
