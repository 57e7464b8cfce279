//! The Node side of the agent: registration, conditions and the Lease (the status loop
//! comes next).

pub mod conditions;
pub mod lease;
pub mod register;
