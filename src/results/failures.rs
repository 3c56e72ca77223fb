//! `failures.csv`: every failure and dropped arrival. Its one model, [`FailureRow`]: the run
//! writes it (`output`), `report` and `compare` read its time and reason ([`read`]), `merge`
//! concatenates it by its columns.

use std::path::Path;

use super::{ResultsError, open};

/// The file name inside a run folder.
pub const FILE_NAME: &str = "failures.csv";

super::csv_row! {
    /// One row of `failures.csv`. The raw rejection columns (`status_code`, `error_code`,
    /// `error_message`, empty for failures that were no `…/rejected` response) come last so
    /// readers of the first five keep working.
    #[derive(Debug, Clone, Copy)]
    pub struct FailureRow<'a> {
        /// Seconds since the start of the run (written with 3 decimals).
        pub elapsed_s: f64,
        pub seq: u64,
        pub client_id: &'a str,
        pub reason: &'a str,
        pub detail: &'a str,
        pub status_code: Option<u16>,
        pub error_code: &'a str,
        pub error_message: &'a str,
    }
}

impl FailureRow<'_> {
    /// The row's cells as written, in [`FailureRow::COLUMNS`] order.
    pub fn cells(&self) -> [String; 8] {
        [
            format!("{:.3}", self.elapsed_s),
            self.seq.to_string(),
            self.client_id.to_string(),
            self.reason.to_string(),
            self.detail.to_string(),
            self.status_code.map(|c| c.to_string()).unwrap_or_default(),
            self.error_code.to_string(),
            self.error_message.to_string(),
        ]
    }
}

/// `failures.csv`: (elapsed seconds, reason) per failure and dropped arrival.
pub fn read(path: &Path) -> Result<Vec<(f64, String)>, ResultsError> {
    let invalid = |detail: String| ResultsError::Invalid {
        path: path.to_path_buf(),
        detail,
    };
    let mut reader = csv::Reader::from_reader(open(path)?);
    let headers = reader
        .headers()
        .map_err(|e| invalid(e.to_string()))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| invalid(format!("line 1: no `{name}` column")))
    };
    let (elapsed_col, reason_col) = (column("elapsed_s")?, column("reason")?);
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| invalid(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let cell = record.get(elapsed_col).unwrap_or("").trim();
        let elapsed = cell.parse::<f64>().map_err(|_| {
            invalid(format!(
                "line {line}: column `elapsed_s`: {cell:?} is not a number"
            ))
        })?;
        out.push((elapsed, record.get(reason_col).unwrap_or("").to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_columns_the_reader_takes_are_the_rows_and_the_docs_name_them_all() {
        for name in ["elapsed_s", "reason"] {
            assert!(FailureRow::COLUMNS.contains(&name), "{name}");
        }
        let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/results.md"))
            .unwrap();
        // A file's section: from the `## ` heading that names it to the next heading.
        let section = |file: &str| {
            let start = page
                .lines()
                .position(|l| l.starts_with("## ") && l.contains(file))
                .unwrap_or_else(|| panic!("docs/results.md has no section for {file}"));
            page.lines()
                .skip(start + 1)
                .take_while(|l| !l.starts_with("## "))
                .collect::<Vec<_>>()
                .join("\n")
        };
        for (file, columns) in [
            (FILE_NAME, FailureRow::COLUMNS),
            (
                super::super::created::FILE_NAME,
                super::super::CreatedRow::COLUMNS,
            ),
        ] {
            let text = section(file);
            for c in columns {
                assert!(
                    text.contains(&format!("`{c}`")),
                    "docs/results.md's {file} section does not name `{c}`"
                );
            }
        }
    }
}
