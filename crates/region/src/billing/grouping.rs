//! How usage and cost are grouped: by resource, by service or by tag.

use std::collections::HashMap;

use nubo_store::tags::Tags;

use crate::api::error::{ApiError, ApiResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum By {
    Resource,
    Service,
    /// The whole tag set of each resource.
    Tags,
    /// One tag's value.
    Tag(String),
}

impl By {
    pub fn parse(text: Option<&str>) -> ApiResult<By> {
        match text.unwrap_or("resource") {
            "resource" => Ok(By::Resource),
            "service" => Ok(By::Service),
            "tag" => Ok(By::Tags),
            other => match other.strip_prefix("tag:") {
                Some(key) if (1..=128).contains(&key.len()) => Ok(By::Tag(key.to_string())),
                _ => Err(ApiError::invalid(format!(
                    "by {other:?}: use resource, service, tag or tag:<key>"
                ))),
            },
        }
    }

    pub fn name(&self) -> String {
        match self {
            By::Resource => "resource".into(),
            By::Service => "service".into(),
            By::Tags => "tag".into(),
            By::Tag(key) => format!("tag:{key}"),
        }
    }

    pub fn needs_tags(&self) -> bool {
        matches!(self, By::Tags | By::Tag(_))
    }

    /// The group of a resource's line.
    pub fn group(&self, service: &str, resource_id: &str, tags: &HashMap<String, Tags>) -> String {
        let of = tags.get(resource_id);
        match self {
            By::Resource => resource_id.to_string(),
            By::Service => service.to_string(),
            By::Tags => match of.filter(|t| !t.is_empty()) {
                Some(t) => t
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                None => "(untagged)".into(),
            },
            By::Tag(key) => match of.and_then(|t| t.get(key)) {
                Some(v) => format!("{key}={v}"),
                None => format!("(no {key})"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_what_was_asked() {
        let tags: HashMap<String, Tags> = [(
            "vol-1".to_string(),
            [
                ("env".to_string(), "prod".to_string()),
                ("team".to_string(), "db".to_string()),
            ]
            .into(),
        )]
        .into();
        assert_eq!(
            By::parse(None).unwrap().group("compute", "i-1", &tags),
            "i-1"
        );
        let service = By::parse(Some("service")).unwrap();
        assert_eq!(
            service.group("block-storage", "vol-1", &tags),
            "block-storage"
        );
        let all = By::parse(Some("tag")).unwrap();
        assert_eq!(
            all.group("block-storage", "vol-1", &tags),
            "env=prod,team=db"
        );
        assert_eq!(all.group("compute", "i-1", &tags), "(untagged)");
        let env = By::parse(Some("tag:env")).unwrap();
        assert_eq!(env.group("block-storage", "vol-1", &tags), "env=prod");
        assert_eq!(env.group("compute", "i-1", &tags), "(no env)");
        assert!(By::parse(Some("colour")).is_err());
        assert!(By::parse(Some("tag:")).is_err());
    }
}
