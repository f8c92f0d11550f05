//! The checksum of an object completed from parts, from the parts' checksums,
//! as S3 defines it: `COMPOSITE`, the checksum of the parts' binary checksums
//! followed by `-N`; or `FULL_OBJECT` (CRCs only), the CRC of the whole object,
//! combined from the parts' CRCs and sizes without reading them again.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crc_fast::CrcAlgorithm;
use s3s::crypto::{Checksum, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
use s3s::dto::{ChecksumAlgorithm, ChecksumType};
use s3s::{S3Error, S3ErrorCode, S3Result};

use crate::meta::Checksums;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Composite,
    FullObject,
}

impl Algorithm {
    pub fn parse(name: &str) -> Option<Algorithm> {
        Some(match name {
            ChecksumAlgorithm::CRC32 => Algorithm::Crc32,
            ChecksumAlgorithm::CRC32C => Algorithm::Crc32c,
            ChecksumAlgorithm::CRC64NVME => Algorithm::Crc64Nvme,
            ChecksumAlgorithm::SHA1 => Algorithm::Sha1,
            ChecksumAlgorithm::SHA256 => Algorithm::Sha256,
            _ => return None,
        })
    }

    pub const ALL: [Algorithm; 5] = [
        Algorithm::Crc32,
        Algorithm::Crc32c,
        Algorithm::Crc64Nvme,
        Algorithm::Sha1,
        Algorithm::Sha256,
    ];

    /// The algorithm of the first checksum `sums` holds (an object completed
    /// from parts holds one).
    pub fn found_in(sums: &Checksums) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.of(sums).is_some())
    }

    /// The checksum of this algorithm among `sums`.
    pub fn of(self, sums: &Checksums) -> Option<&String> {
        match self {
            Algorithm::Crc32 => sums.crc32.as_ref(),
            Algorithm::Crc32c => sums.crc32c.as_ref(),
            Algorithm::Crc64Nvme => sums.crc64nvme.as_ref(),
            Algorithm::Sha1 => sums.sha1.as_ref(),
            Algorithm::Sha256 => sums.sha256.as_ref(),
        }
    }

    /// `sums` holding `value` as the checksum of this algorithm, and no other.
    pub fn only(self, value: String) -> Checksums {
        let mut sums = Checksums::default();
        let slot = match self {
            Algorithm::Crc32 => &mut sums.crc32,
            Algorithm::Crc32c => &mut sums.crc32c,
            Algorithm::Crc64Nvme => &mut sums.crc64nvme,
            Algorithm::Sha1 => &mut sums.sha1,
            Algorithm::Sha256 => &mut sums.sha256,
        };
        *slot = Some(value);
        sums
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::Crc32 => Crc32::checksum(data).to_vec(),
            Algorithm::Crc32c => Crc32c::checksum(data).to_vec(),
            Algorithm::Crc64Nvme => Crc64Nvme::checksum(data).to_vec(),
            Algorithm::Sha1 => Sha1::checksum(data).to_vec(),
            Algorithm::Sha256 => Sha256::checksum(data).to_vec(),
        }
    }

    /// The CRC this is, if it is one, and its width in bytes.
    fn crc(self) -> Option<(CrcAlgorithm, usize)> {
        match self {
            Algorithm::Crc32 => Some((CrcAlgorithm::Crc32IsoHdlc, 4)),
            Algorithm::Crc32c => Some((CrcAlgorithm::Crc32Iscsi, 4)),
            Algorithm::Crc64Nvme => Some((CrcAlgorithm::Crc64Nvme, 8)),
            Algorithm::Sha1 | Algorithm::Sha256 => None,
        }
    }
}

fn invalid(message: String) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidRequest, message)
}

impl Kind {
    /// The kind an upload asked for, or the default for its algorithm:
    /// `FULL_OBJECT` for CRC-64/NVME (which has no other), else `COMPOSITE`.
    pub fn for_upload(algorithm: Algorithm, asked: Option<&str>) -> S3Result<Kind> {
        let kind = match asked {
            None if algorithm == Algorithm::Crc64Nvme => Kind::FullObject,
            None => Kind::Composite,
            Some(name) => {
                Kind::parse(name).ok_or_else(|| invalid(format!("unknown checksum type {name}")))?
            }
        };
        let allowed = match kind {
            Kind::Composite => algorithm != Algorithm::Crc64Nvme,
            Kind::FullObject => algorithm.crc().is_some(),
        };
        if allowed {
            Ok(kind)
        } else {
            Err(invalid(format!(
                "checksum type {} is not supported with {algorithm:?}",
                kind.name()
            )))
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            ChecksumType::COMPOSITE => Some(Kind::Composite),
            ChecksumType::FULL_OBJECT => Some(Kind::FullObject),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Composite => ChecksumType::COMPOSITE,
            Kind::FullObject => ChecksumType::FULL_OBJECT,
        }
    }
}

/// The object's checksum from its parts' (base64, with their sizes), or
/// `None` if one of them is not a checksum of `algorithm`.
pub fn combine(algorithm: Algorithm, kind: Kind, parts: &[(&str, u64)]) -> Option<String> {
    let raw: Vec<Vec<u8>> = parts
        .iter()
        .map(|(sum, _)| STANDARD.decode(sum).ok())
        .collect::<Option<_>>()?;
    match (kind, algorithm.crc()) {
        (Kind::Composite, _) => {
            let value = algorithm.digest(&raw.concat());
            Some(format!("{}-{}", STANDARD.encode(value), parts.len()))
        }
        (Kind::FullObject, Some((crc, width))) => {
            let mut whole: Option<u64> = None;
            for (bytes, (_, size)) in raw.iter().zip(parts) {
                if bytes.len() != width {
                    return None;
                }
                let value = bytes.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
                whole = Some(match whole {
                    None => value,
                    Some(before) => crc_fast::checksum_combine(crc, before, value, *size),
                });
            }
            let bytes = whole?.to_be_bytes();
            Some(STANDARD.encode(&bytes[8 - width..]))
        }
        (Kind::FullObject, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(algorithm: Algorithm, data: &[u8]) -> String {
        STANDARD.encode(algorithm.digest(data))
    }

    #[test]
    fn full_object_crcs_are_the_crc_of_the_whole() {
        let (a, b, c) = (vec![b'A'; 5000], vec![b'B'; 3], vec![b'C'; 70_000]);
        let whole = [a.as_slice(), &b, &c].concat();
        for algorithm in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme] {
            let parts = [
                (b64(algorithm, &a), a.len() as u64),
                (b64(algorithm, &b), b.len() as u64),
                (b64(algorithm, &c), c.len() as u64),
            ];
            let parts: Vec<(&str, u64)> = parts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
            assert_eq!(
                combine(algorithm, Kind::FullObject, &parts),
                Some(b64(algorithm, &whole)),
                "{algorithm:?}"
            );
        }
    }

    #[test]
    fn composites_hash_the_parts_checksums() {
        // The figures of Ceph's s3-tests (three parts of 5 MiB of 'A', 'B', 'C').
        let part = |c: u8| vec![c; 5 * 1024 * 1024];
        let sums: Vec<String> = [b'A', b'B', b'C']
            .map(|c| b64(Algorithm::Sha256, &part(c)))
            .to_vec();
        assert_eq!(sums[0], "275VF5loJr1YYawit0XSHREhkFXYkkPKGuoK0x9VKxI=");
        let parts: Vec<(&str, u64)> = sums.iter().map(|s| (s.as_str(), 5 << 20)).collect();
        assert_eq!(
            combine(Algorithm::Sha256, Kind::Composite, &parts).as_deref(),
            Some("uWBwpe1dxI4Vw8Gf0X9ynOdw/SS6VBzfWm9giiv1sf4=-3")
        );
        assert_eq!(combine(Algorithm::Sha256, Kind::FullObject, &parts), None);
    }

    #[test]
    fn each_algorithm_has_its_kinds() {
        use Algorithm::*;
        assert_eq!(Kind::for_upload(Crc64Nvme, None).unwrap(), Kind::FullObject);
        assert_eq!(Kind::for_upload(Crc32, None).unwrap(), Kind::Composite);
        assert_eq!(
            Kind::for_upload(Crc32c, Some("FULL_OBJECT")).unwrap(),
            Kind::FullObject
        );
        assert!(Kind::for_upload(Sha256, Some("FULL_OBJECT")).is_err());
        assert!(Kind::for_upload(Crc64Nvme, Some("COMPOSITE")).is_err());
        assert!(Kind::for_upload(Crc32, Some("BOTH")).is_err());
    }
}
