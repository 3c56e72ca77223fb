//! A scenario file (and --set overrides) loaded as `fleetstorm run` loads one.
//! Input layout: `fleetstorm::fuzzing::scenario`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetstorm::fuzzing::scenario(data));
