//! Every provider's job (and batch, see [`super::batches::view`]) in OpenAI's field names, for what reads a job's facts — alerts and
//! training insight — without knowing its provider: `model`, `fine_tuned_model`, `created_at`,
//! `finished_at` (unix seconds), `trained_tokens`, `error {code, message}`, `hyperparameters`,
//! files, and the numbers some providers give beside them (`progress` 0–1, `cost_usd`,
//! `train_loss`, `valid_loss`). The raw object is still what is stored and sent; this is only
//! how it is read. Pure: a provider is recognised by its object's shape.

use std::borrow::Cow;

use serde_json::Value;

/// `raw` read in OpenAI's field names: OpenAI's own objects (and those shaped like them) as
/// they are, another provider's through its `view`.
pub fn openai_shape(raw: &Value) -> Cow<'_, Value> {
    let str_of = |k: &str| raw.get(k).and_then(Value::as_str);
    if let Some(batch) = super::batches::view(raw) {
        return Cow::Owned(batch);
    }
    if matches!(str_of("object"), Some("fine_tuning.job" | "batch")) {
        return Cow::Borrowed(raw);
    }
    if str_of("jobArn").is_some() {
        return Cow::Owned(super::bedrock::view(raw));
    }
    match str_of("name") {
        Some(n) if n.starts_with("projects/") => return Cow::Owned(super::vertex::view(raw)),
        Some(n) if n.starts_with("accounts/") => return Cow::Owned(super::fireworks::view(raw)),
        _ => {}
    }
    if raw.pointer("/status/stage").is_some() {
        return Cow::Owned(super::huggingface::view(raw));
    }
    Cow::Borrowed(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_provider_reads_as_openai_fields() {
        let openai = json!({"object": "fine_tuning.job", "id": "ftjob-1", "model": "m"});
        assert!(matches!(openai_shape(&openai), Cow::Borrowed(_)));
        let vertex = json!({"name": "projects/p/locations/l/tuningJobs/1", "baseModel": "gemini-2.0-flash",
            "createTime": "2025-01-01T00:00:00.5Z", "tunedModel": {"endpoint": "projects/p/locations/l/endpoints/9"},
            "tuningDataStats": {"supervisedTuningDataStats": {"totalBillableTokenCount": "1000"}},
            "supervisedTuningSpec": {"hyperParameters": {"epochCount": "3"}},
            "error": {"code": 3, "message": "bad data"}});
        let v = openai_shape(&vertex);
        assert_eq!(v["model"], "gemini-2.0-flash");
        assert_eq!(v["created_at"], 1_735_689_600);
        assert_eq!(v["trained_tokens"], 3000);
        assert_eq!(v["error"]["code"], "3");
        assert_eq!(v["fine_tuned_model"], "projects/p/locations/l/endpoints/9");
        let bedrock = json!({"jobArn": "arn:aws:bedrock:us-east-1:123456789012:model-customization-job/m/x",
            "baseModelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0",
            "failureMessage": "InternalServerError", "trainingMetrics": {"trainingLoss": 0.42},
            "validationMetrics": [{"validationLoss": 0.5}, {"validationLoss": 0.47}]});
        let b = openai_shape(&bedrock);
        assert_eq!(b["model"], "amazon.nova-micro-v1:0");
        assert_eq!(
            (b["train_loss"].clone(), b["valid_loss"].clone()),
            (json!(0.42), json!(0.47))
        );
        assert_eq!(b["error"]["message"], "InternalServerError");
        let fireworks = json!({"name": "accounts/a/supervisedFineTuningJobs/x", "jobProgress": {"percent": 40},
            "estimatedCost": {"currencyCode": "USD", "units": "3", "nanos": 500000000}});
        let f = openai_shape(&fireworks);
        assert_eq!(
            (f["progress"].clone(), f["cost_usd"].clone()),
            (json!(0.4), json!(3.5))
        );
        let hf = json!({"id": "abc", "status": {"stage": "ERROR", "message": "OOM"}, "dockerImage": "pytorch"});
        assert_eq!(openai_shape(&hf)["error"]["message"], "OOM");
    }
}
