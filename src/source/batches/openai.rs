//! OpenAI's (and Azure OpenAI's) Batch API: `GET …/batches?limit&after` (newest first,
//! `has_more`) and `GET …/batches/{id}`. A batch is watched like a job — snapshots, diff, routes,
//! outbox, stalls — and its events are named `batch.<status>`, as OpenAI's own webhooks name them.
//! Batch ids start with `batch_`, which is how a followed id finds its client.

use reqwest::Url;
use serde_json::Value;

use super::super::client::{ApiClient, parse_page};
use super::super::job::{Job, JobParseError, Kind};
use super::super::{BoxFuture, Cursor, Page, RequestObserver, Source, SourceError};
use crate::config::{Secret, SourceConfig};

/// A client for the batches of one `openai` or `azure_openai` source.
#[derive(Clone)]
pub struct BatchesClient {
    core: ApiClient,
    list_url: Url,
    page_size: u32,
    max_pages: u32,
}

impl BatchesClient {
    /// # Errors
    /// [`SourceError::Setup`] when the key is not a valid header value or `api_base` cannot
    /// take a path.
    pub fn new(config: &SourceConfig, key: &Secret) -> Result<BatchesClient, SourceError> {
        let core = super::super::openai::core(config, key)?;
        let list_url = core.url("batches", &[])?;
        Ok(BatchesClient {
            core,
            list_url,
            page_size: config.page_size,
            max_pages: config.max_pages,
        })
    }

    fn to_batch(&self, raw: Value) -> Result<Job, JobParseError> {
        let mut job = Job::from_value(raw)?;
        job.kind = Kind::Batch;
        job.provider = self.core.provider;
        // What `status` shows in the model column: the batch's model, else its endpoint.
        if job.model.is_none() {
            job.model = job
                .raw
                .get("endpoint")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        Ok(job)
    }
}

impl Source for BatchesClient {
    fn provider(&self) -> &'static str {
        self.core.provider
    }

    fn kind(&self) -> Kind {
        Kind::Batch
    }

    fn owns(&self, id: &str) -> bool {
        id.starts_with("batch_")
    }

    fn list_page<'a>(
        &'a self,
        cursor: &'a Cursor,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<(Page, u32), SourceError>> {
        Box::pin(async move {
            let mut url = self.list_url.clone();
            url.query_pairs_mut()
                .append_pair("limit", &self.page_size.to_string());
            if let Some(a) = cursor.after() {
                url.query_pairs_mut().append_pair("after", a);
            }
            let (body, requests) = self.core.get(&url, observe).await?;
            let page = parse_page(&self.core.shown(&url), &body, &|raw| self.to_batch(raw))?;
            Ok((page, requests))
        })
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
        Box::pin(async move {
            let normalise = |raw| self.to_batch(raw);
            self.core.get_one("batches", id, observe, &normalise).await
        })
    }

    fn normalise(&self, raw: Value) -> Result<Job, JobParseError> {
        self.to_batch(raw)
    }
}
