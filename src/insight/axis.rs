//! What a chart can draw, and where its axis ticks go: pure arithmetic shared by the PNG chart of
//! e-mails and the SVG chart of the status page. Every loop here has a fixed bound, whatever the
//! numbers (steps above 2^53, losses of 1e308, NaN, ±inf): an axis is computed in microseconds or
//! not at all, never for ever.

/// The largest loss drawn. A loss beyond it (a run that diverged to 1e308) is left out of the
/// chart like NaN; the alert's text still gives the number.
pub const MAX_PLOTTED: f64 = 1e9;

/// Ticks per axis at most, whatever is asked.
const MAX_TICKS: usize = 12;

/// A loss the chart can draw: finite and within [`MAX_PLOTTED`].
pub fn plottable(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite() && x.abs() <= MAX_PLOTTED)
}

/// The tick spacing for `span` split into about `target` parts: 1, 2 or 5 × 10ⁿ. `None` when
/// the span is not a positive finite number.
pub fn nice_step(span: f64, target: usize) -> Option<f64> {
    if !(span.is_finite() && span > 0.0) {
        return None;
    }
    let raw = span / target.clamp(1, MAX_TICKS) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|e| *e >= raw)
        .filter(|e| e.is_finite() && *e > 0.0)
}

/// Round ticks between `lo` and `hi` (inclusive), about `target` of them and never more than
/// [`MAX_TICKS`]; empty when the range is not finite. A range of one value has one tick.
pub fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi < lo {
        return Vec::new();
    }
    let Some(step) = nice_step(hi - lo, target) else {
        return vec![lo];
    };
    let first = (lo / step).ceil();
    let mut out: Vec<f64> = Vec::new();
    for i in 0..MAX_TICKS {
        // From the index, not by adding: at 1e17 adding a small step changes nothing.
        let t = (first + i as f64) * step;
        if !t.is_finite() || t > hi + step * 1e-9 {
            break;
        }
        if out.last().is_some_and(|last| *last >= t) {
            break;
        }
        out.push(t);
    }
    out
}

/// Round step ticks between two steps, as whole numbers; at most [`MAX_TICKS`].
pub fn step_ticks(first: u64, last: u64, target: usize) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    for t in ticks(first as f64, last as f64, target) {
        // A tick rounded to a float above 2^53 may land a little outside the steps.
        let t = (t.max(0.0) as u64).clamp(first, last);
        if out.last() != Some(&t) {
            out.push(t);
        }
    }
    out
}

/// A tick's label with as many decimals as its spacing needs (`0.5`, `1.25`, `2`), and
/// scientific notation for values too large or small for a short label.
pub fn label(v: f64, step: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    if v != 0.0 && !(1e-4..1e7).contains(&v.abs()) {
        return format!("{v:.1e}");
    }
    let decimals = if step.is_finite() && step > 0.0 {
        (-step.log10().floor()).clamp(0.0, 6.0) as usize
    } else {
        2
    };
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers_within_the_range() {
        assert_eq!(ticks(0.0, 200.0, 4), [0.0, 50.0, 100.0, 150.0, 200.0]);
        assert_eq!(ticks(0.31, 1.92, 4), [0.5, 1.0, 1.5]);
        assert_eq!(ticks(5.0, 5.0, 4), [5.0]);
        assert_eq!(label(0.5, 0.5), "0.5");
        assert_eq!(label(1.25, 0.05), "1.25");
        assert_eq!(label(150.0, 50.0), "150");
    }

    #[test]
    fn hostile_ranges_give_few_ticks_or_none_and_end() {
        for (lo, hi) in [
            (f64::NAN, 1.0),
            (0.0, f64::INFINITY),
            (-1e308, 1e308),
            (1.0, 0.0),
            (0.0, 1.7e308),
            (1e17, 1e17 + 64.0),
            (0.0, f64::MIN_POSITIVE),
        ] {
            assert!(ticks(lo, hi, 4).len() <= MAX_TICKS, "{lo}..{hi}");
        }
        let t = step_ticks(100_000_000_000_000_000, 100_000_000_000_000_100, 4);
        assert!(!t.is_empty() && t.len() <= MAX_TICKS, "{t:?}");
        assert!(step_ticks(0, u64::MAX, 4).len() <= MAX_TICKS);
        assert_eq!(plottable(Some(1.7e308)), None);
        assert_eq!(plottable(Some(f64::NAN)), None);
        assert_eq!(plottable(Some(2.5)), Some(2.5));
        assert_eq!(label(1.7e308, 1e307), "1.7e308");
    }
}
