//! `devices.csv`, `failures.csv` and `created.csv` concatenated (one header, every row of
//! every folder, in order), and the CSV writing every merged table shares.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::MergeError;
use super::inputs::Input;
use crate::output::OutputError;
use crate::results::ResultsError;

/// A CSV file: its header and rows (cells as written).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A row being merged: its sort key and its cells by column name.
struct Row {
    key: Key,
    cells: HashMap<String, String>,
}

#[derive(PartialEq, PartialOrd)]
enum Key {
    Seq(u64),
    Number(f64),
    Text(String),
}

/// A CSV file's header and its records with their line numbers.
type Records = (Vec<String>, Vec<(usize, csv::StringRecord)>);

/// A CSV file read whole (a last line cut short by a kill is ignored, as for `report`).
fn read(path: &Path) -> Result<Records, ResultsError> {
    let invalid = |detail: String| ResultsError::Invalid {
        path: path.to_path_buf(),
        detail,
    };
    let (mut reader, header) = crate::results::open_csv(path)?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| invalid(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        rows.push((line, record));
    }
    Ok((header, rows))
}

/// The same file of every folder, concatenated and sorted by `key` (stable: ties keep folder
/// order). `key` gets the folder's index, the file, the line and the row's cells by column
/// name (which it may rewrite).
fn concat(
    inputs: &[Input],
    file: &str,
    mut key: impl FnMut(usize, &Path, usize, &mut HashMap<String, String>) -> Result<Key, MergeError>,
) -> Result<Option<Table>, MergeError> {
    let mut header: Vec<String> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut any = false;
    for (n, input) in inputs.iter().enumerate() {
        let path = input.dir().join(file);
        if !path.exists() {
            continue;
        }
        any = true;
        let (names, records) = read(&path)?;
        for name in &names {
            if !header.contains(name) {
                header.push(name.clone());
            }
        }
        for (line, record) in records {
            let mut cells: HashMap<String, String> = names
                .iter()
                .cloned()
                .zip(record.iter().map(str::to_string))
                .collect();
            let key = key(n, &path, line, &mut cells)?;
            rows.push(Row { key, cells });
        }
    }
    if !any {
        return Ok(None);
    }
    rows.sort_by(|a, b| {
        a.key
            .partial_cmp(&b.key)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let rows = rows
        .into_iter()
        .map(|r| {
            header
                .iter()
                .map(|h| r.cells.get(h).cloned().unwrap_or_default())
                .collect()
        })
        .collect();
    Ok(Some(Table { header, rows }))
}

fn number(
    path: &Path,
    line: usize,
    cells: &HashMap<String, String>,
    column: &str,
) -> Result<f64, MergeError> {
    let invalid = |detail: String| ResultsError::Invalid {
        path: path.to_path_buf(),
        detail: format!("line {line}: {detail}"),
    };
    let cell = cells
        .get(column)
        .ok_or_else(|| invalid(format!("no `{column}` column")))?
        .trim();
    cell.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| invalid(format!("column `{column}`: {cell:?} is not a number")).into())
}

fn required(path: PathBuf, table: Option<Table>) -> Result<Table, MergeError> {
    table.ok_or_else(|| {
        ResultsError::Read {
            path,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        }
        .into()
    })
}

/// `devices.csv`, ordered by `seq`, every cell checked ([`super::devices`]). A `seq` in two
/// folders is refused: the shards overlap; a `seq` twice in one file is a malformed file.
pub(super) fn devices(inputs: &[Input]) -> Result<Table, MergeError> {
    let mut seen: HashMap<u64, (usize, usize)> = HashMap::new();
    let table = concat(inputs, "devices.csv", |n, path, line, cells| {
        let seq = crate::results::devices::check_row(path, line, cells)?;
        if let Some(&(other, other_line)) = seen.get(&seq) {
            if other == n {
                return Err(ResultsError::Invalid {
                    path: path.to_path_buf(),
                    detail: format!(
                        "line {line}: device seq {seq} again (line {other_line}): a run writes each device once"
                    ),
                }
                .into());
            }
            return Err(MergeError::Refused(format!(
                "overlapping shards: device seq {seq} ({}) is in {} and in {} (line {line})",
                cells.get("client_id").map_or("", String::as_str),
                inputs[other].dir().join("devices.csv").display(),
                path.display()
            )));
        }
        seen.insert(seq, (n, line));
        Ok(Key::Seq(seq))
    })?;
    required(inputs[0].dir().join("devices.csv"), table)
}

/// `failures.csv`, ordered by time, `elapsed_s` counted from the merged origin.
pub(super) fn failures(inputs: &[Input]) -> Result<Table, MergeError> {
    let table = concat(inputs, "failures.csv", |n, path, line, cells| {
        let at = inputs[n].offset_s + number(path, line, cells, "elapsed_s")?;
        cells.insert("elapsed_s".into(), format!("{at:.3}"));
        Ok(Key::Number(at))
    })?;
    required(inputs[0].dir().join("failures.csv"), table)
}

/// `created.csv` (none when no folder has one), ordered by `time` (RFC 3339 UTC, which sorts
/// as text).
pub(super) fn created(inputs: &[Input]) -> Result<Option<Table>, MergeError> {
    concat(inputs, "created.csv", |_, _, _, cells| {
        Ok(Key::Text(cells.get("time").cloned().unwrap_or_default()))
    })
}

/// Write a table.
pub(super) fn write(path: &Path, table: &Table) -> Result<(), MergeError> {
    let err = |e: csv::Error| OutputError::new(path, std::io::Error::other(e));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&table.header).map_err(err)?;
    for row in &table.rows {
        w.write_record(row).map_err(err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| OutputError::new(path, e.into_error()))?;
    std::fs::write(path, bytes).map_err(|e| OutputError::new(path, e))?;
    Ok(())
}
