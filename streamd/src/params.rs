//! Stations by parameters: listeners who ask for the same musical parameters share one station
//! (one composition, one render, one encode), named canonically from the parameters
//! (`p-` and 16 hex digits of a stable hash); different parameters get their own station, created
//! in the control block for composer and synthd to pick up, within the station cap.

use composer::{ParamUpdate, Params};
use shm_proto::{ControlBlock, ShmError};

use crate::directory::StationDirectory;
use crate::protocol::{ErrorCode, ProtocolError};

/// Prefix of the stations created for listeners' parameters.
pub const PARAM_STATION_PREFIX: &str = "p-";

/// Whether `name` is a station created for listeners' parameters.
pub fn is_param_station(name: &str) -> bool {
    name.len() == PARAM_STATION_PREFIX.len() + 16
        && name.starts_with(PARAM_STATION_PREFIX)
        && name[PARAM_STATION_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
}

/// The canonical station name of `params`: `p-` and the FNV-1a 64 hash, in hex, of key, mode,
/// tempo, intensity, preset and seed in their wire form. Stable across processes, restarts and
/// versions (the wire indices are append-only).
pub fn station_name(params: &Params) -> String {
    let sp = params.to_station();
    let mut bytes = Vec::with_capacity(32);
    bytes.push(sp.key);
    bytes.push(sp.mode);
    bytes.extend_from_slice(&sp.bpm.to_bits().to_le_bytes());
    bytes.extend_from_slice(&sp.intensity.to_bits().to_le_bytes());
    bytes.push(sp.preset);
    bytes.extend_from_slice(&sp.seed.to_le_bytes());
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{PARAM_STATION_PREFIX}{hash:016x}")
}

/// Where a listener's parameters lead.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// Station name.
    pub name: String,
    /// Its control-block index.
    pub index: u32,
    /// Its parameters.
    pub params: Params,
    /// Whether this request created it.
    pub created: bool,
}

/// The parameters of station `name` as the control block holds them.
pub fn params_of(control: &ControlBlock, name: &str) -> Option<(u32, Params)> {
    let slot = control.find(name)?;
    Params::from_station(&slot.params)
        .ok()
        .map(|p| (slot.index, p))
}

/// Applies `update` over the parameters of station `base` and finds or creates the station that
/// plays the result. When the result equals the base station's parameters the listener simply
/// stays with (or joins) the base station. Nothing changes on error.
pub fn resolve(
    directory: &StationDirectory,
    base: &str,
    update: &ParamUpdate,
) -> Result<Resolved, ProtocolError> {
    let control = directory.control().ok_or_else(|| {
        ProtocolError::new(
            ErrorCode::NoStation,
            "no station is available yet (the composer has not created any); retry shortly",
        )
    })?;
    let (base_index, base_params) = params_of(&control, base).ok_or_else(|| {
        ProtocolError::new(
            ErrorCode::UnknownStation,
            format!("unknown station {base:?}"),
        )
    })?;
    let mut params = base_params;
    params
        .apply(update)
        .map_err(|e| ProtocolError::new(ErrorCode::InvalidParam, e.to_string()))?;
    if params == base_params {
        return Ok(Resolved {
            name: base.to_owned(),
            index: base_index,
            params,
            created: false,
        });
    }
    let name = station_name(&params);
    if let Some(slot) = control.find(&name) {
        return Ok(Resolved {
            name,
            index: slot.index,
            params,
            created: false,
        });
    }
    let cap = directory.max_stations(&control);
    let active = control.stations().len() as u32;
    if active >= cap {
        return Err(station_limit(cap));
    }
    match control.ensure_station(&name, params.to_station()) {
        Ok(index) => Ok(Resolved {
            name,
            index,
            params,
            created: true,
        }),
        Err(ShmError::Full { .. }) => Err(station_limit(cap)),
        Err(error) => Err(ProtocolError::new(
            ErrorCode::StationUnavailable,
            format!("cannot create the station: {error}"),
        )),
    }
}

fn station_limit(cap: u32) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::StationLimit,
        format!(
            "all {cap} stations are in use, so these parameters cannot get a station of their own; \
             join an existing station (GET /api/status lists them) or retry later"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use composer::PresetId;

    #[test]
    fn names_are_canonical_and_distinct() {
        let a = Params::from_preset(PresetId::FOCUS, 1);
        let mut b = a;
        b.bpm += 1.0;
        let name = station_name(&a);
        assert!(is_param_station(&name), "{name}");
        assert_eq!(name.len(), 18);
        assert_eq!(name, station_name(&a.clone()));
        assert_ne!(name, station_name(&b));
        assert!(!is_param_station("focus"));
        assert!(!is_param_station("p-zz"));
    }
}
