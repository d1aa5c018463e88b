//! The verdict, on plain numbers: pass rates with Wilson 95 % intervals, and the paired exact sign
//! test (McNemar) on the cases that differ — b fixed (the new model passes, the baseline fails),
//! c broken. `improved` / `regressed` need p < 0.05; `inconclusive` when b + c < 6 or the run
//! stopped early; otherwise `no_difference`.

use crate::model::evaluation::{Side, Verdict};

/// z for a two-sided 95 % interval.
const Z: f64 = 1.959_963_984_540_054;

/// The Wilson score interval of `passed` out of `total` (0..=1; (0, 0) when `total` is 0).
pub fn wilson(passed: u32, total: u32) -> (f64, f64) {
    if total == 0 {
        return (0.0, 0.0);
    }
    let n = f64::from(total);
    let p = f64::from(passed) / n;
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * n);
    let spread = Z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt();
    let denominator = 1.0 + z2 / n;
    (
        ((centre - spread) / denominator).clamp(0.0, 1.0),
        ((centre + spread) / denominator).clamp(0.0, 1.0),
    )
}

/// One side's numbers.
pub fn side(model: &str, passed: u32, total: u32) -> Side {
    let (low, high) = wilson(passed, total);
    Side {
        model: model.to_string(),
        passed,
        total,
        rate: if total == 0 {
            0.0
        } else {
            f64::from(passed) / f64::from(total)
        },
        low,
        high,
    }
}

/// The exact two-sided sign test of `b` against `c` (each discordant pair a fair coin under the
/// null): 2 × P(X ≤ min(b, c)) for X ~ Binomial(b + c, ½), at most 1. 1 when b + c = 0.
pub fn mcnemar_exact(b: u32, c: u32) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // In logs: ½ⁿ underflows past n = 1074.
    let ln_half_n = f64::from(n) * 0.5_f64.ln();
    let mut ln_choose = 0.0_f64; // ln C(n, 0)
    let mut tail = 0.0_f64;
    for i in 0..=k {
        if i > 0 {
            ln_choose += (f64::from(n - i + 1)).ln() - (f64::from(i)).ln();
        }
        tail += (ln_choose + ln_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

/// The verdict of `fixed` against `broken`, with the test's p.
pub fn verdict(fixed: u32, broken: u32, stopped_early: bool) -> (Verdict, f64) {
    let p = mcnemar_exact(fixed, broken);
    let v = if stopped_early || fixed + broken < 6 {
        Verdict::Inconclusive
    } else if p < 0.05 && fixed > broken {
        Verdict::Improved
    } else if p < 0.05 {
        Verdict::Regressed
    } else {
        Verdict::NoDifference
    };
    (v, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // 46 of 50: the design's example, 81–97 %.
        let (lo, hi) = wilson(46, 50);
        assert!(
            (lo - 0.8116).abs() < 1e-3 && (hi - 0.9685).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), (0.0, 0.0));
        let (lo, hi) = wilson(0, 10);
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 1e-3, "{hi}");
    }

    #[test]
    fn the_sign_test_is_exact_and_survives_large_counts() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // b = 16, c = 1: 2 × (1 + 17) / 2^17.
        assert!((mcnemar_exact(16, 1) - 36.0 / 131_072.0).abs() < 1e-12);
        assert!((mcnemar_exact(3, 3) - 1.0).abs() < 1e-12);
        let p = mcnemar_exact(3000, 2900);
        assert!(p > 0.1 && p < 1.0, "{p}");
        assert!(mcnemar_exact(5000, 0) < 1e-300 || mcnemar_exact(5000, 0) == 0.0);
    }

    #[test]
    fn verdict_edges() {
        assert_eq!(verdict(0, 0, false).0, Verdict::Inconclusive);
        assert_eq!(verdict(5, 0, false).0, Verdict::Inconclusive, "b + c < 6");
        assert_eq!(verdict(16, 1, false).0, Verdict::Improved);
        assert_eq!(verdict(1, 16, false).0, Verdict::Regressed);
        assert_eq!(verdict(4, 4, false).0, Verdict::NoDifference);
        assert_eq!(
            verdict(16, 1, true).0,
            Verdict::Inconclusive,
            "stopped early"
        );
    }
}
