//! Printing results: aligned tables for people, JSON or CSV for programs.

use serde::Serialize;

use crate::args::Output;
use crate::client::ClientError;

/// Prints `value` as JSON, or as a table of `rows` under `headers`.
pub fn print<T: Serialize>(
    format: Output,
    value: &T,
    headers: &[&str],
    rows: Vec<Vec<String>>,
) -> Result<(), ClientError> {
    match format {
        Output::Json => {
            let text = serde_json::to_string_pretty(value)
                .map_err(|e| ClientError::Other(e.to_string()))?;
            println!("{text}");
        }
        Output::Table => print!("{}", table(headers, &rows)),
        Output::Csv => print!("{}", csv(headers, &rows)?),
    }
    Ok(())
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

/// Prints one record as `key: value` lines, or as JSON.
pub fn print_record<T: Serialize>(
    format: Output,
    value: &T,
    fields: Vec<(&str, String)>,
) -> Result<(), ClientError> {
    let rows = fields
        .into_iter()
        .map(|(k, v)| vec![format!("{k}:"), v])
        .collect();
    match format {
        Output::Json | Output::Csv => print(format, value, &[], rows),
        Output::Table => {
            print!("{}", table(&[], &rows));
            Ok(())
        }
    }
}

pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers
        .len()
        .max(rows.iter().map(Vec::len).max().unwrap_or(0));
    let mut widths = vec![0; columns];
    let header_row: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
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
    for row in rows {
        line(row);
    }
    out
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
    }
}
