//! What a run created, from its `created.csv` (the file's model and reader:
//! [`crate::results::created`]): every certificate the endpoint issued and every thing it
//! registered, deduplicated for `aws cleanup`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::AwsError;

use crate::results::CreatedRow;
pub use crate::results::created::FILE_NAME;

/// A certificate to remove: its ID and ARN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Certificate {
    pub id: String,
    pub arn: String,
}

/// Everything a run created, deduplicated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreatedSet {
    pub certificates: BTreeSet<Certificate>,
    pub things: BTreeSet<String>,
    /// The things each certificate (by ID) was registered with.
    pub certificate_things: BTreeMap<String, BTreeSet<String>>,
    pub policies: BTreeSet<String>,
    /// Earliest `time` in the file (seconds since the Unix epoch), when the times parse.
    pub earliest: Option<f64>,
}

impl CreatedSet {
    pub fn from_records(records: &[CreatedRow]) -> Self {
        let mut created = CreatedSet::default();
        for r in records {
            if !r.certificate_id.is_empty() {
                created.certificates.insert(Certificate {
                    id: r.certificate_id.clone(),
                    arn: r.certificate_arn.clone(),
                });
            }
            if !r.thing_name.is_empty() {
                created.things.insert(r.thing_name.clone());
                if !r.certificate_id.is_empty() {
                    created
                        .certificate_things
                        .entry(r.certificate_id.clone())
                        .or_default()
                        .insert(r.thing_name.clone());
                }
            }
            created.policies.extend(r.policies().map(str::to_string));
            if let Some(t) = parse_time(&r.time) {
                created.earliest = Some(created.earliest.map_or(t, |e: f64| e.min(t)));
            }
        }
        created
    }

    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty() && self.things.is_empty() && self.policies.is_empty()
    }
}

/// `time` as seconds since the epoch: RFC 3339 (`2026-11-30T06:00:00.123Z`) or a number.
pub fn parse_time(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Some(secs);
    }
    let t = humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
        .or_else(|_| humantime::parse_rfc3339(text))
        .ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

/// Read `path`; errors name the file and line.
pub fn read(path: &Path) -> Result<Vec<CreatedRow>, AwsError> {
    crate::results::created::read(path).map_err(|e| AwsError::Input(e.to_string()))
}

/// Parse `created.csv` text from `reader`; `name` is used in errors.
pub fn parse(reader: impl std::io::Read, name: &str) -> Result<Vec<CreatedRow>, AwsError> {
    crate::results::created::parse(reader, Path::new(name))
        .map_err(|e| AwsError::Input(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Code as _;

    const HEADER: &str =
        "run_id,device,attempt,certificate_id,certificate_arn,thing_name,policy_names,time\n";

    fn arn(id: &str) -> String {
        format!("arn:aws:iot:us-east-1:123456789012:cert/{id}")
    }

    #[test]
    fn reads_rows_and_dedupes() {
        let text = format!(
            "{HEADER}r1,0,1,aa,{},dev-0,p-aa;p-shared,2026-11-30T06:00:01Z\n\
             r1,1,1,bb,{},,,2026-11-30T06:00:00.5Z\n\
             r1,1,2,cc,{},dev-1,p-cc,1796018400\n\
             r1,0,1,aa,{},dev-0,p-aa,2026-11-30T06:00:02Z\n",
            arn("aa"),
            arn("bb"),
            arn("cc"),
            arn("aa")
        );
        let records = parse(text.as_bytes(), "created.csv").unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(
            records[0].policies().collect::<Vec<_>>(),
            ["p-aa", "p-shared"]
        );
        let created = CreatedSet::from_records(&records);
        assert_eq!(created.certificates.len(), 3);
        assert_eq!(
            created.things.iter().cloned().collect::<Vec<_>>(),
            ["dev-0", "dev-1"]
        );
        assert_eq!(created.policies.len(), 3);
        assert_eq!(created.certificate_things["aa"].len(), 1);
        assert!(!created.certificate_things.contains_key("bb"));
        let earliest = created.earliest.unwrap();
        assert!((earliest - 1_796_018_400.0).abs() < 1e-6, "{earliest}");
    }

    #[test]
    fn columns_may_come_in_any_order() {
        let text = format!(
            "time,thing_name,certificate_id,certificate_arn,policy_names,attempt,device,run_id\n\
             2026-11-30T06:00:00Z,t1,aa,{},,1,d,r\n",
            arn("aa")
        );
        let records = parse(text.as_bytes(), "x").unwrap();
        assert_eq!(records[0].thing_name, "t1");
        assert_eq!(records[0].attempt, 1);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let text = format!(
            "{HEADER}r,0,1,aa,{},t,,0\nr,0,x,bb,{},t,,0\n",
            arn("aa"),
            arn("bb")
        );
        let err = parse(text.as_bytes(), "run/created.csv").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("run/created.csv") && msg.contains("line 3"),
            "{msg}"
        );
        assert_eq!(err.code(), 3);

        let missing = "run_id,device\nr,0\n";
        let msg = parse(missing.as_bytes(), "c.csv").unwrap_err().to_string();
        assert!(msg.contains("c.csv") && msg.contains("line"), "{msg}");

        let bad_arn = format!("{HEADER}r,0,1,aa,nonsense,t,,0\n");
        let msg = parse(bad_arn.as_bytes(), "c.csv").unwrap_err().to_string();
        assert!(msg.contains("line 2") && msg.contains("nonsense"), "{msg}");
    }

    #[test]
    fn a_file_without_its_header_is_malformed() {
        let err = parse("".as_bytes(), "run/created.csv").unwrap_err();
        assert_eq!(err.code(), 3);
        assert!(err.to_string().contains("run/created.csv: empty"), "{err}");
        let row = format!("r1,0,1,aa,{},dev-0,,2026-11-30T06:00:01Z\n", arn("aa"));
        let err = parse(row.as_bytes(), "c.csv").unwrap_err();
        assert_eq!(err.code(), 3);
        assert!(
            err.to_string()
                .contains("c.csv: line 1: not a created.csv header"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_file_with_a_header_is_empty() {
        let records = parse(HEADER.as_bytes(), "c").unwrap();
        assert!(CreatedSet::from_records(&records).is_empty());
    }
}
