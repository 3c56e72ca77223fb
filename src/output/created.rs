//! Writing `created.csv` (its model: [`crate::results::created`]): every certificate a run's
//! endpoint issued and every thing it registered, for `fleetstorm aws cleanup`.

use std::io::Write;
use std::time::SystemTime;

use crate::results::CreatedRow;

/// A `created.csv` writer: the header, then [`CreatedRow`]s.
pub(super) fn created_csv<W: Write>(out: W) -> Result<csv::Writer<W>, csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(out);
    w.write_record(CreatedRow::COLUMNS)?;
    Ok(w)
}

/// What every `created.csv` row of a run shares.
#[derive(Debug, Clone, Default)]
pub struct CreatedContext {
    pub run_id: String,
    /// For certificate ARNs: from an AWS IoT host name and the scenario's `[target] account`.
    pub region: Option<String>,
    pub account: Option<String>,
}

impl CreatedContext {
    pub fn row(
        &self,
        device: &str,
        attempt: u32,
        certificate_id: &str,
        thing_name: &str,
        at: SystemTime,
    ) -> CreatedRow {
        CreatedRow {
            run_id: self.run_id.clone(),
            device: device.to_string(),
            attempt,
            certificate_id: certificate_id.to_string(),
            certificate_arn: crate::guard::certificate_arn(
                self.region.as_deref(),
                self.account.as_deref(),
                certificate_id,
            ),
            thing_name: thing_name.to_string(),
            policy_names: String::new(),
            time: humantime::format_rfc3339_millis(at).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn created_rows_have_the_documented_columns_and_arns_only_when_account_and_region_are_known() {
        let ctx = CreatedContext {
            run_id: "abc234".into(),
            region: Some("eu-west-1".into()),
            account: Some("123456789012".into()),
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let mut w = created_csv(Vec::new()).unwrap();
        w.serialize(ctx.row("dev-1", 2, "ff00", "", at)).unwrap();
        w.serialize(ctx.row("dev-1", 2, "ff00", "thing-1", at))
            .unwrap();
        let unknown = CreatedContext {
            account: None,
            ..ctx
        };
        w.serialize(unknown.row("dev-2", 1, "ee11", "", at))
            .unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(
            text,
            "run_id,device,attempt,certificate_id,certificate_arn,thing_name,policy_names,time\n\
             abc234,dev-1,2,ff00,arn:aws:iot:eu-west-1:123456789012:cert/ff00,,,2023-11-14T22:13:20.123Z\n\
             abc234,dev-1,2,ff00,arn:aws:iot:eu-west-1:123456789012:cert/ff00,thing-1,,2023-11-14T22:13:20.123Z\n\
             abc234,dev-2,1,ee11,,,,2023-11-14T22:13:20.123Z\n"
        );
    }
}
