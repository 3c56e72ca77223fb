//! The mock's MQTT session after the TLS handshake (first byte: mode).
//! Input layout: `fleetstorm::fuzzing::mqtt_session`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fleetstorm::fuzzing::mqtt_session(data);
});
