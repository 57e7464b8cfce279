//! The Node side of the agent: registration, conditions (and the pressure flags behind
//! three of them), the status loop and the Lease, and the lab's actions on a whole node.

pub mod actions;
pub mod conditions;
pub mod lease;
pub mod pressure;
pub mod register;
pub mod status;
