//! Who may fetch a style's tiles: API keys (a keys file, re-read when it changes) and
//! allowed web origins (the style's `[access] referers`). HTTP-free: the HTTP layer
//! finds the key and the origin in the request and turns a [`Denied`] into a 403.

use crate::style::StyleAccess;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;
use thiserror::Error;

/// Why a request may not have a style's tiles (a short reason, sent as the 403 body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Denied {
    #[error("this style needs an API key (?key= or the X-Api-Key header)")]
    MissingKey,
    #[error("unknown API key")]
    UnknownKey,
    #[error("this API key is not valid for this style")]
    KeyNotForStyle,
    #[error("this origin may not use this style")]
    Origin,
}

impl Denied {
    /// The `reason` label of `metatiled_access_denied_total`.
    pub fn metric_reason(self) -> &'static str {
        match self {
            Denied::Origin => "referer",
            _ => "key",
        }
    }
}

#[derive(Debug, Error)]
pub enum KeysError {
    #[error("cannot read the API keys file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("API keys file {path}, line {line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Styles a key opens; `None` = every style.
type Grants = HashMap<String, Option<Vec<String>>>;

/// The API keys of `access.keys_file`: `KEY [style,style...]` per line, `#` comments.
pub struct ApiKeys {
    path: Option<PathBuf>,
    keys: RwLock<Arc<Grants>>,
    /// The file's mtime and length when it was read.
    read_stamp: Mutex<Option<(SystemTime, u64)>>,
}

impl ApiKeys {
    /// No keys: every style that requires one refuses every request.
    pub fn none() -> Self {
        Self {
            path: None,
            keys: RwLock::new(Arc::new(Grants::new())),
            read_stamp: Mutex::new(None),
        }
    }

    /// Reads the keys file (an error stops the server at start).
    pub fn load(path: &Path) -> Result<Self, KeysError> {
        let keys = Self {
            path: Some(path.to_path_buf()),
            ..Self::none()
        };
        keys.reload()?;
        Ok(keys)
    }

    fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    fn reload(&self) -> Result<usize, KeysError> {
        let Some(path) = &self.path else {
            return Ok(0);
        };
        let stamp = Self::stamp(path);
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
            path: path.clone(),
            source,
        })?;
        let grants = parse_keys(&text).map_err(|(line, message)| KeysError::Line {
            path: path.clone(),
            line,
            message,
        })?;
        let n = grants.len();
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(grants);
        *self
            .read_stamp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = stamp;
        Ok(n)
    }

    /// Re-reads the file if it changed since it was read. A file that no longer parses
    /// is logged and the keys read before stay in force.
    pub fn reload_if_changed(&self) {
        let Some(path) = &self.path else {
            return;
        };
        let now = Self::stamp(path);
        let before = *self
            .read_stamp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now.is_none() || now == before {
            return;
        }
        match self.reload() {
            Ok(n) => tracing::info!(keys = n, path = %path.display(), "API keys reloaded"),
            Err(e) => {
                tracing::error!(error = %crate::errors::error_chain(&e), "API keys file not reloaded; the keys read before stay in force");
                // Do not retry a broken file every tick: wait for its next change.
                *self
                    .read_stamp
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
            }
        }
    }

    /// Whether `key` opens `style` (its base name: a key for `osm` opens `osm@2x`).
    pub fn check(&self, key: &str, style: &str) -> Result<(), Denied> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match keys.get(key) {
            None => Err(Denied::UnknownKey),
            Some(None) => Ok(()),
            Some(Some(styles)) if styles.iter().any(|s| s == style) => Ok(()),
            Some(Some(_)) => Err(Denied::KeyNotForStyle),
        }
    }
}

fn parse_keys(text: &str) -> Result<Grants, (usize, String)> {
    let mut grants = Grants::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let key = fields.next().unwrap_or_default();
        // URL-safe, so `?key=` needs no percent-encoding.
        let url_safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if key.len() < 8 || !key.bytes().all(url_safe) {
            return Err((
                i + 1,
                "a key is at least 8 characters of A-Z a-z 0-9 - . _ ~".into(),
            ));
        }
        let styles = fields.next().map(|list| {
            list.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        });
        if fields.next().is_some() {
            return Err((i + 1, "expected `KEY [style,style...]`".into()));
        }
        grants.insert(key.to_string(), styles);
    }
    Ok(grants)
}

/// Whether a request from `origin` (`scheme://host[:port]`, from `Origin` or the start
/// of `Referer`; `None` when it sent neither) may use a style with these rules.
pub fn origin_allowed(access: &StyleAccess, origin: Option<&str>) -> bool {
    if access.referers.is_empty() {
        return true;
    }
    let Some(origin) = origin else {
        return access.allow_missing_referer;
    };
    let origin = origin.to_ascii_lowercase();
    access.referers.iter().any(|allowed| {
        let allowed = allowed.to_ascii_lowercase();
        match allowed.split_once("://*.") {
            // `https://*.example.com`: any subdomain, same scheme.
            Some((scheme, domain)) => origin
                .strip_prefix(scheme)
                .and_then(|rest| rest.strip_prefix("://"))
                .is_some_and(|host| {
                    host.strip_suffix(domain)
                        .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1)
                }),
            None => origin == allowed,
        }
    })
}

/// `scheme://host[:port]` of a `Referer` URL.
pub fn referer_origin(referer: &str) -> Option<&str> {
    let scheme_end = referer.find("://")? + 3;
    let rest = &referer[scheme_end..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&referer[..scheme_end + end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn keys_open_the_styles_they_name() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "# partner keys\nallstyles-0001\nosmonly-0002 osm,topo  # two styles"
        )
        .unwrap();
        let keys = ApiKeys::load(f.path()).unwrap();
        assert_eq!(keys.check("allstyles-0001", "anything"), Ok(()));
        assert_eq!(keys.check("osmonly-0002", "osm"), Ok(()));
        assert_eq!(
            keys.check("osmonly-0002", "other"),
            Err(Denied::KeyNotForStyle)
        );
        assert_eq!(keys.check("nope-nope-nope", "osm"), Err(Denied::UnknownKey));
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "first-key-123\n").unwrap();
        let keys = ApiKeys::load(&path).unwrap();
        std::fs::write(&path, "second-key-4567\n").unwrap();
        keys.reload_if_changed();
        assert_eq!(keys.check("second-key-4567", "osm"), Ok(()));
        assert_eq!(keys.check("first-key-123", "osm"), Err(Denied::UnknownKey));
        std::fs::write(&path, "short\n").unwrap();
        keys.reload_if_changed();
        assert_eq!(keys.check("second-key-4567", "osm"), Ok(()));
    }

    #[test]
    fn origins_match_exactly_or_by_subdomain() {
        let access = StyleAccess {
            key_required: false,
            referers: vec![
                "https://maps.example.com".into(),
                "https://*.example.org".into(),
            ],
            allow_missing_referer: false,
        };
        assert!(origin_allowed(&access, Some("https://maps.example.com")));
        assert!(origin_allowed(&access, Some("https://a.b.example.org")));
        assert!(!origin_allowed(&access, Some("https://example.org")));
        assert!(!origin_allowed(&access, Some("https://evilexample.org")));
        assert!(!origin_allowed(&access, Some("http://maps.example.com")));
        assert!(!origin_allowed(
            &access,
            Some("https://maps.example.com.evil.net")
        ));
        assert!(!origin_allowed(&access, None));
        assert!(origin_allowed(&StyleAccess::default(), None));
        assert_eq!(
            referer_origin("https://maps.example.com/city/?z=3"),
            Some("https://maps.example.com")
        );
        assert_eq!(
            referer_origin("https://a.example:8080"),
            Some("https://a.example:8080")
        );
    }
}
