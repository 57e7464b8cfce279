//! The Node side of the agent: its Lease (and, next, registration and node status).

pub mod lease;
