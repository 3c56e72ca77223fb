//! A provisioning template loaded, rendered and applied as the mock does.
//! Input layout: `fleetstorm::fuzzing::template`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetstorm::fuzzing::template(data));
