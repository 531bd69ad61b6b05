//! The public edge against the real app on port 0 and the real PostGIS: forwarded
//! headers count only from trusted proxies, TileJSON, CORS on every response, budgets
//! of requests and renders caused (429), API keys and origins (403), HTTP/2 (h2c and
//! TLS, with curl), placeholders when the database is cut, and malformed requests that
//! log no ERROR.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;

use reqwest::header;
use reqwest::StatusCode;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Central Helsinki at z15, inside the imported extract.
const HELSINKI_Z15: &str = "/osm/15/18654/9484.png";

/// Distinct uncached z17 metatiles over central Helsinki: one tile of each.
fn distinct_metatiles(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "/osm/17/{}/{}.png",
                74616 + 8 * (i % 6) as u32,
                37936 + 8 * (i / 6) as u32
            )
        })
        .collect()
}

/// A styles folder holding the repository's `osm` style with `extra` appended.
fn styles_with(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let osm = std::fs::read_to_string(common::repo_root().join("styles/osm.toml")).unwrap();
    // Before the first table, after every top-level key.
    let (head, tail) = osm.split_once("\n[[layer]]").unwrap();
    let text = format!("{head}\n{extra}\n[[layer]]{tail}");
    std::fs::write(dir.path().join("osm.toml"), text).unwrap();
    dir
}

async fn tilejson(
    app: &support::TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> (reqwest::header::HeaderMap, serde_json::Value) {
    let mut req = app.client.get(app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    let h = res.headers().clone();
    (h, res.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tilejson_has_tile_sizes_and_ignores_forwarded_headers_of_untrusted_peers() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    let spoof = [
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
        ("Forwarded", "host=evil.example;proto=https"),
    ];
    let (h, tj) = tilejson(&app, "/osm/tile.json", &spoof).await;
    assert_eq!(
        unversioned(&tj["tiles"][0]),
        format!("http://{}/osm/{{z}}/{{x}}/{{y}}.png", app.addr)
    );
    assert!(h.get(header::VARY).is_none(), "nothing to vary on: {h:?}");
    assert_eq!(tj["tileSize"], 256);
    // Bounds and centre from the import, inside central Helsinki.
    let c: Vec<f64> = serde_json::from_value(tj["center"].clone()).unwrap();
    assert!(
        (24.9..25.0).contains(&c[0]) && (60.1..60.2).contains(&c[1]),
        "{c:?}"
    );

    // The 2x variant: 512 px tiles under their own template.
    let (_, tj2) = tilejson(&app, "/osm@2x/tile.json", &[]).await;
    assert_eq!(tj2["tileSize"], 512);
    // The template carries the style's version (`?v=`), the same for both variants.
    let (tiles2, version) = tj2["tiles"][0].as_str().unwrap().split_once('?').unwrap();
    assert!(tiles2.ends_with("/osm/{z}/{x}/{y}@2x.png"), "{tiles2}");
    assert!(version.starts_with("v="), "{version}");
    let sample = tiles2
        .replace(&format!("http://{}", app.addr), "")
        .replace("{z}/{x}/{y}", "15/18654/9484");
    let retina = app.get(&sample).await;
    assert_eq!(
        support::png_size(&retina.bytes().await.unwrap()),
        (512, 512)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn public_url_and_trusted_proxies_decide_the_urls_written() {
    let Some(app) = support::spawn_app_with(|s| {
        s.server.public_url = Some("https://tiles.example.com/base/".into());
    })
    .await
    else {
        return;
    };
    let (_, tj) = tilejson(
        &app,
        "/osm/tile.json",
        &[("X-Forwarded-Host", "evil.example")],
    )
    .await;
    assert_eq!(
        unversioned(&tj["tiles"][0]),
        "https://tiles.example.com/base/osm/{z}/{x}/{y}.png"
    );
    let page = app.get("/").await.text().await.unwrap();
    assert!(page.contains("https://tiles.example.com/base/osm/{z}/{x}/{y}.png"));
    app.stop().await;

    // Loopback trusted, no public_url: a proxy's forwarded host and scheme are used, and
    // named in Vary so that a shared cache keeps one answer per value.
    let Some(app) = support::spawn_app_with(|s| {
        s.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await
    else {
        return;
    };
    let (h, tj) = tilejson(
        &app,
        "/osm/tile.json",
        &[
            ("X-Forwarded-Host", "maps.example.org"),
            ("X-Forwarded-Proto", "https"),
        ],
    )
    .await;
    assert_eq!(
        unversioned(&tj["tiles"][0]),
        "https://maps.example.org/osm/{z}/{x}/{y}.png"
    );
    let vary = h[header::VARY].to_str().unwrap();
    for name in ["Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto"] {
        assert!(vary.contains(name), "{vary}");
    }
    let (_, tj) = tilejson(
        &app,
        "/osm/tile.json",
        &[("X-Forwarded-Host", "bad/host@x")],
    )
    .await;
    assert_eq!(
        unversioned(&tj["tiles"][0]),
        format!("http://{}/osm/{{z}}/{{x}}/{{y}}.png", app.addr),
        "a forwarded host that is no host name is ignored"
    );
    // HTTP/1.0 without Host: the URLs name the listener's own address.
    let answer = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        conn.write_all(b"GET /osm/tile.json HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.unwrap();
        answer
    };
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let tj: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        unversioned(&tj["tiles"][0]),
        format!("http://{}/osm/{{z}}/{{x}}/{{y}}.png", app.addr)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_response_has_cors_and_preflights_are_answered() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    for (path, status) in [
        (HELSINKI_Z15, 200),
        ("/osm/21/0/0.png", 404),
        ("/osm/1/0/x.png", 400),
        ("/nothing-here", 404),
        ("/osm/tile.json", 200),
        ("/health", 200),
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status().as_u16(), status, "{path}");
        let h = res.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*", "{path}");
        let expose = h[header::ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap();
        for name in [
            "ETag",
            "Last-Modified",
            "Retry-After",
            "RateLimit",
            "RateLimit-Policy",
        ] {
            assert!(expose.contains(name), "{path}: {expose}");
        }
    }
    for path in [HELSINKI_Z15, "/", "/osm/tile.json"] {
        let res = app
            .client
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header(header::ORIGIN, "https://elsewhere.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "if-none-match")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT, "{path}");
        let h = res.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(h[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap()
            .contains("GET"));
        assert!(h[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .contains("If-None-Match"));
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_spent_its_render_budget_gets_429_while_its_hits_stay_free() {
    let Some(app) = support::spawn_app_with(|s| {
        s.limits.render_burst = 3;
        s.limits.renders_per_minute = 1;
    })
    .await
    else {
        return;
    };
    // Hits cost no render: a cached tile asked many times.
    assert_eq!(app.get(HELSINKI_Z15).await.status(), StatusCode::OK);
    let renders_before = 1;
    let paths = distinct_metatiles(6);
    for p in &paths[..3 - renders_before] {
        assert_eq!(app.get(p).await.status(), StatusCode::OK, "{p}");
    }
    for _ in 0..20 {
        assert_eq!(app.get(HELSINKI_Z15).await.status(), StatusCode::OK);
    }
    // The next render is refused at once, with the headers a client can act on.
    let started = Instant::now();
    let res = app.get(&paths[3]).await;
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let h = res.headers();
    let retry: u64 = h[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(h["ratelimit-policy"], "\"renders\";q=3;w=180");
    assert_eq!(
        h["ratelimit"].to_str().unwrap(),
        format!("\"renders\";r=0;t={retry}")
    );
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    // A spoofed X-Forwarded-For from an untrusted peer is not another client.
    let spoofed = app
        .client
        .get(app.url(&paths[4]))
        .header("X-Forwarded-For", "198.51.100.77")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS);
    // Hits still pass; the refused tiles were never rendered.
    assert_eq!(app.get(HELSINKI_Z15).await.status(), StatusCode::OK);
    let renders = app
        .metric("metatiled_renders_total{outcome=\"ok\",priority=\"interactive\",style=\"osm\"}")
        .await;
    assert_eq!(renders, 3.0);
    assert_eq!(
        app.metric("metatiled_throttled_total{budget=\"renders\"}")
            .await,
        2.0
    );
    // The admin status names the client by renders caused.
    let status: serde_json::Value = app
        .client
        .get(app.admin_url("/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let top = &status["limits"]["top_clients"][0];
    assert_eq!(top["client"], "127.0.0.1", "{status}");
    assert_eq!(top["renders"], 3, "{status}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_over_its_request_budget_gets_429_and_exempt_clients_never_do() {
    let Some(app) = support::spawn_app_with(|s| {
        s.limits.request_burst = 5;
        s.limits.requests_per_second = 1;
    })
    .await
    else {
        return;
    };
    // The first request renders (a second or so, while the bucket refills a little);
    // hits then come back-to-back until the burst of 5 is spent.
    assert_eq!(app.get(HELSINKI_Z15).await.status(), StatusCode::OK);
    let mut served = 1;
    let res = loop {
        let res = app.get(HELSINKI_Z15).await;
        if res.status() != StatusCode::OK {
            break res;
        }
        served += 1;
        assert!(served <= 8, "no 429 after {served} requests");
    };
    assert!(served >= 5, "429 after only {served} requests");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["ratelimit-policy"], "\"requests\";q=5;w=5");
    // Not tiles: not counted.
    assert_eq!(app.get("/osm/tile.json").await.status(), StatusCode::OK);
    app.stop().await;

    let Some(app) = support::spawn_app_with(|s| {
        s.limits.request_burst = 5;
        s.limits.requests_per_second = 1;
        s.limits.exempt = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
    else {
        return;
    };
    for _ in 0..20 {
        assert_eq!(app.get(HELSINKI_Z15).await.status(), StatusCode::OK);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn styles_with_keys_and_origins_refuse_others_with_403() {
    let styles = styles_with(
        "[access]\nkey = \"required\"\nreferers = [\"https://maps.example.com\"]\nallow_missing_referer = true\n",
    );
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), "good-key-0001 osm\nother-key-002 topo\n").unwrap();
    let styles_dir = styles.path().to_path_buf();
    let keys_path = keys.path().to_path_buf();
    let Some(app) = support::spawn_app_with(move |s| {
        s.styles.dir = styles_dir;
        s.access.keys_file = Some(keys_path);
    })
    .await
    else {
        return;
    };
    let get = |path: String, headers: Vec<(&'static str, &'static str)>| {
        let mut req = app.client.get(app.url(&path));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move { req.send().await.unwrap() }
    };
    // (path, request headers, status, what the body says)
    type Case = (String, Vec<(&'static str, &'static str)>, u16, &'static str);
    let cases: Vec<Case> = vec![
        (HELSINKI_Z15.into(), vec![], 403, "needs an API key"),
        (
            format!("{HELSINKI_Z15}?key=wrong-key-999"),
            vec![],
            403,
            "unknown API key",
        ),
        (
            format!("{HELSINKI_Z15}?key=other-key-002"),
            vec![],
            403,
            "not valid for this style",
        ),
        (format!("{HELSINKI_Z15}?key=good-key-0001"), vec![], 200, ""),
        (
            HELSINKI_Z15.into(),
            vec![("X-Api-Key", "good-key-0001")],
            200,
            "",
        ),
        (
            "/osm/15/18654/9484@2x.png?key=good-key-0001".into(),
            vec![],
            200,
            "",
        ),
        (
            format!("{HELSINKI_Z15}?key=good-key-0001"),
            vec![("Origin", "https://maps.example.com")],
            200,
            "",
        ),
        (
            format!("{HELSINKI_Z15}?key=good-key-0001"),
            vec![("Referer", "https://evil.example/page")],
            403,
            "origin may not use",
        ),
    ];
    for (path, headers, want, body) in cases {
        let res = get(path.clone(), headers.clone()).await;
        assert_eq!(res.status().as_u16(), want, "{path} {headers:?}");
        if want == 403 {
            assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
            let text = res.text().await.unwrap();
            assert!(text.contains(body), "{path}: {text}");
        }
    }
    assert_eq!(
        app.metric("metatiled_access_denied_total{reason=\"key\"}")
            .await,
        3.0
    );
    assert_eq!(
        app.metric("metatiled_access_denied_total{reason=\"referer\"}")
            .await,
        1.0
    );
    // The keys file is re-read when it changes.
    std::fs::write(keys.path(), "new-key-00003\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = get(format!("{HELSINKI_Z15}?key=new-key-00003"), vec![]).await;
        if res.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the new key was never accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

fn curl() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/curl");
    path.exists().then_some(path)
}

/// `curl` with `args`; returns (HTTP version, status).
fn curl_version_and_status(args: &[&str]) -> (String, u16) {
    let out = Command::new(curl().unwrap())
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (v, s) = text.split_once(' ').unwrap_or(("", "0"));
    (v.to_string(), s.parse().unwrap_or(0))
}

/// A self-signed certificate and key for 127.0.0.1 (openssl), in `dir`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_with_prior_knowledge_and_over_tls_serves_tiles() {
    if curl().is_none() {
        assert!(!common::is_ci(), "curl is missing");
        return;
    }
    let Some(app) = support::spawn_app().await else {
        return;
    };
    let url = app.url(HELSINKI_Z15);
    let h2c = tokio::task::spawn_blocking(move || {
        (
            curl_version_and_status(&["--http2-prior-knowledge", &url]),
            curl_version_and_status(&["--http1.1", &url]),
        )
    })
    .await
    .unwrap();
    assert_eq!(h2c.0, ("2".to_string(), 200));
    assert_eq!(h2c.1, ("1.1".to_string(), 200));
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let Some(app) = support::spawn_app_with(move |s| {
        s.server.tls_cert = Some(cert);
        s.server.tls_key = Some(key);
    })
    .await
    else {
        return;
    };
    let url = format!("https://{}{}", app.addr, HELSINKI_Z15);
    let tj_url = format!("https://{}/osm/tile.json", app.addr);
    let (h2, h1, tj) = tokio::task::spawn_blocking(move || {
        let tj = Command::new(curl().unwrap())
            .args(["-s", "-k", &tj_url])
            .output()
            .unwrap();
        (
            curl_version_and_status(&["-k", "--http2", &url]),
            curl_version_and_status(&["-k", "--http1.1", &url]),
            String::from_utf8_lossy(&tj.stdout).to_string(),
        )
    })
    .await
    .unwrap();
    assert_eq!(h2, ("2".to_string(), 200));
    assert_eq!(h1, ("1.1".to_string(), 200));
    assert!(tj.contains(&format!("https://{}/osm/", app.addr)), "{tj}");
    app.stop().await;
}

/// A TCP proxy to PostgreSQL that the test can cut: every connection through it is
/// dropped and new ones are refused.
struct DbProxy {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DbProxy {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    break;
                };
                let target = target.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, task }
    }

    /// Closes the listener and every proxied connection (dropping the join set).
    async fn cut(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_database_cut_a_miss_gets_its_parent_scaled_up_or_a_503() {
    let Some(rw_url) = common::rw_database_url() else {
        return;
    };
    let target = rw_url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    let proxy = DbProxy::start(target.clone()).await;
    let proxied_url = rw_url.replace(&target, &proxy.addr.to_string());
    let styles = styles_with("placeholder = true");
    let styles_dir = styles.path().to_path_buf();
    let Some(app) = support::spawn_app_with(move |s| {
        s.database.url = Some(proxied_url);
        s.styles.dir = styles_dir;
        s.server.placeholder_max_age_secs = 7;
    })
    .await
    else {
        return;
    };
    // The parent of the tile asked for below, cached while the database answers.
    let parent = app.get("/osm/14/9327/4742.png").await;
    assert_eq!(parent.status(), StatusCode::OK);
    proxy.cut().await;

    let started = Instant::now();
    let res = app.get("/osm/15/18654/9484.png").await;
    let took = started.elapsed();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(h["metatiled-placeholder"], "ancestor=14/9327/4742");
    assert_eq!(h[header::CACHE_CONTROL], "public, max-age=7");
    assert!(h.get(header::ETAG).is_none() && h.get(header::LAST_MODIFIED).is_none());
    assert_eq!(support::png_size(&res.bytes().await.unwrap()), (256, 256));
    assert!(
        took < Duration::from_millis(100),
        "placeholder took {took:?}"
    );
    assert_eq!(
        app.metric("metatiled_placeholders_total{reason=\"render_failed\",style=\"osm\"}")
            .await,
        1.0
    );

    // No cached ancestor within reach: 503 with Retry-After, at once.
    let started = Instant::now();
    let res = app.get("/osm/18/149300/75900.png").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    // Cached tiles are still served as they are.
    let cached = app.get("/osm/14/9327/4742.png").await;
    assert_eq!(cached.status(), StatusCode::OK);
    assert!(cached.headers().get("metatiled-placeholder").is_none());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_are_a_debug_line_not_an_error() {
    let Some(url) = common::database_url() else {
        return;
    };
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = tempfile::tempdir().unwrap();
    let server = Command::new(env!("CARGO_BIN_EXE_metatiled"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .arg("--cache-dir")
        .arg(cache.path())
        .arg("--styles-dir")
        .arg(common::repo_root().join("styles"))
        .args(["--database-url", &url])
        .env("RUST_LOG", "info,metatiled::http=debug")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stream = loop {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    stream
        .write_all(b"GARBAGE\x00\x01 nonsense\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"));
    // A TLS hello on the plain port.
    let mut tls = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tls.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .unwrap();
    let _ = tls.read_to_end(&mut Vec::new());
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let out = server.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("ERROR"), "{log}");
    assert_eq!(
        log.matches("malformed request from a client").count(),
        2,
        "{log}"
    );
}

/// A TileJSON tile URL without its style version (`?v=...`).
fn unversioned(url: &serde_json::Value) -> &str {
    let url = url.as_str().unwrap();
    url.split_once("?v=").map_or(url, |(base, _)| base)
}
