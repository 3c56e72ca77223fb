//! AWS IoT Core's own languages and data, as models both sides of the harness use: the fleet
//! provisioning template language ([`template`]: parser, validation, rendering) and the IoT
//! policy language ([`policy`]: documents, evaluation), with the seed's template and claim
//! policy. The mock serves and enforces them; `aws setup` validates a template and writes the
//! claim policy with the same code before it calls AWS. Depends on no other crate module.

pub mod policy;
pub mod template;
