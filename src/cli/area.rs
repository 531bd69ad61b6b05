//! The area arguments that seed, export and expire share (`--bbox` or `--polygon`), read
//! into one [`Area`], and the fallback to the import's recorded bounds.

use crate::app::Core;
use crate::area::{Area, AreaFileError, LonLatBbox};
use crate::config::UsageError;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub(super) struct AreaArgs {
    /// MINLON,MINLAT,MAXLON,MAXLAT in degrees.
    #[arg(long, allow_hyphen_values = true)]
    pub bbox: Option<LonLatBbox>,
    /// GeoJSON file with a Polygon or MultiPolygon (EPSG:4326) instead of a bbox.
    #[arg(long, value_name = "FILE", conflicts_with = "bbox")]
    pub polygon: Option<PathBuf>,
}

impl AreaArgs {
    /// The area given on the command line, if any (a polygon file is read here).
    pub(super) fn given(&self) -> Result<Option<Area>, AreaFileError> {
        match (self.bbox, &self.polygon) {
            (Some(bbox), _) => Ok(Some(Area::Bbox(bbox))),
            (None, Some(file)) => Area::from_geojson_file(file).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// As [`AreaArgs::given`], a bad polygon file being a usage error.
    pub(super) fn given_or_usage(&self) -> Result<Option<Area>, UsageError> {
        self.given()
            .map_err(|e| UsageError(format!("--polygon: {}", crate::errors::error_chain(&e))))
    }
}

/// The area given, else the bounds of the import recorded in the database.
pub(super) fn given_or_import_bounds(given: Option<Area>, core: &Core) -> Result<Area, UsageError> {
    match (given, &core.import) {
        (Some(area), _) => Ok(area),
        (None, Some(info)) => Area::bbox(info.bounds)
            .map_err(|e| UsageError(format!("the recorded import bounds: {e}"))),
        (None, None) => Err(UsageError(
            "--bbox or --polygon is needed: no import bounds are recorded".into(),
        )),
    }
}
