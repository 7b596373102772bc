//! Policy: what the user wrote (`parse`: YAML -> validated `model`), what the kernel
//! gets (`compile`), and the built-in default profile.

pub mod compile;
pub mod host;
pub mod model;
pub mod parse;

pub use model::{Mode, OnViolation, Policy, Profile};
pub use parse::parse_policy;

/// The built-in policy: one profile, `default`, used when no policy file is given.
pub const DEFAULT_POLICY: &str = include_str!("default-policy.yaml");
pub const DEFAULT_PROFILE: &str = "default";

pub fn default_policy() -> Policy {
    parse_policy(DEFAULT_POLICY).expect("the built-in policy is valid (tested)")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_policy_is_valid() {
        let policy = super::parse_policy(super::DEFAULT_POLICY).unwrap();
        assert!(policy.profile(super::DEFAULT_PROFILE).is_some());
    }
}
