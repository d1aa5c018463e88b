//! Ids that are resource names (`projects/P/locations/L/tuningJobs/123`,
//! `arn:aws:bedrock:us-east-1:123456789012:model-customization-job/…`,
//! `accounts/A/supervisedFineTuningJobs/ID`): kept whole, and accepted only when they match
//! their provider's pattern with its known separators — never a `?`, `#`, `%`, `\`, white space,
//! a control character or a `.`/`..` step that would change the meaning of a URL.

use super::job::{JobParseError, MAX_ID_CHARS};

/// The longest resource name accepted (Bedrock's ARNs may reach 1 011 characters).
pub const MAX_NAME_CHARS: usize = 1011;

fn refuse(id: &str, why: &str) -> JobParseError {
    JobParseError::BadId(format!(
        "id \"{}\" is not a job id: {why}",
        crate::inert::Inert(id)
    ))
}

/// One path segment of a resource name: letters, digits, `-` and `_`.
fn segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_CHARS
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `parts` alternating literal words and segments: `["projects", "*", "locations", "*", …]`.
fn matches(id: &str, pattern: &[&str]) -> bool {
    let segments: Vec<&str> = id.split('/').collect();
    segments.len() == pattern.len()
        && segments
            .iter()
            .zip(pattern)
            .all(|(s, p)| if *p == "*" { segment(s) } else { s == p })
}

/// A Google resource name under `projects/P/locations/L/COLLECTION/ID`.
///
/// # Errors
/// [`JobParseError::BadId`] naming what is wrong.
pub fn check_google(id: &str, collection: &str) -> Result<(), JobParseError> {
    if id.len() > MAX_NAME_CHARS {
        return Err(refuse(id, "it is too long"));
    }
    if matches(id, &["projects", "*", "locations", "*", collection, "*"]) {
        Ok(())
    } else {
        Err(refuse(
            id,
            &format!("it is not a name like projects/P/locations/L/{collection}/ID"),
        ))
    }
}

/// A Fireworks resource name, `accounts/A/COLLECTION/ID`.
///
/// # Errors
/// [`JobParseError::BadId`] naming what is wrong.
pub fn check_fireworks(id: &str, collection: &str) -> Result<(), JobParseError> {
    if matches(id, &["accounts", "*", collection, "*"]) {
        Ok(())
    } else {
        Err(refuse(
            id,
            &format!("it is not a name like accounts/A/{collection}/ID"),
        ))
    }
}

/// A Bedrock job ARN, `arn:aws[-PARTITION]:bedrock:REGION:ACCOUNT:RESOURCE/…`, where
/// `RESOURCE` is `resource` (`model-customization-job`, `model-invocation-job`).
///
/// # Errors
/// [`JobParseError::BadId`] naming what is wrong.
pub fn check_arn(id: &str, resource: &str) -> Result<(), JobParseError> {
    let bad = || {
        refuse(
            id,
            &format!("it is not an ARN like arn:aws:bedrock:REGION:ACCOUNT:{resource}/…"),
        )
    };
    if id.is_empty() || id.len() > MAX_NAME_CHARS {
        return Err(bad());
    }
    let mut fields = id.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("bedrock"), Some(region), Some(account), Some(rest)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(bad());
    };
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let rest_ok = rest
        .strip_prefix(resource)
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|r| {
            !r.is_empty()
                && r.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
                && r.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '+')
                })
        });
    if partition.starts_with("aws")
        && word(partition)
        && word(region)
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && rest_ok
    {
        Ok(())
    } else {
        Err(bad())
    }
}

/// `s` as one URL path segment, every character but RFC 3986's unreserved ones
/// percent-encoded (`:` and `/` included), as AWS's SDKs send an ARN.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_match_their_pattern_and_nothing_else() {
        assert!(
            check_google(
                "projects/my-proj/locations/us-central1/tuningJobs/123",
                "tuningJobs"
            )
            .is_ok()
        );
        for bad in [
            "projects/p/locations/l/tuningJobs/1/extra",
            "projects/p/locations/l/tuningJobs/..",
            "projects/p/locations/l/tuningJobs/a?b",
            "projects/p/locations/l/otherJobs/1",
            "projects//locations/l/tuningJobs/1",
            "projects/p/locations/l/tuningJobs/1%2F",
            "projects/p/locations/l/tuningJobs/a b",
        ] {
            assert!(check_google(bad, "tuningJobs").is_err(), "{bad}");
        }
        assert!(
            check_fireworks(
                "accounts/acme/supervisedFineTuningJobs/ab12",
                "supervisedFineTuningJobs"
            )
            .is_ok()
        );
        assert!(
            check_fireworks(
                "accounts/acme/supervisedFineTuningJobs/a/b",
                "supervisedFineTuningJobs"
            )
            .is_err()
        );
        let arn = "arn:aws:bedrock:us-east-1:123456789012:model-customization-job/amazon.titan-text-express-v1:0:8k/ab12cd34ef56";
        assert!(check_arn(arn, "model-customization-job").is_ok());
        for bad in [
            "arn:aws:s3:us-east-1:123456789012:model-customization-job/x/y",
            "arn:aws:bedrock:us-east-1:12345:model-customization-job/x",
            "arn:aws:bedrock:us-east-1:123456789012:model-customization-job/../x",
            "arn:aws:bedrock:us-east-1:123456789012:model-customization-job/x?y",
            "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc",
        ] {
            assert!(check_arn(bad, "model-customization-job").is_err(), "{bad}");
        }
    }
}
