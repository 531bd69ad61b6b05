//! Dependencies run one way (STYLE.md, "Layout"): every `crate::` path in `src/` is
//! checked against the layer table below, so an import against the direction fails
//! here, naming the file and the line, before it becomes a cycle. Only the command-line
//! layer knows clap and only `http` knows actix-web.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may use. Anything not listed may not be
/// used; `lib.rs` (module declarations only) and `main.rs` (the binary, outside the
/// crate) are not checked.
const ALLOWED: &[(&str, &[&str])] = &[
    ("tile", &[]),
    ("errors", &[]),
    ("text", &[]),
    ("archive", &["errors", "tile"]),
    ("area", &["errors", "tile"]),
    ("style", &["errors", "archive", "tile", "text"]),
    ("cache", &["errors", "tile"]),
    ("queue", &["errors", "tile"]),
    ("source", &["errors", "style", "tile"]),
    ("render", &["errors", "source", "style", "text", "tile"]),
    ("expire", &["errors", "area", "cache", "tile"]),
    ("purge", &["errors", "tile"]),
    (
        "watch",
        &[
            "errors", "expire", "area", "source", "style", "cache", "tile",
        ],
    ),
    (
        "fleet",
        &[
            "errors", "expire", "area", "source", "style", "cache", "tile",
        ],
    ),
    (
        "service",
        &[
            "errors", "queue", "render", "cache", "source", "style", "expire", "area", "watch",
            "fleet", "text", "archive", "tile", "purge",
        ],
    ),
    (
        "config",
        &[
            "errors", "queue", "render", "cache", "source", "style", "expire", "area", "watch",
            "fleet", "text", "archive", "tile", "purge",
        ],
    ),
    (
        "http",
        &[
            "errors", "service", "queue", "render", "cache", "source", "style", "expire", "area",
            "watch", "fleet", "text", "archive", "tile", "purge",
        ],
    ),
    (
        "app",
        &[
            "errors", "config", "http", "service", "queue", "render", "cache", "source", "style",
            "expire", "area", "watch", "fleet", "text", "archive", "tile", "purge",
        ],
    ),
    (
        "cli",
        &[
            "errors", "app", "config", "service", "queue", "render", "cache", "source", "style",
            "expire", "area", "watch", "fleet", "text", "archive", "tile", "purge",
        ],
    ),
];

/// Outside crates that only one layer may name.
const CONFINED_CRATES: &[(&str, &[&str])] = &[
    ("clap", &["cli"]),
    ("actix_web", &["http"]),
    ("rusqlite", &["archive"]),
    ("pmtiles", &["archive"]),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/cache/disk.rs` -> `cache`,
/// `src/app.rs` -> `app`); `None` for `lib.rs` and `main.rs`.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src_dir()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The modules named by `crate::` paths in one line of code, `crate::{a, b::c}` included.
fn crate_modules(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
        rest = after;
    }
    found
}

/// Lines of code: comments dropped (a doc link to a higher module is not a dependency).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        (!code.trim().is_empty()).then_some((i + 1, code))
    })
}

fn violations() -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let shown = file.strip_prefix(src_dir()).unwrap_or(&file).display();
        let Some(may_use) = allowed.get(module.as_str()) else {
            out.push(format!(
                "src/{shown}: module `{module}` is not in the layer table"
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read source");
        for (line_no, code) in code_lines(&text) {
            for used in crate_modules(code) {
                if used != module && !may_use.contains(&used.as_str()) {
                    out.push(format!(
                        "src/{shown}:{line_no}: `{module}` uses `crate::{used}`, against the layering"
                    ));
                }
            }
            for (krate, owners) in CONFINED_CRATES {
                let named = code.contains(&format!("{krate}::"))
                    || code.trim_start().starts_with(&format!("use {krate}"));
                if named && !owners.contains(&module.as_str()) {
                    out.push(format!(
                        "src/{shown}:{line_no}: `{module}` uses the `{krate}` crate, which belongs to {owners:?}"
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn dependencies_run_one_way() {
    let found = violations();
    assert!(
        found.is_empty(),
        "imports against the layering (STYLE.md, Layout):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_plain_imports() {
    assert_eq!(
        crate_modules("use crate::{app::Core, tile::TileCoord};"),
        ["app", "tile"]
    );
    assert_eq!(
        crate_modules("let x = crate::cache::etag_of(b); crate::tile::MAX_ZOOM"),
        ["cache", "tile"]
    );
    assert!(crate_modules("// crate::app in a comment").len() == 1);
    let code: Vec<_> = code_lines("use a; // crate::app\n/// see [`crate::app`]\n").collect();
    assert_eq!(code, [(1, "use a; ")]);
}
