//! The CSR of a CreateCertificateFromCsr request, as the mock issues a certificate for it.
//! Input layout: `fleetstorm::fuzzing::csr`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetstorm::fuzzing::csr(data));
