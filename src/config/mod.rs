//! Configuration: typed [`Settings`] layered from defaults < TOML file < `METATILED_*`
//! environment < command-line flags.
//!
//! Every key of the file has an environment twin: `cache.memory_bytes` is
//! `METATILED_CACHE_MEMORY_BYTES`, `admin.token` is `METATILED_ADMIN_TOKEN`. `DATABASE_URL`
//! is read when no URL was given any other way. Errors are one line naming the file and
//! line, the variable or the flag, so `main` can print them and exit 2.

mod settings;

pub use settings::*;

use std::path::{Path, PathBuf};
use thiserror::Error;
use toml::{Table, Value};

/// Prefix of the environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "METATILED_";

/// `METATILED_*` variables that are not configuration keys (tests and tooling use them).
const ENV_NOT_KEYS: &[&str] = &["METATILED_TEST_DATABASE_URL", "METATILED_DB_NAME"];

/// Keys whose default is "unset", so they do not appear in the serialized defaults.
const OPTIONAL_KEYS: &[&str] = &[
    "database.url",
    "admin.token",
    "server.public_url",
    "server.tls_cert",
    "server.tls_key",
    "access.keys_file",
];

/// List keys whose environment value is a PATH-like list (`:`-separated); every other
/// list is comma-separated (CIDRs may contain `:`).
const PATH_LIST_KEYS: &[&str] = &["render.fonts"];

/// Bad usage or configuration found after the command line and the configuration
/// parsed (a style that does not load, a bbox outside the world): `main` exits 2 on
/// these, 1 on a failing environment.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}, line {line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{origin}: unknown configuration key `{key}`")]
    UnknownKey { origin: String, key: String },
    #[error("{origin}: {message}")]
    BadValue { origin: String, message: String },
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Where one override came from, for error messages.
#[derive(Debug, Clone)]
pub struct Override {
    /// Dotted key, e.g. `cache.dir`.
    pub key: String,
    pub value: String,
    /// `--cache-dir` or `METATILED_CACHE_DIR`.
    pub origin: String,
}

/// The inputs of one configuration load; tests pass their own environment.
#[derive(Debug, Default, Clone)]
pub struct ConfigSources {
    pub file: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub flags: Vec<Override>,
}

/// A loaded configuration and the warnings worth logging once tracing is up.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

impl ConfigSources {
    /// Sources from the process environment plus the given file and flags.
    pub fn from_process(file: Option<PathBuf>, flags: Vec<Override>) -> Self {
        Self {
            file,
            env: std::env::vars().collect(),
            flags,
        }
    }
}

/// Layers defaults, file, environment and flags, then validates the result.
pub fn load(sources: &ConfigSources) -> Result<Loaded, ConfigError> {
    let defaults = Value::try_from(Settings::default()).map_err(|e| ConfigError::BadValue {
        origin: "defaults".into(),
        message: e.to_string(),
    })?;
    let mut tree = match &sources.file {
        Some(path) => read_file(path)?,
        None => Table::new(),
    };
    let mut warnings = Vec::new();
    let mut env_overrides = Vec::new();
    let mut database_url_fallback = None;
    for (var, value) in &sources.env {
        if var == "DATABASE_URL" {
            database_url_fallback = Some(value.clone());
            continue;
        }
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if ENV_NOT_KEYS.contains(&var.as_str()) || rest == "CONFIG" {
            continue;
        }
        match key_for_env(&defaults, rest) {
            Some(key) => env_overrides.push(Override {
                key,
                value: value.clone(),
                origin: var.clone(),
            }),
            None => warnings.push(format!(
                "ignoring environment variable {var}: it names no configuration key"
            )),
        }
    }
    env_overrides.sort_by(|a, b| a.key.cmp(&b.key));

    let mut overrides: Vec<Override> = env_overrides;
    overrides.extend(sources.flags.iter().cloned());
    let url_given = tree.get("database").and_then(|d| d.get("url")).is_some()
        || overrides.iter().any(|o| o.key == "database.url");
    if let (false, Some(url)) = (url_given, database_url_fallback) {
        overrides.insert(
            0,
            Override {
                key: "database.url".into(),
                value: url,
                origin: "DATABASE_URL".into(),
            },
        );
    }
    let file_tree = tree.clone();
    for o in &overrides {
        apply_override(&defaults, &mut tree, o)?;
    }
    let settings: Settings = match Value::Table(tree).try_into() {
        Ok(settings) => settings,
        Err(e) => return Err(blame_override(&defaults, file_tree, &overrides, &e)),
    };
    validate(&settings)?;
    Ok(Loaded { settings, warnings })
}

/// Finds which override made the merged settings fail to deserialize (e.g. a listen
/// address that does not parse), by applying them one at a time.
fn blame_override(
    defaults: &Value,
    mut tree: Table,
    overrides: &[Override],
    error: &toml::de::Error,
) -> ConfigError {
    for o in overrides {
        if apply_override(defaults, &mut tree, o).is_err()
            || Value::Table(tree.clone()).try_into::<Settings>().is_err()
        {
            return ConfigError::BadValue {
                origin: o.origin.clone(),
                message: format!("invalid value {:?} for `{}`", o.value, o.key),
            };
        }
    }
    ConfigError::BadValue {
        origin: "configuration".into(),
        message: error.message().trim().replace('\n', " "),
    }
}

/// Reads the file; a typed pass first reports unknown keys and wrong types with the line
/// they are on, then the raw table is kept for layering.
fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_error = |e: toml::de::Error| ConfigError::Parse {
        path: path.to_path_buf(),
        line: e.span().map_or(0, |span| {
            text[..span.start.min(text.len())].matches('\n').count() + 1
        }),
        message: e.message().trim().replace('\n', " "),
    };
    toml::from_str::<Settings>(&text).map_err(parse_error)?;
    text.parse::<Table>().map_err(parse_error)
}

/// `CACHE_MEMORY_BYTES` -> `cache.memory_bytes`, if such a key exists.
fn key_for_env(defaults: &Value, rest: &str) -> Option<String> {
    known_keys(defaults)
        .into_iter()
        .find(|k| k.replace('.', "_").eq_ignore_ascii_case(rest))
}

/// Every dotted leaf key the settings have.
pub fn known_keys(defaults: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if let Value::Table(sections) = defaults {
        for (section, v) in sections {
            if let Value::Table(fields) = v {
                keys.extend(fields.keys().map(|f| format!("{section}.{f}")));
            }
        }
    }
    keys.extend(OPTIONAL_KEYS.iter().map(|k| k.to_string()));
    keys.sort();
    keys.dedup();
    keys
}

fn apply_override(defaults: &Value, tree: &mut Table, o: &Override) -> Result<(), ConfigError> {
    let Some((section, field)) = o.key.split_once('.') else {
        return Err(ConfigError::UnknownKey {
            origin: o.origin.clone(),
            key: o.key.clone(),
        });
    };
    let typed = match defaults.get(section).and_then(|s| s.get(field)) {
        Some(Value::Integer(_)) => o
            .value
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("expected a whole number, got {:?}", o.value)),
        Some(Value::Boolean(_)) => match o.value.trim() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {:?}", o.value)),
        },
        Some(Value::Float(_)) => o
            .value
            .trim()
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| format!("expected a number, got {:?}", o.value)),
        // A list of paths (render.fonts): entries separated like PATH (`:` on Unix).
        Some(Value::Array(_)) if PATH_LIST_KEYS.contains(&o.key.as_str()) => Ok(Value::Array(
            std::env::split_paths(&o.value)
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| Value::String(p.to_string_lossy().into_owned()))
                .collect(),
        )),
        // Any other list (CIDRs, keys): comma-separated.
        Some(Value::Array(_)) => Ok(Value::Array(
            o.value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )),
        Some(_) => Ok(Value::String(o.value.clone())),
        None if OPTIONAL_KEYS.contains(&o.key.as_str()) => Ok(Value::String(o.value.clone())),
        None => {
            return Err(ConfigError::UnknownKey {
                origin: o.origin.clone(),
                key: o.key.clone(),
            })
        }
    }
    .map_err(|message| ConfigError::BadValue {
        origin: o.origin.clone(),
        message,
    })?;
    let entry = tree
        .entry(section.to_string())
        .or_insert_with(|| Value::Table(Table::new()));
    match entry {
        Value::Table(t) => {
            t.insert(field.to_string(), typed);
            Ok(())
        }
        _ => Err(ConfigError::BadValue {
            origin: o.origin.clone(),
            message: format!("`{section}` must be a table"),
        }),
    }
}

fn validate(s: &Settings) -> Result<(), ConfigError> {
    let positive = [
        ("cache.memory_bytes", s.cache.memory_bytes),
        ("server.miss_timeout_secs", s.server.miss_timeout_secs),
        (
            "render.queue_interactive",
            s.render.queue_interactive as u64,
        ),
        ("render.queue_stale", s.render.queue_stale as u64),
        ("render.queue_bulk", s.render.queue_bulk as u64),
        ("database.pool_size", s.database.pool_size as u64),
        ("admin.max_body_bytes", s.admin.max_body_bytes as u64),
        ("admin.max_json_bytes", s.admin.max_json_bytes as u64),
        ("admin.max_area_squares", s.admin.max_area_squares as u64),
        ("admin.max_active_jobs", s.admin.max_active_jobs as u64),
        ("database.connect_timeout_ms", s.database.connect_timeout_ms),
        (
            "database.statement_timeout_ms",
            s.database.statement_timeout_ms,
        ),
        (
            "database.probe_interval_max_ms",
            s.database.probe_interval_max_ms,
        ),
        ("watch.poll_secs", s.watch.poll_secs),
        ("fleet.heartbeat_secs", s.fleet.heartbeat_secs),
        ("fleet.retention_secs", s.fleet.retention_secs),
        ("fleet.poll_secs", s.fleet.poll_secs),
    ];
    for (key, v) in positive {
        if v == 0 {
            return Err(ConfigError::Invalid {
                key,
                message: "must be greater than 0".into(),
            });
        }
    }
    if !(-1..=i32::from(crate::tile::MAX_ZOOM)).contains(&s.watch.render_up_to_zoom) {
        return Err(ConfigError::Invalid {
            key: "watch.render_up_to_zoom",
            message: format!(
                "expected -1 (none) to {}, got {}",
                crate::tile::MAX_ZOOM,
                s.watch.render_up_to_zoom
            ),
        });
    }
    let (high, low) = (s.cache.high_watermark, s.cache.low_watermark);
    if !(low > 0.0 && low < high && high <= 1.0) {
        return Err(ConfigError::Invalid {
            key: "cache.low_watermark",
            message: format!(
                "expected 0 < cache.low_watermark ({low}) < cache.high_watermark ({high}) <= 1"
            ),
        });
    }
    if let Some(name) = s
        .cache
        .style_max_bytes
        .keys()
        .find(|name| crate::tile::StyleName::parse(name).is_err())
    {
        return Err(ConfigError::Invalid {
            key: "cache.style_max_bytes",
            message: format!("{name:?} is not a style name"),
        });
    }
    crate::fleet::check_node_id(&s.node.id).map_err(|message| ConfigError::Invalid {
        key: "node.id",
        message,
    })?;
    crate::fleet::check_node_id(&s.fleet.name).map_err(|message| ConfigError::Invalid {
        key: "fleet.name",
        message,
    })?;
    if s.fleet.retention_secs < 2 * s.fleet.heartbeat_secs {
        return Err(ConfigError::Invalid {
            key: "fleet.retention_secs",
            message: format!(
                "must be at least two heartbeats (fleet.heartbeat_secs = {})",
                s.fleet.heartbeat_secs
            ),
        });
    }
    if s.server.listen == s.admin.listen {
        return Err(ConfigError::Invalid {
            key: "admin.listen",
            message: "must differ from server.listen: the admin API is never public".into(),
        });
    }
    if let Some(url) = &s.database.url {
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| ConfigError::Invalid {
                key: "database.url",
                message: format!("not a PostgreSQL URL: {e}"),
            })?;
    }
    if s.server.tls_cert.is_some() != s.server.tls_key.is_some() {
        return Err(ConfigError::Invalid {
            key: "server.tls_cert",
            message: "server.tls_cert and server.tls_key go together: set both or neither".into(),
        });
    }
    if let Some(url) = &s.server.public_url {
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && !url.contains(['?', '#', ' '])
            && url.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
        if !ok {
            return Err(ConfigError::Invalid {
                key: "server.public_url",
                message: format!("expected http(s)://host[:port][/path], got {url:?}"),
            });
        }
    }
    if s.limits.enabled {
        let budgets = [
            ("limits.requests_per_second", s.limits.requests_per_second),
            ("limits.request_burst", s.limits.request_burst),
            ("limits.renders_per_minute", s.limits.renders_per_minute),
            ("limits.render_burst", s.limits.render_burst),
        ];
        for (key, v) in budgets {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be greater than 0 (or limits.enabled = false)".into(),
                });
            }
        }
        if s.limits.max_clients == 0 {
            return Err(ConfigError::Invalid {
                key: "limits.max_clients",
                message: "must be greater than 0".into(),
            });
        }
    }
    if s.admin.token.as_deref() == Some("") {
        return Err(ConfigError::Invalid {
            key: "admin.token",
            message: "is empty; remove it to disable authentication".into(),
        });
    }
    Ok(())
}

impl Settings {
    /// Render threads after resolving 0 to the number of cores.
    pub fn render_threads(&self) -> usize {
        match self.render.threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// The effective configuration as TOML, with secrets masked.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.admin.token.is_some() {
            shown.admin.token = Some("<redacted>".into());
        }
        if let Some(url) = &shown.database.url {
            shown.database.url = Some(redact_url_password(url));
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
pub fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn load_with(
        file: Option<&Path>,
        env: &[(&str, &str)],
        flags: &[(&str, &str)],
    ) -> Result<Loaded, ConfigError> {
        load(&ConfigSources {
            file: file.map(Path::to_path_buf),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            flags: flags
                .iter()
                .map(|(k, v)| Override {
                    key: k.to_string(),
                    value: v.to_string(),
                    origin: format!("--{k}"),
                })
                .collect(),
        })
    }

    #[test]
    fn font_paths_come_from_the_file_or_a_path_like_variable() {
        let f = file_with("[render]\nfonts = [\"/a/b.ttf\", \"/fonts\"]\n");
        let s = load_with(Some(f.path()), &[], &[]).unwrap().settings;
        assert_eq!(
            s.render.fonts,
            vec![PathBuf::from("/a/b.ttf"), PathBuf::from("/fonts")]
        );
        let s = load_with(None, &[("METATILED_RENDER_FONTS", "/x.ttf:/y")], &[])
            .unwrap()
            .settings;
        assert_eq!(
            s.render.fonts,
            vec![PathBuf::from("/x.ttf"), PathBuf::from("/y")]
        );
        assert!(load_with(None, &[], &[])
            .unwrap()
            .settings
            .render
            .fonts
            .is_empty());
    }

    #[test]
    fn layers_apply_in_order_defaults_file_env_flags() {
        let f = file_with(
            "[cache]\ndir = \"/from/file\"\nmemory_bytes = 1000\n[render]\nthreads = 3\n",
        );
        let loaded = load_with(
            Some(f.path()),
            &[
                ("METATILED_CACHE_DIR", "/from/env"),
                ("METATILED_RENDER_THREADS", "5"),
            ],
            &[("cache.dir", "/from/flag")],
        )
        .unwrap();
        let s = loaded.settings;
        assert_eq!(s.cache.dir, PathBuf::from("/from/flag"));
        assert_eq!(s.render.threads, 5);
        assert_eq!(s.cache.memory_bytes, 1000);
        assert_eq!(s.server.miss_timeout_secs, 10);
    }

    #[test]
    fn a_typo_in_the_file_is_named_with_its_line() {
        let f = file_with("[server]\nlisten = \"127.0.0.1:9000\"\nmiss_timout_secs = 3\n");
        let err = load_with(Some(f.path()), &[], &[]).unwrap_err().to_string();
        assert!(err.contains("miss_timout_secs"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn an_unknown_section_is_named() {
        let f = file_with("[servr]\nlisten = \"127.0.0.1:9000\"\n");
        let err = load_with(Some(f.path()), &[], &[]).unwrap_err().to_string();
        assert!(err.contains("servr"), "{err}");
    }

    #[test]
    fn database_url_is_the_fallback_for_the_url() {
        let s = load_with(None, &[("DATABASE_URL", "postgres://a@h/db")], &[])
            .unwrap()
            .settings;
        assert_eq!(s.database.url.as_deref(), Some("postgres://a@h/db"));
        let s = load_with(
            None,
            &[
                ("DATABASE_URL", "postgres://a@h/db"),
                ("METATILED_DATABASE_URL", "postgres://b@h/db"),
            ],
            &[],
        )
        .unwrap()
        .settings;
        assert_eq!(s.database.url.as_deref(), Some("postgres://b@h/db"));
    }

    #[test]
    fn admin_token_comes_from_its_environment_variable() {
        let s = load_with(None, &[("METATILED_ADMIN_TOKEN", "12345")], &[])
            .unwrap()
            .settings;
        assert_eq!(s.admin.token.as_deref(), Some("12345"));
        assert!(!s.to_redacted_toml().contains("12345"));
    }

    #[test]
    fn bad_values_name_their_origin() {
        let err = load_with(None, &[("METATILED_CACHE_MEMORY_BYTES", "lots")], &[]).unwrap_err();
        assert!(
            err.to_string().contains("METATILED_CACHE_MEMORY_BYTES"),
            "{err}"
        );
        let err = load_with(None, &[], &[("server.listen", "nowhere")]).unwrap_err();
        assert!(
            err.to_string().contains("nowhere") || err.to_string().contains("listen"),
            "{err}"
        );
        let err = load_with(None, &[], &[("render.png", "jpeg")]).unwrap_err();
        assert!(err.to_string().contains("render.png"), "{err}");
    }

    #[test]
    fn the_node_id_defaults_to_the_host_name_and_is_checked() {
        let s = load_with(None, &[], &[]).unwrap().settings;
        assert_eq!(s.node.id, crate::fleet::host_name());
        assert_eq!(s.node.drain_secs, 0);
        let s = load_with(
            None,
            &[
                ("METATILED_NODE_ID", "tiles-2"),
                ("METATILED_NODE_DRAIN_SECS", "5"),
            ],
            &[],
        )
        .unwrap()
        .settings;
        assert_eq!((s.node.id.as_str(), s.node.drain_secs), ("tiles-2", 5));
        let err = load_with(None, &[("METATILED_NODE_ID", "two words")], &[]).unwrap_err();
        assert!(err.to_string().contains("node.id"), "{err}");
        let err = load_with(None, &[("METATILED_FLEET_RETENTION_SECS", "1")], &[]).unwrap_err();
        assert!(err.to_string().contains("fleet.retention_secs"), "{err}");
        let s = load_with(None, &[("METATILED_CACHE_SHARED", "true")], &[])
            .unwrap()
            .settings;
        assert!(s.cache.shared);
    }

    #[test]
    fn unknown_metatiled_variables_only_warn() {
        let loaded = load_with(None, &[("METATILED_CACHE_DIRR", "x")], &[]).unwrap();
        assert_eq!(loaded.warnings.len(), 1);
    }

    #[test]
    fn passwords_are_masked_when_printed() {
        assert_eq!(
            redact_url_password("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url_password("postgres://h/db"), "postgres://h/db");
    }
}
