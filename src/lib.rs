//! ewall: real-time GPS electronic-fence monitoring for people under community supervision.
//!
//! Devices push positions; ewall checks every fix against the person's permitted and forbidden
//! zones, raises alerts for the monitoring centre, and keeps every position for audit. The
//! pipeline, in one paragraph: [`ingest`] listeners decode each device's frames with the
//! sans-IO `ewall-protocol` crate and hand positions to the [`pipeline`], which routes them by
//! person to a shard of the [`fence`] engine; the engine's transitions become alerts, and the
//! [`store`] writer commits positions and alerts together in batches, after which the device is
//! acknowledged. The [`api`] reads and changes the store and tells the [`registry`], so changes
//! reach the hot path at once. Every alert, alert state change and filing event is also an
//! entry of the store's event feed, which the [`alert`] dispatchers carry to the MQTT alert
//! topic, webhooks and server-sent events, each from its own durable cursor.
//!
//! # Layout
//! - [`alarms`]: device alarms (SOS, tamper, low battery, fall) into alerts, once per episode.
//! - [`alert`]: the outbox reader and the MQTT, webhook and SSE dispatchers.
//! - [`cluster`]: cluster mode on NATS JetStream: the fix stream, partition leases and owners.
//! - [`audit`]: `ewall audit verify` and `export` over the store's hash chains, and retention.
//! - [`model`]: the plain data types the stages share (Fix, Zone, Alert, ...).
//! - [`identity`]: the canonical form of device ids (IMEIs, terminal numbers, app ids).
//! - [`ingest`]: TCP listeners (one per protocol) and the OsmAnd HTTP listener.
//! - [`fence`]: zone parsing, the zone index and the per-person breach state machine.
//! - [`pipeline`]: channels, shards and their order of shutdown.
//! - [`supervision`]: the timer-driven rules (offline, unsupervised, leave permits, monitoring
//!   orders, check-ins) and each shard's deadline wheel.
//! - [`store`]: the `Store` trait, SQLite, and the group-commit writer.
//! - [`registry`]: in-memory devices, levels and the zone catalog.
//! - [`report`]: monthly records per person, level reviews and the county's figures.
//! - [`schedule`]: weekly zone schedules read in the person's time zone (curfews).
//! - [`api`]: the HTTP API, tokens and problem responses.
//! - [`commands`]: downlink commands, from the API to the device's answer, and their expiry.
//! - [`console`]: the operator console's embedded files, served at `/console/`.
//! - [`config`]: the configuration tree and its environment overrides.
//! - [`server`]: `ewall serve`, start and ordered shutdown.
//! - [`decode`]: `ewall decode`.
//! - [`simulate`]: `ewall simulate`, the load generator that plays devices against a service.
//! - [`telemetry`]: Prometheus metrics.
//! - [`http`]: serving for both HTTP ports (bounds, TLS, limits, problem documents).
//! - [`descriptors`]: the open-file budget shared out among the listeners.
//! - [`log_limit`]: rate limiting for log lines a client can provoke.

pub mod alarms;
pub mod alert;
pub mod api;
pub mod audit;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod console;
pub mod decode;
pub mod descriptors;
pub mod fence;
pub mod http;
pub mod identity;
pub mod ingest;
pub mod log_limit;
pub mod model;
pub mod pipeline;
pub mod registry;
pub mod report;
pub mod schedule;
pub mod server;
pub mod simulate;
pub mod store;
pub mod supervision;
pub mod telemetry;
