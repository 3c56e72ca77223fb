//! What the mock puts into its account before any request (the seed template, the claim
//! policy and certificate), and the note a colliding create gets.

/// What the mock put into its account before any request: what a create of the same name
/// collides with (`ResourceAlreadyExistsException`), named in the ready line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preloaded {
    /// Provisioning templates loaded at start (the seed's and those of the settings).
    pub templates: Vec<String>,
    /// The claim policies, one per template.
    pub policies: Vec<String>,
    /// The PKI's claim certificate (its ID), registered ACTIVE with `policies` attached.
    pub claim_certificate: Option<String>,
}

impl Preloaded {
    /// The note a colliding create's message ends with, when `name` of `kind` was preloaded.
    pub(crate) fn collision_note(&self, kind: PreloadedKind, name: &str) -> &'static str {
        let names = match kind {
            PreloadedKind::Template => &self.templates,
            PreloadedKind::Policy => &self.policies,
        };
        if names.iter().any(|n| n == name) {
            " (the mock preloads it; `fleetstorm mock --empty` starts an account without it)"
        } else {
            ""
        }
    }
}

/// The kinds of resource a create can collide with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PreloadedKind {
    Template,
    Policy,
}
