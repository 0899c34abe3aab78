//! NetApp's NDMP extension bodies (classes 0x2050–0x2052) that ndmpd speaks: the IPv6 data
//! address of CAE (0x2051) and CAB's data-connection prepare (0x2052), with their codes.

use super::sample::{Gen, Sample};
pub use super::types::TcpIpv6Addr;
use super::types::{AddrType, Pval};
use super::xdr::{NdmpString, Xdr, XdrError, XdrReader};
use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

/// Snapshot Management and restartable backup (not offered: nothing of it is implemented).
pub const CLASS_SNAPSHOT: u16 = 0x2050;
/// Connection Address Extension: IPv6 data-connection addresses.
pub const CLASS_CAE: u16 = 0x2051;
/// Cluster Aware Backup: NDMP_CAB_DATA_CONN_PREPARE before DATA_LISTEN/CONNECT.
pub const CLASS_CAB: u16 = 0x2052;

/// The class's short name for logs and the REST view; `None` for classes we do not know.
pub fn class_name(class: u16) -> Option<&'static str> {
    match class {
        CLASS_SNAPSHOT => Some("snapshot_management"),
        CLASS_CAE => Some("connection_address"),
        CLASS_CAB => Some("cluster_aware_backup"),
        _ => None,
    }
}

/// NDMP_CAB_DATA_CONN_PREPARE (0x20520001) request. Public clients disagree by one word:
/// one sends `{bu_type, env}` after the header, the other puts a word before it (always 1 in
/// its sources, the value of NDMP_ADDR_TCP). Both decode; the word, when present, is kept as
/// the address type the DMA prepares for, and re-encodes unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CabDataConnPrepareRequest {
    /// The word before the body, when the DMA sent one.
    pub lead_word: Option<u32>,
    /// The backup type the coming operation will use (`dump`).
    pub bu_type: NdmpString,
    /// The coming operation's environment: FILESYSTEM names the volume.
    pub env: Vec<Pval>,
}

/// The values the leading word may take for it to be read as one: the address types.
fn plausible_lead_word(w: u32) -> bool {
    matches!(w, 0 | 1 | 3) || w == AddrType::TCP_IPV6.0
}

impl CabDataConnPrepareRequest {
    /// The address type the DMA named in the leading word, if it sent one.
    pub fn addr_type(&self) -> Option<AddrType> {
        self.lead_word.map(AddrType)
    }

    fn decode_plain(buf: Bytes, r: &XdrReader) -> Result<(Vec<Pval>, NdmpString), XdrError> {
        let mut t = XdrReader::with_limits(buf, r.limits());
        let bu_type = NdmpString::decode(&mut t)?;
        let env = Vec::decode(&mut t)?;
        t.finish()?;
        Ok((env, bu_type))
    }
}

impl Xdr for CabDataConnPrepareRequest {
    const MIN_SIZE: usize = 8;
    fn encode(&self, out: &mut BytesMut) {
        if let Some(w) = self.lead_word {
            out.put_u32(w);
        }
        self.bu_type.encode(out);
        self.env.encode(out);
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        let all = r.rest().clone();
        // the layout with the leading word, when that word is an address type and the rest
        // is exactly {bu_type, env}; otherwise the plain layout, whose errors are reported
        let with_word = (all.len() >= 4)
            .then(|| u32::from_be_bytes([all[0], all[1], all[2], all[3]]))
            .filter(|w| plausible_lead_word(*w))
            .and_then(|w| {
                Self::decode_plain(all.slice(4..), r)
                    .ok()
                    .map(|(env, bu_type)| (w, env, bu_type))
            });
        let v = match with_word {
            Some((w, env, bu_type)) => CabDataConnPrepareRequest {
                lead_word: Some(w),
                bu_type,
                env,
            },
            None => {
                let bu_type = NdmpString::decode(r)?;
                let env = Vec::decode(r)?;
                return Ok(CabDataConnPrepareRequest {
                    lead_word: None,
                    bu_type,
                    env,
                });
            }
        };
        *r = XdrReader::with_limits(Bytes::new(), r.limits());
        Ok(v)
    }
}

impl Sample for CabDataConnPrepareRequest {
    fn sample(g: &mut Gen) -> Self {
        CabDataConnPrepareRequest {
            lead_word: (g.below(2) == 0).then_some(1),
            bu_type: NdmpString::sample(g),
            env: Vec::sample(g),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(ws: &[u32]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    fn decode(b: Vec<u8>) -> CabDataConnPrepareRequest {
        let mut r = XdrReader::new(Bytes::from(b));
        let v = CabDataConnPrepareRequest::decode(&mut r).unwrap();
        r.finish().unwrap();
        v
    }

    #[test]
    fn both_prepare_layouts_decode_and_reencode_byte_for_byte() {
        // bu_type "dump", env [FILESYSTEM=/v]
        let body = [
            words(&[4]),
            b"dump".to_vec(),
            words(&[1, 10]),
            b"FILESYSTEM\0\0".to_vec(),
            words(&[2]),
            b"/v\0\0".to_vec(),
        ]
        .concat();
        let plain = decode(body.clone());
        assert_eq!(plain.lead_word, None);
        assert_eq!(plain.bu_type.to_string(), "dump");
        assert_eq!(plain.env[0].value.to_string(), "/v");
        let mut with = words(&[1]);
        with.extend_from_slice(&body);
        let lead = decode(with.clone());
        assert_eq!(lead.lead_word, Some(1));
        assert_eq!(lead.addr_type(), Some(AddrType::TCP));
        assert_eq!(
            (lead.bu_type.clone(), lead.env.clone()),
            (plain.bu_type.clone(), plain.env.clone())
        );
        for (v, bytes) in [(plain, body), (lead, with)] {
            let mut out = BytesMut::new();
            v.encode(&mut out);
            assert_eq!(&out[..], &bytes[..]);
        }
    }

    #[test]
    fn a_one_character_bu_type_is_not_mistaken_for_the_leading_word() {
        // bu_type "x", env []: the first word is 1 but the rest is not a body
        let body = [words(&[1]), b"x\0\0\0".to_vec(), words(&[0])].concat();
        let v = decode(body);
        assert_eq!(v.lead_word, None);
        assert_eq!(v.bu_type.to_string(), "x");
    }

    #[test]
    fn the_ipv6_address_layout() {
        let a = TcpIpv6Addr::new("2001:db8::7".parse().unwrap(), 10001);
        let mut out = BytesMut::new();
        a.encode(&mut out);
        let mut want = vec![0x20, 0x01, 0x0d, 0xb8];
        want.extend_from_slice(&[0; 11]);
        want.push(7);
        want.extend_from_slice(&words(&[10001, 0]));
        assert_eq!(&out[..], &want[..]);
        assert_eq!(a.socket_addr().to_string(), "[2001:db8::7]:10001");
        let m = TcpIpv6Addr::new("::ffff:127.0.0.1".parse().unwrap(), 5);
        assert_eq!(m.socket_addr().to_string(), "127.0.0.1:5");
    }
}
