//! The mock's answer to one fleet-provisioning API request (first byte: API and format).
//! Input layout: `fleetstorm::fuzzing::provisioning_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetstorm::fuzzing::provisioning_request(data));
