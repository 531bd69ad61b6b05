//! The validated name of a style: the one string from a URL that reaches a file path.

use thiserror::Error;

/// Longest accepted style name, in bytes.
pub(super) const MAX_STYLE_NAME_LEN: usize = 64;

/// Why a style name was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StyleNameError {
    #[error("style name is empty")]
    Empty,
    #[error("style name is longer than {MAX_STYLE_NAME_LEN} bytes")]
    TooLong,
    #[error("style name {0:?} may only hold ASCII letters, digits, '_', '-' and '@' (not first)")]
    BadCharacter(String),
}

/// A style name made only of `[A-Za-z0-9_-]` and `@` (for `name@2x` variants), not
/// starting with `-` or `@`. It can never be `.`, `..`, hold a `/` or a `%`, so joining
/// it to the cache directory always stays inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StyleName(String);

impl StyleName {
    pub fn parse(name: &str) -> Result<Self, StyleNameError> {
        Self::check(name)?;
        Ok(Self(name.to_string()))
    }

    /// Whether `name` would parse, without allocating.
    pub fn check(name: &str) -> Result<(), StyleNameError> {
        if name.is_empty() {
            return Err(StyleNameError::Empty);
        }
        if name.len() > MAX_STYLE_NAME_LEN {
            return Err(StyleNameError::TooLong);
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '@';
        let first_ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok || !name.chars().all(allowed) {
            return Err(StyleNameError::BadCharacter(name.to_string()));
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for StyleName {
    type Err = StyleNameError;
    fn from_str(name: &str) -> Result<Self, StyleNameError> {
        Self::parse(name)
    }
}

impl std::fmt::Display for StyleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<std::path::Path> for StyleName {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_a_directory_are_refused() {
        for bad in [
            "", "..", ".", "a/b", "%2e%2e", "-x", "@2x", "a b", "é", "a\0",
        ] {
            assert!(StyleName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["osm", "osm@2x", "my_style-2", "OSM"] {
            assert_eq!(StyleName::parse(good).unwrap().as_str(), good);
        }
        assert_eq!(
            StyleName::parse(&"a".repeat(65)),
            Err(StyleNameError::TooLong)
        );
    }
}
