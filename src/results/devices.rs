//! `devices.csv`: one row per device the run started. Its one model, [`DeviceRow`]: the run
//! writes it (`output`, from the device's report), `merge` concatenates it by its columns.

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
