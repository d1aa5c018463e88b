//! One client for every provider's batch list but OpenAI's: what differs between them — where
//! the list is, how it pages, how one batch is named and read — is a [`Spec`] each provider's
//! file gives; the requests, paging bounds, retries and errors are the shared ones.

use reqwest::Url;
use serde_json::Value;

use super::super::client::{ApiClient, TokenList, parse_json, parse_page, parse_token_page};
use super::super::job::{Job, JobParseError, Kind};
use super::super::{BoxFuture, Cursor, Page, RequestObserver, Source, SourceError};
use crate::config::SourceConfig;

/// How a provider's batch list pages.
#[derive(Debug, Clone, Copy)]
pub(super) enum Paging {
    /// `{ARRAY: […], TOKEN: "…"}`, asked with `SIZE=n&PAGE_TOKEN=…` (Google, AWS, Fireworks).
    Token {
        array: &'static str,
        token: &'static str,
        size: &'static str,
        page_token: &'static str,
        max_size: u32,
    },
    /// `{data, has_more, last_id}`, asked with `limit=n&after_id=…` (Anthropic).
    AfterId { max_size: u32 },
    /// `{data, total}`, asked with `page=0,1,…&page_size=n` (Mistral): a short page is the last.
    Numbered { max_size: u32 },
    /// A bare array of every batch at once (Together).
    Whole,
}

/// What a provider's batch API is.
pub(super) struct Spec {
    pub provider: &'static str,
    /// The list's path under `api_base`, and the query it always carries.
    pub list_path: String,
    pub list_query: Vec<(&'static str, String)>,
    pub paging: Paging,
    /// Each element's id field, for reports of one that cannot be read.
    pub id_key: &'static str,
    /// Reads one batch (its id checked, its state in the common vocabulary).
    pub read: fn(Value) -> Result<Job, JobParseError>,
    /// The path of one batch under `api_base`, for an id that can be one.
    pub item: fn(&str) -> Result<String, JobParseError>,
    /// Whether an id is one of this list's batches.
    pub owns: fn(&str) -> bool,
    /// Whether the list is newest first (else every poll reads all of it).
    pub newest_first: bool,
}

/// The batches of one source, read by its provider's [`Spec`].
pub struct Listed {
    core: ApiClient,
    spec: Spec,
    list_url: Url,
    page_size: u32,
    max_pages: u32,
}

impl Listed {
    /// # Errors
    /// [`SourceError::Setup`] when `api_base` cannot take the list's path.
    pub(super) fn new(
        config: &SourceConfig,
        core: ApiClient,
        spec: Spec,
    ) -> Result<Listed, SourceError> {
        let mut list_url = core.url(&spec.list_path, &[])?;
        for (k, v) in &spec.list_query {
            list_url.query_pairs_mut().append_pair(k, v);
        }
        let max = match spec.paging {
            Paging::Token { max_size, .. }
            | Paging::AfterId { max_size }
            | Paging::Numbered { max_size } => max_size,
            Paging::Whole => u32::MAX,
        };
        Ok(Listed {
            core,
            spec,
            list_url,
            page_size: config.page_size.min(max),
            max_pages: config.max_pages,
        })
    }

    async fn page(
        &self,
        cursor: &Cursor,
        observe: RequestObserver<'_>,
    ) -> Result<(Page, u32), SourceError> {
        let mut url = self.list_url.clone();
        let size = self.page_size.to_string();
        let read = |raw: Value| (self.spec.read)(raw);
        match self.spec.paging {
            Paging::Token {
                array,
                token,
                size: size_key,
                page_token,
                ..
            } => {
                url.query_pairs_mut().append_pair(size_key, &size);
                if let Some(t) = cursor.after() {
                    url.query_pairs_mut().append_pair(page_token, t);
                }
                let (body, n) = self.core.get(&url, observe).await?;
                let shape = TokenList {
                    array: Some(array),
                    token,
                    id: self.spec.id_key,
                };
                Ok((
                    parse_token_page(&self.core.shown(&url), &body, &shape, &read)?,
                    n,
                ))
            }
            Paging::AfterId { .. } => {
                url.query_pairs_mut().append_pair("limit", &size);
                if let Some(a) = cursor.after() {
                    url.query_pairs_mut().append_pair("after_id", a);
                }
                let (body, n) = self.core.get(&url, observe).await?;
                Ok((parse_page(&self.core.shown(&url), &body, &read)?, n))
            }
            Paging::Numbered { .. } => {
                // The cursor holds the next page number ("1", "2", …); none for the first.
                let number: u64 = cursor.after().and_then(|a| a.parse().ok()).unwrap_or(0);
                url.query_pairs_mut()
                    .append_pair("page", &number.to_string())
                    .append_pair("page_size", &size);
                let (body, n) = self.core.get(&url, observe).await?;
                let mut page = parse_page(&self.core.shown(&url), &body, &read)?;
                // The pages are the truth, `total` a hint (as for Mistral's fine-tuning jobs): a
                // short page is the last; a full one is followed by another unless `total` says
                // that everything was read.
                let total = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("total").and_then(Value::as_u64));
                let returned = (page.jobs.len() + page.skipped.len()) as u64;
                let seen = number * u64::from(self.page_size) + returned;
                page.has_more =
                    returned >= u64::from(self.page_size) && total.is_none_or(|t| t != seen);
                page.last_id = Some((number + 1).to_string());
                Ok((page, n))
            }
            Paging::Whole => {
                let (body, n) = self.core.get(&url, observe).await?;
                let shape = TokenList {
                    array: None,
                    token: "",
                    id: self.spec.id_key,
                };
                Ok((
                    parse_token_page(&self.core.shown(&url), &body, &shape, &read)?,
                    n,
                ))
            }
        }
    }

    async fn one(&self, id: &str, observe: RequestObserver<'_>) -> Result<Job, SourceError> {
        let path = (self.spec.item)(id).map_err(|e| SourceError::Body {
            url: self.core.shown(&self.list_url),
            message: e.to_string(),
        })?;
        let url = self.core.url(&path, &[])?;
        let (body, _) = self.core.get(&url, observe).await?;
        let shown = self.core.shown(&url);
        (self.spec.read)(parse_json(&shown, &body)?).map_err(|e| SourceError::Body {
            url: shown,
            message: e.to_string(),
        })
    }
}

impl Source for Listed {
    fn provider(&self) -> &'static str {
        self.spec.provider
    }

    fn kind(&self) -> Kind {
        Kind::Batch
    }

    fn owns(&self, id: &str) -> bool {
        (self.spec.owns)(id)
    }

    fn newest_first(&self) -> bool {
        self.spec.newest_first
    }

    fn list_page<'a>(
        &'a self,
        cursor: &'a Cursor,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<(Page, u32), SourceError>> {
        Box::pin(self.page(cursor, observe))
    }

    fn advance(&self, cursor: &mut Cursor, page: &Page) -> Result<bool, SourceError> {
        self.core
            .advance(cursor, page, self.max_pages, &self.list_url)
    }

    fn get_job<'a>(
        &'a self,
        id: &'a str,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<Job, SourceError>> {
        Box::pin(self.one(id, observe))
    }

    fn normalise(&self, raw: Value) -> Result<Job, JobParseError> {
        (self.spec.read)(raw)
    }
}
