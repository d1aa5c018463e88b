//! AWS Signature Version 4 for Bedrock's control-plane API (service `bedrock`), through AWS's
//! own signing crate (`aws-sigv4`): every request is signed at the moment it is sent, with the
//! access key, the secret key and — for temporary credentials — the session token. Nothing of
//! the key ever leaves this room but the `Authorization` header the signer writes.

use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use super::super::SourceError;
use crate::config::AwsKey;

/// Signs requests for one source.
pub struct SigV4 {
    identity: Identity,
    region: String,
    service: &'static str,
    source_name: String,
}

impl SigV4 {
    pub fn new(source_name: &str, key: &AwsKey, region: &str, service: &'static str) -> SigV4 {
        let credentials = aws_credential_types::Credentials::new(
            key.access_key_id.expose(),
            key.secret_access_key.expose(),
            key.session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            "tunewatch config",
        );
        SigV4 {
            identity: credentials.into(),
            region: region.to_string(),
            service,
            source_name: source_name.to_string(),
        }
    }

    /// Adds the signature headers (`authorization`, `x-amz-date`, `x-amz-security-token`) to
    /// `request`, which is sent as it is now (a GET without a body).
    ///
    /// # Errors
    /// [`SourceError::Setup`] when the request cannot be signed (not expected for a valid URL).
    pub fn sign(&self, request: &mut reqwest::Request) -> Result<(), SourceError> {
        let failed = |e: String| SourceError::Setup {
            source_name: self.source_name.clone(),
            message: format!("cannot sign a request with SigV4: {e}"),
        };
        let params: aws_sigv4::http_request::SigningParams<'_> = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| failed(e.to_string()))?
            .into();
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let signable = SignableRequest::new(
            request.method().as_str(),
            request.url().as_str(),
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(&[]),
        )
        .map_err(|e| failed(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| failed(e.to_string()))?
            .into_parts();
        let (headers, _) = instructions.into_parts();
        for h in headers {
            let mut value = reqwest::header::HeaderValue::from_str(h.value())
                .map_err(|e| failed(e.to_string()))?;
            value.set_sensitive(h.sensitive() || h.name() == "authorization");
            request.headers_mut().insert(h.name(), value);
        }
        Ok(())
    }
}
