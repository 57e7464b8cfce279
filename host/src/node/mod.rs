//! The Node side of the agent: registration, conditions, the status loop and the Lease.

pub mod conditions;
pub mod lease;
pub mod register;
pub mod status;
