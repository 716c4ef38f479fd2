//! Reading events and snapshots, writing decisions and rejected lines.

pub mod event_csv;
pub mod event_json;
pub mod flat_json;
pub mod output;
pub mod parallel;
pub mod paths;
pub mod read;
pub mod reject_code;
pub mod sink;
pub mod snapshot;
mod snapshot_json;

pub use output::{DecisionWriter, OutputFormat};
pub use sink::{FileSink, Sink, StreamSink};
pub use snapshot::{load_snapshot, SnapshotLoad};
