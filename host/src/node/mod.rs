//! The Node side of the agent: registration, conditions, the status loop and the Lease, and
//! the lab's actions on a whole node.

pub mod actions;
pub mod conditions;
pub mod lease;
pub mod register;
pub mod status;
