//! An IoT policy document parsed and evaluated; the claim policy for any region and account.
//! Input layout: `fleetstorm::fuzzing::policy`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetstorm::fuzzing::policy(data));
