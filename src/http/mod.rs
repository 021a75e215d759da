//! What every HTTP port shares, the API and the OsmAnd listener alike: the accept loop and
//! connection task with their bounds ([`serve`]), the request limits applied before a handler
//! runs ([`limits`]), and errors as problem documents ([`problem`]).
//!
//! Neither `api/` nor `ingest/` serves HTTP by itself: each builds a router and hands it to
//! [`serve::HttpServer`], so a bound added here holds on every port.

pub mod limits;
pub mod problem;
pub mod serve;
