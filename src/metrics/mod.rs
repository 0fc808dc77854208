//! The daemon's counters and histograms, and the snapshot of every figure that both the
//! Prometheus endpoint and the Stats RPC show, so the two always agree. Plain Rust: no gRPC,
//! no sled. Recording is lock-free (relaxed atomics), so the event pipeline, hashing and
//! request handling never wait for metrics.

pub mod endpoint;
pub mod prometheus;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A count that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    /// The count now.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Fixed bucket bounds of a histogram, in integer units, `per_unit` of which make one unit
/// shown (e.g. microseconds shown as seconds: `per_unit = 1e6`).
#[derive(Debug)]
pub struct Buckets {
    /// Inclusive upper bounds, ascending.
    pub bounds: &'static [u64],
    /// Integer units per unit shown. A division (not a multiplication by the inverse) keeps
    /// decimal figures such as 0.0001 exact in the rendered text.
    pub per_unit: f64,
}

/// Event-to-apply lag, in microseconds, shown in seconds. The settle window makes 10 ms the
/// usual floor.
pub const LAG_BUCKETS: Buckets = Buckets {
    bounds: &[
        1_000, 2_500, 5_000, 10_000, 15_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
        2_500_000, 5_000_000, 10_000_000, 30_000_000,
    ],
    per_unit: 1e6,
};

/// Paths per applied batch.
pub const BATCH_BUCKETS: Buckets = Buckets {
    bounds: &[
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000,
    ],
    per_unit: 1.0,
};

/// gRPC handling time, in microseconds, shown in seconds.
pub const RPC_BUCKETS: Buckets = Buckets {
    bounds: &[
        100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000,
    ],
    per_unit: 1e6,
};

/// A histogram with fixed buckets; observing is a few relaxed atomic adds.
#[derive(Debug)]
pub struct Histogram {
    buckets: &'static Buckets,
    /// One count per bound, then one for values above every bound (not cumulative).
    counts: Box<[AtomicU64]>,
    /// Sum of observed values, in integer units.
    sum: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `buckets`.
    pub fn new(buckets: &'static Buckets) -> Histogram {
        Histogram {
            buckets,
            counts: (0..=buckets.bounds.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one value, in the histogram's integer units.
    pub fn observe(&self, value: u64) {
        let i = self.buckets.bounds.partition_point(|&b| b < value);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    /// Records a duration in a histogram whose integer unit is the microsecond.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// The histogram now, with cumulative buckets.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = Vec::with_capacity(self.counts.len());
        let mut running = 0u64;
        for c in self.counts.iter() {
            running += c.load(Relaxed);
            cumulative.push(running);
        }
        HistogramSnapshot {
            bounds: self
                .buckets
                .bounds
                .iter()
                .map(|&b| b as f64 / self.buckets.per_unit)
                .collect(),
            // The count is the last cumulative bucket, so `+Inf` always equals `_count` even
            // while other threads observe.
            count: running,
            cumulative,
            sum: self.sum.load(Relaxed) as f64 / self.buckets.per_unit,
        }
    }
}

/// A histogram as read at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Inclusive upper bounds, ascending, in the unit shown.
    pub bounds: Vec<f64>,
    /// Observations at or below each bound, then the total (the `+Inf` bucket): one more
    /// entry than `bounds`.
    pub cumulative: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl HistogramSnapshot {
    /// The `q`-quantile (0..=1) estimated from the buckets by linear interpolation within the
    /// bucket that holds it, as Prometheus' `histogram_quantile` does; `None` when empty. A
    /// quantile in the `+Inf` bucket is reported as the highest bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * self.count as f64;
        let i = self
            .cumulative
            .iter()
            .position(|&c| c as f64 >= rank)
            .unwrap_or(self.cumulative.len().saturating_sub(1));
        let Some(&upper) = self.bounds.get(i) else {
            return self.bounds.last().copied();
        };
        let lower = if i == 0 { 0.0 } else { self.bounds[i - 1] };
        let below = if i == 0 { 0 } else { self.cumulative[i - 1] };
        let in_bucket = self.cumulative[i] - below;
        if in_bucket == 0 {
            return Some(upper);
        }
        Some(lower + (upper - lower) * (rank - below as f64) / in_bucket as f64)
    }
}

/// Why reconciles run, as counted; a reason not listed is counted as "other".
pub const RECONCILE_REASONS: &[&str] = &[
    "startup",
    "catch-up",
    "rescan",
    "overflow",
    "poll",
    "ignore-or-manifest-change",
    "other",
];

/// What happened to one root since the daemon started.
#[derive(Debug)]
pub struct RootMetrics {
    /// Distinct paths applied by event batches.
    pub events_applied: Counter,
    /// Event batches applied.
    pub batches: Counter,
    /// Paths per applied batch.
    pub batch_paths: Histogram,
    /// From the first event of a batch arriving to the batch committed.
    pub apply_lag: Histogram,
    /// Files and bytes hashed, by reconciles and event batches.
    pub files_hashed: Counter,
    pub bytes_hashed: Counter,
    /// Reconciles begun, by reason (indexed like [`RECONCILE_REASONS`]).
    reconciles: Box<[Counter]>,
}

impl Default for RootMetrics {
    fn default() -> Self {
        RootMetrics {
            events_applied: Counter::default(),
            batches: Counter::default(),
            batch_paths: Histogram::new(&BATCH_BUCKETS),
            apply_lag: Histogram::new(&LAG_BUCKETS),
            files_hashed: Counter::default(),
            bytes_hashed: Counter::default(),
            reconciles: RECONCILE_REASONS
                .iter()
                .map(|_| Counter::default())
                .collect(),
        }
    }
}

impl RootMetrics {
    /// Records an applied event batch of `paths` distinct paths, committed `lag` after its
    /// first event arrived.
    pub fn record_batch(&self, paths: u64, lag: Duration) {
        self.events_applied.add(paths);
        self.batches.inc();
        self.batch_paths.observe(paths);
        self.apply_lag.observe_duration(lag);
    }

    /// Records files hashed (and their bytes).
    pub fn record_hashed(&self, files: u64, bytes: u64) {
        self.files_hashed.add(files);
        self.bytes_hashed.add(bytes);
    }

    /// Counts a reconcile begun for `reason`.
    pub fn count_reconcile(&self, reason: &str) {
        let last = RECONCILE_REASONS.len() - 1;
        let i = RECONCILE_REASONS[..last]
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(last);
        self.reconciles[i].inc();
    }

    /// The counters and histograms now.
    pub fn snapshot(&self) -> RootActivity {
        RootActivity {
            events_applied: self.events_applied.get(),
            batches: self.batches.get(),
            batch_paths: self.batch_paths.snapshot(),
            apply_lag: self.apply_lag.snapshot(),
            reconciles: RECONCILE_REASONS
                .iter()
                .zip(self.reconciles.iter())
                .map(|(r, c)| (*r, c.get()))
                .collect(),
            files_hashed: self.files_hashed.get(),
            bytes_hashed: self.bytes_hashed.get(),
        }
    }
}

/// The canonical names of gRPC status codes, indexed by code number.
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The code number counted for a status the server did not name (or named out of range).
pub const CODE_UNKNOWN: usize = 2;
/// The code number counted for a call whose response the client abandoned.
pub const CODE_CANCELLED: usize = 1;

/// The method label of requests for paths that are not served methods.
pub const OTHER_METHOD: &str = "other";

/// Figures of one RPC method.
#[derive(Debug)]
pub struct MethodMetrics {
    name: Box<str>,
    codes: [Counter; GRPC_CODES.len()],
    latency: Histogram,
}

impl MethodMetrics {
    fn new(name: &str) -> MethodMetrics {
        MethodMetrics {
            name: name.into(),
            codes: Default::default(),
            latency: Histogram::new(&RPC_BUCKETS),
        }
    }

    /// Counts a finished call with gRPC code number `code`.
    pub fn count(&self, code: usize) {
        let i = if code < GRPC_CODES.len() {
            code
        } else {
            CODE_UNKNOWN
        };
        self.codes[i].inc();
    }

    /// Records the time a call took to produce its response headers.
    pub fn observe_latency(&self, d: Duration) {
        self.latency.observe_duration(d);
    }
}

/// Per-method gRPC figures. The methods are registered up front, so the request path looks up
/// an existing entry without a lock or an allocation; paths that are not served methods share
/// one entry, so requests for made-up paths cannot grow the table.
#[derive(Debug)]
pub struct RpcMetrics {
    index: HashMap<Box<str>, usize>,
    /// One per method, then the shared entry of unknown paths.
    methods: Vec<MethodMetrics>,
}

impl RpcMetrics {
    /// A table of `methods` (request paths such as `/workflowdb.v1.Catalog/Stats`).
    pub fn new(methods: impl IntoIterator<Item = String>) -> RpcMetrics {
        let mut index = HashMap::new();
        let mut table = Vec::new();
        for m in methods {
            if !index.contains_key(m.as_str()) {
                index.insert(m.clone().into_boxed_str(), table.len());
                table.push(MethodMetrics::new(&m));
            }
        }
        table.push(MethodMetrics::new(OTHER_METHOD));
        RpcMetrics {
            index,
            methods: table,
        }
    }

    /// The entry of a request path.
    pub fn method(&self, path: &str) -> &MethodMetrics {
        self.method_at(self.method_index(path))
    }

    /// The index of a request path's entry, for [`RpcMetrics::method_at`].
    pub fn method_index(&self, path: &str) -> usize {
        self.index
            .get(path)
            .copied()
            .unwrap_or(self.methods.len() - 1)
    }

    /// The entry at an index from [`RpcMetrics::method_index`] (the shared entry of unknown
    /// paths for any other index).
    pub fn method_at(&self, i: usize) -> &MethodMetrics {
        let last = self.methods.len() - 1;
        &self.methods[i.min(last)]
    }

    /// Every method called at least once, in name order.
    pub fn snapshot(&self) -> Vec<RpcSnapshot> {
        let mut out: Vec<RpcSnapshot> = self
            .methods
            .iter()
            .filter_map(|m| {
                let codes: Vec<(&'static str, u64)> = GRPC_CODES
                    .iter()
                    .zip(m.codes.iter())
                    .map(|(name, c)| (*name, c.get()))
                    .filter(|(_, n)| *n > 0)
                    .collect();
                let latency = m.latency.snapshot();
                (!codes.is_empty() || latency.count > 0).then(|| RpcSnapshot {
                    method: m.name.to_string(),
                    codes,
                    latency,
                })
            })
            .collect();
        out.sort_by(|a, b| a.method.cmp(&b.method));
        out
    }
}

/// Daemon-wide instruments.
#[derive(Debug)]
pub struct Metrics {
    /// Events the watcher reported (each may name several paths; cookies included).
    pub events_received: Counter,
    /// Kernel queue overflows (and watcher errors), each followed by a reconcile of every root.
    pub overflows: Counter,
    pub rpc: RpcMetrics,
}

impl Metrics {
    /// Instruments for a daemon serving `rpc_methods`.
    pub fn new(rpc_methods: impl IntoIterator<Item = String>) -> Metrics {
        Metrics {
            events_received: Counter::default(),
            overflows: Counter::default(),
            rpc: RpcMetrics::new(rpc_methods),
        }
    }
}

/// Every figure of the daemon at one moment: what the metrics endpoint renders and the Stats
/// RPC returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub uptime_seconds: f64,
    pub events_received: u64,
    pub overflows: u64,
    /// Folders with an inotify watch, and folders polled because none could be had.
    pub watched_dirs: u64,
    pub polled_dirs: u64,
    /// The kernel's `fs.inotify.max_user_watches`, when readable.
    pub inotify_max_user_watches: Option<u64>,
    /// The configured `--max-watches` cap, when one is set.
    pub watch_cap: Option<u64>,
    /// Bytes the database occupies on disk.
    pub store_size_bytes: u64,
    /// Resident memory of the daemon process, when readable.
    pub resident_memory_bytes: Option<u64>,
    pub roots: Vec<RootSnapshot>,
    pub rpc: Vec<RpcSnapshot>,
}

/// One root's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RootSnapshot {
    pub id: String,
    pub path: String,
    /// Catalogued entries and the sum of their sizes.
    pub files: u64,
    pub bytes: u64,
    pub clock: u64,
    /// Entries a hashing pass has yet to examine (non-zero while a reconcile hashes).
    pub hash_backlog: u64,
    /// Bytes hashed per second of the last completed reconcile (walk included), if it hashed.
    pub last_scan_bytes_per_second: Option<f64>,
    pub activity: RootActivity,
}

/// A root's counters and histograms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RootActivity {
    pub events_applied: u64,
    pub batches: u64,
    pub batch_paths: HistogramSnapshot,
    pub apply_lag: HistogramSnapshot,
    /// Reconciles begun, by reason (every reason listed, zeros included).
    pub reconciles: Vec<(&'static str, u64)>,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
}

/// One RPC method's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RpcSnapshot {
    /// The request path, `/package.Service/Method`, or [`OTHER_METHOD`].
    pub method: String,
    /// Finished calls by gRPC code name (codes never seen are left out).
    pub codes: Vec<(&'static str, u64)>,
    /// Time to response headers, in seconds.
    pub latency: HistogramSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_inclusive_and_cumulative() {
        static B: Buckets = Buckets {
            bounds: &[1, 5, 10],
            per_unit: 1.0,
        };
        let h = Histogram::new(&B);
        for v in [0, 1, 2, 5, 6, 10, 11, 1000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.bounds, vec![1.0, 5.0, 10.0]);
        assert_eq!(s.cumulative, vec![2, 4, 6, 8]);
        assert_eq!(s.count, 8);
        assert_eq!(s.sum, 1035.0);
    }

    #[test]
    fn durations_are_shown_in_seconds() {
        let h = Histogram::new(&LAG_BUCKETS);
        h.observe_duration(Duration::from_millis(12));
        let s = h.snapshot();
        assert_eq!(s.sum, 0.012);
        let i = s.bounds.iter().position(|&b| b >= 0.012).unwrap();
        assert_eq!(s.cumulative[i], 1);
        assert_eq!(s.cumulative[i - 1], 0);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let s = HistogramSnapshot {
            bounds: vec![1.0, 2.0, 4.0],
            cumulative: vec![0, 50, 100, 100],
            sum: 0.0,
            count: 100,
        };
        assert_eq!(s.quantile(0.5), Some(2.0));
        assert_eq!(s.quantile(0.25), Some(1.5));
        assert_eq!(s.quantile(0.75), Some(3.0));
        let empty = HistogramSnapshot::default();
        assert_eq!(empty.quantile(0.5), None);
        // Beyond every bound: the highest bound.
        let high = HistogramSnapshot {
            bounds: vec![1.0],
            cumulative: vec![0, 3],
            sum: 30.0,
            count: 3,
        };
        assert_eq!(high.quantile(0.99), Some(1.0));
    }

    #[test]
    fn unknown_paths_share_one_entry_and_codes_are_bounded() {
        let rpc = RpcMetrics::new(["/a.S/M".to_string(), "/a.S/M".to_string()]);
        rpc.method("/a.S/M").count(0);
        rpc.method("/x/y").count(12);
        rpc.method("/made/up").count(99);
        rpc.method("/a.S/M")
            .observe_latency(Duration::from_millis(3));
        let s = rpc.snapshot();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].method, "/a.S/M");
        assert_eq!(s[0].codes, vec![("OK", 1)]);
        assert_eq!(s[0].latency.count, 1);
        assert_eq!(s[1].method, OTHER_METHOD);
        assert_eq!(s[1].codes, vec![("UNKNOWN", 1), ("UNIMPLEMENTED", 1)]);
    }

    #[test]
    fn reconciles_are_counted_by_reason() {
        let m = RootMetrics::default();
        m.count_reconcile("poll");
        m.count_reconcile("poll");
        m.count_reconcile("something new");
        let s = m.snapshot();
        assert!(s.reconciles.contains(&("poll", 2)));
        assert!(s.reconciles.contains(&("other", 1)));
        assert!(s.reconciles.contains(&("startup", 0)));
    }
}
