//! The figures of a benchmark, their summary (median and worst over the
//! runs), and how they are shown: a markdown table for people and a JSON
//! file for tools.
//!
//! Everything here is pure (no clock, no I/O), so `cargo test` covers it.
//! The JSON is built and printed by serde_json.

use std::fmt::Write as _;

/// What a figure measures, which decides how it is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A duration in milliseconds.
    Ms,
    /// A number of things (requests).
    Count,
    /// Requests per second.
    Rps,
    /// A dimensionless ratio.
    Ratio,
    /// Memory in mebibytes.
    Mib,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::Count => "count",
            Unit::Rps => "req/s",
            Unit::Ratio => "ratio",
            Unit::Mib => "MiB",
        }
    }

    /// `value` for the table, with its unit.
    fn format(self, value: f64) -> String {
        match self {
            // Small durations (CPU times) need the extra digit.
            Unit::Ms if value.abs() < 10.0 => format!("{value:.2} ms"),
            Unit::Ms => format!("{value:.1} ms"),
            Unit::Count if value.fract() == 0.0 => format!("{value:.0}"),
            Unit::Count => format!("{value:.1}"),
            Unit::Rps => format!("{value:.0} req/s"),
            Unit::Ratio => format!("{value:.2}"),
            Unit::Mib => format!("{value:.1} MiB"),
        }
    }
}

/// Which direction is good, so that "worst" means the right end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Better {
    /// Times, failures, memory, CPU: the largest sample is the worst.
    Lower,
    /// Throughput, requests served: the smallest sample is the worst.
    Higher,
}

impl Better {
    fn name(self) -> &'static str {
        match self {
            Better::Lower => "lower",
            Better::Higher => "higher",
        }
    }
}

/// One figure and its samples: one per run that measured it, or several
/// when a run measures it more than once.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Metric {
    /// The scenario it belongs to, e.g. `recycle`.
    pub(crate) scenario: String,
    /// What it is, e.g. `SIGHUP → recycle complete`.
    pub(crate) name: String,
    pub(crate) unit: Unit,
    pub(crate) better: Better,
    pub(crate) samples: Vec<f64>,
}

impl Metric {
    pub(crate) fn median(&self) -> Option<f64> {
        median(&self.samples)
    }

    pub(crate) fn worst(&self) -> Option<f64> {
        worst(&self.samples, self.better)
    }
}

/// The middle sample, or the mean of the two middle ones; `None` without
/// samples. NaN sorts last and is never produced by the scenarios.
pub(crate) fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The largest sample when lower is better, the smallest when higher is.
pub(crate) fn worst(samples: &[f64], better: Better) -> Option<f64> {
    let mut iter = samples.iter().copied();
    let first = iter.next()?;
    Some(iter.fold(first, |worst, sample| match better {
        Better::Lower => worst.max(sample),
        Better::Higher => worst.min(sample),
    }))
}

/// Everything one `cargo xtask bench` measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Results {
    /// Online cores of the machine (`available_parallelism`).
    pub(crate) cores: usize,
    /// Runs per scenario asked for.
    pub(crate) runs: usize,
    /// Whether `--quick` shortened the scenarios.
    pub(crate) quick: bool,
    /// The machine's 1-minute load average before and after the bench:
    /// other work on a shared machine shows there.
    pub(crate) load_before: Option<f64>,
    pub(crate) load_after: Option<f64>,
    /// Figures in the order they were first recorded.
    pub(crate) metrics: Vec<Metric>,
    /// Definitions and caveats, shown under the table.
    pub(crate) notes: Vec<String>,
    /// Runs that failed, with why; their figures are missing.
    pub(crate) errors: Vec<String>,
}

impl Results {
    /// Adds one sample of the figure `scenario`/`name`, creating it first if
    /// this is its first sample.
    pub(crate) fn record(
        &mut self,
        scenario: &str,
        name: &str,
        unit: Unit,
        better: Better,
        value: f64,
    ) {
        let existing = self
            .metrics
            .iter_mut()
            .find(|metric| metric.scenario == scenario && metric.name == name);
        match existing {
            Some(metric) => metric.samples.push(value),
            None => self.metrics.push(Metric {
                scenario: scenario.to_owned(),
                name: name.to_owned(),
                unit,
                better,
                samples: vec![value],
            }),
        }
    }

    /// Adds a note once, however many runs ask for it.
    pub(crate) fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// The markdown report: a title line, the table, then the notes and
    /// errors as lists.
    pub(crate) fn to_markdown(&self) -> String {
        let mut out = String::new();
        let quick = if self.quick { ", --quick (shortened, for smoke tests only)" } else { "" };
        let runs = if self.runs == 1 { "1 run" } else { &format!("{} runs", self.runs) };
        let load = |load: Option<f64>| load.map_or("?".to_owned(), |load| format!("{load:.2}"));
        let _ = writeln!(
            out,
            "srv benchmarks: {} cores, {runs}{quick}; load average {} before, {} after",
            self.cores,
            load(self.load_before),
            load(self.load_after)
        );
        out.push('\n');
        out.push_str("| scenario | figure | median | worst | samples |\n");
        out.push_str("|---|---|---:|---:|---:|\n");
        for metric in &self.metrics {
            let show =
                |value: Option<f64>| value.map_or("—".to_owned(), |v| metric.unit.format(v));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                metric.scenario,
                metric.name,
                show(metric.median()),
                show(metric.worst()),
                metric.samples.len()
            );
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        if !self.errors.is_empty() {
            out.push_str("\nFailed runs (their figures are missing above):\n\n");
            for error in &self.errors {
                let _ = writeln!(out, "- {}", error.replace('\n', "\n  "));
            }
        }
        out
    }

    /// The same as JSON, with every sample.
    pub(crate) fn to_json(&self) -> String {
        let metrics: Vec<serde_json::Value> = self
            .metrics
            .iter()
            .map(|metric| {
                serde_json::json!({
                    "scenario": metric.scenario,
                    "name": metric.name,
                    "unit": metric.unit.name(),
                    "better": metric.better.name(),
                    "median": metric.median().and_then(json_number),
                    "worst": metric.worst().and_then(json_number),
                    "samples": metric.samples.iter().map(|&s| json_number(s)).collect::<Vec<_>>(),
                })
            })
            .collect();
        let document = serde_json::json!({
            "cores": self.cores,
            "runs": self.runs,
            "quick": self.quick,
            "load_average_before": self.load_before.and_then(json_number),
            "load_average_after": self.load_after.and_then(json_number),
            "metrics": metrics,
            "notes": self.notes,
            "errors": self.errors,
        });
        let mut out = serde_json::to_string_pretty(&document).expect("a JSON value always prints");
        out.push('\n');
        out
    }
}

/// A sample as a JSON number; JSON has no NaN or infinity, so those are
/// `None` (`null`).
fn json_number(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[5.0, 5.0, 1.0]), Some(5.0));
    }

    #[test]
    fn worst_depends_on_the_good_direction() {
        assert_eq!(worst(&[], Better::Lower), None);
        assert_eq!(worst(&[2.0, 9.0, 4.0], Better::Lower), Some(9.0));
        assert_eq!(worst(&[2.0, 9.0, 4.0], Better::Higher), Some(2.0));
        assert_eq!(worst(&[0.0], Better::Higher), Some(0.0));
    }

    #[test]
    fn record_groups_samples_by_figure_in_first_seen_order() {
        let mut results = Results::default();
        results.record("startup", "launch", Unit::Ms, Better::Lower, 10.0);
        results.record("recycle", "wall", Unit::Ms, Better::Lower, 100.0);
        results.record("startup", "launch", Unit::Ms, Better::Lower, 12.0);
        let names: Vec<(&str, &[f64])> =
            results.metrics.iter().map(|m| (m.name.as_str(), m.samples.as_slice())).collect();
        assert_eq!(names, [("launch", &[10.0, 12.0][..]), ("wall", &[100.0][..])]);
        results.note("a".to_owned());
        results.note("a".to_owned());
        assert_eq!(results.notes, ["a"]);
    }

    fn sample_results() -> Results {
        let mut results = Results {
            cores: 2,
            runs: 3,
            load_before: Some(0.25),
            load_after: Some(1.5),
            ..Results::default()
        };
        for (ms, rps, failed) in [(80.0, 9000.0, 0.0), (95.5, 8000.0, 2.0), (70.0, 8500.0, 0.0)] {
            results.record("startup", "launch → 4 answering", Unit::Ms, Better::Lower, ms);
            results.record("throughput", "4 workers", Unit::Rps, Better::Higher, rps);
            results.record("lossless", "failed", Unit::Count, Better::Lower, failed);
        }
        results.record("throughput", "4 workers / standalone", Unit::Ratio, Better::Higher, 0.9);
        results.record("master cost", "RSS", Unit::Mib, Better::Lower, 2.3);
        results.note("load \"shares\" the cores".to_owned());
        results.errors.push("crash run 2: timed out\nlog tail".to_owned());
        results
    }

    #[test]
    fn renders_a_markdown_table() {
        let expected = "\
srv benchmarks: 2 cores, 3 runs; load average 0.25 before, 1.50 after

| scenario | figure | median | worst | samples |
|---|---|---:|---:|---:|
| startup | launch → 4 answering | 80.0 ms | 95.5 ms | 3 |
| throughput | 4 workers | 8500 req/s | 8000 req/s | 3 |
| lossless | failed | 0 | 2 | 3 |
| throughput | 4 workers / standalone | 0.90 | 0.90 | 1 |
| master cost | RSS | 2.3 MiB | 2.3 MiB | 1 |

- load \"shares\" the cores

Failed runs (their figures are missing above):

- crash run 2: timed out
  log tail
";
        assert_eq!(sample_results().to_markdown(), expected);
    }

    #[test]
    fn quick_single_run_title_and_missing_figures() {
        let mut results = Results { cores: 1, runs: 1, quick: true, ..Results::default() };
        results.metrics.push(Metric {
            scenario: "s".to_owned(),
            name: "n".to_owned(),
            unit: Unit::Count,
            better: Better::Lower,
            samples: vec![],
        });
        let table = results.to_markdown();
        assert!(
            table.starts_with("srv benchmarks: 1 cores, 1 run, --quick (shortened, for smoke tests only); load average ? before, ? after"),
            "{table}"
        );
        assert!(table.contains("| s | n | — | — | 0 |"), "{table}");
        let json = parse(&results.to_json());
        let metric = &json["metrics"][0];
        assert_eq!((&metric["median"], &metric["worst"]), (&Value::Null, &Value::Null));
        assert_eq!(metric["samples"], serde_json::json!([]));
    }

    fn parse(json: &str) -> Value {
        serde_json::from_str(json).unwrap_or_else(|error| panic!("{error}: {json}"))
    }

    #[test]
    fn writes_json() {
        let text = sample_results().to_json();
        let json = parse(&text);
        assert_eq!(
            (&json["cores"], &json["runs"], &json["quick"]),
            (&2.into(), &3.into(), &false.into())
        );
        assert_eq!(
            (&json["load_average_before"], &json["load_average_after"]),
            (&0.25.into(), &1.5.into())
        );
        assert_eq!(
            json["metrics"][0],
            serde_json::json!({"scenario": "startup", "name": "launch → 4 answering", "unit": "ms",
                "better": "lower", "median": 80.0, "worst": 95.5, "samples": [80.0, 95.5, 70.0]})
        );
        assert_eq!(json["notes"], serde_json::json!(["load \"shares\" the cores"]));
        assert_eq!(json["errors"], serde_json::json!(["crash run 2: timed out\nlog tail"]));
        assert!(text.ends_with("}\n"));
        let empty = parse(&Results::default().to_json());
        assert_eq!(empty["metrics"], serde_json::json!([]), "{empty}");
    }

    #[test]
    fn formats_each_unit() {
        let cases = [
            (Unit::Ms, 123.456, "123.5 ms"),
            (Unit::Ms, 1.234, "1.23 ms"),
            (Unit::Ms, 0.0, "0.00 ms"),
            (Unit::Count, 3.0, "3"),
            (Unit::Count, 2.5, "2.5"),
            (Unit::Rps, 81846.4, "81846 req/s"),
            (Unit::Ratio, 0.914, "0.91"),
            (Unit::Mib, 2.75, "2.8 MiB"),
        ];
        for (unit, value, expected) in cases {
            assert_eq!(unit.format(value), expected, "{unit:?} {value}");
        }
    }

    #[test]
    fn escapes_json_strings_and_writes_non_finite_numbers_as_null() {
        let mut results = sample_results();
        results.notes = vec!["a\"b\\c\n\u{1}é".to_owned()];
        results.metrics[0].samples = vec![f64::NAN, 1.5, f64::INFINITY];
        let json = parse(&results.to_json());
        assert_eq!(json["notes"][0], "a\"b\\c\n\u{1}é");
        assert_eq!(json["metrics"][0]["samples"], serde_json::json!([null, 1.5, null]));
    }
}
