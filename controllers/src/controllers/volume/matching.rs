//! Which PersistentVolume fits a claim (Kubernetes' `FindMatchingVolume`): class, volume mode,
//! access modes, label selector and capacity, smallest fit first, volumes pre-bound to the claim
//! before all others; and storage quantities parsed into bytes for the comparison.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use crate::util;

/// The claim's storage class ("" when unset).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// The volume's storage class ("" when unset).
pub fn volume_class(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// The claim's storage request in bytes, if it has a valid one.
pub fn requested_bytes(claim: &PersistentVolumeClaim) -> Option<u128> {
    let q = claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?;
    parse_bytes(&q.0)
}

/// The volume's storage capacity in bytes, if it has a valid one.
pub fn capacity_bytes(pv: &PersistentVolume) -> Option<u128> {
    let q = pv.spec.as_ref()?.capacity.as_ref()?.get("storage")?;
    parse_bytes(&q.0)
}

/// Whether the volume's `claimRef` names this claim (by namespace and name, and by uid when
/// the reference has one: a reference without uid is a user's pre-binding).
pub fn is_bound_to(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    let m = &claim.metadata;
    if r.namespace != m.namespace || r.name != m.name {
        return false;
    }
    let uid = r.uid.as_deref().unwrap_or_default();
    uid.is_empty() || Some(uid) == m.uid.as_deref()
}

/// Every access mode the claim asks for is offered by the volume.
pub fn access_modes_fit(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let offered = pv
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default();
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
        .iter()
        .all(|m| offered.contains(m))
}

/// The claim and the volume have the same volume mode (Filesystem when unset).
pub fn volume_modes_fit(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let pv_mode = pv.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    let claim_mode = claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    pv_mode.unwrap_or("Filesystem") == claim_mode.unwrap_or("Filesystem")
}

/// Why a volume the claim names in `spec.volumeName` cannot serve it (Kubernetes'
/// `checkVolumeSatisfyClaim`: capacity, class and volume mode), `None` when it can.
pub fn unsatisfied_by(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> Option<String> {
    let (need, have) = (requested_bytes(claim), capacity_bytes(pv));
    if need.is_none() || have.is_none() || have < need {
        return Some("requested PV is too small".into());
    }
    if claim_class(claim) != volume_class(pv) {
        return Some("storageClassName does not match".into());
    }
    if !volume_modes_fit(pv, claim) {
        return Some("incompatible volumeMode".into());
    }
    None
}

/// The best Available volume for an unbound claim: a volume pre-bound to the claim (through its
/// `claimRef`) if one fits its access and volume modes, else the smallest Available, unclaimed
/// volume of the claim's class whose labels match the claim's selector, whose access modes
/// include the requested ones and whose capacity covers the request.
pub fn best_match(
    volumes: &[Arc<PersistentVolume>],
    claim: &PersistentVolumeClaim,
) -> Option<Arc<PersistentVolume>> {
    let need = requested_bytes(claim)?;
    let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
    let mut best: Option<(u128, &Arc<PersistentVolume>)> = None;
    for pv in volumes {
        if pv.metadata.deletion_timestamp.is_some()
            || !volume_modes_fit(pv, claim)
            || !access_modes_fit(pv, claim)
        {
            continue;
        }
        if is_bound_to(pv, claim) {
            return Some(pv.clone());
        }
        let available = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available");
        let unclaimed = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_none();
        if !available || !unclaimed || volume_class(pv) != claim_class(claim) {
            continue;
        }
        if selector.is_some_and(|s| !util::selector_matches(s, pv.metadata.labels.as_ref())) {
            continue;
        }
        let Some(have) = capacity_bytes(pv).filter(|h| *h >= need) else {
            continue;
        };
        if best.is_none_or(|(b, _)| have < b) {
            best = Some((have, pv));
        }
    }
    best.map(|(_, pv)| pv.clone())
}

/// A Kubernetes quantity (`10Gi`, `500M`, `1.5e9`, `100m`) as whole bytes, rounded up; `None`
/// for a malformed, negative or absurdly large quantity.
pub fn parse_bytes(s: &str) -> Option<u128> {
    parse_scaled(s, 0)
}

/// A Kubernetes quantity in units of 10^-`scale` (`scale` 3: thousandths, Kubernetes'
/// `MilliValue`), rounded up; `None` as for [`parse_bytes`].
pub fn parse_scaled(s: &str, scale: i64) -> Option<u128> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number = number.strip_prefix('+').unwrap_or(number);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let digits = format!("{int}{frac}");
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mantissa: u128 = digits.parse().ok()?;
    let (pow2, mut pow10): (u32, i64) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        e if e.starts_with(['e', 'E']) => (0, e[1..].parse::<i64>().ok()?),
        _ => return None,
    };
    pow10 -= i64::try_from(frac.len()).ok()?;
    pow10 += scale;
    let scaled = mantissa.checked_mul(1u128.checked_shl(pow2)?)?;
    if pow10 >= 0 {
        scaled.checked_mul(10u128.checked_pow(u32::try_from(pow10).ok()?)?)
    } else {
        let div = 10u128.checked_pow(u32::try_from(-pow10).ok()?)?;
        Some(scaled.div_ceil(div))
    }
}
