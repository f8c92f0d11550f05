//! Metering: what each resource used in a window of time, derived from the
//! event log and never sampled. Every state change is written with its event
//! in one transaction, so a crash or a restart of the region can neither lose
//! usage nor count it twice: the events say what was true and when.
//!
//! - An instance is metered while it is `running`: each start costs at least
//!   60 seconds, then it is per second, as the large clouds bill.
//! - A volume is metered from its creation until it is deleted, by its size
//!   (attached or not; a stopped instance costs only its volumes).
//! - A snapshot is metered while it is completed, by the bytes it stores.

use std::collections::BTreeMap;

use nubo_store::events::Event;

/// The least an instance start is billed, in microseconds.
pub const MINIMUM_RUN_MICROS: i64 = 60_000_000;

/// What is metered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Meter {
    /// Running time of an instance of this type, in microseconds.
    Instance(String),
    /// Provisioned volume storage, in byte-microseconds.
    VolumeStorage,
    /// Stored snapshot bytes, in byte-microseconds.
    SnapshotStorage,
}

/// The usage of one resource on one meter in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub resource_type: String,
    pub resource_id: String,
    pub meter: Meter,
    /// Microseconds, times bytes for storage meters.
    pub quantity: u128,
}

/// The part of `[start, end)` inside `[from, to)`, in microseconds.
fn overlap(start: i64, end: i64, from: i64, to: i64) -> u128 {
    (end.min(to) - start.max(from)).max(0) as u128
}

/// The usage in `[from, to)` of the resources whose events these are (every
/// event of each resource up to `to`, in the order they happened).
pub fn meter(events: &[Event], from: i64, to: i64) -> Vec<Usage> {
    let mut by_resource: BTreeMap<(&str, &str), Vec<&Event>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.at < to) {
        by_resource
            .entry((e.resource_type.as_str(), e.resource_id.as_str()))
            .or_default()
            .push(e);
    }
    let mut usage = Vec::new();
    for ((kind, id), events) in by_resource {
        let measured = match kind {
            "instance" => instance(&events, from, to),
            "volume" => stored(&events, from, to, volume_bytes, Meter::VolumeStorage),
            "snapshot" => stored(&events, from, to, snapshot_bytes, Meter::SnapshotStorage),
            _ => Vec::new(),
        };
        usage.extend(
            measured
                .into_iter()
                .filter(|(_, q)| *q > 0)
                .map(|(meter, quantity)| Usage {
                    resource_type: kind.to_string(),
                    resource_id: id.to_string(),
                    meter,
                    quantity,
                }),
        );
    }
    usage
}

fn state(e: &Event) -> Option<&str> {
    e.action.strip_prefix("state.")
}

/// Running time by instance type: each run from `state.running` to the next
/// state, cut to the window.
fn instance(events: &[&Event], from: i64, to: i64) -> Vec<(Meter, u128)> {
    let mut by_type: BTreeMap<String, u128> = BTreeMap::new();
    // A run shorter than the minimum owes the rest when it ends, in the
    // window its end falls in: so it is billed once, whichever windows it spans.
    let mut bill = |start: i64, end: i64, ended: bool, instance_type: &str| {
        let mut q = overlap(start, end, from, to);
        if ended && (from..to).contains(&end) {
            q += (MINIMUM_RUN_MICROS - (end - start)).max(0) as u128;
        }
        *by_type.entry(instance_type.to_string()).or_default() += q;
    };
    let mut running: Option<(i64, String)> = None;
    for e in events {
        match (state(e), &running) {
            (Some("running"), None) => {
                let instance_type = e.data["instance_type"].as_str().unwrap_or_default();
                running = Some((e.at, instance_type.to_string()));
            }
            (Some("running"), Some(_)) | (None, _) => {}
            (Some(_), Some((start, instance_type))) => {
                bill(*start, e.at, true, instance_type);
                running = None;
            }
            (Some(_), None) => {}
        }
    }
    if let Some((start, instance_type)) = running {
        bill(start, to, false, &instance_type);
    }
    by_type
        .into_iter()
        .map(|(t, q)| (Meter::Instance(t), q))
        .collect()
}

fn volume_bytes(e: &Event) -> Option<u128> {
    match state(e) {
        Some("deleted") => None,
        _ => Some(e.data["size_gib"].as_u64().unwrap_or(0) as u128 * (1 << 30)),
    }
}

fn snapshot_bytes(e: &Event) -> Option<u128> {
    match state(e) {
        Some("completed") | Some("deleting") => {
            Some(e.data["stored_bytes"].as_u64().unwrap_or(0) as u128)
        }
        _ => None,
    }
}

/// Bytes held between each event and the next, as `bytes` reads them from
/// the event that starts the interval (`None`: nothing held).
fn stored(
    events: &[&Event],
    from: i64,
    to: i64,
    bytes: fn(&Event) -> Option<u128>,
    meter: Meter,
) -> Vec<(Meter, u128)> {
    let mut total = 0u128;
    for (i, e) in events.iter().enumerate() {
        let end = events.get(i + 1).map_or(to, |next| next.at);
        if let Some(held) = bytes(e) {
            total += held * overlap(e.at, end, from, to);
        }
    }
    vec![(meter, total)]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const S: i64 = 1_000_000;

    fn event(kind: &str, id: &str, at_s: i64, state: &str, data: serde_json::Value) -> Event {
        Event {
            id: format!("ev-{at_s:016x}"),
            at: at_s * S,
            account_id: Some("acc-1".into()),
            resource_type: kind.into(),
            resource_id: id.into(),
            action: format!("state.{state}"),
            data,
        }
    }

    fn vm(at_s: i64, state: &str) -> Event {
        event(
            "instance",
            "i-1",
            at_s,
            state,
            json!({"instance_type": "n1.nano"}),
        )
    }

    fn seconds(usage: &[Usage]) -> f64 {
        usage.iter().map(|u| u.quantity as f64 / S as f64).sum()
    }

    #[test]
    fn a_run_is_billed_by_the_second_with_a_minute_at_least() {
        let ninety = [
            vm(0, "pending"),
            vm(5, "running"),
            vm(95, "stopping"),
            vm(97, "stopped"),
        ];
        assert_eq!(seconds(&meter(&ninety, 0, 1000 * S)), 90.0);
        let ten = [
            vm(0, "pending"),
            vm(5, "running"),
            vm(15, "shutting-down"),
            vm(16, "terminated"),
        ];
        assert_eq!(seconds(&meter(&ten, 0, 1000 * S)), 60.0);
        let usage = meter(&ten, 0, 1000 * S);
        assert_eq!(usage[0].meter, Meter::Instance("n1.nano".into()));
    }

    #[test]
    fn every_start_pays_its_own_minimum_and_stopped_time_is_free() {
        let events = [
            vm(0, "pending"),
            vm(1, "running"),
            vm(11, "stopping"),
            vm(12, "stopped"),
            vm(500, "pending"),
            vm(501, "running"),
            vm(601, "stopping"),
            vm(602, "stopped"),
        ];
        assert_eq!(seconds(&meter(&events, 0, 10_000 * S)), 60.0 + 100.0);
    }

    #[test]
    fn a_running_instance_is_billed_up_to_the_end_of_the_window() {
        let events = [vm(0, "pending"), vm(10, "running")];
        assert_eq!(seconds(&meter(&events, 0, 3610 * S)), 3600.0);
        assert_eq!(
            seconds(&meter(&events, 0, 20 * S)),
            10.0,
            "so far, as it rises"
        );
        // Windows split a run without losing or doubling a second.
        let halves =
            seconds(&meter(&events, 0, 1000 * S)) + seconds(&meter(&events, 1000 * S, 3610 * S));
        assert_eq!(halves, 3600.0);
    }

    #[test]
    fn a_short_run_split_by_windows_still_costs_one_minute() {
        let events = [vm(0, "pending"), vm(90, "running"), vm(105, "stopping")];
        let first = seconds(&meter(&events, 0, 100 * S));
        let second = seconds(&meter(&events, 100 * S, 1000 * S));
        assert_eq!((first, first + second), (10.0, 60.0));
        assert_eq!(
            seconds(&meter(&events, 0, 106 * S)),
            60.0,
            "owed once it ends"
        );
    }

    #[test]
    fn a_failed_instance_stops_costing() {
        let events = [vm(0, "pending"), vm(2, "running"), vm(302, "failed")];
        assert_eq!(seconds(&meter(&events, 0, 10_000 * S)), 300.0);
    }

    #[test]
    fn volumes_cost_their_size_until_deleted_and_snapshots_what_they_store() {
        let vol = |at, state: &str, gib: u64| {
            event("volume", "vol-1", at, state, json!({"size_gib": gib}))
        };
        let events = [
            vol(0, "creating", 2),
            vol(1, "available", 2),
            vol(11, "resizing", 4),
            vol(12, "available", 4),
            vol(21, "deleting", 4),
            vol(22, "deleted", 4),
            event(
                "snapshot",
                "snap-1",
                5,
                "pending",
                json!({"stored_bytes": 0}),
            ),
            event(
                "snapshot",
                "snap-1",
                6,
                "completed",
                json!({"stored_bytes": 1 << 20}),
            ),
            event(
                "snapshot",
                "snap-1",
                16,
                "deleting",
                json!({"stored_bytes": 1 << 20}),
            ),
            event(
                "snapshot",
                "snap-1",
                17,
                "deleted",
                json!({"stored_bytes": 1 << 20}),
            ),
        ];
        let usage = meter(&events, 0, 100 * S);
        let gib_s = |m: Meter| -> f64 {
            usage
                .iter()
                .filter(|u| u.meter == m)
                .map(|u| u.quantity as f64 / S as f64 / (1u64 << 30) as f64)
                .sum()
        };
        assert_eq!(gib_s(Meter::VolumeStorage), 2.0 * 11.0 + 4.0 * 11.0);
        assert_eq!(gib_s(Meter::SnapshotStorage), 11.0 / 1024.0);
    }
}
