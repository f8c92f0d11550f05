//! Billing: usage metered from the event log, priced from the public price
//! list, per second.

pub mod metering;
