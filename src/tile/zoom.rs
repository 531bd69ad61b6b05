//! [`ZoomRange`]: an inclusive, ordered range of zooms within [`MAX_ZOOM`], parsed once
//! from `A-B` (or `A`) where it enters.

use super::MAX_ZOOM;
use std::str::FromStr;
use thiserror::Error;

/// `min..=max`, both at most [`MAX_ZOOM`], `min <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ZoomRange {
    min: u8,
    max: u8,
}

/// Why a zoom range was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ZoomRangeError {
    #[error("zoom {0:?} must be a whole number from 0 to {MAX_ZOOM}")]
    NotAZoom(String),
    #[error("zoom range {min}-{max} is reversed")]
    Reversed { min: u8, max: u8 },
}

impl ZoomRange {
    pub fn new(min: u8, max: u8) -> Result<Self, ZoomRangeError> {
        for z in [min, max] {
            if z > MAX_ZOOM {
                return Err(ZoomRangeError::NotAZoom(z.to_string()));
            }
        }
        if min > max {
            return Err(ZoomRangeError::Reversed { min, max });
        }
        Ok(Self { min, max })
    }

    pub fn min(self) -> u8 {
        self.min
    }

    pub fn max(self) -> u8 {
        self.max
    }

    /// The zooms of both ranges, or `None` when they do not overlap.
    pub fn intersect(self, other: ZoomRange) -> Option<ZoomRange> {
        let (min, max) = (self.min.max(other.min), self.max.min(other.max));
        (min <= max).then_some(ZoomRange { min, max })
    }

    pub fn contains(self, z: u8) -> bool {
        (self.min..=self.max).contains(&z)
    }

    pub fn iter(self) -> std::ops::RangeInclusive<u8> {
        self.min..=self.max
    }
}

impl std::fmt::Display for ZoomRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// `A-B`, or `A` for one zoom.
impl FromStr for ZoomRange {
    type Err = ZoomRangeError;
    fn from_str(text: &str) -> Result<Self, ZoomRangeError> {
        let (a, b) = match text.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (text.trim(), text.trim()),
        };
        let zoom = |s: &str| {
            s.parse::<u8>()
                .ok()
                .filter(|z| *z <= MAX_ZOOM)
                .ok_or_else(|| ZoomRangeError::NotAZoom(s.to_string()))
        };
        Self::new(zoom(a)?, zoom(b)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoom_ranges_parse_or_say_why_not() {
        assert_eq!("10-14".parse(), ZoomRange::new(10, 14));
        assert_eq!("7".parse(), ZoomRange::new(7, 7));
        let reason = |t: &str| t.parse::<ZoomRange>().unwrap_err().to_string();
        assert!(reason("14-10").contains("reversed"));
        assert!(reason("0-25").contains("from 0 to 20"));
        assert!(reason("x").contains("whole number"));
        let r = ZoomRange::new(10, 14).unwrap();
        assert_eq!(
            r.intersect(ZoomRange::new(12, 20).unwrap()),
            ZoomRange::new(12, 14).ok()
        );
        assert_eq!(r.intersect(ZoomRange::new(15, 20).unwrap()), None);
        assert_eq!(r.to_string(), "10-14");
    }
}
