//! `devices.csv`: one row per device the run started. Its one model, [`DeviceRow`]: the run
//! writes it (`output`, from the device's report), `merge` concatenates it by its columns after
//! [`check_row`] has read every cell with the type the run writes it with.

use std::collections::HashMap;
use std::path::Path;

use super::ResultsError;

/// The file name inside a run folder.
pub const FILE_NAME: &str = "devices.csv";

super::csv_row! {
    /// One row of `devices.csv`: the device's identity, its start lag, each stage's service
    /// time (empty when the device did not reach the stage) and how it ended.
    #[derive(Debug, serde::Serialize)]
    pub struct DeviceRow {
        pub seq: u64,
        pub client_id: String,
        pub thing_name: String,
        pub start_lag_us: u64,
        pub connect_claim_us: Option<u64>,
        pub subscribe_us: Option<u64>,
        pub create_certificate_us: Option<u64>,
        pub register_thing_us: Option<u64>,
        pub connect_device_us: Option<u64>,
        pub telemetry_publishes: usize,
        pub total_us: u64,
        /// `provisioned` or `failed`.
        pub outcome: &'static str,
        pub reason: String,
        pub attempts: u32,
    }
}

/// What a `devices.csv` column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Any text (client ID, thing name, failure reason).
    Text,
    /// A whole number >= 0.
    Count,
    /// A whole number >= 0, or empty (a stage the device never reached).
    OptionalCount,
    /// A whole number from 1 to 2^32 - 1 (flow attempts).
    Attempts,
    /// `provisioned` or `failed`.
    Outcome,
}

/// What each of [`DeviceRow`]'s columns holds, in its order (a test holds them to the model).
const CELLS: [(&str, Kind); 14] = [
    ("seq", Kind::Count),
    ("client_id", Kind::Text),
    ("thing_name", Kind::Text),
    ("start_lag_us", Kind::Count),
    ("connect_claim_us", Kind::OptionalCount),
    ("subscribe_us", Kind::OptionalCount),
    ("create_certificate_us", Kind::OptionalCount),
    ("register_thing_us", Kind::OptionalCount),
    ("connect_device_us", Kind::OptionalCount),
    ("telemetry_publishes", Kind::Count),
    ("total_us", Kind::Count),
    ("outcome", Kind::Outcome),
    ("reason", Kind::Text),
    ("attempts", Kind::Attempts),
];

/// Whether `cell` is a value of `kind`; `Err` says what it should have been.
fn check(kind: Kind, cell: &str) -> Result<(), &'static str> {
    let count = |c: &str| c.bytes().all(|b| b.is_ascii_digit()) && c.parse::<u64>().is_ok();
    let ok = match kind {
        Kind::Text => true,
        Kind::Count => count(cell),
        Kind::OptionalCount => cell.is_empty() || count(cell),
        Kind::Attempts => {
            cell.bytes().all(|b| b.is_ascii_digit()) && cell.parse::<u32>().is_ok_and(|n| n >= 1)
        }
        Kind::Outcome => matches!(cell, "provisioned" | "failed"),
    };
    ok.then_some(()).ok_or(match kind {
        Kind::Text => "text",
        Kind::Count => "a whole number >= 0",
        Kind::OptionalCount => "a whole number >= 0 or empty",
        Kind::Attempts => "a whole number >= 1",
        Kind::Outcome => "\"provisioned\" or \"failed\"",
    })
}

/// Check every cell of one `devices.csv` row as a run writes it (for `merge`, which copies
/// rows by their columns: a `seq` of `-7` or `0.5` is a malformed file, not a device of another
/// shard; columns fleetstorm does not write pass as they are, a missing one is allowed) (line `line` of `path`, cells by column name) and
/// return its `seq`.
pub fn check_row(
    path: &Path,
    line: usize,
    cells: &HashMap<String, String>,
) -> Result<u64, ResultsError> {
    let invalid = |detail: String| ResultsError::Invalid {
        path: path.to_path_buf(),
        detail: format!("line {line}: {detail}"),
    };
    for (column, kind) in CELLS {
        let Some(cell) = cells.get(column) else {
            continue;
        };
        check(kind, cell).map_err(|want| {
            invalid(format!(
                "column `{column}`: {cell:?} is not {want}, as a run writes it"
            ))
        })?;
    }
    let seq = cells
        .get("seq")
        .ok_or_else(|| invalid("no `seq` column".into()))?;
    // Checked above: digits that fit a u64.
    seq.parse()
        .map_err(|_| invalid(format!("column `seq`: {seq:?} is not a device seq")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_columns_are_the_models() {
        let names: Vec<&str> = CELLS.iter().map(|c| c.0).collect();
        assert_eq!(names, DeviceRow::COLUMNS);
    }

    fn row(cells: &[(&str, &str)]) -> HashMap<String, String> {
        cells
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cells_parse_with_their_types_and_errors_name_line_and_column() {
        let path = Path::new("shard-1/devices.csv");
        let good = [
            ("seq", "7"),
            ("client_id", "d-7"),
            ("start_lag_us", "120"),
            ("connect_claim_us", ""),
            ("register_thing_us", "3500"),
            ("outcome", "failed"),
            ("attempts", "1"),
            ("note", "anything: not a fleetstorm column"),
        ];
        assert_eq!(check_row(path, 3, &row(&good)).unwrap(), 7);
        assert_eq!(
            check_row(path, 2, &row(&[("seq", "18446744073709551615")])).unwrap(),
            u64::MAX
        );
        for (column, cell) in [
            ("seq", "-7"),
            ("seq", "0.5"),
            ("seq", "+5"),
            ("seq", " 5"),
            ("seq", ""),
            ("seq", "18446744073709551616"),
            ("start_lag_us", "1e3"),
            ("register_thing_us", "-1"),
            ("outcome", "dropped"),
            ("attempts", "0"),
            ("attempts", "x"),
            ("telemetry_publishes", ""),
        ] {
            let mut cells = row(&good);
            cells.insert(column.into(), cell.into());
            let e = check_row(path, 9, &cells).unwrap_err().to_string();
            assert!(
                e.starts_with("shard-1/devices.csv: line 9: ")
                    && e.contains(&format!("column `{column}`: {cell:?}")),
                "{column} {cell:?}: {e}"
            );
        }
        let e = check_row(path, 4, &row(&[("client_id", "x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4: no `seq` column"), "{e}");
    }
}
