//! `created.csv`: every certificate a run's endpoint issued and every thing it registered. Its
//! one model, [`CreatedRow`]: the run writes it (`output`), `aws cleanup` reads it to remove
//! what the run created, `merge` concatenates it by its columns.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ResultsError;

/// The file name inside a run folder.
pub const FILE_NAME: &str = "created.csv";

super::csv_row! {
    /// One row of `created.csv`: a certificate the endpoint issued (`thing_name` empty) or a
    /// thing it registered for that certificate (a second row, same `certificate_id`). Readers
    /// take the columns by header name, in any order, and deduplicate by certificate ID.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct CreatedRow {
        pub run_id: String,
        /// The device's client ID.
        pub device: String,
        /// The whole-flow attempt (1-based) that got the certificate.
        pub attempt: u32,
        pub certificate_id: String,
        /// `arn:aws:iot:<region>:<account>:cert/<id>` when the account and region are known
        /// (AWS's MQTT responses carry no ARN); otherwise empty (cleanup then asks
        /// DescribeCertificate).
        #[serde(default)]
        pub certificate_arn: String,
        #[serde(default)]
        pub thing_name: String,
        /// `;`-separated. Always empty in what a run writes: RegisterThing's response carries
        /// only `deviceConfiguration` and `thingName`, so a device cannot know which policies
        /// the template attached (cleanup asks ListAttachedPolicies for each certificate).
        #[serde(default)]
        pub policy_names: String,
        /// RFC 3339 UTC, milliseconds.
        pub time: String,
    }
}

impl CreatedRow {
    /// The policy names, without empty entries.
    pub fn policies(&self) -> impl Iterator<Item = &str> {
        self.policy_names
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }
}

/// Read `path`; errors name the file and line.
pub fn read(path: &Path) -> Result<Vec<CreatedRow>, ResultsError> {
    let file = std::fs::File::open(path).map_err(|source| ResultsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(std::io::BufReader::new(file), path)
}

/// The columns every `created.csv` header has (the others may be missing).
const REQUIRED: [&str; 5] = ["run_id", "device", "attempt", "certificate_id", "time"];

/// Parse `created.csv` text from `reader`; `name` is used in errors. A file without its header
/// line (empty, or starting with a data row) is malformed: a run writes the header first.
pub fn parse(reader: impl std::io::Read, name: &Path) -> Result<Vec<CreatedRow>, ResultsError> {
    let invalid = |detail: String| ResultsError::Invalid {
        path: name.to_path_buf(),
        detail,
    };
    let mut csv = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let header = csv.headers().map_err(|e| invalid(format!("line 1: {e}")))?;
    if header.is_empty() || header.iter().all(str::is_empty) {
        return Err(invalid(format!(
            "empty: no header line (a run writes `{}` first)",
            CreatedRow::COLUMNS.join(",")
        )));
    }
    if let Some(missing) = REQUIRED.iter().find(|c| !header.iter().any(|h| h == **c)) {
        return Err(invalid(format!(
            "line 1: not a created.csv header (no column `{missing}`): expected `{}`",
            CreatedRow::COLUMNS.join(",")
        )));
    }
    let mut rows = Vec::new();
    for row in csv.deserialize::<CreatedRow>() {
        let row = row.map_err(|e| {
            let line = e
                .position()
                .map(|p| format!("line {}: ", p.line()))
                .unwrap_or_default();
            let detail = match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => match err.field() {
                    Some(i) => format!("field {}: {}", i + 1, err.kind()),
                    None => err.kind().to_string(),
                },
                _ => e.to_string(),
            };
            invalid(format!("{line}{detail}"))
        })?;
        if row.certificate_id.is_empty() && row.thing_name.is_empty() {
            return Err(invalid(format!(
                "line {}: neither certificate_id nor thing_name",
                rows.len() + 2
            )));
        }
        if !row.certificate_arn.is_empty() && !row.certificate_arn.contains(":cert/") {
            return Err(invalid(format!(
                "line {}: certificate_arn {:?} is not a certificate ARN",
                rows.len() + 2,
                row.certificate_arn
            )));
        }
        rows.push(row);
    }
    Ok(rows)
}
