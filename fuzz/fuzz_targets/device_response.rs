//! A device's flow fed an arbitrary create-certificate or RegisterThing response.
//! Input layout: `fleetstorm::fuzzing::device_response`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetstorm::fuzzing::device_response(data));
