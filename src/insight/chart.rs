//! The loss chart: training and validation loss against step, drawn in-process into a PNG
//! (for e-mails and `tunewatch metrics --png`). The font is bundled, so the chart looks the same
//! on a server without fonts. Any curve is drawn or refused with a reason, never a panic:
//! points that are not finite are left out, and a curve with nothing finite is an error.

use plotters::prelude::*;

use super::axis;
use super::summary::CurvePoint;

/// The chart's size: readable in a 600 px wide e-mail column.
pub const WIDTH: u32 = 600;
pub const HEIGHT: u32 = 320;

/// The training loss line (blue) and the validation loss points (orange).
const TRAIN: RGBColor = RGBColor(9, 105, 218);
const VALID: RGBColor = RGBColor(219, 109, 40);

/// Why no chart was drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("no finite loss to draw")]
    Empty,
    #[error("drawing the chart failed: {0}")]
    Draw(String),
    #[error("encoding the chart as PNG failed: {0}")]
    Encode(String),
    #[error("the chart was not drawn within {0:?}; left out")]
    TooSlow(std::time::Duration),
}

fn font() -> Result<(), ChartError> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        )
        .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ChartError::Draw("the bundled font did not load".into()))
    }
}

/// The ranges of the chart: steps and losses (plottable ones only: finite and within
/// [`axis::MAX_PLOTTED`]), with some air above.
fn ranges(curve: &[CurvePoint]) -> Option<((u64, u64), (f64, f64))> {
    let finite = axis::plottable;
    let losses = curve
        .iter()
        .flat_map(|p| [finite(p.1), finite(p.2)])
        .flatten();
    let (lo, hi) = losses.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return None;
    }
    let steps = curve
        .iter()
        .filter(|p| finite(p.1).is_some() || finite(p.2).is_some());
    let (s0, s1) = steps.fold((u64::MAX, 0), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let s1 = if s1 <= s0 { s0.saturating_add(1) } else { s1 };
    // Some air, and never a span so thin against its values that the axis cannot tell its
    // ticks apart.
    let span = (hi - lo).abs();
    let pad = (span * 0.08).max(hi.abs().max(lo.abs()).max(1.0) * 1e-3);
    let bottom = if lo >= 0.0 {
        (lo - pad).max(0.0)
    } else {
        lo - pad
    };
    Some(((s0, s1), (bottom, hi + pad)))
}

/// The chart of `curve` as a PNG of [`WIDTH`] × [`HEIGHT`] pixels, titled `title`.
///
/// # Errors
/// [`ChartError::Empty`] when the curve has no finite loss; otherwise only if drawing or
/// encoding fails.
pub fn png(curve: &[CurvePoint], title: &str) -> Result<Vec<u8>, ChartError> {
    let ((s0, s1), (y0, y1)) = ranges(curve).ok_or(ChartError::Empty)?;
    font()?;
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, curve, title, (s0, s1), (y0, y1)).map_err(ChartError::Draw)?;
        root.present()
            .map_err(|e| ChartError::Draw(e.to_string()))?;
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| ChartError::Encode(e.to_string()))?;
        writer
            .write_image_data(&rgb)
            .map_err(|e| ChartError::Encode(e.to_string()))?;
    }
    Ok(out)
}

/// [`png`] on a thread of its own, given at most `limit`: the caller (a delivery, a command)
/// never waits longer, whatever the curve. A chart not ready in time is an error, and the thread,
/// if it is still drawing, ends on its own without holding up anything (not even exit).
///
/// # Errors
/// As [`png`], and [`ChartError::TooSlow`] when `limit` passed first.
pub async fn png_within(
    curve: Vec<CurvePoint>,
    title: String,
    limit: std::time::Duration,
) -> Result<Vec<u8>, ChartError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("chart".into())
        .spawn(move || {
            let _ = tx.send(png(&curve, &title));
        })
        .map_err(|e| ChartError::Draw(format!("cannot start drawing: {e}")))?;
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(ChartError::Draw("the drawing thread stopped".into())),
        Err(_) => Err(ChartError::TooSlow(limit)),
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    curve: &[CurvePoint],
    title: &str,
    steps: (u64, u64),
    losses: (f64, f64),
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let title = crate::inert::excerpt(title, 70);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(38)
        .y_label_area_size(52)
        .build_cartesian_2d(steps.0..steps.1, losses.0..losses.1)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .x_labels(8)
        .y_labels(6)
        .y_label_formatter(&|v| {
            axis::label(*v, axis::nice_step(losses.1 - losses.0, 5).unwrap_or(1.0))
        })
        .draw()
        .map_err(e)?;
    let finite = axis::plottable;
    let train: Vec<(u64, f64)> = curve
        .iter()
        .filter_map(|p| Some((p.0, finite(p.1)?)))
        .collect();
    let valid: Vec<(u64, f64)> = curve
        .iter()
        .filter_map(|p| Some((p.0, finite(p.2)?)))
        .collect();
    if !train.is_empty() {
        chart
            .draw_series(LineSeries::new(train, TRAIN.stroke_width(2)))
            .map_err(e)?
            .label("training loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], TRAIN.stroke_width(2)));
    }
    if !valid.is_empty() {
        chart
            .draw_series(LineSeries::new(valid.clone(), VALID.stroke_width(2)))
            .map_err(e)?;
        chart
            .draw_series(valid.into_iter().map(|p| Circle::new(p, 3, VALID.filled())))
            .map_err(e)?
            .label("validation loss")
            .legend(|(x, y)| Circle::new((x + 9, y), 3, VALID.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

    #[test]
    fn a_curve_becomes_a_png_of_the_chart_size() {
        let curve: Vec<CurvePoint> = (1..=50)
            .map(|i| {
                (
                    i * 10,
                    Some(2.0 / i as f64 + 0.3),
                    (i % 5 == 0).then_some(0.5),
                )
            })
            .collect();
        let png = png(&curve, "ftjob-abc").unwrap();
        assert!(png.starts_with(PNG_MAGIC));
        let decoder = ::png::Decoder::new(std::io::Cursor::new(&png));
        let info = decoder.read_info().unwrap();
        assert_eq!((info.info().width, info.info().height), (WIDTH, HEIGHT));
    }

    #[test]
    fn odd_curves_are_drawn_or_refused_without_panicking() {
        assert!(matches!(png(&[], "t"), Err(ChartError::Empty)));
        assert!(matches!(
            png(&[(5, Some(f64::NAN), None)], "t"),
            Err(ChartError::Empty)
        ));
        assert!(matches!(
            png(&[(5, Some(1.7e308), Some(-1e308))], "t"),
            Err(ChartError::Empty)
        ));
        // One point, a flat line, negative and huge values, NaN among them, unsorted steps.
        for curve in [
            vec![(7, Some(1.0), None)],
            vec![(1, Some(1.0), Some(1.0)), (2, Some(1.0), Some(1.0))],
            vec![
                (3, Some(-5.0), None),
                (1, Some(1e300), Some(f64::NAN)),
                (2, None, Some(0.0)),
            ],
            vec![
                (u64::MAX, Some(0.1), None),
                (0, Some(f64::INFINITY), Some(0.2)),
            ],
            vec![(1, Some(0.4), Some(1.7e308)), (2, Some(0.3), None)],
            vec![(1, Some(-1e308), Some(1e308)), (2, Some(0.3), None)],
            vec![
                (100_000_000_000_000_000, Some(0.5), None),
                (100_000_000_000_000_001, Some(0.5000000001), None),
            ],
        ] {
            assert!(
                png(&curve, "t").unwrap().starts_with(PNG_MAGIC),
                "{curve:?}"
            );
        }
    }
}
