//! The loss chart as inline SVG for the status page: training loss as a line, validation loss as
//! points on a line, against step, with labelled axes. Text only (no script, no external asset);
//! any curve — empty, one point, NaN, unsorted, huge — gives a valid `<svg>` or a short note.

use std::fmt::Write as _;

use crate::insight::axis;
use crate::insight::summary::CurvePoint;

const W: f64 = 640.0;
const H: f64 = 300.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;

/// A number for an SVG attribute (finite by construction, clamped for safety).
fn n(v: f64) -> String {
    format!(
        "{:.1}",
        if v.is_finite() {
            v.clamp(-1e6, 1e6)
        } else {
            0.0
        }
    )
}

/// The chart of `curve`, or `None` when it has nothing finite to draw. Losses beyond
/// [`axis::MAX_PLOTTED`] are left out like NaN, and both axes get round ticks from
/// [`axis::ticks`], so any numbers (steps above 2^53, losses of 1e308) give a chart at once.
pub fn loss_chart(curve: &[CurvePoint]) -> Option<String> {
    let mut points: Vec<CurvePoint> = curve
        .iter()
        .map(|p| (p.0, axis::plottable(p.1), axis::plottable(p.2)))
        .filter(|p| p.1.is_some() || p.2.is_some())
        .collect();
    if points.is_empty() {
        return None;
    }
    points.sort_by_key(|p| p.0);
    let (first, last) = (points[0].0, points[points.len() - 1].0);
    let (s0, s1) = (first as f64, last as f64);
    let span_s = if s1 > s0 { s1 - s0 } else { 1.0 };
    let (y0, y1) = loss_bounds(&points);
    let x = |s: u64| LEFT + (s as f64 - s0) / span_s * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - (v - y0) / (y1 - y0)) * (H - TOP - BOTTOM);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"Training and validation loss against step\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    // Grid and axis labels at round losses (0.5, 1.0, 1.5…), about five of them.
    let loss_step = axis::nice_step(y1 - y0, 4).unwrap_or(1.0);
    for v in axis::ticks(y0, y1, 4) {
        let _ = write!(
            svg,
            "<line x1=\"{}\" x2=\"{}\" y1=\"{yy}\" y2=\"{yy}\" class=\"grid\"/>\
             <text x=\"{}\" y=\"{}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            n(LEFT),
            n(W - RIGHT),
            n(LEFT - 6.0),
            n(y(v) + 4.0),
            axis::label(v, loss_step),
            yy = n(y(v))
        );
    }
    // Step ticks at round numbers (1, 2 or 5 × 10ⁿ apart), about five of them.
    for tick in axis::step_ticks(first, last, 4) {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{tick}</text>",
            n(x(tick)),
            n(H - BOTTOM + 16.0),
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">step</text>\
         <text x=\"14\" y=\"{}\" class=\"axis\" text-anchor=\"middle\" transform=\"rotate(-90 14 {})\">loss</text>",
        n((LEFT + W - RIGHT) / 2.0),
        n(H - 6.0),
        n(H / 2.0),
        n(H / 2.0)
    );
    let line = |pick: fn(&CurvePoint) -> Option<f64>| -> String {
        points
            .iter()
            .filter_map(|p| pick(p).map(|v| format!("{},{}", n(x(p.0)), n(y(v)))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let train = line(|p| p.1);
    if !train.is_empty() {
        let _ = write!(svg, "<polyline class=\"train\" points=\"{train}\"/>");
    }
    let valid = line(|p| p.2);
    if !valid.is_empty() {
        let _ = write!(svg, "<polyline class=\"valid\" points=\"{valid}\"/>");
        for p in points.iter().filter_map(|p| p.2.map(|v| (p.0, v))) {
            let _ = write!(
                svg,
                "<circle class=\"valid\" cx=\"{}\" cy=\"{}\" r=\"3\"/>",
                n(x(p.0)),
                n(y(p.1))
            );
        }
    }
    legend(&mut svg);
    Some(svg)
}

/// The loss axis: every finite loss with a margin, starting at 0 when no loss is negative.
fn loss_bounds(points: &[CurvePoint]) -> (f64, f64) {
    let losses = points.iter().flat_map(|p| [p.1, p.2]).flatten();
    let (lo, hi) = losses.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let pad = if hi > lo {
        (hi - lo) * 0.08
    } else {
        hi.abs().max(1.0) * 0.1
    };
    (
        if lo >= 0.0 {
            (lo - pad).max(0.0)
        } else {
            lo - pad
        },
        hi + pad,
    )
}

/// The key: which line is which.
fn legend(svg: &mut String) {
    let _ = write!(
        svg,
        "<g class=\"legend\"><line x1=\"{a}\" x2=\"{b}\" y1=\"24\" y2=\"24\" class=\"train\"/>\
         <text x=\"{c}\" y=\"28\">training loss</text>\
         <circle cx=\"{d}\" cy=\"42\" r=\"3\" class=\"valid\"/><text x=\"{c}\" y=\"46\">validation loss</text></g></svg>",
        a = n(W - 150.0),
        b = n(W - 130.0),
        c = n(W - 124.0),
        d = n(W - 140.0)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_nan_curves_have_no_chart() {
        assert_eq!(loss_chart(&[]), None);
        assert_eq!(
            loss_chart(&[(3, Some(f64::NAN), Some(f64::INFINITY))]),
            None
        );
    }

    #[test]
    fn one_point_is_a_valid_chart() {
        let svg = loss_chart(&[(7, Some(1.5), None)]).unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("class=\"train\" points=\""));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn nan_points_are_left_out_and_every_coordinate_is_a_number() {
        let curve = vec![
            (30, Some(0.5), Some(0.7)),
            (10, Some(2.0), None),
            (20, Some(f64::NAN), Some(1.0)),
            (u64::MAX, Some(1e300), None),
        ];
        let svg = loss_chart(&curve).unwrap();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert_eq!(svg.matches("<circle class=\"valid\"").count(), 2);
        assert!(svg.contains(">step<") && svg.contains(">loss<"));
    }

    #[test]
    fn step_ticks_are_round_numbers() {
        let curve: Vec<CurvePoint> = (1..=20)
            .map(|i| (i * 10, Some(1.0 / i as f64), None))
            .collect();
        let svg = loss_chart(&curve).unwrap();
        for t in [">50<", ">100<", ">150<", ">200<"] {
            assert!(svg.contains(t), "{t} in {svg}");
        }
        assert!(!svg.contains(">58<"));
    }

    #[test]
    fn loss_ticks_are_round_numbers() {
        let curve: Vec<CurvePoint> = (1..=20)
            .map(|i| (i * 10, Some(0.3 + 1.6 / i as f64), None))
            .collect();
        let svg = loss_chart(&curve).unwrap();
        for t in [">0.5<", ">1.0<", ">1.5<"] {
            assert!(svg.contains(t), "{t} in {svg}");
        }
        assert!(!svg.contains(">1.84<") && !svg.contains(">1.44<"), "{svg}");
    }

    #[test]
    fn steps_beyond_2_pow_53_and_losses_of_1e308_give_a_chart_at_once() {
        let curve = vec![
            (100_000_000_000_000_000, Some(1.0), Some(1.1)),
            (100_000_000_000_000_064, Some(0.9), None),
            (100_000_000_000_000_128, Some(1.7e308), Some(-1e308)),
        ];
        let svg = loss_chart(&curve).unwrap();
        assert!(svg.len() < 20_000, "{} bytes", svg.len());
        assert!(svg.matches("class=\"tick\"").count() <= 24);
        assert!(loss_chart(&[(0, Some(1e308), Some(-1e308))]).is_none());
        // One step as a float: a tick loop adding 1 to 1e17 would never end.
        let svg = loss_chart(&[(100_000_000_000_000_000, Some(1.0), None)]).unwrap();
        assert!(svg.contains(">100000000000000000<"), "{svg}");
    }
}
