//! How chaosctl prints: every table drawn with `tabled` in `kubectl get`'s plain style, and
//! the small formatters the commands share (ages, due times, JSON and YAML).
//!
//! The style: no borders, headers in capitals, two spaces between columns, every row on
//! one line (so `grep` and `awk` keep working), trailing blanks trimmed.
//!
//! The width budget: a table wider than the terminal wraps every row into a mess, and
//! chaosctl cannot ask the terminal (no ioctl without `unsafe`, and stdout is often a pipe),
//! so it takes `$COLUMNS` when the shell exports it and 120 otherwise. When the natural
//! table is wider, only free-text columns ([`Fit::Cut`]: reasons, notes, messages) are cut,
//! widest first, ending in `…`, never below their header or [`MIN_CUT`]. Names are never
//! cut: a shortened name could not be pasted into `describe` or `abort`, and kubectl never
//! shortens one. What does not fit after that runs past the budget, still aligned.
//! `-o wide` and `-o json|yaml` print every value in full.

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use serde::Serialize;
use tabled::builder::Builder;
use tabled::grid::util::string::get_string_width;
use tabled::settings::object::Columns;
use tabled::settings::{Alignment, Padding, Style, Width};

use crate::cluster::ClusterError;

/// The budget when `$COLUMNS` is not set (many shells do not export it).
pub const DEFAULT_WIDTH: usize = 120;

/// A cut column keeps at least this many characters, however narrow the budget.
pub const MIN_CUT: usize = 12;

/// Spaces between two columns, as kubectl prints them.
const GAP: usize = 2;

/// The width budget for tables printed now: `$COLUMNS`, else [`DEFAULT_WIDTH`].
pub fn width_budget() -> usize {
    budget_from(std::env::var("COLUMNS").ok().as_deref())
}

/// [`width_budget`] for a given `$COLUMNS` value; nonsense (or less than a cut column)
/// falls back to the default.
pub fn budget_from(columns: Option<&str>) -> usize {
    columns
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c >= MIN_CUT)
        .unwrap_or(DEFAULT_WIDTH)
}

/// What a column may give up when the table is over budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Names, states, figures: printed in full.
    Keep,
    /// Free text: cut (ending in `…`) when the table is over budget.
    Cut,
}

/// One column: its header, how it fits, and its alignment (figures right-aligned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub header: &'static str,
    pub fit: Fit,
    pub right: bool,
}

impl Column {
    /// A column printed in full, left-aligned.
    pub const fn keep(header: &'static str) -> Self {
        Self {
            header,
            fit: Fit::Keep,
            right: false,
        }
    }

    /// A free-text column, cut to fit the budget.
    pub const fn cut(header: &'static str) -> Self {
        Self {
            header,
            fit: Fit::Cut,
            right: false,
        }
    }

    /// The same column right-aligned (for figures).
    pub const fn right(mut self) -> Self {
        self.right = true;
        self
    }
}

/// A table being filled: columns, then rows of cells (one `String` per column).
#[derive(Debug, Clone, Default)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: impl IntoIterator<Item = Column>) -> Self {
        Self {
            columns: columns.into_iter().collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells print empty, extra cells are dropped.
    pub fn push(&mut self, mut row: Vec<String>) {
        row.resize(self.columns.len(), String::new());
        self.rows
            .push(row.into_iter().map(|c| one_line(&c)).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn headers(&self) -> Vec<&'static str> {
        self.columns.iter().map(|c| c.header).collect()
    }

    /// Each column's natural width: its widest cell or header.
    fn natural_widths(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|cell| get_string_width(cell))
                    .chain([get_string_width(c.header)])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// The width each column is printed at under `budget` (`None`: no budget).
    pub fn widths(&self, budget: Option<usize>) -> Vec<usize> {
        let mut widths = self.natural_widths();
        let Some(budget) = budget else {
            return widths;
        };
        let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * w.len().saturating_sub(1);
        let floor = |i: usize| MIN_CUT.max(get_string_width(self.columns[i].header));
        let mut over = total(&widths).saturating_sub(budget);
        // Widest cut column first, one character at a time: the columns end up level.
        while over > 0 {
            let widest = (0..widths.len())
                .filter(|&i| self.columns[i].fit == Fit::Cut && widths[i] > floor(i))
                .max_by_key(|&i| (widths[i], std::cmp::Reverse(i)));
            let Some(i) = widest else { break };
            widths[i] -= 1;
            over -= 1;
        }
        widths
    }

    /// The table as text, one line per row and a newline after each.
    pub fn render(&self, budget: Option<usize>) -> String {
        let natural = self.natural_widths();
        let widths = self.widths(budget);
        let mut builder = Builder::with_capacity(self.rows.len() + 1, self.columns.len());
        builder.push_record(self.headers());
        for row in &self.rows {
            builder.push_record(row.iter().map(String::as_str));
        }
        let mut table = builder.build();
        table.with(Style::empty()).with(Padding::new(0, GAP, 0, 0));
        let last = self.columns.len().saturating_sub(1);
        table.modify(Columns::one(last), Padding::zero());
        for (i, column) in self.columns.iter().enumerate() {
            if column.right {
                table.modify(Columns::one(i), Alignment::right());
            }
            if widths[i] < natural[i] {
                table.modify(Columns::one(i), Width::truncate(widths[i]).suffix("…"));
            }
        }
        let mut out = String::new();
        for line in table.to_string().lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A cell on one line: a line break in a message would break the row in two.
fn one_line(cell: &str) -> String {
    if cell.contains(['\n', '\r', '\t']) {
        cell.split(['\n', '\r', '\t'])
            .filter(|p| !p.trim().is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        cell.to_owned()
    }
}

/// Indents every line of `text` by two spaces (tables inside `describe`).
pub fn indent(out: &mut String, text: &str) {
    for line in text.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
}

/// How `get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// A table.
    #[default]
    Table,
    /// The table with more columns, every value in full.
    Wide,
    /// The objects as the API server has them (a List when more than one).
    Json,
    /// The same as YAML.
    Yaml,
}

/// Objects as JSON or YAML: one object as itself, several as a `List` (as kubectl does).
pub fn encode<K: Serialize>(
    items: &[K],
    single: bool,
    format: Format,
) -> Result<String, ClusterError> {
    let value = match items {
        [one] if single => serde_json::to_value(one)?,
        _ => serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": serde_json::to_value(items)?,
        }),
    };
    Ok(match format {
        Format::Yaml => firedrill_core::yaml::emit(&value),
        _ => format!("{}\n", serde_json::to_string_pretty(&value)?),
    })
}

/// A kubectl-style age: `45s`, `12m`, `3h4m`, `5d`.
pub fn age(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(since) = since else {
        return "<unknown>".to_owned();
    };
    let s = (now - since).num_seconds().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..3600 => format!("{}m", s / 60),
        3600..28800 => {
            let m = (s % 3600) / 60;
            if m == 0 {
                format!("{}h", s / 3600)
            } else {
                format!("{}h{m}m", s / 3600)
            }
        }
        28800..172800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// When something is due, relative to now: `in 3h`, `5m ago`, `-`.
pub fn due(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        None => "-".to_owned(),
        Some(at) if at >= now => format!("in {}", age(Some(now), at)),
        Some(at) => format!("{} ago", age(Some(at), now)),
    }
}

/// An absolute time with how long ago (or until): `2026-01-01 09:00:00 UTC (5m ago)`.
pub fn timestamp(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| {
            format!(
                "{} ({})",
                t.format("%Y-%m-%d %H:%M:%S UTC"),
                due(Some(t), now)
            )
        },
    )
}

/// An optional value as its debug name, or `-`.
pub fn opt<T: std::fmt::Debug>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:?}"))
}

/// Seconds with one decimal, or `-`.
pub fn seconds(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s"))
}

/// The measured figures of one SLI as table cells: impact, worst, unhealthy, recovery.
pub fn sli_figure_cells(f: &firedrill_core::api::SliFigures) -> [String; 4] {
    [
        seconds(f.time_to_impact_seconds),
        f.worst_value
            .map_or_else(|| "-".to_owned(), firedrill_core::report::measured),
        seconds(Some(f.unhealthy_seconds)),
        recovery(f.time_to_recover_seconds, std::slice::from_ref(f)),
    ]
}

/// A time to recover as a cell, or `healed while held` when none was needed (see
/// [`firedrill_core::report::recovery`]).
pub fn recovery(time_to_recover: Option<f64>, slis: &[firedrill_core::api::SliFigures]) -> String {
    firedrill_core::report::recovery(time_to_recover, slis, seconds)
}

/// A count, or `-`.
pub fn count(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).single().unwrap()
    }

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    /// The column each header starts at; every row's cells must start there too.
    fn starts(line: &str, headers: &[&str]) -> Vec<usize> {
        headers.iter().map(|h| line.find(h).unwrap()).collect()
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(Some(at(0)), at(45)), "45s");
        assert_eq!(age(Some(at(0)), at(600)), "10m");
        assert_eq!(age(Some(at(0)), at(3 * 3600 + 240)), "3h4m");
        assert_eq!(age(Some(at(0)), at(10 * 3600)), "10h");
        assert_eq!(age(Some(at(0)), at(5 * 86400)), "5d");
        assert_eq!(age(None, at(0)), "<unknown>");
        assert_eq!(due(Some(at(100)), at(40)), "in 60s");
        assert_eq!(due(Some(at(0)), at(600)), "10m ago");
    }

    #[test]
    fn tables_align_and_trim() {
        let mut t = Table::new([
            Column::keep("NAME"),
            Column::keep("PHASE"),
            Column::cut("NOTE"),
        ]);
        t.push(row(&["a", "Holding", ""]));
        t.push(row(&["longer", "X", "n"]));
        assert_eq!(
            t.render(Some(120)),
            "NAME    PHASE    NOTE\na       Holding\nlonger  X        n\n"
        );
        // Headers only for no rows; figures right-aligned.
        let mut t = Table::new([Column::keep("NAME"), Column::keep("LOST").right()]);
        assert_eq!(t.render(None), "NAME  LOST\n");
        t.push(row(&["a", "7"]));
        t.push(row(&["b", "1234567"]));
        assert_eq!(
            t.render(None),
            "NAME     LOST\na           7\nb     1234567\n"
        );
    }

    #[test]
    fn a_long_name_widens_its_column_and_every_row_stays_aligned() {
        let long = "quarterly-dr-20260101-090000-zone-blackout-with-a-very-long-suffix";
        let mut t = Table::new([
            Column::keep("NAME"),
            Column::keep("PHASE"),
            Column::cut("REASON"),
        ]);
        t.push(row(&["zb", "Holding", "fault in place"]));
        t.push(row(&[long, "Completed", "all probes passed"]));
        t.push(row(&["x", "Pending", "multi\nline\n message"]));
        let text = t.render(Some(120));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "one line per row:\n{text}");
        let cols = starts(lines[0], &["NAME", "PHASE", "REASON"]);
        assert_eq!(cols[1], long.len() + 2, "{text}");
        for (line, cells) in lines[1..].iter().zip([
            ["zb", "Holding", "fault in place"],
            [long, "Completed", "all probes passed"],
            ["x", "Pending", "multi line message"],
        ]) {
            assert_eq!(starts(line, &cells), cols, "{text}");
        }
    }

    #[test]
    fn over_budget_only_free_text_is_cut_and_names_stay_whole() {
        let long_name = "n".repeat(40);
        let reason = "r".repeat(100);
        let mut t = Table::new([
            Column::keep("NAME"),
            Column::keep("PHASE"),
            Column::cut("REASON"),
        ]);
        t.push(vec![long_name.clone(), "Completed".into(), reason.clone()]);
        t.push(row(&["b", "Pending", "short"]));
        let text = t.render(Some(80));
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line:?} over 80");
        }
        assert!(text.contains(&long_name), "{text}");
        let first = text.lines().nth(1).unwrap();
        assert!(first.ends_with('…') && !first.contains(&reason), "{text}");
        assert!(text.lines().nth(2).unwrap().ends_with("short"), "{text}");
        // Only names: nothing is cut, the row runs past the budget, aligned.
        let mut t = Table::new([Column::keep("NAME"), Column::keep("PHASE")]);
        t.push(vec![long_name.clone(), "Holding".into()]);
        t.push(row(&["b", "Pending"]));
        let text = t.render(Some(20));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], format!("{long_name}  Holding"));
        assert_eq!(lines[2].find("Pending"), lines[0].find("PHASE"));
        // A cut column keeps its floor however small the budget; no budget, no cut.
        assert_eq!(t.widths(Some(1)), t.widths(None));
        let mut t = Table::new([Column::cut("MESSAGE")]);
        t.push(vec![reason.clone()]);
        assert_eq!(t.widths(Some(1)), [MIN_CUT]);
        assert_eq!(t.render(None).lines().nth(1), Some(reason.as_str()));
    }

    #[test]
    fn the_budget_is_columns_or_120() {
        assert_eq!(budget_from(Some("200")), 200);
        assert_eq!(budget_from(Some(" 90\n")), 90);
        assert_eq!(budget_from(None), DEFAULT_WIDTH);
        assert_eq!(budget_from(Some("wide")), DEFAULT_WIDTH);
        assert_eq!(budget_from(Some("3")), DEFAULT_WIDTH);
    }
}
