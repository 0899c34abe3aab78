//! Extension negotiation on the DMA side: asks a server which classes it offers and selects
//! NetApp CAE (IPv6 data addresses) when it is there, so three-way jobs can use IPv6.

use super::connection::{Client, ClientError};
use super::query::EXT_LIST_TIMEOUT;
use crate::wire::messages::{ConfigSetExtListRequest, Void};
use crate::wire::netapp::CLASS_CAE;
use crate::wire::types::ClassVersion;
use crate::wire::{MessageCode, Reply, Request};

/// Lists the server's extensions and selects CAE version 1 if it offers it. `Ok(false)`
/// when it does not (or knows no extensions at all, as v4 servers may): nothing is selected
/// and the job goes on with IPv4 addresses.
pub async fn select_cae(c: &mut Client) -> Result<bool, ClientError> {
    let code = MessageCode::CONFIG_GET_EXT_LIST;
    let asked = match c
        .call_timeout(Request::ConfigGetExtList(Void), EXT_LIST_TIMEOUT)
        .await
    {
        Ok(r) => match r.error() {
            Some(e) if !e.is_ok() => Err(c.refusal(code, e)),
            _ => Ok(r),
        },
        Err(e) => Err(e),
    };
    let offered = match asked {
        Ok(Reply::ConfigGetExtList(r)) => r.class_list,
        Ok(_) => return Ok(false),
        // a server without extensions refuses the list, and NDMJOB never answers it (a job
        // against `ndmjob -o daemon` failed on the wait): neither is an error for the job
        Err(ClientError::Ndmp { .. } | ClientError::Timeout(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    let cae = offered
        .iter()
        .any(|c| c.ext_class_id == CLASS_CAE && c.ext_version.contains(&1));
    if !cae {
        return Ok(false);
    }
    let set = ConfigSetExtListRequest::Spec {
        ndmp_selected_ext: vec![ClassVersion {
            ext_class_id: CLASS_CAE,
            ext_version: 1,
        }],
    };
    match c.call_ok(Request::ConfigSetExtList(set)).await {
        Ok(_) => Ok(true),
        Err(ClientError::Ndmp { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}
