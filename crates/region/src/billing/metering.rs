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
//! - A bucket is metered by the bytes its objects and uploaded parts hold,
//!   from the moment each is stored until it is removed, and by the requests
//!   and bytes out that object storage counts and records every few seconds.

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
    /// Bytes held in a bucket, in byte-microseconds.
    ObjectStorage,
    /// Object storage requests, a count.
    Requests,
    /// Bytes sent out by object storage.
    DataOut,
}

impl Meter {
    /// The meter's name, as roll-ups keep it.
    pub fn name(&self) -> String {
        match self {
            Meter::Instance(t) => format!("instance:{t}"),
            Meter::VolumeStorage => "volume-storage".into(),
            Meter::SnapshotStorage => "snapshot-storage".into(),
            Meter::ObjectStorage => "object-storage".into(),
            Meter::Requests => "requests".into(),
            Meter::DataOut => "data-out".into(),
        }
    }

    pub fn parse(name: &str) -> Option<Meter> {
        Some(match name {
            "volume-storage" => Meter::VolumeStorage,
            "snapshot-storage" => Meter::SnapshotStorage,
            "object-storage" => Meter::ObjectStorage,
            "requests" => Meter::Requests,
            "data-out" => Meter::DataOut,
            other => Meter::Instance(other.strip_prefix("instance:")?.to_string()),
        })
    }
}

/// A stretch of time in which one resource used one meter at a steady rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub resource_type: String,
    pub resource_id: String,
    pub meter: Meter,
    pub start: i64,
    pub end: i64,
    /// Units per microsecond: 1 for running time, bytes for storage.
    pub rate: u128,
    /// Units owed at `end` on top of the rate: the rest of a short run's minute.
    pub extra: u128,
}

impl Segment {
    pub fn quantity(&self) -> u128 {
        self.rate * (self.end - self.start) as u128 + self.extra
    }

    /// This segment cut at `at` (strictly inside it): the part before and
    /// the part after, which keeps what is owed at the end.
    pub fn split(&self, at: i64) -> (Segment, Segment) {
        let before = Segment {
            end: at,
            extra: 0,
            ..self.clone()
        };
        let after = Segment {
            start: at,
            ..self.clone()
        };
        (before, after)
    }
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

/// The usage in `[from, to)` of the resources whose events these are, per
/// resource and meter.
pub fn meter(events: &[Event], from: i64, to: i64) -> Vec<Usage> {
    let mut usage: Vec<Usage> = Vec::new();
    for s in segments(events, from, to) {
        match usage.last_mut() {
            Some(u) if u.resource_id == s.resource_id && u.meter == s.meter => {
                u.quantity += s.quantity()
            }
            _ => usage.push(Usage {
                quantity: s.quantity(),
                resource_type: s.resource_type,
                resource_id: s.resource_id,
                meter: s.meter,
            }),
        }
    }
    usage.retain(|u| u.quantity > 0);
    usage
}

/// What the resources whose events these are (every event of each resource
/// up to `to`, in the order they happened) used in `[from, to)`, as segments
/// grouped by resource and meter, in time order within each. What is held
/// when the events end is taken to go on until `to`: with `to` in the future,
/// this is a forecast at today's rate.
pub fn segments(events: &[Event], from: i64, to: i64) -> Vec<Segment> {
    let mut by_resource: BTreeMap<(&str, &str), Vec<&Event>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.at < to) {
        // Objects and parts are recorded under their bucket's id.
        let kind = match e.resource_type.as_str() {
            "object" | "part" => "bucket",
            other => other,
        };
        by_resource
            .entry((kind, e.resource_id.as_str()))
            .or_default()
            .push(e);
    }
    let mut out = Vec::new();
    for ((kind, id), events) in by_resource {
        let mut found = Vec::new();
        match kind {
            "instance" => instance(&events, from, to, &mut found),
            "volume" => stored(
                &events,
                from,
                to,
                volume_bytes,
                Meter::VolumeStorage,
                &mut found,
            ),
            "snapshot" => stored(
                &events,
                from,
                to,
                snapshot_bytes,
                Meter::SnapshotStorage,
                &mut found,
            ),
            "bucket" => bucket(&events, from, to, &mut found),
            _ => {}
        }
        // Runs of different types stay grouped by type.
        found.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        out.extend(
            found
                .into_iter()
                .map(|(meter, start, end, rate, extra)| Segment {
                    resource_type: kind.to_string(),
                    resource_id: id.to_string(),
                    meter,
                    start,
                    end,
                    rate,
                    extra,
                }),
        );
    }
    out
}

/// The fewest events that leave every resource as these events (all before
/// `at`, in order) left it at `at`: metering them with what happens from `at`
/// on gives the same usage from `at` on as metering everything. What holds
/// nothing (a stopped instance, a deleted volume, an empty bucket) is left out.
pub fn checkpoint(events: &[Event], at: i64) -> Vec<Event> {
    let mut last: BTreeMap<(&str, &str), &Event> = BTreeMap::new();
    let mut held: BTreeMap<&str, (i64, &Event)> = BTreeMap::new();
    for e in events.iter().filter(|e| e.at < at) {
        match e.resource_type.as_str() {
            "object" | "part" => {
                let size = e.data["size"].as_i64().unwrap_or(0);
                let entry = held.entry(e.resource_id.as_str()).or_insert((0, e));
                match e.action.as_str() {
                    "stored" => entry.0 += size,
                    "removed" => entry.0 -= size,
                    _ => {}
                }
                entry.1 = e;
            }
            // A run starts at its first `running`: the minimum is counted from it.
            "instance" => match state(e) {
                Some("running") => {
                    let key = ("instance", e.resource_id.as_str());
                    if last
                        .get(&key)
                        .is_none_or(|run| state(run) != Some("running"))
                    {
                        last.insert(key, e);
                    }
                }
                Some(_) => {
                    last.insert(("instance", e.resource_id.as_str()), e);
                }
                None => {}
            },
            kind => {
                last.insert((kind, e.resource_id.as_str()), e);
            }
        }
    }
    let mut out: Vec<Event> = last
        .into_values()
        .filter(|e| match e.resource_type.as_str() {
            "instance" => state(e) == Some("running"),
            "volume" => volume_bytes(e).is_some(),
            "snapshot" => snapshot_bytes(e).is_some(),
            _ => false,
        })
        .cloned()
        .collect();
    out.extend(held.into_iter().filter(|(_, (bytes, _))| *bytes != 0).map(
        |(bucket, (bytes, e))| Event {
            id: e.id.clone(),
            at: e.at,
            account_id: e.account_id.clone(),
            resource_type: "object".into(),
            resource_id: bucket.to_string(),
            action: "stored".into(),
            data: serde_json::json!({ "size": bytes }),
        },
    ));
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Meter, start, end, rate and extra of a segment of one resource.
type Found = (Meter, i64, i64, u128, u128);

fn state(e: &Event) -> Option<&str> {
    e.action.strip_prefix("state.")
}

/// Running time by instance type: each run from `state.running` to the next
/// state, cut to the window.
fn instance(events: &[&Event], from: i64, to: i64, out: &mut Vec<Found>) {
    // A run shorter than the minimum owes the rest when it ends, in the
    // window its end falls in: so it is billed once, whichever windows it spans.
    let mut bill = |start: i64, end: i64, ended: bool, instance_type: &str| {
        let (a, b) = (start.max(from), end.min(to));
        let extra = if ended && (from..to).contains(&end) {
            (MINIMUM_RUN_MICROS - (end - start)).max(0) as u128
        } else {
            0
        };
        if a < b || extra > 0 {
            out.push((
                Meter::Instance(instance_type.to_string()),
                a,
                b.max(a),
                1,
                extra,
            ));
        }
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

/// A bucket's stored bytes, from its objects' and parts' events, and the
/// requests and bytes out of its usage events.
fn bucket(events: &[&Event], from: i64, to: i64, out: &mut Vec<Found>) {
    let mut held: i64 = 0;
    for (i, e) in events.iter().enumerate() {
        let size = e.data["size"].as_i64().unwrap_or(0);
        match (e.resource_type.as_str(), e.action.as_str()) {
            ("object" | "part", "stored") => held += size,
            ("object" | "part", "removed") => held -= size,
            ("bucket", "usage") if (from..to).contains(&e.at) => {
                for (meter, field) in [(Meter::Requests, "requests"), (Meter::DataOut, "bytes_out")]
                {
                    let n = e.data[field].as_u64().unwrap_or(0);
                    if n > 0 {
                        out.push((meter, e.at, e.at, 0, u128::from(n)));
                    }
                }
            }
            _ => {}
        }
        let end = events.get(i + 1).map_or(to, |next| next.at);
        if held > 0 {
            hold(
                out,
                Meter::ObjectStorage,
                e.at.max(from),
                end.min(to),
                held as u128,
            );
        }
    }
}

/// `rate` held on `meter` over `[a, b)`: the meter's last segment grows if it
/// ends at `a` at the same rate, so that a steady stretch is one segment.
fn hold(out: &mut Vec<Found>, meter: Meter, a: i64, b: i64, rate: u128) {
    if a >= b {
        return;
    }
    let last = out.iter_mut().rev().find(|f| f.0 == meter);
    match last {
        Some(last) if last.3 == rate && last.2 == a => last.2 = b,
        _ => out.push((meter, a, b, rate, 0)),
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
    out: &mut Vec<Found>,
) {
    for (i, e) in events.iter().enumerate() {
        let end = events.get(i + 1).map_or(to, |next| next.at);
        if let Some(held) = bytes(e).filter(|held| *held > 0) {
            hold(out, meter.clone(), e.at.max(from), end.min(to), held);
        }
    }
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

    #[test]
    fn buckets_cost_what_they_hold_and_the_requests_and_bytes_they_serve() {
        let ev = |kind: &str, at: i64, action: &str, data: serde_json::Value| Event {
            id: format!("ev-{at:016x}-{kind}-{action}"),
            at: at * S,
            account_id: Some("acc-1".into()),
            resource_type: kind.into(),
            resource_id: "bkt-1".into(),
            action: action.into(),
            data,
        };
        let events = [
            ev("bucket", 0, "created", json!({})),
            ev("object", 10, "stored", json!({"size": 1000})),
            ev("part", 20, "stored", json!({"size": 500})),
            ev(
                "bucket",
                25,
                "usage",
                json!({"requests": 7, "bytes_out": 3000}),
            ),
            ev("part", 30, "removed", json!({"size": 500})),
            ev("object", 30, "stored", json!({"size": 500})),
            ev("object", 40, "removed", json!({"size": 1000})),
            ev(
                "bucket",
                150,
                "usage",
                json!({"requests": 2, "bytes_out": 0}),
            ),
        ];
        let usage = meter(&events, 0, 100 * S);
        let of = |m: Meter| usage.iter().find(|u| u.meter == m).map(|u| u.quantity);
        let byte_s = 1000 * 10 + 1500 * 10 + 1500 * 10 + 500 * 60;
        assert_eq!(of(Meter::ObjectStorage), Some(byte_s * S as u128));
        assert_eq!(
            of(Meter::Requests),
            Some(7),
            "the later count is another window's"
        );
        assert_eq!(of(Meter::DataOut), Some(3000));
        assert!(usage.iter().all(|u| u.resource_type == "bucket"));
    }
}
