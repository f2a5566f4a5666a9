//! Control Center's chart (EN-7): transitions and Exchange requests per
//! minute over the last hour, drawn on the server as SVG so it needs no
//! JavaScript. Only numbers go into the markup, so nothing needs escaping.

use crate::store::health::Minute;

const WIDTH: i64 = 600;
const HEIGHT: i64 = 160;
const LEFT: i64 = 40;
const BOTTOM: i64 = 20;
/// Minutes shown, ending with the current one.
pub const MINUTES: i64 = 60;

/// The counts for the `MINUTES` minutes ending with `now`'s, oldest first;
/// a minute without a row counts zero.
pub fn series(rows: &[Minute], now: i64) -> Vec<Minute> {
    let last = now.div_euclid(60) * 60;
    let first = last - (MINUTES - 1) * 60;
    (0..MINUTES)
        .map(|i| {
            let minute = first + i * 60;
            rows.iter()
                .find(|m| m.minute == minute)
                .copied()
                .unwrap_or(Minute {
                    minute,
                    ..Minute::default()
                })
        })
        .collect()
}

/// A round top for the scale: 1, 2, 5, 10, 20, 50, ... at or above `max`.
fn scale_top(max: i64) -> i64 {
    let mut top = 1;
    loop {
        for step in [1, 2, 5] {
            if top * step >= max {
                return top * step;
            }
        }
        top = top.saturating_mul(10);
    }
}

fn polyline(series: &[Minute], top: i64, value: impl Fn(&Minute) -> i64) -> String {
    let plot_w = WIDTH - LEFT - 10;
    let plot_h = HEIGHT - BOTTOM - 10;
    let step = plot_w as f64 / (MINUTES - 1) as f64;
    series
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let x = LEFT as f64 + step * i as f64;
            let y = (10 + plot_h) as f64 - plot_h as f64 * value(m) as f64 / top as f64;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The chart for `series` (from [`series`]); `id` makes its title's id
/// unique on a page with one chart per node.
pub fn svg(series: &[Minute], id: &str) -> String {
    let transitions: i64 = series.iter().map(|m| m.transitions).sum();
    let requests: i64 = series.iter().map(|m| m.requests).sum();
    let errors: i64 = series.iter().map(|m| m.errors).sum();
    let max = series
        .iter()
        .map(|m| m.transitions.max(m.requests))
        .max()
        .unwrap_or(0);
    let top = scale_top(max.max(1));
    let base = HEIGHT - BOTTOM;
    let id: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!(
        r##"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-labelledby="chart-{id}-title chart-{id}-desc" xmlns="http://www.w3.org/2000/svg">
<title id="chart-{id}-title">Transitions and Exchange requests per minute, last hour</title>
<desc id="chart-{id}-desc">In the last hour: {transitions} transitions published, {requests} Exchange requests, {errors} failed or throttled. Peak: {max} per minute.</desc>
<line x1="{LEFT}" y1="10" x2="{LEFT}" y2="{base}" class="axis"/>
<line x1="{LEFT}" y1="{base}" x2="{right}" y2="{base}" class="axis"/>
<text x="{label_x}" y="16" class="tick" text-anchor="end">{top}</text>
<text x="{label_x}" y="{base}" class="tick" text-anchor="end">0</text>
<text x="{LEFT}" y="{below}" class="tick">60 min ago</text>
<text x="{right}" y="{below}" class="tick" text-anchor="end">now</text>
<polyline points="{requests_line}" class="series-requests" fill="none"/>
<polyline points="{transitions_line}" class="series-transitions" fill="none"/>
</svg>"##,
        right = WIDTH - 10,
        label_x = LEFT - 4,
        below = HEIGHT - 4,
        requests_line = polyline(series, top, |m| m.requests),
        transitions_line = polyline(series, top, |m| m.transitions),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_is_sixty_minutes_ending_now_with_gaps_as_zero() {
        let now = 1_000_000 * 60 + 30;
        let rows = [
            Minute {
                minute: 1_000_000 * 60,
                transitions: 7,
                requests: 3,
                errors: 1,
            },
            Minute {
                minute: (1_000_000 - 59) * 60,
                transitions: 2,
                requests: 0,
                errors: 0,
            },
            // Older than the hour: not shown.
            Minute {
                minute: (1_000_000 - 60) * 60,
                transitions: 99,
                requests: 99,
                errors: 0,
            },
        ];
        let s = series(&rows, now);
        assert_eq!(s.len(), 60);
        assert_eq!(s[0].transitions, 2);
        assert_eq!(s[59].transitions, 7);
        assert_eq!(s[30].transitions, 0);
        assert_eq!(s[59].minute, 1_000_000 * 60);
    }

    #[test]
    fn the_scale_rounds_up_to_one_two_or_five() {
        assert_eq!(scale_top(1), 1);
        assert_eq!(scale_top(3), 5);
        assert_eq!(scale_top(7), 10);
        assert_eq!(scale_top(11), 20);
        assert_eq!(scale_top(4_500), 5_000);
    }

    #[test]
    fn the_chart_says_its_totals_in_words_and_draws_both_series() {
        let now: i64 = 600_000;
        let rows = [Minute {
            minute: now.div_euclid(60) * 60,
            transitions: 40,
            requests: 12,
            errors: 2,
        }];
        let svg = svg(&series(&rows, now), "node a");
        assert!(svg.contains("40 transitions published, 12 Exchange requests, 2 failed"));
        assert!(svg.contains(r#"aria-labelledby="chart-node-a-title chart-node-a-desc""#));
        assert_eq!(svg.matches("<polyline").count(), 2);
        // The last point of the transitions line sits at the top (40 of 50).
        assert!(svg.contains(r#"<text x="36" y="16" class="tick" text-anchor="end">50</text>"#));
    }
}
