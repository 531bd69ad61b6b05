//! A real Varnish (Debian's `varnish`) in front of the app: a client's
//! `X-Forwarded-Host` reaches the origin through it, and must change nothing any other
//! client gets from Varnish's cache. With Varnish's address trusted, forwarded host and
//! scheme are honoured, and `Vary` keeps one cached answer per value. With the xkey vmod
//! (Debian's `varnish-modules`), an expiry purges exactly the tiles of its metatiles.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VARNISHD: &str = "/usr/sbin/varnishd";

/// A free loopback address (bound, then released for varnishd to take).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// varnishd in the foreground, in front of `backend`, on a free loopback port.
struct Varnish {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Varnish {
    async fn start(backend: SocketAddr) -> Self {
        Self::start_with(free_addr(), backend, None).await
    }

    /// varnishd on `addr` in front of `backend`, with `vcl` (where `{backend_port}`
    /// stands for the backend's port) or Varnish's built-in one.
    async fn start_with(addr: SocketAddr, backend: SocketAddr, vcl: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Varnish's worker process runs as its own user: it must reach the work dir.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cmd = Command::new(VARNISHD);
        cmd.arg("-F")
            .arg("-n")
            .arg(dir.path().join("n"))
            .args(["-a", &addr.to_string()])
            .args(["-s", "malloc,32m"]);
        match vcl {
            Some(vcl) => {
                let file = dir.path().join("test.vcl");
                let text = vcl.replace("{backend_port}", &backend.port().to_string());
                std::fs::write(&file, text).unwrap();
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
                cmd.arg("-f").arg(&file);
            }
            None => {
                cmd.args(["-b", &backend.to_string()]);
            }
        }
        let child = cmd
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
    // Without the style's version (`?v=`), the same for every client.
    let url = tj["tiles"][0].as_str().unwrap();
    let url = url.split_once("?v=").map_or(url, |(base, _)| base);
    (url.to_string(), hit)
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

/// Whether Varnish's xkey vmod (Debian's `varnish-modules`) is installed.
fn have_xkey() -> bool {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| d.path().join("varnish/vmods/libvmod_xkey.so").exists());
    assert!(
        found || !common::is_ci(),
        "the xkey vmod is missing; scripts/test installs it (varnish-modules)"
    );
    found
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

/// Varnish with the xkey vmod: `PURGE` with an `xkey` header drops every object tagged
/// with one of its keys; a plain `PURGE` drops the URL.
const XKEY_VCL: &str = r#"vcl 4.1;
import xkey;
backend origin { .host = "127.0.0.1"; .port = "{backend_port}"; }
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

/// A tile fetched through Varnish.
struct Seen {
    hit: bool,
    cache_control: String,
    keys: String,
}

async fn through(varnish: &Varnish, path: &str) -> Seen {
    let res = reqwest::Client::new()
        .get(varnish.url(path))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    Seen {
        hit: header("x-varnish").split_whitespace().count() == 2,
        cache_control: header("cache-control"),
        keys: header("xkey"),
    }
}

/// Waits until the target has acknowledged at least `n` keys.
async fn purged(app: &support::TestApp, target: &str, n: f64) {
    let series = format!("metatiled_purge_items_total{{outcome=\"sent\",target=\"{target}\"}}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.metric(&series).await < n {
        assert!(
            Instant::now() < deadline,
            "{target} was not purged {n} times"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expiry_purges_its_metatile_from_varnish_and_tells_the_webhook() {
    if !have_varnish() || !have_xkey() {
        return;
    }
    use metatiled::purge::{TargetKind, TargetSettings};
    let varnish_addr = free_addr();
    let (hook_url, mut hooks) = common::webhook_listener().await;
    let target = |name: &str, kind, url: String| TargetSettings {
        name: Some(name.into()),
        kind,
        url,
        method: None,
        header: None,
        headers: Default::default(),
        with_urls: false,
        concurrency: 4,
    };
    let Some(app) = support::spawn_app_with(|s| {
        s.purge.key_header = "xkey".into();
        s.purge.batch_delay_ms = 20;
        s.purge.targets = vec![
            target(
                "varnish",
                TargetKind::Keys,
                format!("http://{varnish_addr}/"),
            ),
            target("hook", TargetKind::Webhook, hook_url),
        ];
    })
    .await
    else {
        return;
    };
    let varnish = Varnish::start_with(varnish_addr, app.addr, Some(XKEY_VCL)).await;
    // A and A2 share metatile 15/18648/9480; B is its neighbour to the east.
    let (a, a2, b) = (
        "/osm/15/18654/9484.png",
        "/osm/15/18655/9485.png",
        "/osm/15/18656/9484.png",
    );
    for path in [a, a2, b] {
        let first = through(&varnish, path).await;
        assert!(!first.hit);
        assert!(
            through(&varnish, path).await.hit,
            "{path} is cached in Varnish"
        );
    }
    let seen = through(&varnish, a).await;
    assert_eq!(seen.keys, "osm/15/18648/9480 osm");

    let res = app
        .client
        .post(app.admin_url("/expire"))
        .json(&serde_json::json!({"style": "osm", "tiles": ["15/18654/9484"], "mode": "dirty"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let expired = Instant::now();
    let (arrived, body) = tokio::time::timeout(Duration::from_secs(1), hooks.recv())
        .await
        .expect("the webhook got the batch within 1 s of the expiry")
        .unwrap();
    assert!(arrived - expired < Duration::from_secs(1));
    assert_eq!(body["keys"], serde_json::json!(["osm/15/18648/9480"]));
    assert_eq!(
        body["metatiles"],
        serde_json::json!([{"style": "osm", "z": 15, "x": 18648, "y": 9480}])
    );

    purged(&app, "varnish", 1.0).await;
    // The next request reaches the origin and gets the stale-marked tile (short
    // max-age), which starts its re-render; the neighbour is still a hit.
    let stale = through(&varnish, a).await;
    assert!(!stale.hit, "the purge evicted the expired tile");
    assert!(
        stale.cache_control.contains("max-age=60,"),
        "{}",
        stale.cache_control
    );
    assert!(
        !through(&varnish, a2).await.hit,
        "the purge evicted every tile of the metatile"
    );
    assert!(
        through(&varnish, b).await.hit,
        "the neighbour metatile stays cached"
    );
    // The re-render replaces the metatile and purges it again: the next request gets
    // the re-rendered tile from the origin, and then it is cached.
    purged(&app, "varnish", 2.0).await;
    let fresh = through(&varnish, a).await;
    assert!(!fresh.hit);
    assert!(
        fresh.cache_control.contains("max-age=86400"),
        "{}",
        fresh.cache_control
    );
    assert!(through(&varnish, a).await.hit);
    assert!(through(&varnish, b).await.hit);
    app.stop().await;
}
