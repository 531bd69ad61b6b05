//! [`Fault`]: failures caused outside the server (the database, a full disk, missing
//! permissions, an I/O error), told apart from bugs by the types in an error's cause
//! chain. A fault is worth a retry (503 + Retry-After); anything else is a bug (500).

use crate::cache::CacheError;
use crate::source::{SourceError, Unavailable};
use std::error::Error;
use std::io;

/// Linux errno values of a full or read-only disk (std's `ErrorKind`s for them are
/// newer than the crate's minimum Rust).
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;
const EROFS: i32 = 30;

/// What outside the server failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// PostgreSQL is unreachable, silent, or could not run a query now.
    Database,
    /// No space (or quota) left for the cache.
    DiskFull,
    /// The cache cannot be written or read for lack of permissions, or is read-only.
    Permission,
    /// Another I/O error of the cache's file system.
    Io,
}

impl Fault {
    pub const ALL: [Fault; 4] = [
        Fault::Database,
        Fault::DiskFull,
        Fault::Permission,
        Fault::Io,
    ];

    /// The `cause` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Database => "database",
            Fault::DiskFull => "disk_full",
            Fault::Permission => "permission",
            Fault::Io => "io",
        }
    }

    /// The first fault in `e`'s cause chain, if any: the outermost error that knows
    /// what it is decides (a database error's socket error is a database fault).
    pub fn of(e: &(dyn Error + 'static)) -> Option<Fault> {
        let mut current = Some(e);
        while let Some(e) = current {
            if let Some(source) = e.downcast_ref::<SourceError>() {
                return source.is_database_fault().then_some(Fault::Database);
            }
            if e.downcast_ref::<Unavailable>().is_some() {
                return Some(Fault::Database);
            }
            if let Some(cache) = e.downcast_ref::<CacheError>() {
                return match cache {
                    CacheError::Io { source, .. } => Some(Fault::of_io(source)),
                    _ => None,
                };
            }
            if let Some(io) = e.downcast_ref::<io::Error>() {
                return Some(Fault::of_io(io));
            }
            current = e.source();
        }
        None
    }

    fn of_io(e: &io::Error) -> Fault {
        match e.raw_os_error() {
            Some(ENOSPC | EDQUOT) => Fault::DiskFull,
            Some(EROFS) => Fault::Permission,
            _ if e.kind() == io::ErrorKind::PermissionDenied => Fault::Permission,
            _ => Fault::Io,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::RenderFailure;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::SystemTime;

    fn io_failure(errno: i32) -> RenderFailure {
        RenderFailure::caused_by(
            "storing the metatile",
            CacheError::Io {
                action: "write",
                path: PathBuf::from("/cache/osm/1.meta"),
                source: io::Error::from_raw_os_error(errno),
            },
        )
    }

    #[test]
    fn disk_and_permission_errors_are_faults_by_their_errno() {
        assert_eq!(Fault::of(&io_failure(ENOSPC)), Some(Fault::DiskFull));
        assert_eq!(Fault::of(&io_failure(EDQUOT)), Some(Fault::DiskFull));
        assert_eq!(Fault::of(&io_failure(13)), Some(Fault::Permission));
        assert_eq!(Fault::of(&io_failure(EROFS)), Some(Fault::Permission));
        assert_eq!(Fault::of(&io_failure(5)), Some(Fault::Io));
    }

    #[test]
    fn an_unavailable_database_is_a_fault_and_a_panic_is_not() {
        let unavailable = Unavailable {
            since: SystemTime::now(),
            cause: Arc::from("connection refused"),
        };
        let failure = RenderFailure::caused_by("the metatile's data", unavailable);
        assert_eq!(Fault::of(&failure), Some(Fault::Database));
        assert_eq!(
            Fault::of(&RenderFailure::new("the renderer panicked")),
            None
        );
        let bad_sql = RenderFailure::caused_by(
            "the metatile's data",
            SourceError::Columns {
                style: crate::tile::StyleName::parse("osm").unwrap(),
                layer: "roads".into(),
                message: "no geom".into(),
            },
        );
        assert_eq!(Fault::of(&bad_sql), None);
    }
}
