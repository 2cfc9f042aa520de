//! The generated CRD against the files in the repository: drift, examples, CEL rules.

mod cel_rules;
mod drift;
mod examples;
mod support;
