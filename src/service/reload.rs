//! Style hot reload (SIGHUP, `POST /styles/reload`, or `styles.watch`): every style
//! file is read, validated, checked for its fonts and prepared against the database
//! again. A file that fails is refused with an error line and a count, and its styles
//! as they were keep serving; the others are replaced at once for new requests and new
//! renders (a render in flight finishes with the style it started with). A style whose
//! file changed becomes stale: its cached metatiles are served (with the short stale
//! max-age) and re-rendered on their next request, and caches downstream are told (its
//! style key); nothing is deleted. Its version, in the TileJSON tile URL, changes.

use super::TileService;
use crate::purge::Change;
use crate::source::PostgisSource;
use crate::style::{load_file, style_files, Style, StyleError, StyleSet};
use crate::text::FontSet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// What a reload did, per style (and per refused file).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Files whose new text was refused: `{file, error}`; their styles keep serving.
    pub refused: Vec<RefusedFile>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RefusedFile {
    pub file: String,
    pub error: String,
}

/// Reloads the styles of one folder into a [`TileService`]. One reload at a time.
pub struct StyleReloader {
    dir: PathBuf,
    fonts: Arc<FontSet>,
    source: PostgisSource,
    service: Arc<TileService>,
    running: tokio::sync::Mutex<()>,
}

impl StyleReloader {
    pub fn new(
        dir: PathBuf,
        fonts: Arc<FontSet>,
        source: PostgisSource,
        service: Arc<TileService>,
    ) -> Self {
        Self {
            dir,
            fonts,
            source,
            service,
            running: tokio::sync::Mutex::new(()),
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Reads the folder again and serves what passes; see the module docs.
    pub async fn reload(&self) -> ReloadReport {
        let _one = self.running.lock().await;
        let old = self.service.styles();
        let mut report = ReloadReport::default();
        let files = match style_files(&self.dir) {
            Ok(files) => files,
            Err(e) => {
                tracing::error!(error = %e, "style reload refused: cannot list the styles; the old ones keep serving");
                report.refused.push(RefusedFile {
                    file: self.dir.display().to_string(),
                    error: e.to_string(),
                });
                self.count(&old.iter().cloned().collect::<Vec<_>>(), "refused");
                return report;
            }
        };
        let mut next = StyleSet::default();
        for file in files {
            let styles = match self.check(&file).await {
                Ok(styles) => styles,
                Err(error) => {
                    // The file's styles as they were keep serving.
                    let kept: Vec<Arc<Style>> =
                        old.iter().filter(|s| s.file == file).cloned().collect();
                    tracing::error!(file = %file.display(), error = %error, kept = kept.len(), "style refused; its old version keeps serving");
                    self.count(&kept, "refused");
                    report.refused.push(RefusedFile {
                        file: file.display().to_string(),
                        error,
                    });
                    kept.iter().map(|s| Style::clone(s)).collect()
                }
            };
            for style in styles {
                let name = style.name.to_string();
                if let Err(e) = next.insert(style) {
                    tracing::error!(error = %e, "style refused");
                    report.refused.push(RefusedFile {
                        file: file.display().to_string(),
                        error: e.to_string(),
                    });
                    self.service
                        .metrics()
                        .style_reloads
                        .with_label_values(&[&name, "refused"])
                        .inc();
                }
            }
        }
        if next.is_empty() {
            tracing::error!(
                "style reload refused: no style would be left; the old ones keep serving"
            );
            return report;
        }
        let mut stale = Vec::new();
        for style in next.iter() {
            let outcome = match old.get(&style.name) {
                None => "added",
                Some(before) if before.version != style.version => {
                    stale.push(style.name.clone());
                    "changed"
                }
                Some(_) => "unchanged",
            };
            let list = match outcome {
                "added" => &mut report.added,
                "changed" => &mut report.changed,
                _ => &mut report.unchanged,
            };
            list.push(style.name.to_string());
            if outcome != "unchanged" {
                self.count(std::slice::from_ref(style), outcome);
            }
        }
        for gone in old.iter().filter(|s| next.get(&s.name).is_none()) {
            report.removed.push(gone.name.to_string());
            self.count(std::slice::from_ref(gone), "removed");
        }
        self.service.replace_styles(Arc::new(next));
        let now = SystemTime::now();
        for name in stale {
            // Stale from now: served until re-rendered, never deleted.
            if let Err(e) = self.service.cache().set_planet_time(Some(&name), now) {
                tracing::error!(style = %name, error = %crate::errors::error_chain(&e), "cannot mark the changed style's tiles stale");
            }
            self.service.purger().changed(Change::Style(name));
        }
        tracing::info!(
            changed = ?report.changed,
            added = ?report.added,
            removed = ?report.removed,
            refused = report.refused.len(),
            "styles reloaded"
        );
        report
    }

    /// A file's styles, validated, with their fonts and SQL checked; or why not.
    async fn check(&self, file: &std::path::Path) -> Result<Vec<Style>, String> {
        let styles = load_file(file).map_err(|e: StyleError| e.to_string())?;
        for style in &styles {
            style.check_fonts(&self.fonts).map_err(|e| e.to_string())?;
            self.source
                .check_style(style)
                .await
                .map_err(|e| crate::errors::error_chain(&e))?;
        }
        Ok(styles)
    }

    fn count(&self, styles: &[Arc<Style>], outcome: &str) {
        for style in styles {
            self.service
                .metrics()
                .style_reloads
                .with_label_values(&[style.name.as_str(), outcome])
                .inc();
        }
    }
}

/// What the watched folder looked like: each style file's length and mtime.
pub fn folder_stamp(dir: &std::path::Path) -> BTreeMap<PathBuf, (u64, Option<SystemTime>)> {
    style_files(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| {
            let md = std::fs::metadata(&f).ok()?;
            Some((f, (md.len(), md.modified().ok())))
        })
        .collect()
}
