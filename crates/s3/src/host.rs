//! Which bucket a request names through its Host header: `<bucket>.<base domain>`
//! is virtual-hosted style; any other host (the base domain, an IP address,
//! `localhost`) is path style.

use std::borrow::Cow;

use s3s::S3Result;
use s3s::host::{S3Host, VirtualHost};

pub struct Host {
    pub base_domain: String,
}

impl S3Host for Host {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        });
        let bucket = name
            .strip_suffix(self.base_domain.as_str())
            .and_then(|rest| rest.strip_suffix('.'))
            .filter(|b| !b.is_empty());
        let vh = VirtualHost::new(Cow::Borrowed(self.base_domain.as_str()));
        Ok(match bucket {
            Some(bucket) => vh.with_bucket(bucket),
            None => vh,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosted_and_path_styles() {
        let h = Host {
            base_domain: "s3.localhost".into(),
        };
        assert_eq!(
            h.parse_host_header("photos.s3.localhost:8081")
                .unwrap()
                .bucket(),
            Some("photos")
        );
        assert_eq!(
            h.parse_host_header("photos.s3.localhost").unwrap().bucket(),
            Some("photos")
        );
        for path_style in [
            "s3.localhost:8081",
            "127.0.0.1:8081",
            "localhost",
            "example.com",
        ] {
            assert_eq!(
                h.parse_host_header(path_style).unwrap().bucket(),
                None,
                "{path_style}"
            );
        }
    }
}
