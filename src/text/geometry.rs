//! Small geometry for placement: polylines walked by distance along them, axis-aligned
//! boxes.

/// An axis-aligned box in canvas pixels (y down).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Box2 {
    pub min: (f32, f32),
    pub max: (f32, f32),
}

impl Box2 {
    pub(super) fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Box2 {
        Box2 {
            min: (x0.min(x1), y0.min(y1)),
            max: (x0.max(x1), y0.max(y1)),
        }
    }

    /// The smallest box holding all `points`; None for no points.
    pub(super) fn around(points: impl IntoIterator<Item = (f32, f32)>) -> Option<Box2> {
        let mut points = points.into_iter();
        let (x, y) = points.next()?;
        let mut b = Box2 {
            min: (x, y),
            max: (x, y),
        };
        for (x, y) in points {
            b.min = (b.min.0.min(x), b.min.1.min(y));
            b.max = (b.max.0.max(x), b.max.1.max(y));
        }
        Some(b)
    }

    pub(super) fn grow(self, by: f32) -> Box2 {
        Box2 {
            min: (self.min.0 - by, self.min.1 - by),
            max: (self.max.0 + by, self.max.1 + by),
        }
    }

    pub(super) fn is_finite(&self) -> bool {
        [self.min.0, self.min.1, self.max.0, self.max.1]
            .iter()
            .all(|v| v.is_finite())
    }

    pub(super) fn inside(&self, outer: &Box2) -> bool {
        self.min.0 >= outer.min.0
            && self.min.1 >= outer.min.1
            && self.max.0 <= outer.max.0
            && self.max.1 <= outer.max.1
    }
}

/// A polyline with the distance along it at each vertex. Zero-length segments are
/// dropped.
#[derive(Debug, Clone)]
pub(crate) struct MeasuredLine {
    points: Vec<(f32, f32)>,
    /// `dist[i]` = length of the line from `points[0]` to `points[i]`.
    dist: Vec<f32>,
}

impl MeasuredLine {
    /// None when the line has a non-finite coordinate or length, or no length.
    pub(super) fn new(line: &[(f32, f32)]) -> Option<MeasuredLine> {
        let mut points: Vec<(f32, f32)> = Vec::with_capacity(line.len());
        let mut dist = Vec::with_capacity(line.len());
        for &(x, y) in line {
            if !x.is_finite() || !y.is_finite() {
                return None;
            }
            match points.last() {
                None => {
                    points.push((x, y));
                    dist.push(0.0);
                }
                Some(&(px, py)) => {
                    let d = ((x - px).powi(2) + (y - py).powi(2)).sqrt();
                    if d > 1e-4 {
                        let total = dist.last().copied().unwrap_or(0.0) + d;
                        if !total.is_finite() {
                            return None;
                        }
                        points.push((x, y));
                        dist.push(total);
                    }
                }
            }
        }
        if points.len() < 2 {
            return None;
        }
        Some(MeasuredLine { points, dist })
    }

    pub(super) fn length(&self) -> f32 {
        self.dist.last().copied().unwrap_or(0.0)
    }

    /// The same line walked from its other end.
    pub(super) fn reversed(&self) -> MeasuredLine {
        let total = self.length();
        MeasuredLine {
            points: self.points.iter().rev().copied().collect(),
            dist: self.dist.iter().rev().map(|d| total - d).collect(),
        }
    }

    /// The point at distance `s` along the line (clamped to its ends).
    pub(super) fn point_at(&self, s: f32) -> (f32, f32) {
        let s = s.clamp(0.0, self.length());
        // The segment [i, i+1] with dist[i] <= s <= dist[i+1].
        let i = match self.dist.partition_point(|&d| d <= s) {
            0 => 0,
            n => (n - 1).min(self.points.len() - 2),
        };
        let (a, b) = (self.points[i], self.points[i + 1]);
        let len = self.dist[i + 1] - self.dist[i];
        let t = if len > 0.0 {
            (s - self.dist[i]) / len
        } else {
            0.0
        };
        (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
    }
}

/// The signed difference `b - a` of two angles in radians, in (-pi, pi].
pub(crate) fn angle_between(a: f32, b: f32) -> f32 {
    let mut d = (b - a) % std::f32::consts::TAU;
    if d > std::f32::consts::PI {
        d -= std::f32::consts::TAU;
    } else if d <= -std::f32::consts::PI {
        d += std::f32::consts::TAU;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn points_along_a_polyline_are_found_by_distance() {
        let line =
            MeasuredLine::new(&[(0.0, 0.0), (10.0, 0.0), (10.0, 0.0), (10.0, 20.0)]).expect("line");
        assert_eq!(line.length(), 30.0);
        assert_eq!(line.point_at(5.0), (5.0, 0.0));
        assert_eq!(line.point_at(10.0), (10.0, 0.0));
        assert_eq!(line.point_at(25.0), (10.0, 15.0));
        assert_eq!(line.point_at(99.0), (10.0, 20.0));
        assert_eq!(line.point_at(-1.0), (0.0, 0.0));
    }

    #[test]
    fn degenerate_lines_are_rejected() {
        assert!(MeasuredLine::new(&[]).is_none());
        assert!(MeasuredLine::new(&[(1.0, 1.0), (1.0, 1.0)]).is_none());
        assert!(MeasuredLine::new(&[(0.0, 0.0), (f32::NAN, 1.0)]).is_none());
        assert!(MeasuredLine::new(&[(-3e38, 0.0), (3e38, 0.0)]).is_none());
    }

    #[test]
    fn angle_differences_wrap_around_the_circle() {
        let deg = |d: f32| d.to_radians();
        assert!((angle_between(deg(170.0), deg(-170.0)) - deg(20.0)).abs() < 1e-5);
        assert!((angle_between(deg(-170.0), deg(170.0)) + deg(20.0)).abs() < 1e-5);
        assert!((angle_between(deg(10.0), deg(40.0)) - deg(30.0)).abs() < 1e-5);
    }

    proptest! {
        #[test]
        fn a_reversed_line_has_the_same_points_from_the_other_end(
            pts in proptest::collection::vec((-500.0f32..500.0, -500.0f32..500.0), 2..8),
            t in 0.0f32..1.0,
        ) {
            if let Some(line) = MeasuredLine::new(&pts) {
                let rev = line.reversed();
                let s = t * line.length();
                let (a, b) = (line.point_at(s), rev.point_at(line.length() - s));
                prop_assert!((a.0 - b.0).abs() < 1e-2 && (a.1 - b.1).abs() < 1e-2, "{a:?} {b:?}");
            }
        }

        #[test]
        fn the_distance_between_two_points_on_a_line_is_at_most_their_path_distance(
            pts in proptest::collection::vec((-500.0f32..500.0, -500.0f32..500.0), 2..8),
            t0 in 0.0f32..1.0, t1 in 0.0f32..1.0,
        ) {
            if let Some(line) = MeasuredLine::new(&pts) {
                let (s0, s1) = (t0 * line.length(), t1 * line.length());
                let (a, b) = (line.point_at(s0), line.point_at(s1));
                let chord = ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
                prop_assert!(chord <= (s1 - s0).abs() + 1e-2);
            }
        }
    }
}
