//! The report: machine facts and figures as JSON, and as a Markdown table written between the
//! markers of `BENCHMARKS.md` (the text around them, the analysis, is kept).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::config::{Config, Scenario};
use crate::stats::{Figure, IDEAL, Share};

/// The results section's markers in the Markdown report.
pub const BEGIN: &str = "<!-- bench:results:begin -->";
pub const END: &str = "<!-- bench:results:end -->";

/// What the benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub memory_gib: f64,
    pub broker: String,
    pub commit: String,
    pub date: String,
}

impl Machine {
    pub fn read(broker: String) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split_once(':')))
            .map_or_else(|| "unknown".to_owned(), |(_, model)| model.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map_or_else(|| "unknown".to_owned(), |out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
        let dirty = std::process::Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .is_ok_and(|out| !out.stdout.is_empty());
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            broker,
            commit: if dirty { format!("{commit} (with uncommitted changes)") } else { commit },
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }
}

/// The workload settings, as the report states them.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub runs: u32,
    pub events: usize,
    pub customers: u32,
    pub partitions: i32,
    pub rsa_bits: usize,
    pub consumers: Vec<u32>,
    pub clients: usize,
    pub load_duration_s: f64,
    pub e2e_duration_s: f64,
    pub rates: Vec<u32>,
    pub scenarios: Vec<Scenario>,
    pub smoke: bool,
}

impl From<&Config> for Workload {
    fn from(config: &Config) -> Self {
        Self {
            runs: config.runs,
            events: config.events,
            customers: config.customers,
            partitions: config.partitions,
            rsa_bits: config.rsa_bits,
            consumers: config.consumers.clone(),
            clients: config.clients,
            load_duration_s: config.load_duration.as_secs_f64(),
            e2e_duration_s: config.e2e_duration.as_secs_f64(),
            rates: config.rates.clone(),
            scenarios: config.scenarios.clone(),
            smoke: config.smoke,
        }
    }
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub workload: Workload,
    pub figures: Vec<Figure>,
}

impl Report {
    pub fn figure(&self, id: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.id == id)
    }

    /// Sets each throughput figure's share of the ceiling it is bounded by: deliveries by the
    /// receiver alone with one client per partition (with many concurrent clients in key
    /// ordering, ids with a `key` component), publishes by the receiver alone with as many
    /// clients. A figure given as a share of its ideal keeps that.
    pub fn relate_to_ceilings(&mut self) {
        let ceilings: Vec<(String, f64)> =
            self.figures.iter().filter(|f| f.id.starts_with("ceiling.")).map(|f| (f.id.clone(), f.median)).collect();
        let ceiling = |id: &str| ceilings.iter().find(|(c, _)| c == id).map(|(c, v)| (c.clone(), *v));
        for figure in &mut self.figures {
            if figure.of_ceiling.as_ref().is_some_and(|share| share.ceiling == IDEAL) {
                continue;
            }
            let key_ordering = figure.id.split('.').any(|component| component == "key");
            let bound = if figure.unit == "deliveries/s" && key_ordering {
                ceiling("ceiling.receiver.concurrent")
            } else if figure.unit == "deliveries/s" && !figure.id.starts_with("end_to_end") {
                ceiling("ceiling.receiver.sequential")
            } else if figure.id == "publisher.events_per_second" {
                ceiling("ceiling.receiver.concurrent")
            } else {
                None
            };
            if let Some((id, value)) = bound.filter(|(_, v)| *v > 0.0) {
                figure.of_ceiling = Some(Share { ceiling: id, fraction: figure.median / value });
            }
        }
    }

    /// Adds, from the report at `json` (which this run replaces), the figures of the scenarios
    /// this run did not measure, marked with when they were: so that a run of one scenario
    /// (`--scenarios ledger`) updates its rows and keeps the others. Nothing when there is no
    /// readable report.
    pub fn carry_over(&mut self, json: &Path, ran: &[Scenario]) {
        #[derive(Deserialize)]
        struct Earlier {
            machine: EarlierMachine,
            figures: Vec<Figure>,
        }
        #[derive(Deserialize)]
        struct EarlierMachine {
            date: String,
            commit: String,
        }
        let Some(earlier) =
            std::fs::read_to_string(json).ok().and_then(|text| serde_json::from_str::<Earlier>(&text).ok())
        else {
            return;
        };
        let when = format!("{} at commit {}", earlier.machine.date, earlier.machine.commit);
        for mut figure in earlier.figures {
            if Scenario::of_figure(&figure.id).is_some_and(|scenario| !ran.contains(&scenario)) {
                figure.measured.get_or_insert_with(|| when.clone());
                self.figures.push(figure);
            }
        }
        // In scenario order, each scenario's figures in their own order.
        self.figures.sort_by_key(|figure| Scenario::of_figure(&figure.id));
    }

    /// The results as Markdown (without the markers).
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let w = &self.workload;
        let mut out = String::new();
        out.push_str(&format!(
            "Measured {} at commit {} on {} ({} cores, {} GiB, Linux {}), broker {}.\n\n",
            m.date, m.commit, m.cpu, m.cores, m.memory_gib, m.kernel, m.broker
        ));
        out.push_str(&format!(
            "Workload: {} runs of each figure (median, min, max); drains of {} events over {} customers and {} \
             partitions; {}-bit customer keys; drains by {:?} consumer processes; {} publisher \
             clients for {} s; end to end at {:?} events/s for {} s.{}\n\n",
            w.runs,
            w.events,
            w.customers,
            w.partitions,
            w.rsa_bits,
            w.consumers,
            w.clients,
            w.load_duration_s,
            w.rates,
            w.e2e_duration_s,
            if w.smoke { " **Smoke run: these figures measure nothing.**" } else { "" }
        ));
        out.push_str("| Figure | Median | Min | Max | Unit | Of ceiling |\n|---|---:|---:|---:|---|---:|\n");
        // Figures carried over from earlier runs, by when they were measured.
        let mut earlier: Vec<&str> = vec![];
        for when in self.figures.iter().filter_map(|f| f.measured.as_deref()) {
            if !earlier.contains(&when) {
                earlier.push(when);
            }
        }
        let marker = |f: &Figure| {
            f.measured
                .as_deref()
                .and_then(|m| earlier.iter().position(|e| *e == m))
                .map_or_else(String::new, |n| format!(" ({})", n + 1))
        };
        for f in &self.figures {
            let share = f.of_ceiling.as_ref().map_or_else(String::new, |s| {
                let of = if s.ceiling == IDEAL { " of ideal" } else { "" };
                format!("{:.0} %{of}", s.fraction * 100.0)
            });
            out.push_str(&format!(
                "| {}{} | {} | {} | {} | {} | {} |\n",
                f.label,
                marker(f),
                number(f.median),
                number(f.min),
                number(f.max),
                f.unit,
                share
            ));
        }
        let notes: Vec<_> = self.figures.iter().filter_map(|f| f.note.as_ref().map(|n| (&f.label, n))).collect();
        if !notes.is_empty() {
            out.push('\n');
            for (label, note) in notes {
                out.push_str(&format!("- {label}: {note}.\n"));
            }
        }
        if !earlier.is_empty() {
            out.push('\n');
            for (n, when) in earlier.iter().enumerate() {
                out.push_str(&format!(
                    "({}) Not measured by this run (scenarios {:?}): carried over from the run of {when}.\n",
                    n + 1,
                    w.scenarios
                ));
            }
        }
        out.push_str(
            "\n\"Of ceiling\": the median as a share of the receiver alone under the same number of clients.\n",
        );
        if self.figures.iter().any(|f| f.of_ceiling.as_ref().is_some_and(|s| s.ceiling == IDEAL)) {
            out.push_str(
                "\"Of ideal\": the median as a share of min(customers, deliveries in flight) ÷ endpoint latency, \
                 the most a mode can deliver when a customer's deliveries go one at a time; in flight: one per \
                 partition in partition ordering, the consumer's `--max-concurrency` in key ordering.\n",
            );
        }
        out
    }

    /// Writes the JSON and puts the Markdown between the markers of `markdown` (appending a
    /// results section when the file has none).
    pub fn write(&self, markdown: &Path, json: &Path) -> Result<()> {
        if let Some(parent) = json.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(json, serde_json::to_string_pretty(self)? + "\n")?;
        let existing = std::fs::read_to_string(markdown).unwrap_or_default();
        std::fs::write(markdown, splice(&existing, &self.markdown()))?;
        Ok(())
    }
}

/// `document` with `results` between the markers.
pub fn splice(document: &str, results: &str) -> String {
    let section = format!("{BEGIN}\n{results}{END}");
    match (document.find(BEGIN), document.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!("{}{section}{}", &document[..begin], &document[end + END.len()..])
        }
        _ if document.is_empty() => format!("# Benchmarks\n\n## Results\n\n{section}\n"),
        _ => format!("{}\n\n## Results\n\n{section}\n", document.trim_end()),
    }
}

/// A figure for the table: three significant digits or whole numbers.
fn number(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_replace_what_was_between_the_markers_only() {
        let document = format!("# B\n\nAnalysis.\n\n{BEGIN}\nold\n{END}\n\nMore analysis.\n");
        let updated = splice(&document, "new\n");
        assert_eq!(updated, format!("# B\n\nAnalysis.\n\n{BEGIN}\nnew\n{END}\n\nMore analysis.\n"));
        assert_eq!(splice(&updated, "new\n"), updated);
        let fresh = splice("", "r\n");
        assert!(fresh.starts_with("# Benchmarks") && fresh.contains(&format!("{BEGIN}\nr\n{END}")));
        let appended = splice("# Mine\n", "r\n");
        assert!(appended.starts_with("# Mine\n") && appended.contains(BEGIN));
    }

    #[test]
    fn a_run_of_some_scenarios_keeps_the_other_scenarios_figures_of_the_report_it_replaces() {
        let machine = |date: &str, commit: &str| Machine {
            cpu: "cpu".into(),
            cores: 2,
            kernel: "6".into(),
            memory_gib: 1.0,
            broker: "tansu".into(),
            commit: commit.into(),
            date: date.into(),
        };
        let config = Config::from_args(["--scenarios", "ceiling,drain,ledger"]).effective();
        let earlier = Report {
            machine: machine("2026-11-01T00:00:00Z", "aaa"),
            workload: (&config).into(),
            figures: vec![
                Figure::new("ceiling.receiver.sequential", "Receiver", "requests/s", vec![100.0]),
                Figure::new("drain.signing.1", "Drain", "deliveries/s", vec![50.0]),
                Figure::new("ledger.10.5.seconds", "Old ledger", "s", vec![9.0]),
            ],
        };
        let dir = std::env::temp_dir().join(format!("hookline-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("results.json");
        std::fs::write(&json, serde_json::to_string(&earlier).unwrap()).unwrap();

        let mut report = Report {
            machine: machine("2026-11-30T00:00:00Z", "bbb"),
            workload: (&config).into(),
            figures: vec![Figure::new("ledger.10.5.seconds", "New ledger", "s", vec![1.0])],
        };
        report.carry_over(&json, &[Scenario::Ledger]);
        report.relate_to_ceilings();
        let ids: Vec<&str> = report.figures.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["ceiling.receiver.sequential", "drain.signing.1", "ledger.10.5.seconds"]);
        assert_eq!(report.figure("ledger.10.5.seconds").unwrap().median, 1.0, "this run's figure, not the old one");
        assert!(report.figure("ledger.10.5.seconds").unwrap().measured.is_none());
        assert_eq!(
            report.figure("drain.signing.1").unwrap().measured.as_deref(),
            Some("2026-11-01T00:00:00Z at commit aaa")
        );
        assert!(report.figure("drain.signing.1").unwrap().of_ceiling.is_some());
        let markdown = report.markdown();
        assert!(markdown.contains("| Drain (1) |") && markdown.contains("| New ledger |"), "{markdown}");
        assert!(markdown.contains("(1) Not measured by this run"), "{markdown}");
        // Nothing to carry over: no change.
        let mut alone = Report { figures: vec![], ..report.clone() };
        alone.carry_over(&dir.join("missing.json"), &[Scenario::Ledger]);
        assert!(alone.figures.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_figure_of_its_ideal_keeps_that_share_and_says_so() {
        let config = Config::from_args(["--scenarios", "ceiling,endpoints"]).effective();
        let mut report = Report {
            machine: Machine::read("tansu".into()),
            workload: (&config).into(),
            figures: vec![
                Figure::new("ceiling.receiver.sequential", "Receiver", "requests/s", vec![1000.0]),
                Figure::new("endpoints.drain.partition", "Slow drain", "deliveries/s", vec![60.0])
                    .with_ideal(Some(120.0)),
                Figure::new("drain.signing.1", "Drain", "deliveries/s", vec![500.0]),
            ],
        };
        report.relate_to_ceilings();
        let share = |id: &str| report.figure(id).unwrap().of_ceiling.clone().unwrap();
        assert_eq!(
            (share("endpoints.drain.partition").ceiling.as_str(), share("endpoints.drain.partition").fraction),
            (IDEAL, 0.5)
        );
        assert_eq!(share("drain.signing.1").ceiling, "ceiling.receiver.sequential");
        let markdown = report.markdown();
        assert!(markdown.contains("| Slow drain | 60.0 | 60.0 | 60.0 | deliveries/s | 50 % of ideal |"), "{markdown}");
        assert!(
            markdown.contains("| Drain | 500 | 500 | 500 | deliveries/s | 50 % |") && markdown.contains("\"Of ideal\"")
        );
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(number(23_456.7), "23457");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(1.2345), "1.23");
    }
}
