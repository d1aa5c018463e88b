//! OpenAI's fine-tuning jobs API, and Azure OpenAI's, which has the same shapes under
//! `/openai` with an `api-key` header and an `api-version` query. Lists page with
//! `after`/`limit`/`has_more`, newest first; each job also has `…/events` and `…/checkpoints`
//! (training insight). Requests, retries and errors are [`ApiClient`]'s.

use reqwest::Url;
use serde_json::Value;

use super::client::{ApiClient, Auth, parse_items, parse_json, parse_page};
use super::job::{Job, JobParseError, JobStatus};
use super::{
    BoxFuture, Cursor, ItemsPage, JobList, Listing, Page, RequestObserver, Source, SourceError,
};
use crate::config::{Secret, SourceConfig, SourceKind};

/// A client for one configured `openai` or `azure_openai` source. Cheap to clone.
#[derive(Clone)]
pub struct OpenAiClient {
    core: ApiClient,
    jobs_url: Url,
    page_size: u32,
    max_pages: u32,
    azure: bool,
}

/// The HTTP core for an `openai` or `azure_openai` source: the bearer key with the organisation
/// and project headers, or Azure's `api-key` header and `api-version`. Jobs and batches share it.
///
/// # Errors
/// [`SourceError::Setup`] when a header value is not valid HTTP.
pub(super) fn core(config: &SourceConfig, key: &Secret) -> Result<ApiClient, SourceError> {
    if config.kind == SourceKind::AzureOpenai {
        ApiClient::new(
            config,
            "azure_openai",
            Auth::Header("api-key", key.clone()),
            &[],
            vec![(
                "api-version".to_string(),
                config.api_version.clone().unwrap_or_default(),
            )],
        )
    } else {
        ApiClient::new(
            config,
            "openai",
            Auth::Bearer(key.clone()),
            &[
                ("openai-organization", &config.organization),
                ("openai-project", &config.project),
            ],
            Vec::new(),
        )
    }
}

impl OpenAiClient {
    /// Builds the client for `config` (its kind says OpenAI or Azure OpenAI).
    ///
    /// # Errors
    /// [`SourceError::Setup`] when a header value is not valid HTTP (e.g. a newline in the key)
    /// or `api_base` cannot take a path.
    pub fn new(config: &SourceConfig, key: &Secret) -> Result<OpenAiClient, SourceError> {
        let azure = config.kind == SourceKind::AzureOpenai;
        let core = core(config, key)?;
        let jobs_url = core.url("fine_tuning/jobs", &[]).map_err(|e| match e {
            SourceError::Setup { message, .. } => SourceError::Setup {
                source_name: config.name.clone(),
                message,
            },
            other => other,
        })?;
        Ok(OpenAiClient {
            core,
            jobs_url,
            page_size: config.page_size,
            max_pages: config.max_pages,
            azure,
        })
    }

    /// Reads a job: statuses as OpenAI's, except Azure's `pending`, which is `queued`.
    fn to_job(&self, raw: Value) -> Result<Job, JobParseError> {
        let mut job = Job::from_value(raw)?;
        job.provider = self.core.provider;
        if self.azure && job.status.as_str() == "pending" {
            job.status = JobStatus::Queued;
        }
        Ok(job)
    }

    /// Lists every job, following `has_more` page by page.
    ///
    /// # Errors
    /// The first [`SourceError`] of any page, after retries, and paging errors ([`Self::advance`]).
    pub async fn list_all(&self, observe: RequestObserver<'_>) -> Result<Listing, SourceError> {
        let mut listing = Listing::default();
        let mut cursor = Cursor::default();
        loop {
            let (page, requests) = self.list_page(cursor.after(), observe).await?;
            listing.requests += requests;
            let more = self.advance(&mut cursor, &page)?;
            listing.jobs.extend(page.jobs);
            listing.skipped.extend(page.skipped);
            if !more {
                return Ok(listing);
            }
        }
    }

    /// Moves `cursor` past `page`; false when it was the last page.
    ///
    /// # Errors
    /// [`SourceError::Body`] as [`Cursor::advance`] explains.
    pub fn advance(&self, cursor: &mut Cursor, page: &Page) -> Result<bool, SourceError> {
        self.core
            .advance(cursor, page, self.max_pages, &self.jobs_url)
    }

    /// Fetches one page of the job list; returns it with the number of requests it took.
    ///
    /// # Errors
    /// [`SourceError`] after retries, or when the body is not a job list.
    pub async fn list_page(
        &self,
        after: Option<&str>,
        observe: RequestObserver<'_>,
    ) -> Result<(Page, u32), SourceError> {
        let mut url = self.jobs_url.clone();
        url.query_pairs_mut()
            .append_pair("limit", &self.page_size.to_string());
        if let Some(a) = after {
            url.query_pairs_mut().append_pair("after", a);
        }
        let (body, requests) = self.core.get(&url, observe).await?;
        let page = parse_page(&self.core.shown(&url), &body, &|raw| self.to_job(raw))?;
        Ok((page, requests))
    }

    /// `…/fine_tuning/jobs/{id}` (and `/{tail}`), for an id that can be a job's.
    ///
    /// # Errors
    /// [`SourceError::Body`] when `id` is not a job id (it would change the URL's meaning).
    fn job_url(&self, id: &str, tail: Option<&str>) -> Result<Url, SourceError> {
        super::job::check_id(id).map_err(|e| SourceError::Body {
            url: self.core.shown(&self.jobs_url),
            message: e.to_string(),
        })?;
        let mut segments = vec![id];
        segments.extend(tail);
        self.core.url("fine_tuning/jobs", &segments)
    }

    /// Fetches one job by id.
    ///
    /// # Errors
    /// [`SourceError`] after retries, or when the body is not a job.
    pub async fn get_job(
        &self,
        id: &str,
        observe: RequestObserver<'_>,
    ) -> Result<Job, SourceError> {
        let url = self.job_url(id, None)?;
        let (body, _) = self.core.get(&url, observe).await?;
        let shown = self.core.shown(&url);
        let value = parse_json(&shown, &body)?;
        self.to_job(value).map_err(|e| SourceError::Body {
            url: shown,
            message: e.to_string(),
        })
    }

    /// One page of a job's events or checkpoints, newest first.
    ///
    /// # Errors
    /// [`SourceError`] after retries, or when the body is not a list.
    pub async fn list_job_items(
        &self,
        job_id: &str,
        list: JobList,
        after: Option<&str>,
        observe: RequestObserver<'_>,
    ) -> Result<(ItemsPage, u32), SourceError> {
        let mut url = self.job_url(job_id, Some(list.segment()))?;
        url.query_pairs_mut()
            .append_pair("limit", &self.page_size.to_string());
        if let Some(a) = after {
            url.query_pairs_mut().append_pair("after", a);
        }
        let (body, requests) = self.core.get(&url, observe).await?;
        Ok((parse_items(&self.core.shown(&url), &body)?, requests))
    }
}

impl Source for OpenAiClient {
    fn provider(&self) -> &'static str {
        self.core.provider
    }

    fn list_page<'a>(
        &'a self,
        cursor: &'a Cursor,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<(Page, u32), SourceError>> {
        Box::pin(OpenAiClient::list_page(self, cursor.after(), observe))
    }

    fn advance(&self, cursor: &mut Cursor, page: &Page) -> Result<bool, SourceError> {
        OpenAiClient::advance(self, cursor, page)
    }

    fn get_job<'a>(
        &'a self,
        id: &'a str,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<Job, SourceError>> {
        Box::pin(OpenAiClient::get_job(self, id, observe))
    }

    fn normalise(&self, raw: Value) -> Result<Job, JobParseError> {
        self.to_job(raw)
    }

    fn list_job_items<'a>(
        &'a self,
        job_id: &'a str,
        list: JobList,
        after: Option<&'a str>,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<Option<(ItemsPage, u32)>, SourceError>> {
        Box::pin(async move {
            OpenAiClient::list_job_items(self, job_id, list, after, observe)
                .await
                .map(Some)
        })
    }
}
