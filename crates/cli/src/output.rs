//! Printing results: aligned tables for people, JSON or CSV for programs.
//!
//! Everything the CLI prints goes through [`write`] and [`note`], so a closed
//! pipe (`nubo … | head`) ends it quietly instead of panicking, as other Unix
//! tools do; the crate denies `print!` and `eprint!` to keep it so.

use std::fmt::Display;
use std::io::Write;

use serde::Serialize;

use crate::args::Output;
use crate::client::ClientError;

/// The widest a table cell is: longer text is cut with `…`, so that a row
/// stays one line (records, as `show` prints them, keep it whole).
const CELL_WIDTH: usize = 60;

/// Writes `text` to stdout; a reader that went away ends the command quietly.
pub fn write(text: &str) -> Result<(), ClientError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ClientError::OutputClosed),
        Err(e) => Err(ClientError::Other(format!("cannot write the output: {e}"))),
    }
}

/// A line for people on stderr; lost, not fatal, if stderr is closed.
pub fn note(text: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<(), ClientError> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| ClientError::Other(e.to_string()))?;
    write(&format!("{text}\n"))
}

/// Prints `value` as JSON, or as a table of `rows` under `headers`.
pub fn print<T: Serialize + ?Sized>(
    format: Output,
    value: &T,
    headers: &[&str],
    rows: Vec<Vec<String>>,
) -> Result<(), ClientError> {
    match format {
        Output::Json => json(value),
        Output::Table => write(&table(headers, &rows)),
        Output::Csv => write(&csv(headers, &rows)?),
    }
}

/// Prints `value` as JSON, or `text` as it is (a console, a private key).
pub fn print_text<T: Serialize + ?Sized>(
    format: Output,
    value: &T,
    text: &str,
) -> Result<(), ClientError> {
    match format {
        Output::Json => json(value),
        Output::Table | Output::Csv if text.is_empty() || text.ends_with('\n') => write(text),
        Output::Table | Output::Csv => write(&format!("{text}\n")),
    }
}

/// The table's rows as CSV under its headers.
pub fn csv(headers: &[&str], rows: &[Vec<String>]) -> Result<String, ClientError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let failed = |e: csv::Error| ClientError::Other(e.to_string());
    if !headers.is_empty() {
        w.write_record(headers).map_err(failed)?;
    }
    for row in rows {
        w.write_record(row).map_err(failed)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ClientError::Other(e.to_string()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Prints one record as `key: value` lines with every value whole, or as JSON.
pub fn print_record<T: Serialize + ?Sized>(
    format: Output,
    value: &T,
    fields: Vec<(&str, String)>,
) -> Result<(), ClientError> {
    match format {
        Output::Json => json(value),
        Output::Csv => {
            let rows = fields.into_iter().map(|(k, v)| vec![k.into(), v]).collect();
            print(format, value, &[], rows)
        }
        Output::Table => write(&record(&fields)),
    }
}

fn record(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .map(|(k, _)| k.chars().count() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in fields {
        let key = format!("{k}:");
        out.push_str(format!("{key:<width$}  {v}").trim_end());
        out.push('\n');
    }
    out
}

/// Rows under upper-case headers, columns aligned, one line per row.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut columns = headers
        .len()
        .max(rows.iter().map(Vec::len).max().unwrap_or(0));
    // A last column empty in every row (no instance has a reason) says nothing.
    while !rows.is_empty()
        && columns > 1
        && rows
            .iter()
            .all(|r| r.get(columns - 1).is_none_or(String::is_empty))
    {
        columns -= 1;
    }
    let header_row: Vec<String> = headers
        .iter()
        .take(columns)
        .map(|h| h.to_uppercase())
        .collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().take(columns).map(|c| cell(c)).collect())
        .collect();
    let mut widths = vec![0; columns];
    for row in std::iter::once(&header_row).chain(&rows) {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |row: &[String]| {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    };
    if !headers.is_empty() {
        line(&header_row);
    }
    for row in &rows {
        line(row);
    }
    out
}

/// A cell on one line, cut to [`CELL_WIDTH`] with a visible mark.
fn cell(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= CELL_WIDTH {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(CELL_WIDTH - 1).collect();
    cut.push('…');
    cut
}

/// `-` for an absent value in a table.
pub fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align_columns() {
        let t = super::table(
            &["id", "state"],
            &[
                vec!["i-1".into(), "running".into()],
                vec!["i-22".into(), "-".into()],
            ],
        );
        assert_eq!(t, "ID    STATE\ni-1   running\ni-22  -\n");
        let t = super::table(&["id", "reason"], &[vec!["i-1".into(), String::new()]]);
        assert_eq!(
            t, "ID\ni-1\n",
            "a last column empty in every row is left out"
        );
    }

    #[test]
    fn long_cells_are_cut_to_one_line_and_records_keep_them_whole() {
        let reason = format!("dnsmasq: failed\nto open {}", "x".repeat(500));
        let t = super::table(&["id", "reason"], &[vec!["i-1".into(), reason.clone()]]);
        let row = t.lines().nth(1).unwrap();
        assert_eq!(t.lines().count(), 2, "{t}");
        assert_eq!(
            row.chars().count(),
            "i-1  ".len() + super::CELL_WIDTH,
            "{row}"
        );
        assert!(
            row.ends_with('…') && row.contains("failed to open"),
            "{row}"
        );

        let r = super::record(&[("id", "i-1".into()), ("state_reason", reason.clone())]);
        assert_eq!(r, format!("id:            i-1\nstate_reason:  {reason}\n"));
    }
}
