//! The Docker deployment stays buildable while the code moves: the compose
//! file parses (Debian's `docker-compose` validates it without an engine),
//! only the public port is published, and every file a Dockerfile copies is
//! in the repository.
//!
//! Without a compose tool the validation is skipped locally and fails under
//! `CI=true` (`scripts/test-db` installs Debian's docker-compose).
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `docker-compose` (v1, Debian's) or `docker compose` (the v2 plugin), if any.
fn compose_command() -> Option<Vec<&'static str>> {
    let works = |cmd: &[&str]| {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    [vec!["docker-compose"], vec!["docker", "compose"]]
        .into_iter()
        .find(|cmd| works(cmd))
}

/// Runs `<compose> <args>` in the repo root, or `None` (after saying so) when
/// there is no compose tool and this is not CI.
fn compose(args: &[&str]) -> Option<Output> {
    let Some(cmd) = compose_command() else {
        if common::is_ci() {
            panic!("no docker-compose under CI=true: scripts/test-db installs it (apt-get install docker-compose)");
        }
        eprintln!("skipping: neither docker-compose nor `docker compose` is installed");
        return None;
    };
    let output = Command::new(cmd[0])
        .args(&cmd[1..])
        .args(["--file", "docker-compose.yml"])
        .args(args)
        .current_dir(common::repo_root())
        // The file's own defaults, not whatever the caller's shell has.
        .env_remove("OSM_PBF")
        .env_remove("OSM_DATA_DIR")
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROFILES")
        .env_remove("FLEET_PORT")
        .output()
        .expect("run docker compose");
    Some(output)
}

fn read(path: impl AsRef<Path>) -> String {
    let path = common::repo_root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn compose_file_is_valid() {
    let Some(out) = compose(&["config", "-q"]) else {
        return;
    };
    assert!(
        out.status.success(),
        "docker-compose config -q rejects docker-compose.yml:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let Some(out) = compose(&["config", "--services"]) else {
        return;
    };
    let services: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    for service in ["db", "import", "metatiled"] {
        assert!(
            services.contains(service),
            "no service {service} in {services:?}"
        );
    }
}

/// `config` with the fleet profile, run once for the tests that read it (each run of
/// Debian's docker-compose takes seconds); `None` without a compose tool.
fn fleet_config() -> Option<&'static str> {
    static TEXT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let out = compose(&["--profile", "fleet", "config"])?;
        assert!(
            out.status.success(),
            "docker-compose --profile fleet config rejects docker-compose.yml:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .as_deref()
}

#[test]
fn the_fleet_profile_is_valid_and_adds_a_balancer_and_nodes() {
    let Some(services) = services_with_ports() else {
        return;
    };
    for service in ["db", "import", "metatiled", "node", "balancer"] {
        assert!(
            services.contains_key(service),
            "no service {service} in {services:?}"
        );
    }
    // The nodes share a cache and drain before stopping; HAProxy gets the shipped config.
    let text = fleet_config().expect("read above");
    assert!(
        text.contains("METATILED_CACHE_SHARED: \"true\"")
            || text.contains("METATILED_CACHE_SHARED: 'true'"),
        "{text}"
    );
    assert!(text.contains("METATILED_NODE_DRAIN_SECS"), "{text}");
    assert!(text.contains("deploy/haproxy.cfg"), "{text}");
    assert!(text.contains("image: haproxy:2.6"), "{text}");
}

/// A service of `config`'s output: its profiles and the host ports it publishes.
#[derive(Debug, Default)]
struct Service {
    profiles: Vec<String>,
    published: Vec<String>,
}

/// Every service of `config`'s output by name. (Debian's docker-compose 1.29 prints
/// every service whatever the profiles; v2 only the active ones: both are read the
/// same way here.)
fn services_with_ports() -> Option<BTreeMap<String, Service>> {
    let text = fleet_config()?;
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    let mut in_services = false;
    let mut current: Option<String> = None;
    let mut in_profiles = false;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if indent == 0 {
            in_services = trimmed == "services:";
            current = None;
            continue;
        }
        if !in_services {
            continue;
        }
        if indent == 2 && trimmed.ends_with(':') {
            let name = trimmed.trim_end_matches(':').to_string();
            services.entry(name.clone()).or_default();
            current = Some(name);
            in_profiles = false;
            continue;
        }
        let Some(service) = &current else { continue };
        let entry = services.get_mut(service).expect("entered above");
        if indent == 4 && !trimmed.starts_with("- ") {
            in_profiles = trimmed == "profiles:";
        }
        let item = trimmed.trim_start_matches("- ");
        if in_profiles && trimmed.starts_with("- ") {
            entry
                .profiles
                .push(item.trim_matches(['"', '\'']).to_string());
        }
        // Ports in the long form (`published: 8080`, v2 quotes it).
        if let Some(port) = item.strip_prefix("published:") {
            entry
                .published
                .push(port.trim().trim_matches('"').to_string());
        }
    }
    Some(services)
}

#[test]
fn only_the_public_port_is_published() {
    let Some(services) = services_with_ports() else {
        return;
    };
    let published = |profile: Option<&str>| {
        let mut ports: Vec<String> = services
            .values()
            .filter(|s| {
                s.profiles.is_empty() || profile.is_some_and(|p| s.profiles.iter().any(|x| x == p))
            })
            .flat_map(|s| s.published.clone())
            .collect();
        ports.sort();
        ports
    };
    assert_eq!(published(None), ["8080"], "{services:?}");
    // The fleet adds the balancer's port; its nodes are reached through it only.
    assert_eq!(published(Some("fleet")), ["8000", "8080"], "{services:?}");
    for service in ["node", "balancer"] {
        assert_eq!(
            services[service].profiles,
            ["fleet"],
            "{service} is in the fleet profile only"
        );
    }
}

#[test]
fn admin_port_is_not_mapped_in_the_file() {
    // A textual check that needs no compose tool: no "8081:" or ":8081" mapping.
    for (n, line) in read("docker-compose.yml").lines().enumerate() {
        let code = line.split('#').next().unwrap_or_default();
        assert!(
            !(code.contains("8081:")
                || code.contains(":8081\"")
                || code.trim_end().ends_with(":8081")),
            "docker-compose.yml:{}: the admin port must not be published: {line}",
            n + 1
        );
    }
}

/// One `COPY`/`ADD` of a Dockerfile: its line and its sources (the
/// destination dropped). `--from=` copies come from a stage, not the context,
/// and are left out.
#[derive(Debug)]
struct Copy {
    line: usize,
    sources: Vec<String>,
}

/// Instructions with continuation lines joined, comments and blanks dropped,
/// each with the line it starts on.
fn instructions(dockerfile: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in dockerfile.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_none()) {
            continue;
        }
        let (text, continues) = match line.strip_suffix('\\') {
            Some(text) => (text.trim_end(), true),
            None => (line, false),
        };
        let entry = current.get_or_insert_with(|| (i + 1, String::new()));
        if !entry.1.is_empty() {
            entry.1.push(' ');
        }
        entry.1.push_str(text);
        if !continues {
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

fn copies(dockerfile: &str) -> Vec<Copy> {
    let mut out = Vec::new();
    for (line, text) in instructions(dockerfile) {
        let mut words = text.splitn(2, char::is_whitespace);
        let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
        if keyword != "COPY" && keyword != "ADD" {
            continue;
        }
        let mut rest = words.next().unwrap_or_default().trim();
        let mut from_stage = false;
        while let Some(flag) = rest.strip_prefix("--") {
            let (flag, tail) = flag.split_once(char::is_whitespace).unwrap_or((flag, ""));
            from_stage |= flag.starts_with("from=");
            rest = tail.trim_start();
        }
        if from_stage {
            continue;
        }
        let mut args: Vec<String> = if rest.starts_with('[') {
            // Exec form: ["src", ..., "dest"]
            rest.trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|s| s.trim().trim_matches('"').to_owned())
                .collect()
        } else {
            rest.split_whitespace().map(str::to_owned).collect()
        };
        assert!(
            args.len() >= 2,
            "line {line}: {keyword} needs a source and a destination: {text}"
        );
        args.pop();
        out.push(Copy {
            line,
            sources: args,
        });
    }
    out
}

/// The Dockerfiles the compose file builds, plus the root `Dockerfile`.
fn dockerfiles() -> Vec<PathBuf> {
    let mut files: BTreeSet<PathBuf> = BTreeSet::from([PathBuf::from("Dockerfile")]);
    for line in read("docker-compose.yml").lines() {
        if let Some(path) = line.trim().strip_prefix("dockerfile:") {
            files.insert(PathBuf::from(
                path.trim().trim_matches('"').trim_matches('\''),
            ));
        }
    }
    files.into_iter().collect()
}

/// First path components excluded by .dockerignore (plain names only; the
/// wildcard patterns there are for caches and data, never for sources).
fn dockerignored() -> BTreeSet<String> {
    read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter(|l| !l.contains(['*', '?', '[']))
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_owned())
        .collect()
}

#[test]
fn dockerfile_parser_reads_copy_forms() {
    let parsed = copies(
        "# comment\nFROM x AS b\nCOPY Cargo.toml Cargo.lock ./\nCOPY --chown=1:1 src \\\n  ./src\n\
         COPY --from=b /a /b\nadd [\"sql\", \"/app/sql\"]\nRUN echo COPY nope\n",
    );
    let sources: Vec<_> = parsed.iter().map(|c| c.sources.join(" ")).collect();
    assert_eq!(sources, ["Cargo.toml Cargo.lock", "src", "sql"]);
    assert_eq!(parsed.iter().map(|c| c.line).collect::<Vec<_>>(), [3, 4, 7]);
}

#[test]
fn every_copied_path_exists_in_the_repository() {
    let root = common::repo_root();
    let ignored = dockerignored();
    let mut missing = Vec::new();
    for dockerfile in dockerfiles() {
        let text = read(&dockerfile);
        let found = copies(&text);
        assert!(
            !found.is_empty(),
            "{} copies nothing from the context",
            dockerfile.display()
        );
        for copy in found {
            for source in &copy.sources {
                let at = format!("{}:{}", dockerfile.display(), copy.line);
                assert!(
                    !source.contains(['*', '?', '[']) && !source.contains(".."),
                    "{at}: keep COPY sources to plain repository paths: {source}"
                );
                let relative = source.trim_start_matches("./").trim_end_matches('/');
                if !root.join(relative).exists() {
                    missing.push(format!("{at}: {source} does not exist"));
                }
                let first = relative.split('/').next().unwrap_or_default();
                if ignored.contains(first) || ignored.contains(relative) {
                    missing.push(format!("{at}: {source} is excluded by .dockerignore"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "Dockerfile sources missing:\n{}",
        missing.join("\n")
    );
}

/// The stage of the root Dockerfile that runs `cargo build`.
fn build_stage() -> String {
    let dockerfile = read("Dockerfile");
    let mut stages = vec![String::new()];
    for line in dockerfile.lines() {
        if line.trim_start().to_ascii_uppercase().starts_with("FROM ") {
            stages.push(String::new());
        }
        let stage = stages.last_mut().expect("one stage at least");
        stage.push_str(line);
        stage.push('\n');
    }
    stages
        .into_iter()
        .find(|stage| stage.contains("cargo build"))
        .expect("no stage of the Dockerfile runs cargo build")
}

/// Repository paths (first component) the build stage copies.
fn copied_into_build_stage() -> BTreeSet<String> {
    copies(&build_stage())
        .into_iter()
        .flat_map(|c| c.sources)
        .map(|s| s.trim_start_matches("./").trim_end_matches('/').to_owned())
        .collect()
}

#[test]
fn dockerfile_copies_what_cargo_build_reads() {
    // Targets named in Cargo.toml must be in the build stage, or cargo refuses
    // the manifest; build.rs runs at build time.
    let manifest = read("Cargo.toml");
    let copied = copied_into_build_stage();
    let mut needed = vec!["Cargo.toml", "Cargo.lock", "src"];
    for (table, dir) in [
        ("[[bench]]", "benches"),
        ("[[example]]", "examples"),
        ("[[test]]", "tests"),
    ] {
        if manifest.lines().any(|l| l.trim() == table) {
            needed.push(dir);
        }
    }
    if common::repo_root().join("build.rs").exists() {
        needed.push("build.rs");
    }
    for path in needed {
        assert!(
            copied.contains(path),
            "Dockerfile does not COPY {path}, which cargo build needs"
        );
    }
}

#[cfg(unix)]
#[test]
fn container_entry_scripts_are_executable() {
    use std::os::unix::fs::PermissionsExt;
    for script in ["scripts/setup", "docker/import-entrypoint.sh"] {
        let path = common::repo_root().join(script);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{script}: {e}"))
            .permissions()
            .mode();
        assert!(
            mode & 0o111 != 0,
            "{script} is not executable (mode {mode:o}); git update-index --chmod=+x {script}"
        );
    }
}

/// `*.rs` files under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level repository entries that `include_str!`, `include_bytes!` or
/// `embed_migrations!` in `src/` read at compile time.
fn embedded_roots() -> BTreeSet<String> {
    let root = common::repo_root();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut roots = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for mac in ["include_str!(", "include_bytes!(", "embed_migrations!("] {
            for (at, _) in text.match_indices(mac) {
                let args = &text[at + mac.len()..];
                let args = &args[..args.find(';').unwrap_or(args.len()).min(300)];
                let literals: Vec<&str> = args.split('"').skip(1).step_by(2).collect();
                // concat!(env!("CARGO_MANIFEST_DIR"), "/assets/x") or a plain literal.
                let (base, relative) = if args.contains("CARGO_MANIFEST_DIR") {
                    (root.clone(), literals.get(1).copied())
                } else if mac.starts_with("embed") {
                    (root.clone(), literals.first().copied())
                } else {
                    (
                        file.parent().expect("a file has a folder").to_path_buf(),
                        literals.first().copied(),
                    )
                };
                let Some(relative) = relative else { continue };
                let mut path = base;
                for part in relative.trim_start_matches('/').split('/') {
                    match part {
                        "" | "." => {}
                        ".." => {
                            path.pop();
                        }
                        part => path.push(part),
                    }
                }
                if let Ok(inside) = path.strip_prefix(&root) {
                    if let Some(first) = inside.components().next() {
                        roots.insert(first.as_os_str().to_string_lossy().into_owned());
                    }
                }
            }
        }
    }
    roots
}

#[test]
fn dockerfile_copies_what_the_code_embeds() {
    // A file compiled into the binary must be in the build stage too.
    let copied = copied_into_build_stage();
    let missing: Vec<String> = embedded_roots()
        .into_iter()
        .filter(|first| !copied.contains(first))
        .collect();
    assert!(
        missing.is_empty(),
        "src/ embeds files from {missing:?}, which the Dockerfile's build stage does not COPY"
    );
}
