//! Self-tests of the chaos checkers: hand-written histories with known anomalies that must be
//! flagged, valid ones that must pass, and generated valid histories of realistic size.

mod generate;
mod linearizability;
mod lost_writes;
mod oracle;
mod verdict;
mod watch;

use super::history::{Entry, History, ObjectState, Operation, Outcome};
use super::watch::{EventType, WatchEvent};

/// An entry of `client` over `[invoke, complete]`.
fn op(client: u32, invoke: u64, complete: u64, op: Operation, outcome: Outcome) -> Entry {
    Entry {
        client,
        op,
        outcome,
        invoke,
        complete: Some(complete),
    }
}

fn history(entries: Vec<Entry>) -> History {
    History { entries }
}

fn create(key: &str, value: &str) -> Operation {
    Operation::Create {
        key: key.to_string(),
        value: value.to_string(),
    }
}

fn update(key: &str, expected_rv: u64, value: &str) -> Operation {
    Operation::Update {
        key: key.to_string(),
        expected_rv,
        value: value.to_string(),
    }
}

fn get(key: &str) -> Operation {
    Operation::Get {
        key: key.to_string(),
    }
}

fn delete(key: &str) -> Operation {
    Operation::Delete {
        key: key.to_string(),
    }
}

fn written(rv: u64) -> Outcome {
    Outcome::Written { rv }
}

fn found(value: &str, rv: u64) -> Outcome {
    Outcome::Found {
        value: value.to_string(),
        rv,
    }
}

fn object(value: &str, rv: u64) -> ObjectState {
    ObjectState {
        value: value.to_string(),
        rv,
    }
}

fn event(kind: EventType, key: &str, rv: u64, value: &str) -> WatchEvent {
    WatchEvent {
        kind,
        key: key.to_string(),
        rv,
        value: Some(value.to_string()),
    }
}
