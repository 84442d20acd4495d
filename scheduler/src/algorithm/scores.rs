//! The scores: each ranks the feasible nodes 0..=100 with Kubernetes' formula and normalisation,
//! and the total is their sum weighted like kube-scheduler's default profile.

use std::collections::HashMap;

use super::filters::{tolerates, PodQuery};
use super::pod_info::AffinityTerm;
use super::snapshot::{NodeInfo, Snapshot};

/// The highest score a node can get from one score.
pub(crate) const MAX_NODE_SCORE: i64 = 100;

/// kube-scheduler's weight for the required affinity terms of placed pods that select the
/// incoming pod (`hardPodAffinityWeight`).
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// How much the zone counts against the node in owner spreading (SelectorSpread's 2/3).
const ZONE_WEIGHTING: f64 = 2.0 / 3.0;

/// A score over the feasible nodes (given as snapshot node indices), normalised to 0..=100.
type ScoreFn = fn(&PodQuery<'_>, &Snapshot, &[usize]) -> Vec<i64>;

/// The scores and kube-scheduler's default weights for them.
const WEIGHTED_SCORES: &[(ScoreFn, i64)] = &[
    (least_allocated, 1),
    (balanced_allocation, 1),
    (node_affinity, 2),
    (inter_pod_affinity, 2),
    (owner_spread, 2),
    (taint_toleration, 3),
];

/// The weighted total score of each feasible node, in the order of `feasible`.
pub(crate) fn total(query: &PodQuery<'_>, snapshot: &Snapshot, feasible: &[usize]) -> Vec<i64> {
    let mut totals = vec![0; feasible.len()];
    for (score, weight) in WEIGHTED_SCORES {
        for (total, node_score) in totals.iter_mut().zip(score(query, snapshot, feasible)) {
            *total += node_score * weight;
        }
    }
    totals
}

fn nodes<'a>(snapshot: &'a Snapshot, feasible: &'a [usize]) -> impl Iterator<Item = &'a NodeInfo> {
    feasible.iter().map(|&i| &snapshot.nodes[i])
}

/// NodeResourcesFit with the LeastAllocated strategy: the share of cpu and of memory left free
/// after adding the pod (non-zero requests), equally weighted.
pub(crate) fn least_allocated(
    query: &PodQuery<'_>,
    snapshot: &Snapshot,
    feasible: &[usize],
) -> Vec<i64> {
    let pod = &query.facts.requests.non_zero;
    nodes(snapshot, feasible)
        .map(|node| {
            let allocatable = &node.allocatable.resources;
            let requested = &node.non_zero_requested;
            let resources = [
                (requested.milli_cpu + pod.milli_cpu, allocatable.milli_cpu),
                (requested.memory + pod.memory, allocatable.memory),
            ];
            let (mut sum, mut weights) = (0, 0);
            for (requested, capacity) in resources {
                if capacity == 0 {
                    continue;
                }
                sum += if requested > capacity {
                    0
                } else {
                    (capacity - requested) * MAX_NODE_SCORE / capacity
                };
                weights += 1;
            }
            if weights == 0 {
                0
            } else {
                sum / weights
            }
        })
        .collect()
}

/// NodeResourcesBalancedAllocation: `(1 - std) × 100` of the cpu and memory fractions requested
/// once the pod is added (actual requests). Pods requesting neither are not scored (all 0).
pub(crate) fn balanced_allocation(
    query: &PodQuery<'_>,
    snapshot: &Snapshot,
    feasible: &[usize],
) -> Vec<i64> {
    let pod = &query.facts.requests.requests;
    if pod.milli_cpu == 0 && pod.memory == 0 {
        return vec![0; feasible.len()];
    }
    nodes(snapshot, feasible)
        .map(|node| {
            let allocatable = &node.allocatable.resources;
            let requested = &node.requested;
            let mut fractions = [0.0; 2];
            let mut len = 0;
            for (requested, capacity) in [
                (requested.milli_cpu + pod.milli_cpu, allocatable.milli_cpu),
                (requested.memory + pod.memory, allocatable.memory),
            ] {
                if capacity != 0 {
                    fractions[len] = (requested as f64 / capacity as f64).min(1.0);
                    len += 1;
                }
            }
            // With one resource (or none) the deviation is zero, as in Kubernetes.
            let std = if len == 2 {
                ((fractions[0] - fractions[1]) / 2.0).abs()
            } else {
                0.0
            };
            ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
        })
        .collect()
}

/// NodeAffinity's preferred terms: the sum of the weights of the terms the node matches,
/// normalised so the best node gets 100.
pub(crate) fn node_affinity(
    query: &PodQuery<'_>,
    snapshot: &Snapshot,
    feasible: &[usize],
) -> Vec<i64> {
    let mut scores: Vec<i64> = nodes(snapshot, feasible)
        .map(|node| {
            query
                .preferred_node_affinity
                .iter()
                .filter(|(_, term)| term.matches(node.name(), node.labels()))
                .map(|(weight, _)| weight)
                .sum()
        })
        .collect();
    normalize(&mut scores, false);
    scores
}

/// TaintToleration: the fewer PreferNoSchedule taints the pod does not tolerate, the better.
pub(crate) fn taint_toleration(
    query: &PodQuery<'_>,
    snapshot: &Snapshot,
    feasible: &[usize],
) -> Vec<i64> {
    let mut scores: Vec<i64> = nodes(snapshot, feasible)
        .map(|node| {
            node.taints()
                .iter()
                .filter(|t| {
                    t.effect == "PreferNoSchedule"
                        && !tolerates(
                            query.tolerations,
                            &t.key,
                            t.value.as_deref().unwrap_or_default(),
                            &t.effect,
                        )
                })
                .count() as i64
        })
        .collect();
    normalize(&mut scores, true);
    scores
}

/// InterPodAffinity's preferences: for every placed pod, the weights of the incoming pod's
/// preferred terms it matches (anti-affinity subtracts), and of its own required and preferred
/// terms that match the incoming pod, credited to its topology; min-max normalised.
pub(crate) fn inter_pod_affinity(
    query: &PodQuery<'_>,
    snapshot: &Snapshot,
    feasible: &[usize],
) -> Vec<i64> {
    let incoming = &query.facts.affinity;
    if !incoming.any_preferred() && snapshot.pods_with_affinity == 0 {
        return vec![0; feasible.len()];
    }
    let mut topology: HashMap<&str, HashMap<&str, i64>> = HashMap::new();
    for node in &snapshot.nodes {
        let labels = node.labels();
        if labels.is_empty() {
            continue;
        }
        let mut credit = |term: &AffinityTerm, weight: i64| {
            if let Some((key, value)) = labels.get_key_value(&term.topology_key) {
                *topology.entry(key).or_default().entry(value).or_default() += weight;
            }
        };
        let pods = if incoming.any_preferred() {
            &node.pods
        } else {
            &node.pods_with_affinity
        };
        for existing in pods {
            for t in &incoming.preferred_affinity {
                if t.term.matches(&existing.pod) {
                    credit(&t.term, t.weight);
                }
            }
            for t in &incoming.preferred_anti_affinity {
                if t.term.matches(&existing.pod) {
                    credit(&t.term, -t.weight);
                }
            }
            let theirs = &existing.facts.affinity;
            for term in &theirs.required_affinity {
                if term.matches(query.pod) {
                    credit(term, HARD_POD_AFFINITY_WEIGHT);
                }
            }
            for t in &theirs.preferred_affinity {
                if t.term.matches(query.pod) {
                    credit(&t.term, t.weight);
                }
            }
            for t in &theirs.preferred_anti_affinity {
                if t.term.matches(query.pod) {
                    credit(&t.term, -t.weight);
                }
            }
        }
    }
    let scores: Vec<i64> = nodes(snapshot, feasible)
        .map(|node| {
            let labels = node.labels();
            topology
                .iter()
                .filter_map(|(key, values)| labels.get(*key).and_then(|v| values.get(v.as_str())))
                .sum()
        })
        .collect();
    let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
        return scores;
    };
    scores
        .iter()
        .map(|&score| {
            if max > min {
                (MAX_NODE_SCORE as f64 * ((score - min) as f64 / (max - min) as f64)) as i64
            } else {
                0
            }
        })
        .collect()
}

/// Spreading of pods with the same controller owner, like Kubernetes' SelectorSpread: fewer of
/// the owner's pods on the node scores higher, and where nodes have zones (region and
/// `topology.kubernetes.io/zone`), fewer in the node's zone counts for 2/3 of the score.
pub(crate) fn owner_spread(
    query: &PodQuery<'_>,
    snapshot: &Snapshot,
    feasible: &[usize],
) -> Vec<i64> {
    let mut counts = vec![0i64; feasible.len()];
    let per_node = query
        .facts
        .owner_uid
        .as_deref()
        .and_then(|owner| snapshot.owner_counts(owner));
    // `feasible` is in ascending order: look the owner's few nodes up in it rather than each
    // feasible node in the owner's map.
    for (node, count) in per_node.into_iter().flatten() {
        if let Ok(position) = feasible.binary_search(node) {
            counts[position] = i64::from(*count);
        }
    }
    let mut zone_counts = vec![0i64; snapshot.num_zones];
    let mut have_zones = false;
    for (node, count) in nodes(snapshot, feasible).zip(&counts) {
        if let Some(zone) = node.zone {
            zone_counts[zone] += count;
            have_zones = true;
        }
    }
    let max_node = counts.iter().copied().max().unwrap_or(0);
    let max_zone = zone_counts.iter().copied().max().unwrap_or(0);
    let max = MAX_NODE_SCORE as f64;
    nodes(snapshot, feasible)
        .zip(&counts)
        .map(|(node, &count)| {
            let mut score = if max_node > 0 {
                max * ((max_node - count) as f64 / max_node as f64)
            } else {
                max
            };
            if let Some(zone) = node.zone.filter(|_| have_zones) {
                let zone_score = if max_zone > 0 {
                    max * ((max_zone - zone_counts[zone]) as f64 / max_zone as f64)
                } else {
                    max
                };
                score = score * (1.0 - ZONE_WEIGHTING) + ZONE_WEIGHTING * zone_score;
            }
            score as i64
        })
        .collect()
}

/// Kubernetes' `DefaultNormalizeScore`: scale so the highest becomes 100 (then reverse if asked);
/// all zeros stay 0, or become 100 when reversed.
fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for score in scores.iter_mut() {
        let scaled = if max == 0 {
            0
        } else {
            MAX_NODE_SCORE * *score / max
        };
        *score = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}
