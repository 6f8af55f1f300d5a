//! Masks to polygons for the formats that want outlines (COCO on request, YOLO-seg, LabelMe).
//!
//! The outline is traced by marching squares (the `contour` crate, d3-contour's algorithm) in
//! image coordinates where pixel `(x, y)` covers `[x, x+1] x [y, y+1]`, as COCO's boxes and
//! YOLO's normalised coordinates read them: the outline runs along pixel edges with each corner
//! cut by half a pixel, so every pixel centre of the mask lies inside it and every other one
//! outside. Diagonal neighbours are separate pieces here (8-connected regions may give several
//! parts). Each ring is then simplified by Douglas–Peucker (Douglas & Peucker 1973) with
//! [`TOLERANCE`]; a ring that this would leave with under three corners, or change in area by
//! more than 5 % (a line one pixel wide), only loses the points of its straight runs.
//!
//! Holes are interior rings of their part. Formats with one ring a shape join them: each hole is
//! cut into its outer ring by a zero-width bridge to its nearest vertex (a keyhole), which
//! pycocotools', OpenCV's and Pillow's polygon fills all leave empty; YOLO's one line an
//! object joins its parts the same way (as ultralytics' own COCO converter does).

use contour::ContourBuilder;

use crate::segment::objects::RunMask;

/// Douglas–Peucker's tolerance, in pixels: a dropped corner lies within half a pixel of the
/// simplified outline, so straight edges and even staircases become single segments while the
/// outline stays within the pixels it passes.
pub const TOLERANCE: f64 = 0.5;

/// The share of a ring's area simplification may change before the ring keeps its corners.
const MAX_AREA_CHANGE: f64 = 0.05;

pub type Ring = Vec<[f64; 2]>;

/// One piece of a mask: its outer ring and its holes, each closed (last point = first).
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub outer: Ring,
    pub holes: Vec<Ring>,
}

/// Twice the signed area (shoelace) of a closed ring.
fn signed_area2(ring: &[[f64; 2]]) -> f64 {
    ring.windows(2).map(|p| p[0][0] * p[1][1] - p[1][0] * p[0][1]).sum()
}

/// Whether `point` is inside the closed `ring` (even-odd).
fn inside(ring: &[[f64; 2]], point: [f64; 2]) -> bool {
    let mut odd = false;
    for p in ring.windows(2) {
        let ([x0, y0], [x1, y1]) = (p[0], p[1]);
        if (y0 > point[1]) != (y1 > point[1]) && point[0] < x0 + (point[1] - y0) / (y1 - y0) * (x1 - x0) {
            odd = !odd;
        }
    }
    odd
}

/// The mask's parts, outlined and simplified with `tolerance` pixels (0: as traced, collinear
/// points dropped), largest first.
pub fn parts(mask: &RunMask, tolerance: f64) -> Vec<Part> {
    if mask.area() == 0 {
        return Vec::new();
    }
    // Trace inside the box only, with a margin of one pixel so that no outline runs along the
    // grid's edge.
    let [x0, y0, x1, y1] = mask.bbox();
    let (w, h) = (x1 - x0 + 3, y1 - y0 + 3);
    let mut values = vec![0.0; w * h];
    for &(start, n) in mask.runs() {
        let (y, x) = (start as usize / mask.width, start as usize % mask.width);
        let row = (y - y0 + 1) * w + (x - x0 + 1);
        values[row..row + n as usize].fill(1.0);
    }
    let traced = ContourBuilder::new(w, h, false).contours(&values, &[0.5]).map(|c| c.into_iter().next());
    let Ok(Some(contour)) = traced else { return Vec::new() };
    let shift = |ring: &[contour::Pt]| -> Ring {
        ring.iter().map(|p| [p.x + x0 as f64 - 1.0, p.y + y0 as f64 - 1.0]).collect()
    };
    // Every ring, outer or hole, then each hole given to the smallest outer ring around it (the
    // crate gives it to the first, which is wrong for a hole of an island inside another hole).
    let mut outers: Vec<Ring> = Vec::new();
    let mut holes: Vec<Ring> = Vec::new();
    for polygon in &contour.geometry().0 {
        outers.push(shift(&polygon.exterior().0));
        holes.extend(polygon.interiors().iter().map(|ring| shift(&ring.0)));
    }
    let mut found: Vec<Part> = outers.into_iter().map(|outer| Part { outer, holes: Vec::new() }).collect();
    for hole in holes {
        let probe = hole[0];
        let owner = (0..found.len())
            .filter(|&k| inside(&found[k].outer, probe) || found[k].outer.contains(&probe))
            .min_by(|&a, &b| signed_area2(&found[a].outer).abs().total_cmp(&signed_area2(&found[b].outer).abs()));
        if let Some(k) = owner {
            found[k].holes.push(hole);
        }
    }
    for part in &mut found {
        part.outer = oriented(simplify(&part.outer, tolerance), true);
        for hole in &mut part.holes {
            *hole = oriented(simplify(hole, tolerance), false);
        }
    }
    found.sort_by(|a, b| signed_area2(&b.outer).total_cmp(&signed_area2(&a.outer)));
    found
}

/// The ring turned so that its shoelace area is positive for an outer ring (clockwise on the
/// screen, y pointing down) and negative for a hole.
fn oriented(mut ring: Ring, outer: bool) -> Ring {
    if (signed_area2(&ring) > 0.0) != outer {
        ring.reverse();
    }
    ring
}

/// Distance from `p` to the segment `a`–`b`.
fn distance(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 { 0.0 } else { (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0) };
    ((p[0] - a[0] - t * dx).powi(2) + (p[1] - a[1] - t * dy).powi(2)).sqrt()
}

/// Douglas–Peucker on a closed ring: split at the point farthest from the first, simplify both
/// open halves; the traced ring is kept when fewer than three corners would remain.
pub fn simplify(ring: &[[f64; 2]], tolerance: f64) -> Ring {
    let n = ring.len();
    if n < 4 {
        return ring.to_vec();
    }
    let far = (1..n - 1).max_by(|&a, &b| {
        let d = |k: usize| (ring[k][0] - ring[0][0]).powi(2) + (ring[k][1] - ring[0][1]).powi(2);
        d(a).total_cmp(&d(b))
    });
    let far = far.unwrap_or(n / 2);
    let mut keep = vec![false; n];
    (keep[0], keep[far], keep[n - 1]) = (true, true, true);
    // An explicit stack of open stretches, so a long outline cannot exhaust the call stack.
    let mut stack = vec![(0, far), (far, n - 1)];
    while let Some((a, b)) = stack.pop() {
        let worst = (a + 1..b).map(|k| (k, distance(ring[k], ring[a], ring[b]))).max_by(|x, y| x.1.total_cmp(&y.1));
        if let Some((k, d)) = worst
            && d > tolerance.max(1e-9)
        {
            keep[k] = true;
            stack.extend([(a, k), (k, b)]);
        }
    }
    let simplified: Ring = (0..n).filter(|&k| keep[k]).map(|k| ring[k]).collect();
    // A thin or tiny ring can lose most of its area to half a pixel (a line one pixel wide
    // becomes a sliver): it keeps every corner instead, dropping only points on straight runs.
    let (before, after) = (signed_area2(ring).abs(), signed_area2(&simplified).abs());
    if simplified.len() >= 4 && (after - before).abs() <= MAX_AREA_CHANGE * before {
        simplified
    } else if tolerance > 0.0 {
        simplify(ring, 0.0)
    } else {
        ring.to_vec()
    }
}

/// One closed ring holding the part and its holes, each hole joined to the ring so far by a
/// zero-width bridge between their nearest vertices.
pub fn keyhole(part: &Part) -> Ring {
    let mut ring = part.outer.clone();
    for hole in &part.holes {
        ring = bridge(&ring, hole);
    }
    ring
}

/// `rings` as one ring, each joined to the ring so far by a zero-width bridge (YOLO's one line
/// an object).
pub fn joined(rings: &[Ring]) -> Ring {
    let mut all = rings.iter();
    let first = all.next().cloned().unwrap_or_default();
    all.fold(first, |ring, next| bridge(&ring, next))
}

/// `ring`, then from its vertex nearest to `other` round `other` (closed) and back.
fn bridge(ring: &[[f64; 2]], other: &[[f64; 2]]) -> Ring {
    if other.len() < 2 {
        return ring.to_vec();
    }
    let open = &other[..other.len() - 1];
    let mut best = (0, 0, f64::INFINITY);
    for (i, a) in ring.iter().enumerate() {
        for (j, b) in open.iter().enumerate() {
            let d = (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2);
            if d < best.2 {
                best = (i, j, d);
            }
        }
    }
    let (i, j, _) = best;
    let mut out: Ring = ring[..=i].to_vec();
    out.extend(open[j..].iter().chain(&open[..j]).copied());
    out.push(open[j]);
    out.extend_from_slice(&ring[i..]);
    out
}

/// A ring as the flat `[x0, y0, x1, y1, ...]` list COCO and LabelMe-like formats hold, without
/// the closing point, each coordinate rounded to 1/100 pixel.
pub fn flat(ring: &[[f64; 2]]) -> Vec<f64> {
    let open = if ring.len() > 1 && ring.first() == ring.last() { &ring[..ring.len() - 1] } else { ring };
    open.iter().flat_map(|p| [round2(p[0]), round2(p[1])]).collect()
}

pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(ring: &[[f64; 2]], w: usize, h: usize) -> Vec<u8> {
        (0..w * h).map(|i| u8::from(inside(ring, [(i % w) as f64 + 0.5, (i / w) as f64 + 0.5]))).collect()
    }

    #[test]
    fn a_ring_with_a_hole_fills_back_to_the_mask() {
        let (w, h) = (12, 10);
        let mut plane = vec![0u8; w * h];
        for y in 1..9 {
            for x in 2..11 {
                plane[y * w + x] = u8::from(!(4..7).contains(&x) || !(3..6).contains(&y));
            }
        }
        let mask = RunMask::from_plane(&plane, w, h);
        let found = parts(&mask, TOLERANCE);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].holes.len(), 1, "{found:?}");
        // Squares stay squares with their corners cut: 8 corners a ring.
        assert_eq!(found[0].outer.len(), 9, "{:?}", found[0].outer);
        assert_eq!(filled(&keyhole(&found[0]), w, h), plane);
    }

    #[test]
    fn a_single_pixel_keeps_its_diamond() {
        let mut plane = vec![0u8; 9];
        plane[4] = 1;
        let found = parts(&RunMask::from_plane(&plane, 3, 3), TOLERANCE);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].outer.len(), 5);
        assert_eq!(filled(&found[0].outer, 3, 3), plane);
    }
}
