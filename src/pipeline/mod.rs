//! Pure decisions on plain values, tested without a database: what changed between two
//! snapshots and which events a change raises (`diff`), what training insight says
//! (`crate::insight`'s analysis), and how long a failed delivery waits (`retry`).

pub mod diff;
pub mod policy;
pub mod routing;

pub use policy::Policy;
