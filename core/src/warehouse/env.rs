//! The warehouse's environment variable names, declared once: the binary's flags read them
//! (`flashgate-warehouse --help` shows each beside its flag), the README's configuration table
//! lists them, and tests set them. They are part of the operator interface: keep them stable.

/// `--listen`.
pub const LISTEN: &str = "FLASHGATE_LISTEN";
/// `--edge-listen`.
pub const EDGE_LISTEN: &str = "FLASHGATE_EDGE_LISTEN";
/// `--internal-token`.
pub const INTERNAL_TOKEN: &str = "FLASHGATE_INTERNAL_TOKEN";
/// `--metrics-listen`.
pub const METRICS_LISTEN: &str = "FLASHGATE_METRICS_LISTEN";
/// `--store`.
pub const STORE: &str = "FLASHGATE_STORE";
/// `--redis-url`.
pub const REDIS_URL: &str = "FLASHGATE_REDIS_URL";
/// `--redis-cluster`.
pub const REDIS_CLUSTER: &str = "FLASHGATE_REDIS_CLUSTER";
/// `--redis-prefix`.
pub const REDIS_PREFIX: &str = "FLASHGATE_REDIS_PREFIX";
/// `--durability`.
pub const DURABILITY: &str = "FLASHGATE_DURABILITY";
/// `--origin-key`.
pub const ORIGIN_KEY: &str = "FLASHGATE_ORIGIN_KEY";
/// `--origin-max-skew-ms`.
pub const ORIGIN_MAX_SKEW_MS: &str = "FLASHGATE_ORIGIN_MAX_SKEW_MS";
/// `--concurrency-per-connection`.
pub const CONCURRENCY: &str = "FLASHGATE_CONCURRENCY_PER_CONNECTION";
/// `--request-timeout-ms`.
pub const REQUEST_TIMEOUT_MS: &str = "FLASHGATE_REQUEST_TIMEOUT_MS";
/// `--consumer`.
pub const CONSUMER: &str = "FLASHGATE_CONSUMER";
/// `--buy-batch`.
pub const BUY_BATCH: &str = "FLASHGATE_BUY_BATCH";
/// `--order-log`.
pub const ORDER_LOG: &str = "FLASHGATE_ORDER_LOG";
/// `--order-worker`.
pub const ORDER_WORKER: &str = "FLASHGATE_ORDER_WORKER";
/// `--reclaim-idle-ms`.
pub const RECLAIM_IDLE_MS: &str = "FLASHGATE_RECLAIM_IDLE_MS";
/// `--repair-after-ms`.
pub const REPAIR_AFTER_MS: &str = "FLASHGATE_REPAIR_AFTER_MS";
/// `--retain-closed`.
pub const RETAIN_CLOSED: &str = "FLASHGATE_RETAIN_CLOSED";
/// `audit --repair-older-than-ms`.
pub const REPAIR_OLDER_THAN_MS: &str = "FLASHGATE_REPAIR_OLDER_THAN_MS";
/// Test hook, not a setting: the name of a crash point (`lock.after_take`,
/// `unlock.after_step`) where the Redis store aborts the process, so tests can stop a
/// seed-contract lock between its per-SKU steps. Unset in production: inert.
pub const FAULT_CRASH_AT: &str = "FLASHGATE_FAULT_CRASH_AT";
/// `--queue-secret`.
pub const QUEUE_SECRET: &str = "FLASHGATE_QUEUE_SECRET";
/// `--demo-payments`.
pub const DEMO_PAYMENTS: &str = "FLASHGATE_DEMO_PAYMENTS";
/// `--demo-sale`.
pub const DEMO_SALE: &str = "FLASHGATE_DEMO_SALE";
/// `--demo-room`.
pub const DEMO_ROOM: &str = "FLASHGATE_DEMO_ROOM";
