//! JSON Schemas of the files people write, generated from the serde types that read them, for
//! editors (Even Better TOML / taplo read a `#:schema PATH` first line) and `fleetstorm schema`.
//!
//! Draft 7 rather than schemars' default 2020-12: taplo's validator reads draft 7 (and earlier)
//! fully. The committed copies under `schema/` are checked against these by a drift test.

use schemars::generate::SchemaSettings;

/// A file kind with a schema: the value of `fleetstorm schema KIND`. Another kind is one variant
/// here and one arm in [`SchemaKind::generate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaKind {
    /// A scenario file (`fleetstorm run FILE`, `validate`, `new`).
    Scenario,
    /// A mock settings file (`fleetstorm mock --config FILE`; a scenario's `[target.mock]`).
    MockSettings,
    /// A device behaviour profile, whole (`fleetstorm profiles show NAME` prints the built-ins).
    Profile,
}

impl SchemaKind {
    pub const ALL: [SchemaKind; 3] = [
        SchemaKind::Scenario,
        SchemaKind::MockSettings,
        SchemaKind::Profile,
    ];

    /// The file name of its committed copy under `schema/`.
    pub fn file_name(self) -> &'static str {
        match self {
            SchemaKind::Scenario => "scenario.json",
            SchemaKind::MockSettings => "mock-settings.json",
            SchemaKind::Profile => "profile.json",
        }
    }

    /// The schema as pretty JSON with a final newline.
    pub fn generate(self) -> String {
        let generator = SchemaSettings::draft07().into_generator();
        let schema = match self {
            SchemaKind::Scenario => generator.into_root_schema_for::<crate::scenario::Scenario>(),
            SchemaKind::MockSettings => {
                generator.into_root_schema_for::<crate::mock_settings::MockSettings>()
            }
            SchemaKind::Profile => generator.into_root_schema_for::<crate::device::Profile>(),
        };
        let mut text = serde_json::to_string_pretty(&schema).expect("a schema serialises");
        text.push('\n');
        text
    }
}
