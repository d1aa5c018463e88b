//! Everything that answers HTTP: the bounded listener with `/healthz` and `/metrics`, the
//! intake of OpenAI's webhooks, and the status page.

pub mod intake;
pub mod listener;
pub mod web;
